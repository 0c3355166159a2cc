package core

import (
	"fmt"
	"strings"
	"testing"
)

func TestBarrierTable(t *testing.T) {
	t.Run("the last of the parties releases everyone", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		r := h.ok(cArrive("b", a, 3, "", 5_000))
		if r.Outcome != OutcomeQueued || r.Deadline != h.now()+5_000 {
			t.Fatalf("first arrival %+v", r)
		}
		wa := r.Waiter
		wb := h.queued(cArrive("b", b, 3, "", WaitForever))
		if st := h.status(KindBarrier, "b"); st.Parties != 3 || len(st.Waiters) != 2 {
			t.Fatalf("status %+v", st)
		}
		out := h.run(cArrive("b", c, 3, "", 5_000))
		r = out.Results[0]
		if r.Outcome != OutcomeReleased || r.Generation == 0 || r.Session != c {
			t.Fatalf("last arrival %+v", r)
		}
		want := []Effect{
			{Kind: EffectGranted, Object: KindBarrier, Name: "b", Session: a, Waiter: wa, Generation: r.Generation},
			{Kind: EffectGranted, Object: KindBarrier, Name: "b", Session: b, Waiter: wb, Generation: r.Generation},
			{Kind: EffectBarrierReleased, Object: KindBarrier, Name: "b", Generation: r.Generation},
		}
		if got, w := tblEffects(out.Effects), tblEffects(want); got != w {
			t.Fatalf("effects:\n%s\nwant:\n%s", got, w)
		}
		if h.m.Counts().Objects != 0 {
			t.Fatal("a released barrier was kept")
		}
	})
	t.Run("generations are reusable and increase", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		var last uint64
		for i := 0; i < 3; i++ {
			h.queued(cArrive("b", a, 2, "", WaitForever))
			r := h.ok(cArrive("b", b, 2, "", WaitForever))
			if r.Outcome != OutcomeReleased || r.Generation <= last {
				t.Fatalf("round %d: %+v after generation %d", i, r, last)
			}
			last = r.Generation
		}
	})
	t.Run("status shows the generation arrivals join, the one they are released in", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c, d := h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)
		if st := h.status(KindBarrier, "b"); st.Generation != 0 {
			t.Fatalf("a barrier nobody waits at has generation %d", st.Generation)
		}
		r := h.ok(cArrive("b", a, 3, "", 1_000))
		gen := r.Generation
		if r.Outcome != OutcomeQueued || gen != uint64(r.Waiter) {
			t.Fatalf("the first arrival opens the generation with its waiter id: %+v", r)
		}
		if r := h.ok(cArrive("b", b, 3, "", WaitForever)); r.Generation != gen {
			t.Fatalf("the second arrival joined generation %d, want %d", r.Generation, gen)
		}
		if r := h.ok(cArrive("b", b, 3, "", WaitForever)); r.Outcome != OutcomeQueued || r.Generation != gen {
			t.Fatalf("a repeated arrival %+v, want generation %d", r, gen)
		}
		h.advance(1_000) // the opener times out; the generation stays
		if st := h.status(KindBarrier, "b"); st.Generation != gen || len(st.Waiters) != 1 {
			t.Fatalf("after the opener left: status %+v, want generation %d", st, gen)
		}
		h.queued(cArrive("b", c, 3, "", WaitForever))
		out := h.run(cArrive("b", d, 3, "", WaitForever))
		if r := out.Results[0]; r.Outcome != OutcomeReleased || r.Generation != gen {
			t.Fatalf("release %+v, want generation %d", r, gen)
		}
		if e := tblOne(t, out.Effects, EffectBarrierReleased); e.Generation != gen {
			t.Fatalf("released effect %+v, want generation %d", e, gen)
		}
		if st := h.status(KindBarrier, "b"); st.Generation != 0 {
			t.Fatalf("after the release: generation %d, want 0 until someone arrives", st.Generation)
		}
		r = h.ok(cArrive("b", a, 3, "", WaitForever))
		if r.Generation <= gen || h.status(KindBarrier, "b").Generation != r.Generation {
			t.Fatalf("the next arrival opened generation %d after %d; status says %d", r.Generation, gen, h.status(KindBarrier, "b").Generation)
		}
	})
	t.Run("a snapshot keeps the generation", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		gen := h.ok(cArrive("b", a, 3, "", 1_000)).Generation
		h.queued(cArrive("b", b, 3, "", WaitForever))
		h.advance(1_000) // the opener leaves: only the snapshot knows the generation now
		m, err := Restore(h.m.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := m.Status(KindBarrier, "b"); st.Generation != gen {
			t.Fatalf("restored generation %d, want %d", st.Generation, gen)
		}
	})
	t.Run("a set/remove barrier has no generation in status", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.ok(cSet("s", a))
		h.queued(cArrive("s", b, 0, "", WaitForever))
		if st := h.status(KindBarrier, "s"); st.Generation != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a repeated arrival keeps its place and counts once", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		w := h.queued(cArrive("b", a, 3, "", WaitForever))
		if r := h.ok(cArrive("b", a, 3, "", WaitForever)); r.Outcome != OutcomeQueued || r.Waiter != w {
			t.Fatalf("repeat %+v", r)
		}
		if r := h.ok(cArrive("b", b, 3, "", WaitForever)); r.Outcome != OutcomeQueued {
			t.Fatalf("two parties of three released: %+v", r)
		}
	})
	t.Run("one session may arrive as several participants", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		h.queued(cArrive("b", a, 3, "p1", WaitForever))
		h.queued(cArrive("b", a, 3, "p2", WaitForever))
		if r := h.ok(cArrive("b", a, 3, "p3", WaitForever)); r.Outcome != OutcomeReleased {
			t.Fatalf("third participant %+v", r)
		}
		if st := h.status(KindBarrier, "b"); len(st.Waiters) != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("participants show in status", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		h.queued(cArrive("b", a, 3, "node-7", WaitForever))
		if st := h.status(KindBarrier, "b"); st.Waiters[0].Participant != "node-7" {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a timed-out arrival leaves the barrier", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		w := h.queued(cArrive("b", a, 3, "", 1_000))
		h.queued(cArrive("b", b, 3, "", WaitForever))
		if e := tblOne(t, h.advance(1_000), EffectWaitEnded); e.Waiter != w || e.Reason != ReasonTimeout {
			t.Fatalf("wait ended %+v", e)
		}
		if r := h.ok(cArrive("b", c, 3, "", WaitForever)); r.Outcome != OutcomeQueued {
			t.Fatalf("released with a party gone: %+v", r)
		}
	})
	t.Run("an arrival whose session expires leaves the barrier", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		h.queued(cArrive("b", a, 2, "", WaitForever))
		if e := tblOne(t, h.advance(1_000), EffectWaitEnded); e.Reason != ReasonSessionExpired {
			t.Fatalf("wait ended %+v", e)
		}
		if r := h.ok(cArrive("b", b, 2, "", WaitForever)); r.Outcome != OutcomeQueued {
			t.Fatalf("released by a dead party: %+v", r)
		}
	})
	t.Run("a try arrival that does not complete is refused and leaves nothing", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		twin := h.twin()
		if r := h.ok(cArrive("b", a, 2, "", 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("try %+v", r)
		}
		twin.run()
		if h.m.Hash() != twin.m.Hash() {
			t.Fatal("a refused arrival changed the state")
		}
		h.queued(cArrive("b", a, 2, "", WaitForever))
		if r := h.ok(cArrive("b", b, 2, "", 0)); r.Outcome != OutcomeReleased {
			t.Fatalf("a completing try arrival must release: %+v", r)
		}
	})
	t.Run("set/remove: waiters pass when the barrier is removed", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		r := h.ok(cSet("gate", a))
		if r.Outcome != OutcomeDone || r.Token == 0 || r.Session != a {
			t.Fatalf("set %+v", r)
		}
		if again := h.ok(cSet("gate", a)); again.Token != r.Token {
			t.Fatalf("set again %+v", again)
		}
		if st := h.status(KindBarrier, "gate"); len(st.Holders) != 1 || st.Holders[0].Session != a || st.Parties != 0 {
			t.Fatalf("status %+v", st)
		}
		wb := h.queued(cArrive("gate", b, 0, "", WaitForever))
		if x := h.ok(cArrive("gate", c, 0, "", 0)); x.Outcome != OutcomeRefused {
			t.Fatalf("try at a set barrier %+v", x)
		}
		out := h.run(cRemove("gate"))
		if x := out.Results[0]; x.Outcome != OutcomeDone || x.Token != r.Token || x.Session != a {
			t.Fatalf("remove %+v", x)
		}
		g := tblOne(t, out.Effects, EffectGranted)
		rel := tblOne(t, out.Effects, EffectBarrierReleased)
		if g.Waiter != wb || g.Reason != ReasonBarrierRemoved || rel.Reason != ReasonBarrierRemoved || g.Generation != rel.Generation {
			t.Fatalf("remove effects:\n%s", tblEffects(out.Effects))
		}
		if h.m.Counts().Objects != 0 {
			t.Fatal("a removed barrier was kept")
		}
		if x := h.ok(cArrive("gate", c, 0, "", WaitForever)); x.Outcome != OutcomeReleased {
			t.Fatalf("wait at a barrier that is not set %+v", x)
		}
	})
	t.Run("removing a barrier that is not set does nothing", func(t *testing.T) {
		h := newTblHarness(t)
		twin := h.twin()
		out := h.run(cRemove("never"))
		twin.run()
		if out.Results[0].Outcome != OutcomeDone || len(out.Effects) != 0 || h.m.Hash() != twin.m.Hash() {
			t.Fatalf("remove %+v", out)
		}
	})
	t.Run("the end of the setter's session lowers a set barrier", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		tok := h.ok(cSet("gate", a)).Token
		wb := h.queued(cArrive("gate", b, 0, "", WaitForever))
		effs := h.advance(1_000)
		if rel := tblOne(t, effs, EffectReleased); rel.Token != tok || rel.Reason != ReasonSessionExpired {
			t.Fatalf("release %+v", rel)
		}
		if g := tblOne(t, effs, EffectGranted); g.Waiter != wb || g.Reason != ReasonBarrierRemoved {
			t.Fatalf("waiter %+v", g)
		}
		c := h.session(60_000)
		h.ok(cSet("gate2", c))
		h.ok(cClose(c))
		if h.m.Counts().Objects != 0 {
			t.Fatal("a closed session's barrier is still set")
		}
	})
	t.Run("a barrier set by one session is a conflict for another", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.ok(cSet("gate", a))
		h.fails(cSet("gate", b), CodeConflict, "barrier \"gate\" is already set by session")
	})
}

func TestBarrierErrorsTable(t *testing.T) {
	tests := []struct {
		name   string
		cmd    func(a SessionID) Command
		code   Code
		phrase string
	}{
		{"one party", func(a SessionID) Command { return cArrive("x", a, 1, "", 0) },
			CodeInvalidArgument, "parties 1 is out of range: use 2..10000, or 0 to wait for a set barrier to be removed"},
		{"negative parties", func(a SessionID) Command { return cArrive("x", a, -2, "", 0) },
			CodeInvalidArgument, "parties -2 is out of range"},
		{"too many parties", func(a SessionID) Command { return cArrive("x", a, 10_001, "", 0) },
			CodeInvalidArgument, "parties 10001 is out of range"},
		{"a long participant", func(a SessionID) Command { return cArrive("x", a, 2, strings.Repeat("p", 129), 0) },
			CodeInvalidArgument, "participant is 129 bytes: at most 128"},
		{"an arrival without a session", func(a SessionID) Command { return cArrive("x", 0, 2, "", 0) },
			CodeInvalidArgument, "barrier_wait needs session_id: give the session that waits"},
		{"an arrival with an unknown session", func(a SessionID) Command { return cArrive("x", 99, 2, "", 0) },
			CodeNotFound, "session 99 does not exist"},
		{"an arrival with a wait out of range", func(a SessionID) Command { return cArrive("x", a, 2, "", -7) },
			CodeInvalidArgument, "wait_timeout_ms -7 is out of range"},
		{"an arrival with a kind", func(a SessionID) Command { c := cArrive("x", a, 2, "", 0); c.Kind = KindBarrier; return c },
			CodeInvalidArgument, "barrier_wait does not take kind: leave it empty"},
		{"other parties than the barrier counts", func(a SessionID) Command { return cArrive("party", a, 4, "", WaitForever) },
			CodeFailedPrecondition, "barrier \"party\" counts 3 parties, not 4: wait with parties=3"},
		{"parties=0 at a party barrier", func(a SessionID) Command { return cArrive("party", a, 0, "", WaitForever) },
			CodeFailedPrecondition, "barrier \"party\" counts 3 parties: wait with parties=3 (parties=0 waits for a set barrier's removal"},
		{"parties at a set barrier", func(a SessionID) Command { return cArrive("gate", a, 2, "", WaitForever) },
			CodeFailedPrecondition, "barrier \"gate\" is a set/remove barrier: wait with parties=0"},
		{"set a party barrier", func(a SessionID) Command { return cSet("party", a) },
			CodeFailedPrecondition, "counts 3 parties; it cannot be set"},
		{"remove a party barrier", func(a SessionID) Command { return cRemove("party") },
			CodeFailedPrecondition, "counts 3 parties; it cannot be set"},
		{"set without a session", func(a SessionID) Command { return cSet("x", 0) },
			CodeInvalidArgument, "barrier_set needs session_id: a set barrier stays up"},
		{"set with an unknown session", func(a SessionID) Command { return cSet("x", 5) },
			CodeNotFound, "create a new session"},
		{"set with a value", func(a SessionID) Command { c := cSet("x", a); c.Value = []byte("v"); return c },
			CodeInvalidArgument, "barrier_set does not take value"},
		{"remove with a session", func(a SessionID) Command { c := cRemove("gate"); c.Session = a; return c },
			CodeInvalidArgument, "barrier_remove does not take session_id"},
		{"remove without a name", func(a SessionID) Command { return cRemove("") },
			CodeInvalidArgument, "the name is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			a, b := h.session(60_000), h.session(60_000)
			h.queued(cArrive("party", b, 3, "", WaitForever))
			h.ok(cSet("gate", b))
			h.fails(tc.cmd(a), tc.code, tc.phrase)
		})
	}
}

// TestBarrierCountsOnlyLivePartiesTable: the arrival that would complete a
// counting barrier's count is applied after every deadline its entry's log
// time reached (Apply fires timers before it runs commands), so a party
// whose lease or wait ran out by then has already left, its wait ended as
// its session's expiry (or its timeout) ends it, and the barrier keeps
// waiting for a live party. A party whose deadline is still ahead of that
// log time counts, even when the entry was stamped past it: log time is
// the stamp capped at MaxClockStepMs per entry while anything is timed,
// and leases are measured in log time. The rule is the same under every
// rules version.
func TestBarrierCountsOnlyLivePartiesTable(t *testing.T) {
	tests := []struct {
		name     string
		aTTL     int64   // party a's lease, from tblStart (b's and c's are a minute)
		aWait    int64   // party a's wait
		at       LogTime // the stamp of the entry of c's arrival
		now      LogTime // the log time it applies at
		released bool    // c's arrival completes the count
		aEnds    Reason  // how a's wait ends in that entry, when it does
	}{
		{"a's lease ran out before the entry's log time", 1_000, WaitForever, tblStart + 1_500, tblStart + 1_500, false, ReasonSessionExpired},
		{"a's lease runs out at the entry's log time", 1_000, WaitForever, tblStart + 1_000, tblStart + 1_000, false, ReasonSessionExpired},
		{"a's wait runs out at the entry's log time", 60_000, 500, tblStart + 500, tblStart + 500, false, ReasonTimeout},
		{"a's lease runs out a millisecond after the entry's log time", 1_000, WaitForever, tblStart + 999, tblStart + 999, true, ReasonNone},
		{"the entry is stamped past a's lease, its log time is not", 3_000, WaitForever, tblStart + 3_500, tblStart + 2_000, true, ReasonNone},
	}
	for _, rules := range []uint64{rulesCloseLockDelay, RulesVersion} {
		for _, tc := range tests {
			t.Run(fmt.Sprintf("rules %d/%s", rules, tc.name), func(t *testing.T) {
				h := newTblHarness(t)
				a, b, c := h.session(tc.aTTL), h.session(60_000), h.session(60_000)
				h.run(Command{Op: OpLeaderChange, Rules: rules})
				wa := h.queued(cArrive("b", a, 3, "", tc.aWait))
				wb := h.queued(cArrive("b", b, 3, "", WaitForever))
				twin := h.twin()

				out := h.apply(tc.at, cArrive("b", c, 3, "", WaitForever))
				if out.Time != tc.now {
					t.Fatalf("log time %d, want %d", out.Time, tc.now)
				}
				// A member restored from a snapshot taken before decides alike.
				if tw := twin.apply(tc.at, cArrive("b", c, 3, "", WaitForever)); tw.Results[0] != out.Results[0] ||
					tblEffects(tw.Effects) != tblEffects(out.Effects) || twin.m.Hash() != h.m.Hash() {
					t.Fatalf("a restored machine answered %+v with\n%s\nthe original %+v with\n%s",
						tw.Results[0], tblEffects(tw.Effects), out.Results[0], tblEffects(out.Effects))
				}
				r := out.Results[0]
				if tc.released {
					if r.Outcome != OutcomeReleased {
						t.Fatalf("c's arrival %+v: a, live at log time %d, was not counted", r, out.Time)
					}
					if n := len(tblFind(out.Effects, EffectGranted)); n != 2 || len(tblFind(out.Effects, EffectWaitEnded)) != 0 {
						t.Fatalf("want a and b released, got:\n%s", tblEffects(out.Effects))
					}
					return
				}
				if r.Outcome != OutcomeQueued {
					t.Fatalf("c's arrival %+v: two live parties of three released the barrier:\n%s", r, tblEffects(out.Effects))
				}
				if e := tblOne(t, out.Effects, EffectWaitEnded); e.Waiter != wa || e.Reason != tc.aEnds {
					t.Fatalf("a's wait ended %+v, want waiter %d for %v", e, wa, tc.aEnds)
				}
				if n := len(tblFind(out.Effects, EffectGranted)) + len(tblFind(out.Effects, EffectBarrierReleased)); n != 0 {
					t.Fatalf("the barrier released parties:\n%s", tblEffects(out.Effects))
				}
				if got := h.waiting(KindBarrier, "b"); len(got) != 2 || got[0] != wb || got[1] != r.Waiter {
					t.Fatalf("waiting %v, want b's %d then c's %d", got, wb, r.Waiter)
				}
				// A live third party releases b and c, and only them.
				d := h.session(60_000)
				out = h.run(cArrive("b", d, 3, "", WaitForever))
				if r := out.Results[0]; r.Outcome != OutcomeReleased || len(tblFind(out.Effects, EffectGranted)) != 2 {
					t.Fatalf("the live third party: %+v\n%s", r, tblEffects(out.Effects))
				}
			})
		}
	}
}
