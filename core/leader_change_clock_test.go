package core

import "testing"

// TestLeaderChangeTakesItsStampWhole: a new leader's first entry moves log
// time to its stamp however far ahead (a failover onto a clock an hour
// ahead), and every deadline moves with it, so that the jump ends no lease,
// wait, hold limit, lock delay or remembered result early; the sessions
// get their grace from the new time. Caught up a capped step at a time,
// the jump would have cut short every lease renewed while it lasted.
func TestLeaderChangeTakesItsStampWhole(t *testing.T) {
	const hour = 3600 * 1000
	h := newTblHarness(t)
	a, b, c := h.session(10_000), h.session(10_000), h.session(1_000)
	limited := cMutex("limited", a, 0)
	limited.MaxHoldMs = 4_000
	tok := h.granted(limited)
	w := h.queued(cMutex("limited", b, 6_000))
	delayed := cMutex("delayed", c, 0)
	delayed.LockDelayMs = 8_000
	h.granted(delayed)
	renewal := Command{Op: OpSessionKeepAlive, Session: a, ClientID: "kept", Seq: 1}
	h.ok(renewal)
	h.advance(1_000) // c expires: "delayed" stays blocked for 8 s
	if h.live(c) {
		t.Fatal("session c did not expire: the lock delay never started")
	}
	ds, _ := h.m.Status(KindMutex, "delayed")
	delayLeft := ds.LockDelayUntil - h.now()
	st, _ := h.m.Status(KindMutex, "limited")
	holdLeft, waitLeft := st.Holders[0].MaxHoldUntil-h.now(), st.Waiters[0].Deadline-h.now()

	before := h.now()
	out := h.apply(before+hour, Command{Op: OpLeaderChange})
	if out.Time != before+hour {
		t.Fatalf("the leader change moved log time to %d, want its stamp %d taken whole", out.Time, before+hour)
	}
	if len(out.Effects) != 0 {
		t.Fatalf("the jump ended something:\n%s", tblEffects(out.Effects))
	}
	st, _ = h.m.Status(KindMutex, "limited")
	if got := st.Holders[0].MaxHoldUntil - h.now(); got != holdLeft {
		t.Errorf("after the jump the hold limit has %d ms left, want the %d it had", got, holdLeft)
	}
	if got := st.Waiters[0].Deadline - h.now(); got != waitLeft {
		t.Errorf("after the jump the wait has %d ms left, want the %d it had", got, waitLeft)
	}
	if ds, _ = h.m.Status(KindMutex, "delayed"); ds.LockDelayUntil-h.now() != delayLeft || delayLeft <= 0 {
		t.Errorf("after the jump the lock delay has %d ms left, want the %d it had", ds.LockDelayUntil-h.now(), delayLeft)
	}
	h.tblRetry(renewal) // remembered still: an hour is past the retention, but the jump counts against none
	for _, s := range []SessionID{a, b} {
		info, err := h.m.SessionInfo(s)
		if err != nil || info.Deadline != h.now()+10_000 {
			t.Fatalf("session %d after the leader change: %+v, %v; want its lease extended to now + 10 s", s, info, err)
		}
	}
	// The deadlines then fire at their moved times, not before.
	if effs := h.advance(int64(holdLeft) - 1); len(effs) != 0 {
		t.Fatalf("before the moved hold limit:\n%s", tblEffects(effs))
	}
	effs := h.advance(1)
	if rel := tblFind(effs, EffectReleased); len(rel) != 1 || rel[0].Token != tok || rel[0].Reason != ReasonMaxHold {
		t.Fatalf("at the moved hold limit:\n%s", tblEffects(effs))
	}
	if g := tblFind(effs, EffectGranted); len(g) != 1 || g[0].Waiter != w {
		t.Fatalf("the waiter was not granted the released mutex:\n%s", tblEffects(effs))
	}
}
