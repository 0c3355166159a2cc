package core

import "fmt"

// Code classifies an error the way gRPC and Connect do, so that the API layer
// maps it to a status without parsing messages.
type Code uint8

const (
	CodeOK Code = iota
	CodeInvalidArgument
	CodeNotFound
	CodeFailedPrecondition
	CodeResourceExhausted
	CodeConflict // the caller is not the holder, or its token is stale (HTTP 409)
)

var codeNames = [...]string{"ok", "invalid_argument", "not_found", "failed_precondition", "resource_exhausted", "conflict"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error is what a refused command or read answers. Msg says what to fix.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Msg }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of an error from this package, CodeOK for nil.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return CodeInvalidArgument
}
