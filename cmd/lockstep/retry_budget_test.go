package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// downFor is a cluster that cannot serve (unavailable, as while every
// member restarts) for a while from the first session create, and then
// refuses the create with a message of its own, so that a command that
// kept trying past the outage says so.
type downFor struct {
	lockstepv1connect.UnimplementedSessionServiceHandler
	outage time.Duration
	mu     sync.Mutex
	first  time.Time
}

func (s *downFor) Create(context.Context, *connect.Request[pb.CreateSessionRequest]) (*connect.Response[pb.CreateSessionResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() {
		s.first = time.Now()
	}
	if time.Since(s.first) < s.outage {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("no leader"))
	}
	return nil, connect.NewError(connect.CodePermissionDenied, errors.New("the cluster is back"))
}

// TestWaitingCommandsRideOutAnOutage: a command that holds a session keeps
// trying for at least its lease (--ttl), as its session survives that long
// on the servers' side; before, every command gave up after 10 s, so a
// waiting 'lockstep lock' lost its place in a restart of the whole cluster
// that its holder rode out. A command without a session still gives up
// after 10 s.
func TestWaitingCommandsRideOutAnOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("waits through an 11 s outage")
	}
	srv := httptest.NewServer(func() http.Handler {
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewSessionServiceHandler(&downFor{outage: 11 * time.Second}))
		return mux
	}())
	defer srv.Close()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run([]string{"lock", "job", "--ttl", "20s", "--endpoints", srv.URL, "--", "true"}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "the cluster is back") {
		t.Fatalf("after %v: exit %d, %q; want the refusal the cluster gave once back (11 s)", time.Since(start).Round(time.Second), code, errb.String())
	}
	if b := newCommand("status", "", &out, &errb).retryBudget(); b != 10*time.Second {
		t.Errorf("a command without a session tries for %v, want 10s", b)
	}
}
