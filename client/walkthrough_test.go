package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The tests of a Go developer's walk-through (one used to Curator and
// etcd's concurrency package). Each one failed on the client before its
// fix.

// The withdrawal of a cancelled Lock gave up after a minute: when its
// Abandon could not get through for longer (here every Abandon is lost on
// the way, while keepalives pass and the session lives on), the queued
// request stayed, and was granted later to the live session with no Mutex
// knowing its token: held until the session ends. It now keeps trying for
// as long as the session lives.
func TestWithdrawalOutlastsAnOutage(t *testing.T) {
	needServer(t)
	const name = "t/withdraw-outage"
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL()}, client.WithAttemptTimeout(300*time.Millisecond),
		client.WithRetryTimeout(time.Second), client.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	direct := newClient(t)
	holder := client.NewMutex(newSession(t, direct), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c, client.WithTTL(10*time.Second))
	lctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- client.NewMutex(s, name).Lock(lctx) }()
	waitFor(t, "the Lock queued", func() bool {
		st, err := direct.Status(ctx, client.KindMutex, name)
		return err == nil && len(st.Waiters) == 1
	})
	// From now on every Abandon is lost on the way (never delivered).
	p.holdBack(func(path string, _ []byte) bool { return strings.HasSuffix(path, "/Abandon") })
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("the cancelled Lock: %v, want context.Canceled", err)
	}
	time.Sleep(3 * time.Second) // several rounds of the withdrawal, each lost
	p.holdBack(nil)             // the way is clear again
	waitFor(t, "the cancelled Lock's wait withdrawn", func() bool {
		st, err := direct.Status(ctx, client.KindMutex, name)
		return err == nil && len(st.Waiters) == 0
	})
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Holds) != 0 || len(ss.Waits) != 0 {
		t.Fatalf("after the withdrawal the session holds %v and waits %v", ss.GetHolds(), ss.GetWaits())
	}
	if !alive(s) {
		t.Fatalf("the session was lost: %v", s.Err())
	}
}

// A withdrawal the servers refuse for good (here: an ACL reloaded since
// the acquire denies it) cannot be retried into success; the client gave
// up on it silently, and the request could be granted later to the live
// session. The session is given up instead: Done closes saying why, and
// the session is closed on the servers, with whatever it held.
func TestRefusedWithdrawalGivesUpTheSession(t *testing.T) {
	needServer(t)
	const name = "t/withdraw-refused"
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/Abandon") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"code":"permission_denied","message":"the ACL denies it now"}`))
			return
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New([]string{srv.URL}, client.WithUnary())
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	direct := newClient(t)
	holder := client.NewMutex(newSession(t, direct), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c)
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := client.NewMutex(s, name).Lock(lctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock: %v, want DeadlineExceeded", err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session lives on with a withdrawal refused")
	}
	if err := s.Err(); !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "withdrawal") {
		t.Fatalf("Err: %v, want the loss saying the withdrawal was refused", err)
	}
	waitFor(t, "the session closed on the servers", func() bool { return onServer(t, s.ID()) == nil })
}

// A Close that failed (its ctx ended) could not be retried: a second Close
// answered nil without closing the session on the servers, whose holds
// stayed until its TTL. A later Close now sends the close again.
func TestFailedCloseCanBeRetried(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const name = "t/close-retry"
	s := newSession(t, c)
	if err := client.NewMutex(s, name).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Close(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a cancelled ctx: %v, want context.Canceled", err)
	}
	if alive(s) {
		t.Fatal("the session is still alive on the client after Close")
	}
	if onServer(t, s.ID()) == nil {
		t.Fatal("Close with a cancelled ctx closed the session on the servers")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close again: %v", err)
	}
	if ss := onServer(t, s.ID()); ss != nil {
		t.Fatalf("after a second Close the servers still have the session, holding %v", ss.GetHolds())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close a third time: %v", err)
	}
	if err := client.NewMutex(newSession(t, c), name).TryLock(ctx); err != nil {
		t.Fatalf("the closed session's lock: %v", err)
	}
	// Closing the Client closes a session whose Close failed, too.
	c2 := newClient(t)
	s2 := newSession(t, c2)
	if err := s2.Close(dead); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a cancelled ctx: %v, want context.Canceled", err)
	}
	if err := c2.Close(ctx); err != nil {
		t.Fatalf("Client.Close: %v", err)
	}
	if onServer(t, s2.ID()) != nil {
		t.Fatal("Client.Close left a session whose Close had failed on the servers")
	}
}

// With unary calls nothing is pushed: a session an operator deleted
// (DELETE /sessions/{id}) answered not_found to an acquire, which returned
// ErrSessionLost, while Err stayed nil and Done open until the next
// keepalive (a third of the TTL later). Any call that learns the servers
// no longer have the session now marks it lost at once. (A release of the
// deleted session's grant answers aborted, ErrNotHeld: the grant ended,
// and the servers check the grant, not the session.)
func TestNotFoundMarksTheSessionLost(t *testing.T) {
	needServer(t)
	c, err := client.New([]string{endpoint}, client.WithUnary())
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for _, via := range []string{"TryLock", "Lock"} {
		s := newSession(t, c, client.WithTTL(30*time.Second))
		if err := client.NewMutex(s, "t/not-found/"+via).Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := rawSessions().Close(ctx, connect.NewRequest(&pb.CloseSessionRequest{SessionId: s.ID()})); err != nil {
			t.Fatalf("closing session %d from outside: %v", s.ID(), err)
		}
		m := client.NewMutex(s, "t/not-found/other")
		if via == "TryLock" {
			err = m.TryLock(ctx)
		} else {
			err = m.Lock(ctx)
		}
		if !errors.Is(err, client.ErrSessionLost) {
			t.Fatalf("%s on a session deleted on the servers: %v, want ErrSessionLost", via, err)
		}
		if alive(s) || !errors.Is(s.Err(), client.ErrSessionLost) {
			t.Fatalf("after %s was answered not_found: Done open %v, Err %v; want the session lost", via, alive(s), s.Err())
		}
	}
}

// Right after a Lock that timed out, a TryLock on the same session of the
// name, free by then on the servers, answered ErrLocked "by another holder
// on this session": the session's gate of the name was still held by the
// background withdrawal of the timed-out Lock (here its Abandon is held
// back a moment). TryLock now waits for that withdrawal, as long as one
// attempt may take, and takes the lock.
func TestTryLockAfterATimedOutLockWaitsForItsWithdrawal(t *testing.T) {
	needServer(t)
	const name = "t/try-after-timeout"
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, newClient(t)), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c)
	p.holdBack(func(path string, _ []byte) bool { return strings.HasSuffix(path, "/Abandon") })
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := client.NewMutex(s, name).Lock(lctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock: %v, want DeadlineExceeded", err)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.release() // the withdrawal lands
	}()
	m := client.NewMutex(s, name)
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock of a free name after a timed-out Lock on the same session: %v", err)
	}
	if m.Token() == 0 {
		t.Fatal("TryLock succeeded without a token")
	}
}

// TryAcquire(ctx, 0) took one permit (the servers read 0 as 1), and a
// negative count reached the servers. The client refuses both, as Curator
// does, saying what to give, and sends nothing.
func TestSemaphoreRefusesCountsBelowOne(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const name = "t/sem-zero"
	sem := client.NewSemaphore(newSession(t, c), name, 2)
	for _, n := range []int64{0, -1} {
		for what, try := range map[string]func() error{
			"TryAcquire":    func() error { return sem.TryAcquire(ctx, n) },
			"Acquire":       func() error { return sem.Acquire(ctx, n) },
			"AcquireWithin": func() error { return sem.AcquireWithin(ctx, n, time.Second) },
		} {
			err := try()
			if err == nil || !strings.Contains(err.Error(), "at least 1") {
				t.Fatalf("%s(%d): %v, want a refusal asking for at least 1 permit", what, n, err)
			}
			if sem.Token() != 0 {
				t.Fatalf("%s(%d) holds token %d", what, n, sem.Token())
			}
		}
	}
	if st, err := c.Status(ctx, client.KindSemaphore, name); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after refused acquires the semaphore has holders %v (%v)", st.Holders, err)
	}
}

// Two NewBarrier values on one session shared the default participant
// name, so the servers took their Waits for one arrival, and both hung.
// Each Wait is now a party of its own; and a Wait of a participant name
// given with WithParticipant that already waits on the session is refused
// rather than merged.
func TestTwoBarrierValuesOnOneSessionAreTwoParties(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	type result struct {
		gen uint64
		err error
	}
	got := make(chan result, 2)
	for range 2 {
		b := client.NewBarrier(s, "t/barrier-values", 2)
		go func() {
			g, err := b.Wait(wctx)
			got <- result{g, err}
		}()
	}
	r1, r2 := <-got, <-got
	if r1.err != nil || r2.err != nil || r1.gen != r2.gen {
		t.Fatalf("two Barrier values of 2 parties on one session: generation %d (%v) and %d (%v), want both released in one generation",
			r1.gen, r1.err, r2.gen, r2.err)
	}

	const name = "t/barrier-same-participant"
	first := make(chan error, 1)
	go func() {
		_, err := client.NewBarrier(s, name, 2).WithParticipant("p").Wait(wctx)
		first <- err
	}()
	waitFor(t, "the first participant waiting", func() bool {
		st, err := c.Status(ctx, client.KindBarrier, name)
		return err == nil && len(st.Waiters) == 1
	})
	_, err := client.NewBarrier(s, name, 2).WithParticipant("p").Wait(wctx)
	if err == nil || !strings.Contains(err.Error(), "already waits") {
		t.Fatalf("a second Wait of participant p on the session: %v, want a refusal saying p already waits", err)
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("the first Wait: %v, want context.Canceled", err)
	}
}
