package client_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// Orphan sends again every release of unknown outcome before it hands a
// session over (TestOrphanSettlesAReleaseOfUnknownOutcome). These hold the
// edges a review found: two Unlocks of one grant overlap, the first held
// back on its way until its ctx ends (unknown outcome) while the second
// lands and forgets the token, so the first's outcome is recorded after
// the grant was settled.

// unknownThenReleased leaves m with an unsettled release recorded after a
// successful Unlock forgot its token.
func unknownThenReleased(t *testing.T, ctx context.Context, p *faultProxy, m *client.Mutex) {
	t.Helper()
	var n atomic.Int32
	p.holdBack(func(path string, _ []byte) bool {
		return strings.HasSuffix(path, "LockService/Release") && n.Add(1) == 1 // the first release only
	})
	first := make(chan error, 1)
	go func() {
		uctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		first <- m.Unlock(uctx)
	}()
	waitFor(t, "the first release to be held back", func() bool { return p.holding.Load() > 0 })
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	if err := <-first; err == nil || errors.Is(err, client.ErrNotHeld) {
		t.Fatalf("first Unlock (held back, ctx ended) answered %v, want an unknown outcome", err)
	}
}

// A release of unknown outcome of a grant another release settled is not
// one to send again: Orphan hands over at once (it spun, unable to settle
// an entry whose hold had no token).
func TestOrphanSkipsAReleaseOfASettledGrant(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := p.unaryClient()
	ctx := testCtx(t)
	s := newSession(t, c)
	m := client.NewMutex(s, "t/review-orphan-spin")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	unknownThenReleased(t, ctx, p, m)
	octx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.Orphan(octx); err != nil {
		t.Fatalf("Orphan with nothing of unknown outcome (the grant was released and confirmed) answered %v", err)
	}
}

// The same, after the Mutex took a new grant: Orphan's settling names the
// old grant's token, so it does not release the new grant, which the
// caller holds and means to hand over.
func TestOrphanKeepsANewGrant(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := p.unaryClient()
	ctx := testCtx(t)
	const name = "t/review-orphan-new-grant"
	s := newSession(t, c)
	m := client.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	unknownThenReleased(t, ctx, p, m)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t2 := m.Token()
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := s.Orphan(octx); err != nil {
		t.Fatalf("Orphan: %v", err)
	}
	other := newSession(t, newClient(t))
	defer other.Close(ctx)
	if err := client.NewMutex(other, name).TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("another session's TryLock after Orphan answered %v, want ErrLocked: the orphaned session's grant %d was released by Orphan itself", err, t2)
	}
}

// A release the servers answer at once with an error (here a limit's
// resource_exhausted, which settles nothing: an earlier copy may still
// land) is sent again after a pause, not as fast as round trips go (a
// proxy answering resource_exhausted saw 4,048 in one second).
func TestOrphanDoesNotHammerTheServers(t *testing.T) {
	needServer(t)
	var failing atomic.Bool
	var releases atomic.Int64
	c := releaseLimiter(t, endpoint, "the server keeps 1 request results across all clients, its limit", func(int64) bool {
		if !failing.Load() {
			return false
		}
		releases.Add(1)
		return true
	})
	ctx := testCtx(t)
	s := newSession(t, c)
	defer s.Close(ctx)
	m := client.NewMutex(s, "t/review-orphan-hot-loop")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	if err := m.Unlock(ctx); err == nil {
		t.Fatal("Unlock answered nil")
	}
	before := releases.Load()
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = s.Orphan(octx)
	if n := releases.Load() - before; n > 20 {
		t.Fatalf("Orphan sent %d releases in 1 s, each answered at once: a hot loop with no backoff", n)
	}
}

// A user's Unlock while Orphan runs is refused with nothing sent, and
// leaves the release of unknown outcome for Orphan to send (it took the
// refusal for "gone anyway" and dropped it, and the next Orphan handed
// over while the late release was on its way to the successor's grant).
func TestOrphanKeepsAReleaseAnUnlockDuringItDidNotSend(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := p.unaryClient()
	ctx := testCtx(t)
	const name = "t/unlock-during-orphan"
	s := newSession(t, c)
	m := client.NewMutex(s, name)
	token := p.lockThenHoldTheRelease(ctx, m)
	octx, ocancel := context.WithTimeout(ctx, time.Second)
	defer ocancel()
	if err := s.Orphan(octx); err == nil {
		t.Fatal("Orphan with a release it cannot settle answered nil")
	}
	if err := m.Unlock(ctx); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("Unlock during Orphan answered %v, want ErrSessionLost (being orphaned)", err)
	}
	octx2, ocancel2 := context.WithTimeout(ctx, time.Second)
	defer ocancel2()
	if err := s.Orphan(octx2); err == nil {
		t.Fatal("Orphan again, the release still unsettled, answered nil: the refused Unlock dropped it")
	}
	p.release() // the releases of unknown outcome land now, and the next pass
	if err := s.Orphan(ctx); err != nil {
		t.Fatalf("Orphan once releases pass: %v", err)
	}
	second := newClient(t)
	defer second.Close(ctx)
	r, err := second.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	succ := client.NewMutex(r, name)
	if err := succ.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if succ.Token() == token {
		t.Fatalf("the successor was answered the old grant %d, which a release of unknown outcome named", token)
	}
	third := newSession(t, newClient(t))
	defer third.Close(ctx)
	if err := client.NewMutex(third, name).TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("a third session's TryLock answered %v while the successor holds token %d: two holders", err, succ.Token())
	}
}
