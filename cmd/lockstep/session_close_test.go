package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// closeServer records the session closes it is sent, and answers as a
// server of rules 4 does.
type closeServer struct {
	lockstepv1connect.UnimplementedSessionServiceHandler
	mu     sync.Mutex
	closes []*pb.CloseSessionRequest
}

func (s *closeServer) Close(_ context.Context, r *connect.Request[pb.CloseSessionRequest]) (*connect.Response[pb.CloseSessionResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes = append(s.closes, r.Msg)
	return connect.NewResponse(&pb.CloseSessionResponse{SessionId: r.Msg.SessionId, LockDelayApplied: r.Msg.ApplyLockDelay}), nil
}

// TestSessionCloseAppliesLockDelay: 'lockstep session close' asks for the
// lock-delay (the closed session's process may still run), and says so;
// --no-lock-delay does not, and warns that the next holder starts now;
// --no-lock-delay on show is a usage error.
func TestSessionCloseAppliesLockDelay(t *testing.T) {
	cs := &closeServer{}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewSessionServiceHandler(cs))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, tc := range []struct {
		args      []string
		lockDelay bool
		out, err  string
	}{
		{[]string{"session", "close", "42"}, true, "each lock after its lock-delay", ""},
		{[]string{"session", "close", "--no-lock-delay", "43"}, false, "released", "the next holder starts now"},
	} {
		var out, errb bytes.Buffer
		if code := run(append(tc.args, "--endpoints", srv.URL), &out, &errb); code != exitOK {
			t.Fatalf("%q: exit %d: %s", tc.args, code, errb.String())
		}
		cs.mu.Lock()
		last := cs.closes[len(cs.closes)-1]
		cs.mu.Unlock()
		if last.ApplyLockDelay != tc.lockDelay {
			t.Errorf("%q sent apply_lock_delay %v, want %v", tc.args, last.ApplyLockDelay, tc.lockDelay)
		}
		if !strings.Contains(out.String(), tc.out) || (tc.err == "") != (errb.Len() == 0) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%q: stdout %q, stderr %q; want %q and %q", tc.args, out.String(), errb.String(), tc.out, tc.err)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"session", "show", "--no-lock-delay", "42", "--endpoints", srv.URL}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "--no-lock-delay is for session close") {
		t.Errorf("show --no-lock-delay: exit %d, %q", code, errb.String())
	}
}

// TestSessionShowOfAGoneSession: 'session show' and 'session close' of an
// id the servers do not have say so, and where to find live sessions, not
// the advice for a command's own lost session (the network, --ttl).
func TestSessionShowOfAGoneSession(t *testing.T) {
	srv := refusing(t, connect.CodeNotFound, "session 99 does not exist (it expired, was closed, or never was): create a new session")
	for _, sub := range []string{"show", "close"} {
		var out, errb bytes.Buffer
		code := run([]string{"session", sub, "99", "--endpoints", srv.URL}, &out, &errb)
		if code != exitError || !strings.Contains(errb.String(), "No live session has that id") ||
			!strings.Contains(errb.String(), "lockstep status NAME") || strings.Contains(errb.String(), "--ttl") {
			t.Errorf("session %s of a gone id: exit %d, %q", sub, code, errb.String())
		}
	}
}
