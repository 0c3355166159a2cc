package core

import "testing"

func TestRWLockTable(t *testing.T) {
	t.Run("many readers hold at once", func(t *testing.T) {
		h := newTblHarness(t)
		for i := 0; i < 3; i++ {
			h.granted(cRW("rw", h.session(60_000), ModeRead, 0))
		}
		st := h.status(KindRWLock, "rw")
		if len(st.Holders) != 3 {
			t.Fatalf("holders %+v", st.Holders)
		}
		for _, x := range st.Holders {
			if x.Mode != ModeRead {
				t.Fatalf("holder mode %v", x.Mode)
			}
		}
	})
	t.Run("a writer is exclusive", func(t *testing.T) {
		h := newTblHarness(t)
		w, r, w2 := h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cRW("rw", w, ModeWrite, 0))
		if x := h.ok(cRW("rw", r, ModeRead, 0)); x.Outcome != OutcomeRefused {
			t.Fatalf("reader beside a writer: %+v", x)
		}
		if x := h.ok(cRW("rw", w2, ModeWrite, 0)); x.Outcome != OutcomeRefused {
			t.Fatalf("two writers: %+v", x)
		}
		h.ok(cRelease(KindRWLock, "rw", w, tok))
		h.granted(cRW("rw", r, ModeRead, 0))
		if x := h.ok(cRW("rw", w2, ModeWrite, 0)); x.Outcome != OutcomeRefused {
			t.Fatalf("writer beside a reader: %+v", x)
		}
	})
	t.Run("a queued writer blocks later readers (no writer starvation)", func(t *testing.T) {
		h := newTblHarness(t)
		r1, w, r2, r3 := h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)
		t1 := h.granted(cRW("rw", r1, ModeRead, 0))
		ww := h.queued(cRW("rw", w, ModeWrite, WaitForever))
		if x := h.ok(cRW("rw", r2, ModeRead, 0)); x.Outcome != OutcomeRefused {
			t.Fatalf("a reader passed a queued writer: %+v", x)
		}
		h.queued(cRW("rw", r2, ModeRead, WaitForever))
		h.queued(cRW("rw", r3, ModeRead, WaitForever))
		out := h.run(cRelease(KindRWLock, "rw", r1, t1))
		g := tblOne(t, out.Effects, EffectGranted)
		if g.Waiter != ww {
			t.Fatalf("the writer was not next: %+v", g)
		}
		// The writer's release lets both queued readers in at once.
		out = h.run(cRelease(KindRWLock, "rw", w, g.Token))
		if gs := tblFind(out.Effects, EffectGranted); len(gs) != 2 || gs[0].Session != r2 || gs[1].Session != r3 {
			t.Fatalf("readers after the writer:\n%s", tblEffects(out.Effects))
		}
	})
	t.Run("a batch of readers stops at the next writer", func(t *testing.T) {
		h := newTblHarness(t)
		w1, r1, r2, w2, r3 := h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cRW("rw", w1, ModeWrite, 0))
		h.queued(cRW("rw", r1, ModeRead, WaitForever))
		h.queued(cRW("rw", r2, ModeRead, WaitForever))
		h.queued(cRW("rw", w2, ModeWrite, WaitForever))
		h.queued(cRW("rw", r3, ModeRead, WaitForever))
		out := h.run(cRelease(KindRWLock, "rw", w1, tok))
		if gs := tblFind(out.Effects, EffectGranted); len(gs) != 2 || gs[0].Session != r1 || gs[1].Session != r2 {
			t.Fatalf("grants:\n%s", tblEffects(out.Effects))
		}
		if got := h.status(KindRWLock, "rw").Waiters; len(got) != 2 || got[0].Session != w2 || got[1].Session != r3 {
			t.Fatalf("queue %+v", got)
		}
	})
	t.Run("re-acquire in the same mode returns the grant", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tok := h.granted(cRW("rw", a, ModeRead, 0))
		if r := h.ok(cRW("rw", a, ModeRead, WaitForever)); r.Token != tok || r.Outcome != OutcomeGranted {
			t.Fatalf("re-acquire %+v", r)
		}
	})
	t.Run("a writer's expiry lets the readers in", func(t *testing.T) {
		h := newTblHarness(t)
		w, r1, r2 := h.session(1_000), h.session(60_000), h.session(60_000)
		h.granted(cRW("rw", w, ModeWrite, 0))
		h.queued(cRW("rw", r1, ModeRead, WaitForever))
		h.queued(cRW("rw", r2, ModeRead, 5_000))
		if gs := tblFind(h.advance(1_000), EffectGranted); len(gs) != 2 {
			t.Fatalf("%d grants", len(gs))
		}
	})
	t.Run("a timed-out writer at the head lets the readers behind it in", func(t *testing.T) {
		h := newTblHarness(t)
		r1, w, r2 := h.session(60_000), h.session(60_000), h.session(60_000)
		h.granted(cRW("rw", r1, ModeRead, 0))
		h.queued(cRW("rw", w, ModeWrite, 1_000))
		wr := h.queued(cRW("rw", r2, ModeRead, WaitForever))
		effs := h.advance(1_000)
		if g := tblOne(t, effs, EffectGranted); g.Waiter != wr {
			t.Fatalf("grant %+v", g)
		}
	})
}

func TestRWLockErrorsTable(t *testing.T) {
	tests := []struct {
		name   string
		cmd    func(r, w SessionID, tok FencingToken) Command
		code   Code
		phrase string
	}{
		{"no mode", func(r, w SessionID, tok FencingToken) Command { return cRW("x", r, 0, 0) },
			CodeInvalidArgument, "an rwlock acquire needs mode read or write"},
		{"an unknown mode", func(r, w SessionID, tok FencingToken) Command { return cRW("x", r, 3, 0) },
			CodeInvalidArgument, "needs mode read or write"},
		{"a limit", func(r, w SessionID, tok FencingToken) Command { c := cRW("x", r, ModeRead, 0); c.Limit = 2; return c },
			CodeInvalidArgument, "an rwlock takes no limit or permits"},
		{"permits", func(r, w SessionID, tok FencingToken) Command { c := cRW("x", r, ModeRead, 0); c.Permits = 1; return c },
			CodeInvalidArgument, "an rwlock takes no limit or permits"},
		{"a lock-delay", func(r, w SessionID, tok FencingToken) Command {
			c := cRW("x", r, ModeWrite, 0)
			c.LockDelayMs = 5
			return c
		},
			CodeInvalidArgument, "lock_delay_ms applies to mutexes only"},
		{"a reader asks to write (no upgrade)", func(r, w SessionID, tok FencingToken) Command { return cRW("rw", r, ModeWrite, 0) },
			CodeFailedPrecondition, "already holds rwlock \"rw\" (read): release it before asking for a different grant"},
		{"a queued writer asks to read", func(r, w SessionID, tok FencingToken) Command { return cRW("rw", w, ModeRead, WaitForever) },
			CodeFailedPrecondition, "already waits for rwlock \"rw\" (write): cancel that wait first"},
		{"release as a mutex", func(r, w SessionID, tok FencingToken) Command { return cRelease(KindMutex, "rw", r, tok) },
			CodeConflict, "mutex \"rw\" is not held"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			r, w := h.session(60_000), h.session(60_000)
			tok := h.granted(cRW("rw", r, ModeRead, 0))
			h.queued(cRW("rw", w, ModeWrite, WaitForever))
			h.fails(tc.cmd(r, w, tok), tc.code, tc.phrase)
		})
	}
}
