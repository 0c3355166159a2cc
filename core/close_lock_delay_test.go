package core

import (
	"bytes"
	"testing"
)

// Rules 4: a close that asks for the lock-delay (ApplyLockDelay) ends its
// holds as a failure.

// newRules4 returns a machine whose first leader was of a build of rules 4.
func newRules4(t *testing.T) *tblHarness {
	t.Helper()
	h := newTblHarness(t)
	h.run(Command{Op: OpLeaderChange, Rules: rulesCloseLockDelay})
	if h.m.Rules() != rulesCloseLockDelay {
		t.Fatalf("a mark carrying rules %d left rules %d in force", rulesCloseLockDelay, h.m.Rules())
	}
	return h
}

func cForceClose(s SessionID) Command {
	return Command{Op: OpSessionClose, Session: s, ApplyLockDelay: true}
}

// TestForcedCloseAppliesLockDelay: an operator's close of a live holder's
// session keeps the mutex from the next holder for the hold's
// lock_delay_ms, as its expiry would, while the closed process may still
// run; a close without the flag hands it on at once.
func TestForcedCloseAppliesLockDelay(t *testing.T) {
	for _, flag := range []bool{true, false} {
		h := newRules4(t)
		holder, next := h.session(30_000), h.session(30_000)
		acq := cMutex("db/primary", holder, 0)
		acq.LockDelayMs = 5_000
		h.granted(acq)
		w := h.queued(cMutex("db/primary", next, WaitForever))

		closing := cClose(holder)
		closing.ApplyLockDelay = flag
		out := h.run(closing)
		if out.Results[0].Err != nil || h.live(holder) {
			t.Fatalf("flag %v: the close answered %+v", flag, out.Results[0])
		}
		rel := tblOne(t, out.Effects, EffectReleased)
		if rel.Reason != ReasonSessionClosed {
			t.Fatalf("flag %v: the hold ended for %v, want session_closed", flag, rel.Reason)
		}
		if !flag {
			if g := tblFind(out.Effects, EffectGranted); len(g) != 1 || g[0].Waiter != w {
				t.Fatalf("a close without the flag did not hand the mutex on at once:\n%s", tblEffects(out.Effects))
			}
			continue
		}
		if len(tblFind(out.Effects, EffectGranted)) != 0 {
			t.Fatalf("the forced close granted at once:\n%s", tblEffects(out.Effects))
		}
		if st := h.status(KindMutex, "db/primary"); st.LockDelayUntil != h.now()+5_000 {
			t.Fatalf("lock delay until %d, want now + 5 s (%d)", st.LockDelayUntil, h.now()+5_000)
		}
		other := h.session(30_000)
		if r := h.ok(cMutex("db/primary", other, 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("a try-once acquire during the lock-delay: %+v, want refused", r)
		}
		if g := tblFind(h.advance(4_999), EffectGranted); len(g) != 0 {
			t.Fatalf("granted before the lock-delay ended:\n%s", tblEffects(g))
		}
		if g := tblFind(h.advance(1), EffectGranted); len(g) != 1 || g[0].Waiter != w {
			t.Fatalf("the waiter was not granted when the lock-delay ended: %+v", g)
		}
	}
}

// TestForcedCloseRefusedUnderRules3: before a leader of rules 4 raised the
// rules, a close asking for the lock-delay is refused, changes nothing, and
// says what to do; the same close without the flag closes.
func TestForcedCloseRefusedUnderRules3(t *testing.T) {
	h := newTblHarness(t)
	s := h.session(30_000)
	acq := cMutex("m", s, 0)
	acq.LockDelayMs = 5_000
	h.granted(acq)
	c := cForceClose(s)
	c.ClientID, c.Seq = "op", 1
	h.fails(c, CodeFailedPrecondition, "apply_lock_delay needs rules 4")
	if !h.live(s) {
		t.Fatal("the refused close ended the session")
	}
	// Refused, the request left no dedupe record: the same (client, seq)
	// without the flag is a new request, and closes.
	c.ApplyLockDelay = false
	h.ok(c)
	if h.live(s) || h.status(KindMutex, "m").LockDelayUntil != 0 {
		t.Fatal("the close without the flag did not close at once, without a lock-delay")
	}
}

// TestForcedCloseRetry: the flag is part of the request a retry must
// repeat; a retry that repeats it is answered the first result.
func TestForcedCloseRetry(t *testing.T) {
	h := newRules4(t)
	s := h.session(30_000)
	c := cForceClose(s)
	c.ClientID, c.Seq = "op", 1
	first := h.ok(c)
	if r := h.tblRetry(c); r.Session != first.Session {
		t.Fatalf("the retry answered %+v, want %+v", r, first)
	}
	c.ApplyLockDelay = false
	h.fails(c, CodeFailedPrecondition, "")
}

// TestRulesUpgradeReplay: members whose snapshots stand on either side of
// the first mark of rules 4, one of them written by the build before,
// replay the same log to the same state: each entry applies by the rules
// it was written under. Applied by rules 4 throughout instead, the forced
// close before the mark would have closed the session.
func TestRulesUpgradeReplay(t *testing.T) {
	h := newTblHarness(t) // the old build's log: rules 3
	s := h.session(30_000)
	acq := cMutex("m", s, 0)
	acq.LockDelayMs = 5_000
	h.granted(acq)
	old, err := Restore(snapshotWithoutRules(t, h.m)) // a member's snapshot of the build before
	if err != nil {
		t.Fatal(err)
	}
	oldIdx := h.idx

	// The rest of the log: a forced close that the rules 3 in force refuse,
	// then a new leader's mark of rules 4, then the same close again.
	rest := [][]Command{
		{cForceClose(s)},
		{{Op: OpLeaderChange, Rules: rulesCloseLockDelay}},
		{cKeep(s)},
		{cForceClose(s)},
	}
	var mid []byte
	for i, cmds := range rest {
		out := h.run(cmds...)
		switch i {
		case 0:
			tblWantErr(t, out.Results[0], CodeFailedPrecondition, "needs rules 4")
		case 1:
			mid = h.m.Snapshot() // a member's snapshot after the mark
		case 3:
			if out.Results[0].Err != nil || h.status(KindMutex, "m").LockDelayUntil == 0 {
				t.Fatalf("the forced close after the mark: %+v, no lock-delay", out.Results[0])
			}
		}
	}
	replay := func(m *Machine, from uint64) {
		for i := from; i < uint64(len(rest)); i++ {
			m.Apply(Entry{Index: oldIdx + 1 + i, Proposal: Proposal{Time: h.now(), Commands: rest[i]}})
		}
	}
	replay(old, 0)
	after, err := Restore(mid)
	if err != nil {
		t.Fatal(err)
	}
	if after.Rules() != rulesCloseLockDelay {
		t.Fatalf("the snapshot after the mark restored under rules %d", after.Rules())
	}
	replay(after, 2)
	for name, m := range map[string]*Machine{"the old build's snapshot": old, "the snapshot after the mark": after} {
		if !bytes.Equal(m.Snapshot(), h.m.Snapshot()) {
			t.Fatalf("a member restored from %s replayed the log to another state", name)
		}
	}
}

func TestApplyLockDelayRoundTrip(t *testing.T) {
	p := Proposal{Time: 5, Commands: []Command{cForceClose(7)}}
	b := EncodeProposal(p)
	got, err := DecodeProposal(b)
	if err != nil || !got.Commands[0].ApplyLockDelay || !bytes.Equal(EncodeProposal(got), b) {
		t.Fatalf("a forced close decoded as %+v, %v", got, err)
	}
	if err := CheckCommand(DefaultLimits(), &Command{Op: OpSessionKeepAlive, Session: 7, ApplyLockDelay: true}); err == nil {
		t.Fatal("a keepalive with apply_lock_delay was accepted")
	}
}
