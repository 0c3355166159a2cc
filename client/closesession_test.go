package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestCloseSessionByID: an operator's force-release. SessionInfo shows
// what a session holds; CloseSession ends it from another Client, which
// releases its hold at once, and the Client that kept it hears of it.
func TestCloseSessionByID(t *testing.T) {
	ctx := testCtx(t)
	keeper := newClient(t)
	defer keeper.Close(ctx)
	s := newSession(t, keeper)
	if err := client.NewMutex(s, "t/force-release").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	op := newClient(t)
	defer op.Close(ctx)
	info, err := op.SessionInfo(ctx, s.ID())
	if err != nil || len(info.Holds) != 1 || info.Holds[0].Name != "t/force-release" {
		t.Fatalf("SessionInfo: %+v %v, want the one mutex it holds", info, err)
	}
	if err := op.CloseSession(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if st, err := op.Status(ctx, client.KindMutex, "t/force-release"); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after CloseSession: %+v %v, want the name free", st, err)
	}
	select {
	case <-s.Done():
	case <-time.After(s.TTL()):
		t.Fatal("the keeping Client did not hear its session was closed within a TTL")
	}
	if err := op.CloseSession(ctx, s.ID()); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("CloseSession of a closed session: %v, want ErrSessionLost", err)
	}
	if _, err := op.SessionInfo(ctx, s.ID()); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("SessionInfo of a closed session: %v, want ErrSessionLost", err)
	}
}

// TestCloseSessionAppliesLockDelay: CloseSession ends the holds of another
// process's session as a failure, so a Mutex locked WithLockDelay stays
// locked to everyone for its lock-delay, as after an expiry;
// WithoutLockDelay hands it on at once, and so does the session's own
// Close.
func TestCloseSessionAppliesLockDelay(t *testing.T) {
	ctx := testCtx(t)
	keeper := newClient(t)
	defer keeper.Close(ctx)
	op := newClient(t)
	defer op.Close(ctx)
	for _, tc := range []struct {
		name    string
		close   func(s *client.Session) error
		blocked bool
	}{
		{"CloseSession", func(s *client.Session) error { return op.CloseSession(ctx, s.ID()) }, true},
		{"CloseSession WithoutLockDelay", func(s *client.Session) error { return op.CloseSession(ctx, s.ID(), client.WithoutLockDelay()) }, false},
		{"the session's own Close", func(s *client.Session) error { return s.Close(ctx) }, false},
	} {
		name := "t/forced/" + strings.ReplaceAll(tc.name, " ", "-")
		s := newSession(t, keeper)
		if err := client.NewMutex(s, name, client.WithLockDelay(time.Minute)).Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tc.close(s); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		st, err := op.Status(ctx, client.KindMutex, name)
		if err != nil || len(st.Holders) != 0 {
			t.Fatalf("after %s: %+v %v, want nobody holding it", tc.name, st, err)
		}
		if blocked := st.BlockedUntilMs != 0; blocked != tc.blocked {
			t.Fatalf("after %s: blocked until %d, want a lock-delay %v", tc.name, st.BlockedUntilMs, tc.blocked)
		}
		// A TryLock refused by the lock-delay says so, not "held by
		// someone else", since nobody is.
		next := client.NewMutex(newSession(t, op), name)
		err = next.TryLock(ctx)
		if tc.blocked && (!errors.Is(err, client.ErrLocked) || !strings.Contains(err.Error(), "nobody holds it, but a lock-delay keeps it from everyone") ||
			strings.Contains(err.Error(), "held by someone else")) {
			t.Fatalf("TryLock after %s: %v, want ErrLocked naming the lock-delay", tc.name, err)
		}
		if !tc.blocked && err != nil {
			t.Fatalf("TryLock after %s: %v, want the mutex", tc.name, err)
		}
	}
}

// oldSessions is a SessionService of a build before rules 4: it does not
// know apply_lock_delay (Connect drops an unknown field), closes as a
// release does, and answers no lock_delay_applied.
type oldSessions struct {
	lockstepv1connect.UnimplementedSessionServiceHandler
	asked chan bool
}

func (o oldSessions) Close(_ context.Context, r *connect.Request[pb.CloseSessionRequest]) (*connect.Response[pb.CloseSessionResponse], error) {
	o.asked <- r.Msg.GetApplyLockDelay()
	return connect.NewResponse(&pb.CloseSessionResponse{SessionId: r.Msg.GetSessionId()}), nil
}

// A close that asked for the lock-delay, answered by servers that did not
// apply it, is not answered nil: the operator learns that the locks were
// handed on at once. One that did not ask is.
func TestCloseSessionSaysAnOlderServerIgnoredTheLockDelay(t *testing.T) {
	old := oldSessions{asked: make(chan bool, 2)}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewSessionServiceHandler(old))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New([]string{srv.URL}, client.WithUnary(), client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	err = c.CloseSession(ctx, 42)
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "without the lock-delay") {
		t.Fatalf("CloseSession answered by a server that ignored the lock-delay: %v, want an error saying so", err)
	}
	if !<-old.asked {
		t.Fatal("CloseSession did not ask for the lock-delay")
	}
	if err := c.CloseSession(ctx, 42, client.WithoutLockDelay()); err != nil {
		t.Fatalf("CloseSession WithoutLockDelay: %v", err)
	}
}
