package client_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestHoldLimits: WithMaxHold and WithLockDelay reach the servers (Status
// shows them on the grant), a grant past its max hold is over on the
// client before the servers end it (Token 0, Unlock ErrNotHeld), the lock
// delay then keeps the name blocked, and what the client can tell is wrong
// is refused before any request.
func TestHoldLimits(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const name = "t/hold-limits"
	const maxHold, delay = 1500 * time.Millisecond, 4 * time.Second
	m := client.NewMutex(newSession(t, c), name, client.WithMaxHold(maxHold), client.WithLockDelay(delay))
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	st, err := c.Status(ctx, client.KindMutex, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Holders) != 1 || st.Holders[0].FencingToken != token || st.Holders[0].MaxHoldUntilMs == 0 ||
		st.Holders[0].LockDelayMs != delay.Milliseconds() {
		t.Fatalf("the grant as the servers have it: %+v; want token %d, a max-hold deadline and lock delay %v", st.Holders, token, delay)
	}
	waitFor(t, "the client to take the grant for ended", func() bool { return m.Token() == 0 })
	waitFor(t, "the servers to end the grant", func() bool {
		st, err := c.Status(ctx, client.KindMutex, name)
		return err == nil && len(st.Holders) == 0
	})
	if err := m.Unlock(ctx); !errors.Is(err, client.ErrNotHeld) {
		t.Fatalf("Unlock past the max hold: %v, want ErrNotHeld", err)
	}
	// Ended by its max hold, a failure: the lock delay blocks the name.
	other := client.NewMutex(newSession(t, c), name)
	if err := other.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock within the lock delay: %v, want ErrLocked", err)
	}
	if err := other.LockWithin(ctx, 3*delay); err != nil {
		t.Fatalf("LockWithin past the lock delay: %v", err)
	}
	if err := other.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// A grant after a wait longer than the max hold: the max hold counts
	// from the grant, not from when Lock began (which left Token 0 on a
	// Lock that had just succeeded).
	first := client.NewMutex(newSession(t, c), "t/hold-queued")
	if err := first.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	queued := client.NewMutex(newSession(t, c), "t/hold-queued", client.WithMaxHold(2*time.Second))
	locked := make(chan error, 1)
	go func() { locked <- queued.Lock(ctx) }()
	time.Sleep(2500 * time.Millisecond)
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	if queued.Token() == 0 {
		t.Fatal("a Lock granted after a 2.5 s wait with WithMaxHold(2s) answered a Token of 0: its max hold counted from the wait's start")
	}
	waitFor(t, "the queued grant's max hold to pass on the client", func() bool { return queued.Token() == 0 })
	if err := queued.Unlock(ctx); err != nil && !errors.Is(err, client.ErrNotHeld) {
		t.Fatal(err)
	}

	s := newSession(t, c)
	short := client.NewMutex(s, "t/hold-short", client.WithMaxHold(100*time.Millisecond))
	if err := short.Lock(ctx); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "WithMaxHold") {
		t.Fatalf("a max hold under MinTTL: %v, want ErrInvalid naming WithMaxHold", err)
	}
	rw := client.NewRWMutex(s, "t/hold-rw", client.WithLockDelay(time.Second))
	if err := rw.Lock(ctx); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "mutexes only") {
		t.Fatalf("an rwlock with a lock delay: %v, want ErrInvalid saying mutexes only", err)
	}
	sem := client.NewSemaphore(s, "t/hold-sem", 2, client.WithMaxHold(time.Hour))
	if err := sem.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st, err = c.Status(ctx, client.KindSemaphore, "t/hold-sem")
	if err != nil || len(st.Holders) != 1 || st.Holders[0].MaxHoldUntilMs == 0 {
		t.Fatalf("a semaphore grant with a max hold: %+v, %v", st, err)
	}
	if err := sem.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWithValue: a grant's value reaches the servers and status shows it
// beside the holder, for each kind that takes one; one over the servers'
// bound is refused as invalid. The Go client could not set it at all.
func TestWithValue(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	s := newSession(t, c)
	val := []byte("worker-3 at 10.0.0.3:9000")
	holds := []struct {
		kind client.Kind
		take func() error
	}{
		{client.KindMutex, func() error { return client.NewMutex(s, "t/value", client.WithValue(val)).Lock(ctx) }},
		{client.KindRWLock, func() error { return client.NewRWMutex(s, "t/value", client.WithValue(val)).RLock(ctx) }},
		{client.KindSemaphore, func() error { return client.NewSemaphore(s, "t/value", 2, client.WithValue(val)).Acquire(ctx, 1) }},
	}
	for _, h := range holds {
		if err := h.take(); err != nil {
			t.Fatalf("%s: %v", h.kind, err)
		}
		st, err := c.Status(ctx, h.kind, "t/value")
		if err != nil || len(st.Holders) != 1 || string(st.Holders[0].Value) != string(val) {
			t.Fatalf("%s status: %+v %v, want the holder with value %q", h.kind, st, err, val)
		}
	}
	err := client.NewMutex(s, "t/value-big", client.WithValue(make([]byte, 2048))).TryLock(ctx)
	if !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a 2 KiB value: %v, want ErrInvalid", err)
	}
}
