package client

import (
	"testing"
	"time"
)

// A leader change moves every max-hold deadline by its jump (the election's
// gap plus how far the new leader's clock is ahead), while a grant's
// acquired_at stays; an acquire answered after one reads max_hold_until_ms
// - acquired_at_ms as the max hold plus the jump. A grant asked for with a
// 10 s max hold, answered after a 40 s jump of which 30 s is the new
// leader's clock ahead, ends on the servers at most 20 s after its acquire
// began: the client must take it for ended by then, by the max hold it
// asked for.
func TestMaxHoldBoundIgnoresALeaderChangeJump(t *testing.T) {
	s := &Session{} // made by NewSession; no keepalive answer yet
	h := &hold{s: s, limits: holdLimits{maxHold: 10 * time.Second}}
	start := time.Now()
	const grantedAt = 1_000_000
	h.set(grant{token: 1, grantedAt: grantedAt, maxHoldUntil: grantedAt + 10_000 + 40_000}, nil, start)
	h.mu.Lock()
	until, _ := h.deadline()
	h.mu.Unlock()
	if latest := start.Add(20 * time.Second); until.After(latest) {
		t.Fatalf("taken for held until %v after its acquire began, past the 20 s at which the servers end it at the latest", until.Sub(start))
	}
	if until.IsZero() {
		t.Fatal("no deadline at all for a grant with a max hold")
	}
}

// On a resumed session the grant's own end (max_hold_until_ms, read when
// the acquire was answered, with every jump since the grant) is the only
// bound, and only an answer to a request sent after that read may place
// it on this clock: a keepalive answer from before a 40 s jump would put
// it 30 s late.
func TestResumedMaxHoldIsPlacedOnlyByALaterAnswer(t *testing.T) {
	s := &Session{resumed: true}
	const grantedAt = 1_000_000
	before := time.Now()
	s.logAt.Store(&logAnchor{sent: before, stamp: grantedAt + 1_000}) // a keepalive before the leader change
	h := &hold{s: s}
	h.set(grant{token: 1, grantedAt: grantedAt, maxHoldUntil: grantedAt + 10_000 + 40_000}, nil, before)
	h.mu.Lock()
	_, placed := h.deadline()
	h.mu.Unlock()
	if placed {
		t.Fatal("the grant's end was placed by a keepalive answer sent before the acquire was answered")
	}
	// A keepalive sent after the answer, applied after the jump.
	after := time.Now().Add(time.Millisecond)
	s.logAt.Store(&logAnchor{sent: after, stamp: grantedAt + 45_000})
	h.mu.Lock()
	until, placed := h.deadline()
	h.mu.Unlock()
	if want := after.Add(5*time.Second - s.guard()); !placed || !until.Equal(want) {
		t.Fatalf("placed %v at %v after the anchor, want %v", placed, until.Sub(after), want.Sub(after))
	}
}
