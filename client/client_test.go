package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

func newClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	needServer(t)
	if len(endpoints) == 0 {
		endpoints = []string{endpoint}
	}
	c, err := client.New(endpoints, client.WithRetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSession(t *testing.T, c *client.Client, opts ...client.SessionOption) *client.Session {
	t.Helper()
	s, err := c.NewSession(testCtx(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestMutexExclusionAndTokens(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const workers, rounds = 4, 3
	var inside atomic.Int32
	var mu sync.Mutex
	var tokens []uint64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		s := newSession(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := client.NewMutex(s, "t/exclusion")
			for r := 0; r < rounds; r++ {
				if err := m.Lock(ctx); err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				mu.Lock()
				tokens = append(tokens, m.Token())
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				inside.Add(-1)
				if err := m.Unlock(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(tokens) != workers*rounds {
		t.Fatalf("%d grants, want %d", len(tokens), workers*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("tokens do not increase: %v", tokens)
		}
	}
}

func TestTryLockAndUnlockErrors(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	a, b := client.NewMutex(newSession(t, c), "t/try"), client.NewMutex(newSession(t, c), "t/try")
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock on a held mutex: %v, want ErrLocked", err)
	}
	if err := b.Unlock(ctx); !errors.Is(err, client.ErrNotHeld) {
		t.Fatalf("Unlock without a hold: %v, want ErrNotHeld", err)
	}
	if err := b.LockWithin(ctx, 100*time.Millisecond); !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("LockWithin on a held mutex: %v, want ErrTimeout", err)
	}
	ok, err := c.CheckFence(ctx, client.KindMutex, "t/try", a.Token())
	if err != nil || !ok {
		t.Fatalf("CheckFence of the holder: %v %v", ok, err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
}

// A cancelled Lock leaves nothing queued or held on the server.
func TestCancelledLockWithdrawsTheWait(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, c), "t/cancel")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	w := client.NewMutex(newSession(t, c), "t/cancel")
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Lock(wctx) }()
	waitFor(t, "a queued waiter", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/cancel")
		return err == nil && len(st.Waiters) == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Lock: %v", err)
	}
	waitFor(t, "the wait withdrawn", func() bool {
		st, err := c.Status(ctx, client.KindMutex, "t/cancel")
		return err == nil && len(st.Waiters) == 0
	})
}

func TestSessionCloseReleasesAndDone(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c, client.WithTTL(2*time.Second))
	m := client.NewMutex(s, "t/close")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done is open after Close")
	}
	if err := client.NewMutex(newSession(t, c), "t/close").TryLock(ctx); err != nil {
		t.Fatalf("the mutex was not released by Close: %v", err)
	}
}

func TestSemaphoreWeighted(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	a := client.NewSemaphore(newSession(t, c), "t/sem", 3)
	b := client.NewSemaphore(newSession(t, c), "t/sem", 3)
	if err := a.Acquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.TryAcquire(ctx, 2); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("2 of 1 free permits: %v, want ErrLocked", err)
	}
	if err := b.TryAcquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, client.KindSemaphore, "t/sem")
	if err != nil || len(st.Holders) != 2 || st.Available != 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRWMutex(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	r1, r2 := client.NewRWMutex(newSession(t, c), "t/rw"), client.NewRWMutex(newSession(t, c), "t/rw")
	w := client.NewRWMutex(newSession(t, c), "t/rw")
	if err := r1.RLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.TryRLock(ctx); err != nil {
		t.Fatalf("readers share: %v", err)
	}
	if err := w.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("writer with readers: %v, want ErrLocked", err)
	}
	_ = r1.RUnlock(ctx)
	_ = r2.RUnlock(ctx)
	if err := w.Lock(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBarrier(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	gens := make([]uint64, 3)
	for i := range gens {
		b := client.NewBarrier(newSession(t, c), "t/barrier", 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := b.Wait(ctx)
			if err != nil {
				t.Error(err)
			}
			gens[i] = g
		}()
	}
	wg.Wait()
	if gens[0] != gens[1] || gens[1] != gens[2] {
		t.Fatalf("generations differ: %v", gens)
	}
}

// TestBarrierOfALongOwner: a Wait's participant name is the session's
// owner and id, which for an owner label near its bound (128 bytes) went
// over the servers' bound on a participant, and every Wait was refused.
func TestBarrierOfALongOwner(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c, client.WithOwner(strings.Repeat("é", 64)))
	done := make(chan error, 2)
	for range 2 {
		go func() { _, err := client.NewBarrier(s, "t/barrier-long-owner", 2).Wait(ctx); done <- err }()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Wait on a session of a 128-byte owner: %v", err)
		}
	}
}

// TestSetRemoveBarrier: a barrier of parties 0 holds every Wait while it
// is set, until Remove, or until the session that set it ends; another
// session's Set is refused as held.
func TestSetRemoveBarrier(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const name = "t/set-barrier"
	setter := newSession(t, c)
	gate := client.NewBarrier(setter, name, 0)
	if err := gate.Set(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gate.Set(ctx); err != nil {
		t.Fatalf("setting it again on the same session: %v", err)
	}
	otherSession := newSession(t, c)
	other := client.NewBarrier(otherSession, name, 0)
	if err := other.Set(ctx); !errors.Is(err, client.ErrLocked) || !strings.Contains(err.Error(), "already set") {
		t.Fatalf("Set by another session: %v, want ErrLocked saying it is set", err)
	}
	if err := client.NewBarrier(setter, name, 3).Set(ctx); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Set of a counting barrier: %v, want ErrInvalid", err)
	}
	waited := make(chan error, 2)
	for range 2 {
		go func() { _, err := client.NewBarrier(newSession(t, c), name, 0).Wait(ctx); waited <- err }()
	}
	queued := func(n int) {
		t.Helper()
		for range 200 {
			st, err := c.Status(ctx, client.KindBarrier, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Waiters) == n {
				return
			}
			select {
			case err := <-waited:
				t.Fatalf("a Wait returned (%v) while the barrier was set", err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		t.Fatalf("%d Waits did not queue at the set barrier", n)
	}
	queued(2)
	if err := other.Remove(ctx); err != nil {
		t.Fatalf("Remove by another session: %v", err)
	}
	for range 2 {
		if err := <-waited; err != nil {
			t.Fatalf("Wait after Remove: %v", err)
		}
	}
	if err := other.Remove(ctx); err != nil {
		t.Fatalf("Remove of a barrier that is down: %v", err)
	}
	// The session that set it ends: the barrier comes down with it.
	if err := other.Set(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := client.NewBarrier(newSession(t, c), name, 0).Wait(ctx); waited <- err }()
	queued(1)
	if err := otherSession.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("Wait after the setter's session closed: %v", err)
	}
}

func TestElection(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	obs := c.Observe(ctx, "t/elect")
	if first := <-obs; first.SessionID != 0 || first.Event != pb.EventType_EVENT_TYPE_UNSPECIFIED {
		t.Fatalf("the observation's first value: %+v, want nobody leading, as the stream opened", first)
	}
	a := client.NewElection(newSession(t, c, client.WithOwner("a")), "t/elect")
	b := client.NewElection(newSession(t, c, client.WithOwner("b")), "t/elect")
	if err := a.Campaign(ctx, []byte("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	bDone := make(chan error, 1)
	go func() { bDone <- b.Campaign(ctx, []byte("10.0.0.2")) }()
	if err := a.Proclaim(ctx, []byte("10.0.0.9")); err != nil {
		t.Fatal(err)
	}
	l, err := a.Leader(ctx)
	if err != nil || l.Candidate != "a" || string(l.Value) != "10.0.0.9" {
		t.Fatalf("leader: %+v %v", l, err)
	}
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if b.Token() <= l.FencingToken {
		t.Fatalf("new leader's token %d is not above %d", b.Token(), l.FencingToken)
	}
	seen := map[string]bool{}
	proclaimed := false
	for !seen["b"] {
		select {
		case l := <-obs:
			seen[l.Candidate] = true
			if l.Event == pb.EventType_EVENT_TYPE_VALUE_CHANGED && string(l.Value) == "10.0.0.9" {
				proclaimed = true
			}
			if l.Candidate == "b" && (l.Event != pb.EventType_EVENT_TYPE_LEADER_CHANGED || l.Reason != pb.Reason_REASON_RELEASED) {
				t.Fatalf("b's leadership observed as %v, reason %v: want a leader change after a's resignation (released)", l.Event, l.Reason)
			}
		case <-ctx.Done():
			t.Fatalf("Observe never showed b; saw %v", seen)
		}
	}
	if !proclaimed {
		t.Fatal("Observe showed no value change for a's Proclaim")
	}
}

func TestWatch(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := c.Watch(wctx, "t/watch/")
	time.Sleep(200 * time.Millisecond) // let the stream start
	m := client.NewMutex(newSession(t, c), "t/watch/a")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case r := <-ch:
			for _, ev := range r.Events {
				if ev.Name == "t/watch/a" && ev.FencingToken == m.Token() {
					return
				}
			}
		case <-ctx.Done():
			t.Fatal("no grant event")
		}
	}
}

// With a dead endpoint first, requests fail over to the live one.
func TestFailover(t *testing.T) {
	c := newClient(t, "http://"+freePort(), endpoint)
	ctx := testCtx(t)
	m := client.NewMutex(newSession(t, c), "t/failover")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != endpoint {
		t.Fatalf("endpoint %s, want %s", c.Endpoint(), endpoint)
	}
}

func TestFence(t *testing.T) {
	var f client.Fence
	if err := f.Check("db", 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Check("db", 10); err != nil {
		t.Fatal("the same token twice must pass")
	}
	if err := f.Check("db", 9); !errors.Is(err, client.ErrStaleToken) {
		t.Fatalf("older token: %v", err)
	}
	if err := f.Check("other", 1); err != nil {
		t.Fatal("names are fenced separately")
	}
	if err := f.Check("db", 0); !errors.Is(err, client.ErrStaleToken) {
		t.Fatal("token 0 must fail")
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
