package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// The tests of issue 17: the client's promises to programs that share one
// Client among goroutines and sessions, cancel calls, and meet a node that
// stops answering. Each one failed on the client before the issue.

func rawSessions() lockstepv1connect.SessionServiceClient {
	return lockstepv1connect.NewSessionServiceClient(http.DefaultClient, endpoint)
}

// onServer reads a session straight from the server (nil when it is gone).
func onServer(t *testing.T, id uint64) *pb.Session {
	t.Helper()
	res, err := rawSessions().Get(context.Background(), connect.NewRequest(&pb.GetSessionRequest{SessionId: id}))
	if connect.CodeOf(err) == connect.CodeNotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("reading session %d: %v", id, err)
	}
	return res.Msg.Session
}

func alive(s *client.Session) bool {
	select {
	case <-s.Done():
		return false
	default:
		return true
	}
}

// Two sessions of one Client kept their leases with keepalives numbered
// from 1 under one shared dedupe id, so the second session's keepalive was
// answered from the first's stored result and it expired after one TTL.
func TestSessionsSharingAClientKeepTheirLeases(t *testing.T) {
	c := newClient(t)
	ttl := client.WithTTL(2 * time.Second)
	ss := []*client.Session{newSession(t, c, ttl), newSession(t, c, ttl), newSession(t, c, ttl)}
	time.Sleep(4500 * time.Millisecond) // over two TTLs
	for i, s := range ss {
		if !alive(s) {
			t.Errorf("session %d of 3 was lost: %v", i+1, s.Err())
		}
		if onServer(t, s.ID()) == nil {
			t.Errorf("session %d of 3 is gone on the server", i+1)
		}
	}
}

// A request that reaches the server after more than 32 newer ones of the
// same Client was refused as "older than the 32 results kept"; with
// lowest_pending_seq the server keeps its place.
func TestLateRequestAfterManyNewerOnes(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	p.holdBack(func(path string, body []byte) bool {
		m := &pb.AcquireLockRequest{}
		return strings.HasSuffix(path, "LockService/Acquire") && proto.Unmarshal(body, m) == nil && m.Name == "t/late"
	})
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	s := newSession(t, c)
	late := make(chan error, 1)
	go func() { late <- client.NewMutex(s, "t/late").Lock(ctx) }()
	waitFor(t, "the held acquire to reach the proxy", func() bool { return p.holding.Load() == 1 })
	other := newSession(t, c)
	for i := range 40 {
		m := client.NewMutex(other, fmt.Sprintf("t/newer/%d", i))
		if err := m.TryLock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.release()
	if err := <-late; err != nil {
		t.Fatalf("the acquire that arrived after 40 newer requests: %v", err)
	}
}

// Past WithMaxInFlight, a request waits for a slot instead of failing.
func TestMaxInFlightQueues(t *testing.T) {
	needServer(t)
	c, err := client.New([]string{endpoint}, client.WithMaxInFlight(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, c), "t/slots")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// One blocked Lock takes a slot; the session's own requests are done.
	ws := newSession(t, c)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	blocked := make(chan error, 1)
	go func() { blocked <- client.NewMutex(ws, "t/slots").Lock(wctx) }()
	waitFor(t, "the blocked Lock queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/slots")
		return err == nil && len(st.Waiters) == 1
	})
	// A second one takes the last slot; a third request waits.
	s2 := newSession(t, c)
	go func() { _ = client.NewMutex(s2, "t/slots").Lock(wctx) }()
	waitFor(t, "the second blocked Lock queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/slots")
		return err == nil && len(st.Waiters) == 2
	})
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := client.NewMutex(s2, "t/slots-free").TryLock(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third request with every slot taken: %v, want it to wait until its deadline", err)
	}
	if err := holder.Unlock(ctx); err != nil { // the first waiter gets it and frees its slot
		t.Fatal(err)
	}
	if err := <-blocked; err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(s2, "t/slots-free").TryLock(ctx); err != nil {
		t.Fatalf("after a slot freed: %v", err)
	}
}

// WithClientID names a prefix: two Clients (two processes) given the same
// one still get different dedupe identities.
func TestClientIDIsUniquePerClient(t *testing.T) {
	a, err := client.New([]string{"http://127.0.0.1:1"}, client.WithClientID("billing"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := client.New([]string{"http://127.0.0.1:1"}, client.WithClientID("billing"))
	if a.ClientID() == b.ClientID() || !strings.HasPrefix(a.ClientID(), "billing-") {
		t.Fatalf("client ids %q and %q: want distinct ids with the prefix billing-", a.ClientID(), b.ClientID())
	}
	if _, err := client.New([]string{"http://127.0.0.1:1"}, client.WithClientID(strings.Repeat("x", 81))); err == nil {
		t.Fatal("an 81-byte prefix was accepted")
	}
}

// A cancelled Lock whose request was still on the wire when the clean-up
// read the session leaked the grant the request got on arrival. Abandon
// settles it by the request's own id: the late copy is refused.
func TestCancelledLockLeaksNothingWhenItsRequestArrivesLate(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	p.holdBack(func(path string, body []byte) bool {
		m := &pb.AcquireLockRequest{}
		return strings.HasSuffix(path, "LockService/Acquire") && proto.Unmarshal(body, m) == nil && m.Name == "t/late-grant"
	})
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	s := newSession(t, c)
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := client.NewMutex(s, "t/late-grant").Lock(lctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with its request held back: %v, want DeadlineExceeded", err)
	}
	// Let the clean-up run (it has nothing to wait for), then deliver the
	// request: the mutex is free, so it would be granted on arrival.
	deadline := time.Now().Add(2 * time.Second)
	for !p.saw("/Abandon") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	p.release()
	time.Sleep(500 * time.Millisecond)
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Holds) != 0 || len(ss.Waits) != 0 {
		t.Fatalf("after a cancelled Lock the session holds %v and waits %v", ss.GetHolds(), ss.GetWaits())
	}
}

// The clean-up of a cancelled Lock had its own 5-second budget and made
// the caller wait for it; now the call returns by its deadline and the
// clean-up finishes in the background, keeping the name's gate on the
// session until it has.
func TestCancelledLockReturnsByItsDeadline(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	slow := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-slow:
		default:
			close(slow)
		}
	})
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, c), "t/deadline")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c)
	// From now on the clean-up's calls are slow to arrive.
	p.holdBack(func(path string, _ []byte) bool {
		return strings.HasSuffix(path, "/Abandon") || strings.HasSuffix(path, "/Get") || strings.HasSuffix(path, "/CancelWait")
	})
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := client.NewMutex(s, "t/deadline").Lock(lctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock: %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 1300*time.Millisecond {
		t.Fatalf("Lock with a 300ms deadline returned after %v", took)
	}
	// The clean-up has not finished: another holder on the session waits
	// (a TryLock for as long as an attempt may take, then it says so).
	if err := client.NewMutex(s, "t/deadline").TryLock(ctx); !errors.Is(err, client.ErrLocked) ||
		!strings.Contains(err.Error(), "still being withdrawn") {
		t.Fatalf("TryLock during the clean-up: %v, want ErrLocked saying the earlier acquire is being withdrawn", err)
	}
	p.release()
	waitFor(t, "the clean-up to end and the wait withdrawn", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/deadline")
		return err == nil && len(st.Waiters) == 0
	})
}

// A failed Unlock forgot the token, so the lock stayed held and a retry
// said ErrNotHeld.
func TestFailedUnlockKeepsTheToken(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	m := client.NewMutex(newSession(t, c), "t/keep")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	dead, cancel := context.WithCancel(ctx)
	cancel()
	if err := m.Unlock(dead); err == nil {
		t.Fatal("Unlock with a cancelled ctx succeeded")
	}
	if m.Token() != token {
		t.Fatalf("token after a failed Unlock: %d, want %d", m.Token(), token)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("Unlock again: %v", err)
	}
	if err := client.NewMutex(newSession(t, c), "t/keep").TryLock(ctx); err != nil {
		t.Fatalf("the mutex is still held after Unlock: %v", err)
	}
}

// Done must close before the server's lease ends (Chubby's rule), by the
// documented guard.
func TestDoneClosesBeforeTheServersLeaseEnds(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	s := newSession(t, c, client.WithTTL(time.Second))
	time.Sleep(1500 * time.Millisecond) // a few keepalives
	p.dropKeepalives.Store(true)
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done did not close with every keepalive lost")
	}
	ss := onServer(t, s.ID())
	if ss == nil {
		t.Fatal("the server had expired the session before Done closed")
	}
	// The guard is 250 ms; the margin asked here leaves 200 ms for this
	// test to notice Done and read the session on a busy machine.
	if left := time.Until(time.UnixMilli(ss.ExpiresAtMs)); left < 50*time.Millisecond {
		t.Fatalf("Done closed only %v before the server's lease ends; want about 250ms", left)
	}
}

// Two Mutex values of one name on one session both "held" the lock: the
// server answered the second Lock with the first one's grant.
func TestTwoMutexValuesOnOneSessionTakeTurns(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c)
	a, b := client.NewMutex(s, "t/turns"), client.NewMutex(s, "t/turns")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock of a second value while the first holds: %v, want ErrLocked", err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx) }()
	select {
	case err := <-got:
		t.Fatalf("the second value's Lock returned while the first held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	first := a.Token()
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if b.Token() <= first {
		t.Fatalf("the second holder's token %d is not above the first's %d", b.Token(), first)
	}
	// The same for semaphores and RW locks.
	r1, r2 := client.NewRWMutex(s, "t/turns-rw"), client.NewRWMutex(s, "t/turns-rw")
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.TryRLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("second RLock on one session: %v, want ErrLocked", err)
	}
	s1, s2 := client.NewSemaphore(s, "t/turns-sem", 5), client.NewSemaphore(s, "t/turns-sem", 5)
	if err := s1.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := s2.TryAcquire(ctx, 1); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("second semaphore Acquire on one session: %v, want ErrLocked", err)
	}
}

// Close after the client lost its session (keepalives never arrived)
// never told the server, which kept the holds until its own lease ran out.
func TestCloseAfterALossTellsTheServer(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	s := newSession(t, c, client.WithTTL(2*time.Second))
	if err := client.NewMutex(s, "t/close-after-loss").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	events := c.WatchName(ctx, "t/close-after-loss")
	time.Sleep(300 * time.Millisecond) // the watch has started
	p.dropKeepalives.Store(true)
	<-s.Done()
	_ = s.Close(ctx)
	for {
		select {
		case r := <-events:
			for _, ev := range r.Events {
				if ev.Type == pb.EventType_EVENT_TYPE_RELEASED {
					if ev.Reason != pb.Reason_REASON_SESSION_CLOSED {
						t.Fatalf("the hold ended %s, want SESSION_CLOSED by Close", ev.Reason)
					}
					return
				}
			}
		case <-ctx.Done():
			t.Fatal("the hold never ended")
		}
	}
}

// A node that stops answering (SIGSTOP, a half-open connection): unary
// calls fail over within the attempt timeout instead of waiting the
// caller's whole deadline, keepalives are hedged to the next endpoint, and
// a blocked Lock moves to the next endpoint and gets its grant there.
func TestStuckEndpoint(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL(), endpoint}, client.WithAttemptTimeout(500*time.Millisecond),
		client.WithProbeInterval(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	s := newSession(t, c, client.WithTTL(time.Second))
	hs := newSession(t, c, client.WithTTL(time.Second))
	holder := client.NewMutex(hs, "t/stuck")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := client.NewMutex(s, "t/stuck")
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(ctx) }()
	waitFor(t, "the waiter queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/stuck")
		return err == nil && len(st.Waiters) == 1
	})
	p.stuck.Store(true)
	c2, _ := client.New([]string{p.URL(), endpoint}, client.WithAttemptTimeout(500*time.Millisecond))
	start := time.Now()
	if _, err := c2.Status(ctx, client.KindMutex, "t/stuck"); err != nil {
		t.Fatalf("Status with the first endpoint stuck: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Status took %v with a 500ms attempt timeout", took)
	}
	time.Sleep(3 * time.Second) // three TTLs with the first endpoint stuck
	for _, ss := range []*client.Session{s, hs} {
		if !alive(ss) {
			t.Fatalf("a session was lost with one endpoint stuck: %v", ss.Err())
		}
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the blocked Lock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked Lock did not move off the stuck endpoint")
	}
}

// When the stopped node resumes, it withdraws the wait of the caller it
// lost, which is the wait the moved call rejoined elsewhere: the call, told
// "cancelled" by nobody it knows, starts over and still gets the grant.
func TestResumedNodeCancelsAMovedWait(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL(), endpoint}, client.WithAttemptTimeout(500*time.Millisecond),
		client.WithProbeInterval(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, newClient(t)), "t/resumed")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c)
	waiter := client.NewMutex(s, "t/resumed")
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(ctx) }()
	waitFor(t, "the waiter queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/resumed")
		return err == nil && len(st.Waiters) == 1
	})
	p.stuck.Store(true)
	time.Sleep(2 * time.Second) // the waiter moves to the direct endpoint
	p.resume()
	time.Sleep(500 * time.Millisecond) // the withdrawal is applied
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the moved Lock after its first node resumed: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the moved Lock never got the grant")
	}
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Holds) != 1 || ss.Holds[0].FencingToken != waiter.Token() {
		t.Fatalf("the session holds %v; want the one grant the client was told, %d", ss.GetHolds(), waiter.Token())
	}
}

// A Watch whose stream goes silent (its node stopped) resumes on the next
// endpoint after the silence bound, and an Observe after a failed probe.
func TestStuckStreamsResumeElsewhere(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL(), endpoint}, client.WithAttemptTimeout(500*time.Millisecond),
		client.WithProbeInterval(300*time.Millisecond), client.WithStreamSilence(1500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	events := c.Watch(ctx, "t/silent/")
	leaders := c.Observe(ctx, "t/silent/e")
	<-leaders // the first answer: nobody leads
	time.Sleep(300 * time.Millisecond)
	p.stuck.Store(true)
	direct := newClient(t)
	if err := client.NewMutex(newSession(t, direct), "t/silent/m").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.NewElection(newSession(t, direct, client.WithOwner("e1")), "t/silent/e").Campaign(ctx, nil); err != nil {
		t.Fatal(err)
	}
	gotEvent, gotLeader := false, false
	limit := time.After(12 * time.Second)
	for !gotEvent || !gotLeader {
		select {
		case r := <-events:
			for _, ev := range r.Events {
				gotEvent = gotEvent || ev.Name == "t/silent/m"
			}
		case l := <-leaders:
			if l.Err != nil {
				t.Fatal(l.Err)
			}
			gotLeader = gotLeader || l.Candidate == "e1"
		case <-limit:
			t.Fatalf("with the first endpoint stuck: watch event %v, new leader observed %v", gotEvent, gotLeader)
		}
	}
}

// A Lock blocked while the client loses its session (its keepalives
// never arrive, though the servers keep the session) ended only with its
// ctx; it must end with ErrSessionLost.
func TestBlockedLockEndsWithTheSession(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, newClient(t)), "t/lost-wait")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c, client.WithTTL(time.Second))
	// Keep the session alive on the server directly, so that only the
	// client's side of the lease runs out.
	kctx, stopKeeping := context.WithCancel(ctx)
	defer stopKeeping()
	go func() {
		for kctx.Err() == nil {
			_, _ = rawSessions().KeepAlive(kctx, connect.NewRequest(&pb.KeepAliveRequest{SessionId: s.ID()}))
			time.Sleep(200 * time.Millisecond)
		}
	}()
	p.dropKeepalives.Store(true)
	err := client.NewMutex(s, "t/lost-wait").Lock(ctx)
	if !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("a Lock blocked while the session was lost: %v, want ErrSessionLost", err)
	}
}

// Observe never reported an error: a bad name yielded nothing, forever.
func TestObserveReportsRefusals(t *testing.T) {
	c := newClient(t)
	for _, name := range []string{"", strings.Repeat("n", 300)} {
		ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
		var last client.Leader
		for l := range c.Observe(ctx, name) {
			last = l
		}
		cancel()
		if last.Err == nil || connect.CodeOf(last.Err) != connect.CodeInvalidArgument || !errors.Is(last.Err, client.ErrInvalid) {
			t.Errorf("Observe(%d-byte name) ended with %+v, want an invalid_argument error", len(name), last)
		}
	}
}

// Token stayed non-zero after Close, and Unlock after Close said
// ErrNotHeld.
func TestTokenAndUnlockAfterClose(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c)
	m := client.NewMutex(s, "t/after-close")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Token() != 0 {
		t.Fatalf("Token after Close: %d, want 0", m.Token())
	}
	if err := m.Unlock(ctx); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("Unlock after Close: %v, want ErrSessionLost", err)
	}
}

// LockWithin(0) waited a tick and answered ErrTimeout instead of trying
// once.
func TestLockWithinZeroTriesOnce(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	if err := client.NewMutex(newSession(t, c), "t/within0").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(newSession(t, c), "t/within0").LockWithin(ctx, 0); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("LockWithin(0) on a held mutex: %v, want ErrLocked", err)
	}
}

// A 10 ms TTL was accepted and lost within 200 ms.
func TestTTLBelowTheMinimumIsRefused(t *testing.T) {
	c := newClient(t)
	_, err := c.NewSession(testCtx(t), client.WithTTL(10*time.Millisecond))
	if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), client.MinTTL.String()) {
		t.Fatalf("a 10ms TTL: %v, want ErrInvalid naming the minimum %v", err, client.MinTTL)
	}
	// Above the maximum too: an out-of-range argument is ErrInvalid, as
	// the servers' refusals are.
	if _, err := c.NewSession(testCtx(t), client.WithTTL(client.MaxTTL+time.Second)); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a TTL above the maximum: %v, want ErrInvalid", err)
	}
}

// A Create answered after the lease it asks for has run out (a slow shard's
// adopt, a retry answered from the servers' memory of the first attempt)
// made a session that NewSession returned as if alive, though the servers
// may already have expired it: its Done closed at once, after the expiry.
// NewSession now refuses it.
func TestCreateAnsweredAfterItsLeaseIsRefused(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL()}, client.WithAttemptTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p.slowCreates.Store(int64(1200 * time.Millisecond))
	s, err := c.NewSession(testCtx(t), client.WithTTL(time.Second))
	if err == nil {
		t.Fatalf("NewSession answered 1.2 s after asking for a 1 s lease returned session %d (alive %v)", s.ID(), alive(s))
	}
	if !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("NewSession: %v, want it to say the create took longer than the lease", err)
	}
	p.slowCreates.Store(0)
	s = newSession(t, c, client.WithTTL(time.Second))
	if !alive(s) {
		t.Fatal("a prompt create after the slow one: the session is not alive")
	}
}

// A request on the shared stream to a node that stopped answering gives up
// at the attempt timeout and is answered by the next endpoint, long before
// the stream's silence (5 s) ends the stream: the attempt's deadline is
// enforced by the wait on the stream itself, not by a context timer.
func TestStuckStreamRequestMovesAtTheAttemptTimeout(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c, err := client.New([]string{p.URL(), endpoint}, client.WithAttemptTimeout(300*time.Millisecond),
		client.WithProbeInterval(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	s := newSession(t, c, client.WithTTL(10*time.Second))
	m := client.NewMutex(s, "t/stuck-stream-request")
	if err := m.TryLock(ctx); err != nil { // through the proxy: the stream is open
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	p.stuck.Store(true)
	start := time.Now()
	if err := m.TryLock(ctx); err != nil {
		t.Fatalf("TryLock with the first endpoint stuck: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("TryLock took %v with a 300ms attempt timeout: it waited for the stuck endpoint", took)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A grant answered after the session's lease passed, as the client counts
// it, before the keepalive loop noticed (a process stopped while it
// waited, then resumed), is not handed out: the servers may have expired
// the session and given the lock to another. Lock answers the loss, and
// the session is lost; Token is 0 as soon as the lease passed.
func TestGrantAfterTheLeasePassedIsNotHandedOut(t *testing.T) {
	needServer(t)
	c, err := client.New([]string{endpoint})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	hs := newSession(t, c, client.WithTTL(10*time.Second))
	holder := client.NewMutex(hs, "t/grant-after-lease")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	ws := newSession(t, c, client.WithTTL(10*time.Second))
	other := client.NewMutex(ws, "t/grant-after-lease/other")
	if err := other.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := client.NewMutex(ws, "t/grant-after-lease")
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(ctx) }()
	waitFor(t, "the waiter queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/grant-after-lease")
		return err == nil && len(st.Waiters) == 1
	})
	client.PassLease(ws)
	if tok := other.Token(); tok != 0 {
		t.Fatalf("Token after the lease passed: %d, want 0", tok)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, client.ErrSessionLost) {
			t.Fatalf("Lock granted after the lease passed: %v, want ErrSessionLost", err)
		}
	case <-ctx.Done():
		t.Fatal("the waiter's Lock never returned")
	}
	if !errors.Is(ws.Err(), client.ErrSessionLost) || waiter.Token() != 0 {
		t.Fatalf("after the grant came too late: session %v, token %d", ws.Err(), waiter.Token())
	}
}
