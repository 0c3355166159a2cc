package core

import "testing"

func TestSemaphoreTable(t *testing.T) {
	t.Run("weighted permits up to the limit", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		ta := h.granted(cSem("s", a, 5, 2, 0))
		tb := h.granted(cSem("s", b, 5, 3, 0))
		if ta >= tb {
			t.Fatal("tokens out of order")
		}
		st := h.status(KindSemaphore, "s")
		if st.Limit != 5 || st.Used != 5 || len(st.Holders) != 2 || st.Holders[0].Permits != 2 || st.Holders[1].Permits != 3 {
			t.Fatalf("status %+v", st)
		}
		if r := h.ok(cSem("s", c, 5, 1, 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("over the limit: %+v", r)
		}
		h.ok(cRelease(KindSemaphore, "s", a, ta))
		if st := h.status(KindSemaphore, "s"); st.Used != 3 {
			t.Fatalf("used %d after release", st.Used)
		}
		h.granted(cSem("s", c, 5, 2, 0))
	})
	t.Run("permits 0 means 1", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		h.granted(cSem("s", a, 3, 0, 0))
		if st := h.status(KindSemaphore, "s"); st.Used != 1 || st.Holders[0].Permits != 1 {
			t.Fatalf("status %+v", st)
		}
		// and re-acquiring with 1 is the same request
		h.granted(cSem("s", a, 3, 1, 0))
	})
	t.Run("a limit-1 semaphore is a mutex", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cSem("s", a, 1, 1, 0))
		w := h.queued(cSem("s", b, 1, 1, WaitForever))
		if g := tblOne(t, h.run(cRelease(KindSemaphore, "s", a, tok)).Effects, EffectGranted); g.Waiter != w {
			t.Fatalf("grant %+v", g)
		}
	})
	t.Run("the first acquirer fixes the limit until the semaphore is idle", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cSem("s", a, 5, 1, 0))
		h.fails(cSem("s", b, 4, 1, 0), CodeFailedPrecondition,
			"semaphore \"s\" has limit 5, set by its first acquirer: acquire with limit 5, or use another name")
		h.fails(cSem("s", a, 6, 1, 0), CodeFailedPrecondition, "has limit 5") // the holder too
		h.ok(cRelease(KindSemaphore, "s", a, tok))
		h.granted(cSem("s", b, 4, 1, 0)) // idle: a new limit
		if st := h.status(KindSemaphore, "s"); st.Limit != 4 {
			t.Fatalf("limit %d", st.Limit)
		}
	})
	t.Run("no barging: a small request waits behind a large head", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cSem("s", a, 3, 2, 0))
		wb := h.queued(cSem("s", b, 3, 2, WaitForever))
		// One permit is free and c wants one, but b is first in line.
		if r := h.ok(cSem("s", c, 3, 1, 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("try barged: %+v", r)
		}
		wc := h.queued(cSem("s", c, 3, 1, WaitForever))
		out := h.run(cRelease(KindSemaphore, "s", a, tok))
		g := tblFind(out.Effects, EffectGranted)
		if len(g) != 2 || g[0].Waiter != wb || g[1].Waiter != wc {
			t.Fatalf("one release grants the queue in order while it fits:\n%s", tblEffects(out.Effects))
		}
		if st := h.status(KindSemaphore, "s"); st.Used != 3 {
			t.Fatalf("used %d", st.Used)
		}
	})
	t.Run("the head blocks the queue until it fits", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c, d := h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)
		ta := h.granted(cSem("s", a, 4, 2, 0))
		h.granted(cSem("s", b, 4, 2, 0))
		wc := h.queued(cSem("s", c, 4, 3, WaitForever))
		h.queued(cSem("s", d, 4, 1, WaitForever))
		out := h.run(cRelease(KindSemaphore, "s", a, ta)) // 2 free: c needs 3, d must not pass it
		if len(tblFind(out.Effects, EffectGranted)) != 0 {
			t.Fatalf("granted past the head:\n%s", tblEffects(out.Effects))
		}
		out = h.run(cCancel(c, wc)) // the head leaves: d fits
		if g := tblOne(t, out.Effects, EffectGranted); g.Session != d {
			t.Fatalf("grant %+v", g)
		}
	})
	t.Run("re-acquire with the same permits returns the grant", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tok := h.granted(cSem("s", a, 5, 2, 0))
		if r := h.ok(cSem("s", a, 5, 2, 0)); r.Token != tok || r.Outcome != OutcomeGranted {
			t.Fatalf("re-acquire %+v", r)
		}
		if st := h.status(KindSemaphore, "s"); st.Used != 2 {
			t.Fatalf("re-acquire took more permits: %d", st.Used)
		}
	})
	t.Run("session expiry gives the permits back", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		h.granted(cSem("s", a, 2, 2, 0))
		w := h.queued(cSem("s", b, 2, 2, WaitForever))
		if g := tblOne(t, h.advance(1_000), EffectGranted); g.Waiter != w {
			t.Fatalf("grant %+v", g)
		}
	})
	t.Run("max hold ends a semaphore grant", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		c := cSem("s", a, 2, 1, 0)
		c.MaxHoldMs = 100
		h.granted(c)
		if rel := tblOne(t, h.advance(100), EffectReleased); rel.Reason != ReasonMaxHold {
			t.Fatalf("release %+v", rel)
		}
	})
}

func TestSemaphoreErrorsTable(t *testing.T) {
	tests := []struct {
		name   string
		cmd    func(a, b SessionID) Command
		code   Code
		phrase string
	}{
		{"no limit", func(a, b SessionID) Command { return cSem("t", a, 0, 1, 0) },
			CodeInvalidArgument, "limit 0 is out of range: a semaphore needs 1..1000000"},
		{"negative limit", func(a, b SessionID) Command { return cSem("t", a, -3, 1, 0) },
			CodeInvalidArgument, "limit -3 is out of range"},
		{"limit above the maximum", func(a, b SessionID) Command { return cSem("t", a, 1_000_001, 1, 0) },
			CodeInvalidArgument, "limit 1000001 is out of range"},
		{"more permits than the limit", func(a, b SessionID) Command { return cSem("t", a, 5, 6, 0) },
			CodeInvalidArgument, "permits 6 is out of range: use 1..limit (5); 0 means 1"},
		{"negative permits", func(a, b SessionID) Command { return cSem("t", a, 5, -1, 0) },
			CodeInvalidArgument, "permits -1 is out of range"},
		{"a mode", func(a, b SessionID) Command { c := cSem("t", a, 5, 1, 0); c.Mode = ModeRead; return c },
			CodeInvalidArgument, "a semaphore takes no mode"},
		{"a lock-delay", func(a, b SessionID) Command { c := cSem("t", a, 5, 1, 0); c.LockDelayMs = 10; return c },
			CodeInvalidArgument, "lock_delay_ms applies to mutexes only"},
		{"another limit than the first acquirer's", func(a, b SessionID) Command { return cSem("s", b, 3, 1, WaitForever) },
			CodeFailedPrecondition, "has limit 4, set by its first acquirer: acquire with limit 4"},
		{"the holder asks for other permits", func(a, b SessionID) Command { return cSem("s", a, 4, 3, 0) },
			CodeFailedPrecondition, "already holds semaphore \"s\" (2 permits): release it before asking for a different grant"},
		{"the waiter asks for other permits", func(a, b SessionID) Command { return cSem("s", b, 4, 1, 0) },
			CodeFailedPrecondition, "already waits for semaphore \"s\" (3 permits): cancel that wait first"},
		{"release without a token", func(a, b SessionID) Command { return cRelease(KindSemaphore, "s", a, 0) },
			CodeInvalidArgument, "release needs fencing_token"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			a, b := h.session(60_000), h.session(60_000)
			h.granted(cSem("s", a, 4, 2, 0))
			h.queued(cSem("s", b, 4, 3, WaitForever))
			h.fails(tc.cmd(a, b), tc.code, tc.phrase)
		})
	}
}
