package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
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
