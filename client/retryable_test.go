package client

import (
	"errors"
	"testing"

	"connectrpc.com/connect"
)

// A write to a node killed mid-request comes back from connect-go as
// Canceled although the caller's ctx is live (TestClientAcrossLeaderFailover
// failed on it now and then): it must move on to the next endpoint, as
// Unavailable does, and nothing else may.
func TestRetryable(t *testing.T) {
	broken := errors.New(`Post "http://127.0.0.1:1/lockstep.v1.LockService/Release": write: broken pipe`)
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{connect.NewError(connect.CodeUnavailable, errors.New("no quorum")), true},
		{connect.NewError(connect.CodeCanceled, broken), true},
		{connect.NewError(connect.CodeDeadlineExceeded, broken), false},
		{connect.NewError(connect.CodeFailedPrecondition, errors.New("wrong token")), false},
		{connect.NewError(connect.CodeInvalidArgument, errors.New("bad name")), false},
		{errors.New("not a connect error"), false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A node killed in the middle of a watch's message: connect-go reports the
// truncated stream as internal, but no server sent it, so the watch
// resumes on the next endpoint (TestClientWatchAcrossKill ended on it). A
// server's internal error, or any refusal, still ends it.
func TestResumable(t *testing.T) {
	truncated := connect.NewError(connect.CodeInternal, errors.New("protocol error: incomplete envelope: unexpected EOF"))
	fromServer := connect.NewWireError(connect.CodeInternal, errors.New("the server failed"))
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{truncated, true},
		{connect.NewError(connect.CodeUnavailable, errors.New("no quorum")), true},
		{fromServer, false},
		{connect.NewWireError(connect.CodeOutOfRange, errors.New("compacted")), false},
		{connect.NewWireError(connect.CodeInvalidArgument, errors.New("bad start_positions")), false},
		{errors.New("not a connect error"), false},
	} {
		if got := resumable(tc.err); got != tc.want {
			t.Errorf("resumable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A bare HTTP 404 (connect-go's words, unary or stream) is a server that
// does not serve the API; the API's own answers, a 404 with a Connect
// error or an unimplemented of its own, are not.
func TestNotTheAPI(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{connect.NewError(connect.CodeUnimplemented, errors.New("404 Not Found")), true},
		{connect.NewError(connect.CodeUnimplemented, errors.New("HTTP status 404 Not Found")), true},
		{connect.NewWireError(connect.CodeUnimplemented, errors.New("404 Not Found")), false},
		{connect.NewWireError(connect.CodeNotFound, errors.New("no such procedure: /x")), false},
		{connect.NewError(connect.CodeUnimplemented, errors.New("HTTP status 405 Method Not Allowed")), false},
		{errors.New("404 Not Found"), false},
	} {
		if got := notTheAPI(tc.err); got != tc.want {
			t.Errorf("notTheAPI(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
