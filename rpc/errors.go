package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/internal/quote"
	"github.com/lockstepd/lockstep/runtime"
)

// Every error a handler returns is a *connect.Error whose code says what
// happened; REST callers see it as the HTTP status of docs/design.md and a
// {"code", "message"} body (rest.go):
//
//	core invalid_argument     InvalidArgument     400 invalid_argument
//	core failed_precondition  FailedPrecondition  400 failed_precondition
//	core not_found            NotFound            404 not_found
//	core conflict             Aborted             409 conflict
//	core resource_exhausted   ResourceExhausted   429 resource_exhausted
//	no quorum, shutting down  Unavailable         503 unavailable
//	watch history compacted   OutOfRange          400 out_of_range
//	bad or no credentials     Unauthenticated     401 unauthenticated
//	ACL, another's session    PermissionDenied    403 permission_denied
//	audit log unwritable      Unavailable         503 unavailable
//
// Conflict (a wrong holder or a stale fencing token) is Aborted because that
// is gRPC's code for "a concurrency check failed: re-read and decide again",
// and it is the code that maps to 409.

var coreCodes = map[core.Code]connect.Code{
	core.CodeInvalidArgument:    connect.CodeInvalidArgument,
	core.CodeNotFound:           connect.CodeNotFound,
	core.CodeFailedPrecondition: connect.CodeFailedPrecondition,
	core.CodeResourceExhausted:  connect.CodeResourceExhausted,
	core.CodeConflict:           connect.CodeAborted,
}

// restCodeName is the "code" of a REST error body: Connect's name of the
// code, except that Aborted says what it means here.
func restCodeName(c connect.Code) string {
	if c == connect.CodeAborted {
		return "conflict"
	}
	return c.String()
}

// apiError turns what the backend or core said into a *connect.Error.
func (s *service) apiError(err error) error {
	if err == nil {
		return nil
	}
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return err
	}
	var ce *core.Error
	if errors.As(err, &ce) {
		code, ok := coreCodes[ce.Code]
		if !ok {
			code = connect.CodeInternal
		}
		return connect.NewError(code, errors.New(ce.Msg))
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded):
		// ctx's own words ("context deadline exceeded") name Go's
		// mechanism, not what happened.
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request ran out of time before the cluster answered: "+
			"retry, on this member or another, with more time if the cluster is slow"))
	}
	switch {
	case errors.Is(err, runtime.ErrWaitKept):
		return connect.NewError(connect.CodeUnavailable, err) // it says to send it again elsewhere
	case errors.Is(err, runtime.ErrShuttingDown):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w: retry on another member", err))
	case errors.Is(err, runtime.ErrUnavailable):
		// The runtime's words say what this member knows (no leader, no
		// quorum reachable from it). Reads and writes alike may be retried;
		// how a write is retried safely (the same client_id and
		// request_seq) is docs/api.md's, not every message's: a read has no
		// client_id, and the Go client and the CLI retry that way already.
		// The code says "unavailable": the message starts with the detail.
		msg, _ := unavailableDetail(err)
		e := connect.NewError(connect.CodeUnavailable, fmt.Errorf("%s: retry later, on this member or another", msg))
		// For HTTP clients that back off by the standard header (a
		// proxy's, a library's retry policy): an election settles within
		// a second or two.
		e.Meta().Set("Retry-After", retryAfterSeconds)
		return e
	case errors.Is(err, runtime.ErrCompacted):
		return connect.NewError(connect.CodeOutOfRange, fmt.Errorf("%w: read the status and watch again from its applied_index + 1", err))
	case errors.Is(err, runtime.ErrTooManyMembers):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// resultError is the error of a core result, nil when it succeeded.
func (s *service) resultError(r core.Result) error {
	if r.Err == nil {
		return nil
	}
	return s.apiError(r.Err)
}

func invalid(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

func conflict(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeAborted, fmt.Errorf(format, args...))
}

// boundQuotes applies quote.Bounded to every Go-quoted string in msg: protojson's
// messages quote a bad value, or an unknown field's name, whole.
func boundQuotes(msg string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(msg, '"')
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i])
		q, err := strconv.QuotedPrefix(msg[i:])
		if err != nil { // a lone quote mark
			b.WriteByte('"')
			msg = msg[i+1:]
			continue
		}
		msg = msg[i+len(q):]
		if s, _ := strconv.Unquote(q); len(s) > quote.MaxBytes {
			q = quote.Bounded(s)
		}
		b.WriteString(q) // a short one as the message spelt it
	}
}

// unavailableDetail is what a runtime.ErrUnavailable says past the
// sentinel's own words (which shard, what this member knows of its leader
// and peers), and whether it began with them; err's whole text when not.
func unavailableDetail(err error) (string, bool) {
	return strings.CutPrefix(err.Error(), runtime.ErrUnavailable.Error()+": ")
}

// retryAfterSeconds is the Retry-After of a member that knows no leader
// or reaches no quorum: a leader election takes a few election timeouts
// (300 ms by default).
const retryAfterSeconds = "1"
