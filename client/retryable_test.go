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
