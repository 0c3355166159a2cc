package core

import (
	"bytes"
	"testing"
)

// A replica's unheard release (Command.Unheard, rules 5) ends a grant only
// if no request but the one that asked for it was ever answered it: the
// session's re-acquire or campaign, or a request that joined its wait, was
// told it holds the grant, and keeps it.

func newRules5(t *testing.T) *tblHarness {
	t.Helper()
	h := newTblHarness(t)
	h.run(Command{Op: OpLeaderChange, Rules: rulesUnheardRelease})
	if h.m.Rules() != rulesUnheardRelease {
		t.Fatalf("a mark carrying rules %d left rules %d in force", rulesUnheardRelease, h.m.Rules())
	}
	return h
}

func unheard(c Command) Command {
	c.Unheard = true
	return c
}

func TestUnheardReleaseTable(t *testing.T) {
	t.Run("a grant nobody else heard of is released, and the next waiter granted", func(t *testing.T) {
		h := newRules5(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("m", a, WaitForever))
		w := h.queued(cMutex("m", b, WaitForever))
		out := h.run(unheard(cRelease(KindMutex, "m", a, tok)))
		if r := out.Results[0]; r.Err != nil || r.Outcome != OutcomeDone {
			t.Fatalf("unheard release %+v", r)
		}
		if g := tblOne(t, out.Effects, EffectGranted); g.Waiter != w || g.Session != b {
			t.Fatalf("effects %s", tblEffects(out.Effects))
		}
	})
	t.Run("a grant a waiter got is released when nobody joined its wait", func(t *testing.T) {
		h := newRules5(t)
		a, b := h.session(60_000), h.session(60_000)
		ta := h.granted(cMutex("m", a, 0))
		h.queued(cMutex("m", b, WaitForever))
		g := tblOne(t, h.run(cRelease(KindMutex, "m", a, ta)).Effects, EffectGranted)
		h.ok(unheard(cRelease(KindMutex, "m", b, g.Token)))
		if got := h.holders(KindMutex, "m"); len(got) != 0 {
			t.Fatalf("holders %v after the unheard release", got)
		}
	})
	t.Run("the session's re-acquire heard it: kept", func(t *testing.T) {
		for _, kind := range []Kind{KindMutex, KindSemaphore, KindRWLock} {
			h := newRules5(t)
			a := h.session(60_000)
			acq := map[Kind]Command{KindMutex: cMutex("x", a, 0), KindSemaphore: cSem("x", a, 2, 1, 0),
				KindRWLock: cRW("x", a, ModeRead, 0)}[kind]
			tok := h.granted(acq)
			if r := h.do(acq); r.Outcome != OutcomeGranted || r.Token != tok {
				t.Fatalf("%s re-acquire %+v", kind, r)
			}
			twin := h.twin()
			h.fails(unheard(cRelease(kind, "x", a, tok)), CodeFailedPrecondition, "answered to another request")
			twin.run()
			if got := h.holders(kind, "x"); len(got) != 1 || h.m.Hash() != twin.m.Hash() {
				t.Fatalf("%s: the refused unheard release changed the state (holders %v)", kind, got)
			}
			h.ok(cRelease(kind, "x", a, tok)) // its caller's own release still ends it
		}
	})
	t.Run("a request that joined the wait heard the grant: kept", func(t *testing.T) {
		h := newRules5(t)
		a, b := h.session(60_000), h.session(60_000)
		ta := h.granted(cMutex("m", a, 0))
		w := h.queued(cMutex("m", b, WaitForever))
		if again := h.queued(cMutex("m", b, 5_000)); again != w {
			t.Fatalf("the session's second acquire queued %d, want its wait %d", again, w)
		}
		g := tblOne(t, h.run(cRelease(KindMutex, "m", a, ta)).Effects, EffectGranted)
		h.fails(unheard(cRelease(KindMutex, "m", b, g.Token)), CodeFailedPrecondition, "answered to another request")
		if got := h.holders(KindMutex, "m"); len(got) != 1 || got[0] != b {
			t.Fatalf("holders %v, want session %d", got, b)
		}
	})
	t.Run("elections: a campaign again heard the leadership; a joined candidacy too", func(t *testing.T) {
		h := newRules5(t)
		a, b := h.session(60_000), h.session(60_000)
		ta := h.granted(cCampaign("e", a, "v", 0))
		h.granted(cCampaign("e", a, "v", 0))
		h.fails(unheard(cResign("e", a, ta)), CodeFailedPrecondition, "answered to another request")

		w := h.queued(cCampaign("e", b, "b", WaitForever))
		h.queued(cCampaign("e", b, "b2", WaitForever))
		g := tblOne(t, h.run(cResign("e", a, ta)).Effects, EffectGranted)
		if g.Waiter != w {
			t.Fatalf("granted %+v, want waiter %d", g, w)
		}
		h.fails(unheard(cResign("e", b, g.Token)), CodeFailedPrecondition, "answered to another request")

		c := h.session(60_000)
		tc := h.granted(cCampaign("f", c, "v", 0))
		h.ok(unheard(cResign("f", c, tc)))
		if st := h.status(KindElection, "f"); len(st.Holders) != 0 {
			t.Fatalf("election f still led: %+v", st)
		}
	})
	t.Run("a stale or foreign token is refused as any release's", func(t *testing.T) {
		h := newRules5(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("m", a, 0))
		h.fails(unheard(cRelease(KindMutex, "m", b, tok)), CodeConflict, "does not hold")
		h.ok(cRelease(KindMutex, "m", a, tok))
		h.fails(unheard(cRelease(KindMutex, "m", a, tok)), CodeConflict, "not held")
	})
	t.Run("under rules 4 it is refused and changes nothing", func(t *testing.T) {
		h := newRules4(t)
		a := h.session(60_000)
		tok := h.granted(cMutex("m", a, 0))
		twin := h.twin()
		h.fails(unheard(cRelease(KindMutex, "m", a, tok)), CodeFailedPrecondition, "needs rules 5")
		twin.run()
		if h.m.Hash() != twin.m.Hash() {
			t.Fatal("a refused unheard release changed the state")
		}
	})
	t.Run("it needs session_id", func(t *testing.T) {
		h := newRules5(t)
		a := h.session(60_000)
		tok := h.granted(cMutex("m", a, 0))
		h.fails(unheard(cRelease(KindMutex, "m", 0, tok)), CodeInvalidArgument, "needs session_id")
	})
}

// TestSnapshotsKeepWhoHeard: a snapshot carries hold.shared and
// waiter.joined, and one written before them (version 5) restores both as
// true, so that an unheard release never ends a grant of theirs.
func TestSnapshotsKeepWhoHeard(t *testing.T) {
	h := newRules5(t)
	a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
	alone := h.granted(cMutex("alone", a, 0))
	heard := h.granted(cMutex("heard", a, 0))
	h.granted(cMutex("heard", a, 0))
	h.granted(cMutex("q", c, 0))
	w := h.queued(cMutex("q", b, WaitForever))
	h.queued(cMutex("q", b, WaitForever))
	w2 := h.queued(cMutex("q", a, WaitForever))

	m, err := Restore(h.m.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Snapshot(), h.m.Snapshot()) || m.holds[alone].shared || !m.holds[heard].shared ||
		!m.waiters[w].joined || m.waiters[w2].joined {
		t.Fatal("a snapshot did not keep who heard of each grant and wait")
	}

	old, err := Restore(h.m.appendSnapshotAs(nil, snapshotVersionShared-1))
	if err != nil {
		t.Fatal(err)
	}
	if !old.holds[alone].shared || !old.waiters[w2].joined {
		t.Fatalf("a version %d snapshot restored a grant or wait as heard by its own request alone", snapshotVersionShared-1)
	}
	if heardless(old) != heardless(h.m) {
		t.Fatalf("a version %d snapshot restored otherwise than it was taken", snapshotVersionShared-1)
	}
}

func TestUnheardRoundTrip(t *testing.T) {
	p := Proposal{Time: 5, Commands: []Command{unheard(cRelease(KindMutex, "m", 3, 9<<SlotBits)), unheard(cResign("e", 3, 10<<SlotBits))}}
	b := EncodeProposal(p)
	got, err := DecodeProposal(b)
	if err != nil || !got.Commands[0].Unheard || !got.Commands[1].Unheard || !bytes.Equal(EncodeProposal(got), b) {
		t.Fatalf("an unheard release decoded as %+v, %v", got, err)
	}
}

// TestRetryOfAJoinedWaitTable: a request that joined its session's wait
// kept "queued" in the dedupe table when the wait ended (only the wait's
// own request is settled), and its retry was answered a wait that no
// longer existed, blocking its caller (the simulator found one that waited
// forever). From rules 5 the retry is answered what the session holds.
func TestRetryOfAJoinedWaitTable(t *testing.T) {
	setup := func(h *tblHarness) (a, b SessionID, ta FencingToken, w WaiterID, joined Command) {
		a, b = h.session(60_000), h.session(60_000)
		ta = h.granted(cMutex("m", a, 0))
		w = h.queued(with(cMutex("m", b, WaitForever), "first", 1))
		joined = with(cMutex("m", b, WaitForever), "second", 1)
		if got := h.queued(joined); got != w {
			t.Fatalf("the session's second acquire queued %d, want its wait %d", got, w)
		}
		return a, b, ta, w, joined
	}
	t.Run("granted: the retry hears the grant", func(t *testing.T) {
		h := newRules5(t)
		a, b, ta, w, joined := setup(h)
		g := tblOne(t, h.run(cRelease(KindMutex, "m", a, ta)).Effects, EffectGranted)
		r := h.do(joined)
		if r.Err != nil || r.Outcome != OutcomeGranted || r.Token != g.Token || r.Session != b || r.Waiter != w || !r.Duplicate {
			t.Fatalf("the joined request's retry: %+v, want granted %d", r, g.Token)
		}
		h.fails(unheard(cRelease(KindMutex, "m", b, g.Token)), CodeFailedPrecondition, "answered to another request")
	})
	t.Run("ended: the retry hears the wait ended", func(t *testing.T) {
		h := newRules5(t)
		_, b, _, w, joined := setup(h)
		h.ok(cCancel(b, w))
		if r := h.do(joined); r.Err != nil || r.Outcome != OutcomeRefused || r.Waiter != w || r.Reason != ReasonCancelled || !r.Duplicate {
			t.Fatalf("the joined request's retry once its wait was cancelled: %+v, want refused (cancelled)", r)
		}
	})
	t.Run("rules 4 answer the wait, as they did", func(t *testing.T) {
		h := newRules4(t)
		_, b, _, w, joined := setup(h)
		h.ok(cCancel(b, w))
		if r := h.do(joined); r.Err != nil || r.Outcome != OutcomeQueued || r.Waiter != w {
			t.Fatalf("under rules 4 the retry: %+v, want queued %d", r, w)
		}
	})
}

// TestJoinersHearHowTheWaitEnded: from rules 5 a wait's end is stored as
// the answer of every request that joined it, so a retry of one hears how
// it ended (the log's words), as a retry of the request that queued it
// does, even once the grant was released; and snapshots keep the joiners.
func TestJoinersHearHowTheWaitEnded(t *testing.T) {
	h := newRules5(t)
	a, b := h.session(60_000), h.session(60_000)
	ta := h.granted(cMutex("m", a, 0))
	w := h.queued(with(cMutex("m", b, WaitForever), "first", 1))
	joined := with(cMutex("m", b, WaitForever), "second", 1)
	h.queued(joined)
	if m, err := Restore(h.m.Snapshot()); err != nil || len(m.waiters[w].joiners) != 1 || !bytes.Equal(m.Snapshot(), h.m.Snapshot()) {
		t.Fatalf("a snapshot did not keep the request that joined the wait: %v", err)
	}
	g := tblOne(t, h.run(cRelease(KindMutex, "m", a, ta)).Effects, EffectGranted)
	h.ok(cRelease(KindMutex, "m", b, g.Token))
	r := h.do(joined)
	if r.Err != nil || r.Outcome != OutcomeGranted || r.Token != g.Token || r.Waiter != w || !r.Duplicate {
		t.Fatalf("the joined request's retry after its grant was released: %+v, want the grant %d it was answered, as the first request's retry is", r, g.Token)
	}
	if first := h.do(with(cMutex("m", b, WaitForever), "first", 1)); first.Outcome != r.Outcome || first.Token != r.Token {
		t.Fatalf("the two requests of one wait answered apart: %+v and %+v", first, r)
	}
}

// TestJoinersAreBounded: a session that asks again and again for a name it
// waits for does not grow its wait past maxJoinersPerWait; a retry of a
// request past the bound still hears what its session holds.
func TestJoinersAreBounded(t *testing.T) {
	h := newRules5(t)
	a, b := h.session(60_000), h.session(60_000)
	ta := h.granted(cMutex("m", a, 0))
	w := h.queued(with(cMutex("m", b, WaitForever), "first", 1))
	for i := range maxJoinersPerWait + 10 {
		h.queued(with(cMutex("m", b, WaitForever), "again", uint64(i+1)))
	}
	if n := len(h.m.waiters[w].joiners); n != maxJoinersPerWait {
		t.Fatalf("the wait remembers %d joiners, want the bound %d", n, maxJoinersPerWait)
	}
	g := tblOne(t, h.run(cRelease(KindMutex, "m", a, ta)).Effects, EffectGranted)
	last := with(cMutex("m", b, WaitForever), "again", maxJoinersPerWait+10)
	if r := h.do(last); r.Outcome != OutcomeGranted || r.Token != g.Token {
		t.Fatalf("the retry of a request past the bound: %+v, want the grant %d its session holds", r, g.Token)
	}
}

// TestUnheardCancelTable: a replica's withdrawal of a gone requester's
// wait keeps the wait when another request of the session joined it
// (rules 5); that request hears the wait's end as the log makes it,
// instead of a cancel nobody it knows asked for. Under rules 4 it is a
// plain cancel.
func TestUnheardCancelTable(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rules5 bool
		join   bool
		kept   bool
	}{
		{"alone: withdrawn", true, false, false},
		{"joined: kept for the request that joined it", true, true, true},
		{"rules 4: a plain cancel", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRules4(t)
			if tc.rules5 {
				h = newRules5(t)
			}
			a, b := h.session(60_000), h.session(60_000)
			h.granted(cMutex("m", a, 0))
			w := h.queued(with(cMutex("m", b, WaitForever), "gone", 1))
			if tc.join {
				h.queued(with(cMutex("m", b, WaitForever), "retry", 1))
			}
			c := cCancel(b, w)
			c.Unheard = true
			r := h.do(c)
			if kept := r.Err != nil; kept != tc.kept || (kept && (r.Err.Code != CodeFailedPrecondition || len(h.waiting(KindMutex, "m")) != 1)) {
				t.Fatalf("unheard cancel: %+v; want kept %v", r, tc.kept)
			}
		})
	}
}
