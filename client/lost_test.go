package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// closedWithin says whether ch closes within d.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	default:
	}
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestLostClosesWhenTheGrantEnds: a grant's Lost channel stays open while
// it is held, and closes on Unlock, on the session's loss, and when its
// max hold passes while the session lives, which Session.Done misses: a
// leader loop waiting on Done led on past its max hold.
func TestLostClosesWhenTheGrantEnds(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)

	m := client.NewMutex(newSession(t, c), "t/lost-unlock")
	if !closedWithin(m.Lost(), 0) {
		t.Fatal("Lost of a mutex never locked is open")
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lost := m.Lost()
	if closedWithin(lost, 300*time.Millisecond) {
		t.Fatal("Lost closed while the mutex is held")
	}
	if m.Lost() != lost {
		t.Fatal("Lost answered another channel for the same grant")
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(lost, time.Second) {
		t.Fatal("Lost open after Unlock")
	}

	// Max hold: the session lives on, its grant does not.
	s := newSession(t, c)
	held := client.NewMutex(s, "t/lost-max-hold", client.WithMaxHold(1500*time.Millisecond))
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lost = held.Lost()
	if closedWithin(lost, 500*time.Millisecond) {
		t.Fatal("Lost closed well before the max hold")
	}
	if !closedWithin(lost, 3*time.Second) {
		t.Fatalf("Lost open 3.5 s into a 1.5 s max hold (Token %d)", held.Token())
	}
	if held.Token() != 0 || s.Err() != nil {
		t.Fatalf("after Lost closed: Token %d, session %v; want 0 and the session alive", held.Token(), s.Err())
	}

	// The session's loss.
	s2 := newSession(t, c)
	sem := client.NewSemaphore(s2, "t/lost-session", 2)
	if err := sem.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	lost = sem.Lost()
	if err := s2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !closedWithin(lost, time.Second) {
		t.Fatal("Lost open after the session was closed")
	}
}

// lostLease answers a session create and close for TestLostFollowsAnEarlierDeadline.
type lostLease struct{ streamServer }

func (lostLease) Create(context.Context, *connect.Request[pb.CreateSessionRequest]) (*connect.Response[pb.CreateSessionResponse], error) {
	return connect.NewResponse(&pb.CreateSessionResponse{SessionId: 7, TtlMs: 9_000}), nil
}

func (lostLease) Close(context.Context, *connect.Request[pb.CloseSessionRequest]) (*connect.Response[pb.CloseSessionResponse], error) {
	return connect.NewResponse(&pb.CloseSessionResponse{SessionId: 7}), nil
}

// TestLostFollowsAnEarlierDeadline: a keepalive answer stamped later
// against its send than the one before (the first stamped by a forwarder
// behind the leader, the next by the leader) moves a max-hold grant's
// deadline earlier, and Lost follows it. The watcher slept until the old
// deadline, open for most of the shift while Token answered 0 (a
// reviewer's test: 175 ms with a 200 ms shift).
func TestLostFollowsAnEarlierDeadline(t *testing.T) {
	var granted atomic.Int64
	const shift = 400 // ms behind, the first keepalive answer's stamp
	srv := lostLease{streamServer{answer: func(req *pb.StreamRequest) *pb.StreamResponse {
		switch {
		case req.GetAcquireLock() != nil:
			time.Sleep(1500 * time.Millisecond) // the acquire waited, so its start no longer holds the deadline up
			now := time.Now().UnixMilli()
			granted.Store(now)
			return &pb.StreamResponse{Response: &pb.StreamResponse_AcquireLock{AcquireLock: &pb.AcquireLockResponse{
				Outcome: pb.Outcome_OUTCOME_GRANTED, FencingToken: 5, AcquiredAtMs: now - shift}}}
		case req.GetKeepAlive() != nil:
			now := time.Now().UnixMilli()
			stamp := now - shift
			if g := granted.Load(); g == 0 || now-g > 500 {
				stamp = now
			}
			return &pb.StreamResponse{Response: &pb.StreamResponse_KeepAlive{KeepAlive: &pb.KeepAliveResponse{
				SessionId: 7, TtlMs: 9000, ExpiresAtMs: stamp + 9000}}}
		}
		return nil
	}}}
	c := fakeClient(t, srv)
	ctx := testCtx(t)
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx, client.WithTTL(9*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := client.NewMutex(s, "t/lost-earlier", client.WithMaxHold(4*time.Second))
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	lost := m.Lost() // armed on the first answer's deadline
	for m.Token() != 0 {
		time.Sleep(100 * time.Microsecond)
	}
	at := time.Now()
	if s.Err() != nil {
		t.Fatalf("the session was lost: %v", s.Err())
	}
	if !closedWithin(lost, 100*time.Millisecond) {
		<-lost
		t.Fatalf("Token answered 0 (the max hold passed, the session alive) while Lost stayed open %v more", time.Since(at))
	}
}

// A lease that passed while the machine was suspended (the monotonic clock
// stood still; the wall clock and the servers' ran on) ends the session
// within a second or so of the resume: Token reads 0 at once, and Done
// closes although the lease timer, on the monotonic clock, still stands.
// Before, both waited as long again as the suspend had lasted, while the
// servers could have handed the lock on.
func TestLeasePassedInASuspendEndsTheSession(t *testing.T) {
	needServer(t)
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c, client.WithTTL(20*time.Second))
	m := client.NewMutex(s, "t/suspended")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	restore := client.Suspend(time.Minute)
	defer restore()
	if tok := m.Token(); tok != 0 {
		t.Fatalf("Token after a minute's suspend with a 20s lease: %d, want 0", tok)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the session still stands 5 s after a suspend longer than its lease")
	}
	if !errors.Is(s.Err(), client.ErrSessionLost) {
		t.Fatalf("Err %v, want ErrSessionLost", s.Err())
	}
}
