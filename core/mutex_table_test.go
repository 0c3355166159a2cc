package core

import (
	"bytes"
	"fmt"
	"testing"
)

func TestMutexTable(t *testing.T) {
	t.Run("try-acquire of a free mutex grants a token from the log index", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)
		r := h.ok(cMutex("a", s, 0))
		if r.Outcome != OutcomeGranted || r.Session != s || r.Token.LogIndex() != h.idx {
			t.Fatalf("acquire: %+v (index %d)", r, h.idx)
		}
		if !h.fence(KindMutex, "a", r.Token) {
			t.Fatal("the grant's token does not fence")
		}
	})
	t.Run("try-acquire of a held mutex is refused and changes nothing", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(5_000), h.session(5_000)
		h.granted(cMutex("a", a, 0))
		twin := h.twin()
		r := h.ok(cMutex("a", b, 0))
		twin.run()
		if r.Outcome != OutcomeRefused || r.Session != b || r.Token != 0 || r.Waiter != 0 {
			t.Fatalf("try: %+v", r)
		}
		if h.m.Hash() != twin.m.Hash() {
			t.Fatal("a refused try changed the state")
		}
	})
	t.Run("holder metadata: owner and value in status, with times", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)
		c := cMutex("a", s, 0)
		c.Owner, c.Value = "alice@host-1", []byte("pid=42")
		tok := h.granted(c)
		b := h.session(9_000)
		w := h.queued(Command{Op: OpAcquire, Kind: KindMutex, Name: "a", Session: b, WaitMs: 3_000, Owner: "bob"})
		st := h.status(KindMutex, "a")
		want := Holder{Session: s, Token: tok, Owner: "alice@host-1", Value: []byte("pid=42"), AcquiredAt: tblStart, ExpiresAt: tblStart + 5_000}
		if len(st.Holders) != 1 || st.Holders[0].Owner != want.Owner || !bytes.Equal(st.Holders[0].Value, want.Value) ||
			st.Holders[0].Session != s || st.Holders[0].Token != tok || st.Holders[0].AcquiredAt != want.AcquiredAt ||
			st.Holders[0].ExpiresAt != want.ExpiresAt {
			t.Fatalf("holders %+v, want %+v", st.Holders, want)
		}
		if len(st.Waiters) != 1 || st.Waiters[0] != (Waiter{ID: w, Session: b, Owner: "bob", EnqueuedAt: tblStart, Deadline: tblStart + 3_000}) {
			t.Fatalf("waiters %+v", st.Waiters)
		}
		if st.Kind != KindMutex || st.Name != "a" {
			t.Fatalf("status names %v %q", st.Kind, st.Name)
		}
	})
	t.Run("a queued request times out at its deadline", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.granted(cMutex("a", a, 0))
		r := h.ok(cMutex("a", b, 1_500))
		if r.Outcome != OutcomeQueued || r.Deadline != tblStart+1_500 {
			t.Fatalf("queue: %+v", r)
		}
		if effs := h.advance(1_499); len(effs) != 0 {
			t.Fatalf("early:\n%s", tblEffects(effs))
		}
		e := tblOne(t, h.advance(1), EffectWaitEnded)
		if e.Waiter != r.Waiter || e.Reason != ReasonTimeout || e.Session != b {
			t.Fatalf("wait ended %+v", e)
		}
		if len(h.waiting(KindMutex, "a")) != 0 || len(h.holders(KindMutex, "a")) != 1 {
			t.Fatal("the timed-out waiter is still queued, or the holder went")
		}
	})
	t.Run("release hands the mutex to the waiters in FIFO order", func(t *testing.T) {
		h := newTblHarness(t)
		s := []SessionID{h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)}
		tok := h.granted(cMutex("a", s[0], 0))
		var ws []WaiterID
		for _, x := range s[1:] {
			ws = append(ws, h.queued(cMutex("a", x, WaitForever)))
		}
		for i := 1; i < len(s); i++ {
			out := h.run(cRelease(KindMutex, "a", s[i-1], tok))
			if r := out.Results[0]; r.Outcome != OutcomeDone || r.Token != tok || r.Session != s[i-1] {
				t.Fatalf("release: %+v", r)
			}
			rel := tblOne(t, out.Effects, EffectReleased)
			g := tblOne(t, out.Effects, EffectGranted)
			if rel.Reason != ReasonReleased || rel.Token != tok || g.Session != s[i] || g.Waiter != ws[i-1] || g.Token <= tok {
				t.Fatalf("hand-off %d:\n%s", i, tblEffects(out.Effects))
			}
			tok = g.Token
		}
		h.ok(cRelease(KindMutex, "a", s[3], tok))
		if c := h.m.Counts(); c.Objects != 0 || c.Holds != 0 || c.Waiters != 0 {
			t.Fatalf("an idle mutex was kept: %+v", c)
		}
	})
	t.Run("a timeout in the middle of the queue keeps the order", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c, d := h.session(60_000), h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("a", a, 0))
		wb := h.queued(cMutex("a", b, 10_000))
		h.queued(cMutex("a", c, 1_000))
		wd := h.queued(cMutex("a", d, 10_000))
		h.advance(1_000)
		if got := h.waiting(KindMutex, "a"); len(got) != 2 || got[0] != wb || got[1] != wd {
			t.Fatalf("queue %v", got)
		}
		g := tblOne(t, h.run(cRelease(KindMutex, "a", a, tok)).Effects, EffectGranted)
		if g.Session != b {
			t.Fatalf("granted %+v", g)
		}
	})
	t.Run("re-acquire by the holder returns the same grant", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("a", a, 0))
		h.queued(cMutex("a", b, WaitForever))
		twin := h.twin()
		for _, wait := range []int64{0, 5_000, WaitForever} {
			out := h.run(cMutex("a", a, wait))
			twin.run()
			if r := out.Results[0]; r.Outcome != OutcomeGranted || r.Token != tok || r.Session != a || len(out.Effects) != 0 {
				t.Fatalf("re-acquire with wait %d: %+v", wait, r)
			}
		}
		if heardless(h.m) != heardless(twin.m) {
			t.Fatal("re-acquire changed the state")
		}
		if hd := h.m.holds[tok]; hd == nil || !hd.shared || twin.m.holds[tok].shared {
			t.Fatal("re-acquire did not record that another request heard of the grant")
		}
	})
	t.Run("re-acquire by a waiter returns its place in the queue", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.granted(cMutex("a", a, 0))
		w := h.queued(cMutex("a", b, 5_000))
		h.advance(1_000)
		r := h.ok(cMutex("a", b, 5_000))
		if r.Outcome != OutcomeQueued || r.Waiter != w || r.Deadline != tblStart+5_000 {
			t.Fatalf("re-queue: %+v", r)
		}
		if len(h.waiting(KindMutex, "a")) != 1 {
			t.Fatal("queued twice")
		}
	})
	t.Run("release takes the token: no session needed, and only that grant ends", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tokA := h.granted(cMutex("a", a, 0))
		tokB := h.granted(cMutex("b", a, 0))
		r := h.ok(cRelease(KindMutex, "a", 0, tokA))
		if r.Outcome != OutcomeDone || r.Session != a || r.Token != tokA {
			t.Fatalf("release: %+v", r)
		}
		if h.fence(KindMutex, "a", tokA) || !h.fence(KindMutex, "b", tokB) {
			t.Fatal("release by token ended the wrong grant")
		}
	})
	t.Run("a stale token after a hand-off is refused and changes nothing", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		old := h.granted(cMutex("a", a, 0))
		h.ok(cRelease(KindMutex, "a", a, old))
		cur := h.granted(cMutex("a", b, 0))
		h.fails(cRelease(KindMutex, "a", a, old), CodeConflict,
			"does not hold mutex \"a\": the grant ended or belongs to someone else")
		h.fails(cRelease(KindMutex, "a", 0, old), CodeConflict, "token")
		if !h.fence(KindMutex, "a", cur) || h.fence(KindMutex, "a", old) {
			t.Fatal("fencing after a stale release")
		}
	})
	t.Run("a release by a session that ended says the session is gone", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		old := h.granted(cMutex("a", a, 0))
		h.advance(1_000) // a expires; the mutex is free
		h.fails(cRelease(KindMutex, "a", a, old), CodeConflict,
			fmt.Sprintf("session %d is gone (it expired or was closed), and its grants ended with it: token %d no longer holds mutex \"a\"", a, old))
		cur := h.granted(cMutex("a", b, 0))
		// Whoever holds it now: still the session's end that explains it.
		h.fails(cRelease(KindMutex, "a", a, old), CodeConflict, fmt.Sprintf("session %d is gone", a))
		if !h.fence(KindMutex, "a", cur) {
			t.Fatal("the refused release ended the new holder's grant")
		}
	})
	t.Run("lock-delay: after the holder's session expires nobody gets the mutex until the delay ends", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(1_000), h.session(60_000), h.session(60_000)
		acq := cMutex("a", a, 0)
		acq.LockDelayMs = 3_000
		h.granted(acq)
		w := h.queued(cMutex("a", b, WaitForever))
		effs := h.advance(1_000) // a expires at 2000
		if len(tblFind(effs, EffectGranted)) != 0 {
			t.Fatalf("granted during the lock-delay:\n%s", tblEffects(effs))
		}
		if st := h.status(KindMutex, "a"); st.LockDelayUntil != tblStart+1_000+3_000 || len(st.Holders) != 0 {
			t.Fatalf("status during the delay: %+v", st)
		}
		if r := h.ok(cMutex("a", c, 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("try during the delay: %+v", r)
		}
		if effs := h.advance(2_999); len(effs) != 0 {
			t.Fatalf("delay ended early:\n%s", tblEffects(effs))
		}
		g := tblOne(t, h.advance(1), EffectGranted)
		if g.Session != b || g.Waiter != w {
			t.Fatalf("grant after the delay %+v", g)
		}
		if st := h.status(KindMutex, "a"); st.LockDelayUntil != 0 {
			t.Fatalf("delay still shown: %+v", st)
		}
	})
	t.Run("lock-delay keeps an unheld name alive, then lets it go", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(1_000)
		acq := cMutex("a", a, 0)
		acq.LockDelayMs = 500
		h.granted(acq)
		h.advance(1_000)
		if n := h.m.Counts().Objects; n != 1 {
			t.Fatalf("%d objects during the delay", n)
		}
		h.advance(500)
		if n := h.m.Counts().Objects; n != 0 {
			t.Fatalf("%d objects after the delay", n)
		}
	})
	t.Run("no lock-delay after a clean release or a close", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		acq := cMutex("a", a, 0)
		acq.LockDelayMs = 3_000
		tok := h.granted(acq)
		h.queued(cMutex("a", b, WaitForever))
		if g := tblOne(t, h.run(cRelease(KindMutex, "a", a, tok)).Effects, EffectGranted); g.Session != b {
			t.Fatalf("grant %+v", g)
		}
		c := h.session(60_000)
		acq = cMutex("b", c, 0)
		acq.LockDelayMs = 3_000
		h.granted(acq)
		h.ok(cClose(c))
		if st := h.status(KindMutex, "b"); st.LockDelayUntil != 0 || len(st.Holders) != 0 {
			t.Fatalf("lock-delay after a close: %+v", st)
		}
		h.granted(cMutex("b", a, 0))
	})
	t.Run("max hold ends a grant while its session lives, with lock-delay", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		acq := cMutex("a", a, 0)
		acq.MaxHoldMs, acq.LockDelayMs = 2_000, 1_000
		tok := h.granted(acq)
		if st := h.status(KindMutex, "a"); st.Holders[0].ExpiresAt != tblStart+2_000 ||
			st.Holders[0].MaxHoldUntil != tblStart+2_000 || st.Holders[0].LockDelayMs != 1_000 {
			t.Fatalf("holder %+v, want ExpiresAt and MaxHoldUntil at the max hold and the lock-delay shown", st.Holders[0])
		}
		h.queued(cMutex("a", b, WaitForever))
		effs := h.advance(2_000)
		rel := tblOne(t, effs, EffectReleased)
		if rel.Reason != ReasonMaxHold || rel.Token != tok || !h.live(a) || len(tblFind(effs, EffectGranted)) != 0 {
			t.Fatalf("max hold:\n%s", tblEffects(effs))
		}
		if g := tblOne(t, h.advance(1_000), EffectGranted); g.Session != b {
			t.Fatalf("grant %+v", g)
		}
	})
	t.Run("a waiter's max hold counts from its grant", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("a", a, 0))
		acq := cMutex("a", b, WaitForever)
		acq.MaxHoldMs = 1_000
		h.queued(acq)
		h.advance(5_000)
		h.ok(cRelease(KindMutex, "a", a, tok))
		if effs := h.advance(999); len(effs) != 0 {
			t.Fatalf("early:\n%s", tblEffects(effs))
		}
		if rel := tblOne(t, h.advance(1), EffectReleased); rel.Reason != ReasonMaxHold || rel.Session != b {
			t.Fatalf("release %+v", rel)
		}
	})
	t.Run("a waiter whose session expires is answered at once with session_expired", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(1_000)
		h.granted(cMutex("a", a, 0))
		w := h.queued(cMutex("a", b, WaitForever))
		effs := h.advance(1_000)
		e := tblOne(t, effs, EffectWaitEnded)
		if e.Waiter != w || e.Reason != ReasonSessionExpired || e.Session != b {
			t.Fatalf("wait ended %+v", e)
		}
		if tblOne(t, effs, EffectSessionExpired).Session != b {
			t.Fatal("no session_expired")
		}
	})
	t.Run("release in the entry where the waiter's session expires grants nobody", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(1_000)
		tok := h.granted(cMutex("a", a, 0))
		h.queued(cMutex("a", b, WaitForever))
		out := h.apply(tblStart+1_000, cRelease(KindMutex, "a", a, tok))
		if g := tblFind(out.Effects, EffectGranted); len(g) != 0 {
			t.Fatalf("granted to an expired session:\n%s", tblEffects(out.Effects))
		}
	})
	t.Run("holder and waiter sessions expiring together: the waiter is never granted", func(t *testing.T) {
		for _, holderFirst := range []bool{true, false} {
			h := newTblHarness(t)
			var a, b SessionID
			if holderFirst { // the holder's session timer fires first
				a, b = h.session(1_000), h.session(1_000)
			} else {
				b, a = h.session(1_000), h.session(1_000)
			}
			h.granted(cMutex("a", a, 0))
			h.queued(cMutex("a", b, WaitForever))
			effs := h.advance(1_000)
			if g := tblFind(effs, EffectGranted); len(g) != 0 {
				t.Fatalf("holder first %v: granted to a dying session:\n%s", holderFirst, tblEffects(effs))
			}
			if h.m.Counts().Objects != 0 {
				t.Fatal("mutex kept")
			}
		}
	})
	t.Run("a clock jump past both deadlines grants nobody", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(1_000)
		b := h.session(1_500)
		c := h.session(60_000)
		h.granted(cMutex("a", a, 0))
		h.queued(cMutex("a", b, WaitForever))
		wc := h.queued(cMutex("a", c, WaitForever))
		// One entry moves time by 2 s: a's holder expires at +1 s while b's
		// session, expiring at +1.5 s, is already dead at the entry's time.
		effs := h.apply(h.now() + 2_000).Effects
		g := tblOne(t, effs, EffectGranted)
		if g.Session != c || g.Waiter != wc {
			t.Fatalf("grant went to %+v:\n%s", g, tblEffects(effs))
		}
	})
	t.Run("a head whose wait ends as the holder releases is not granted", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("a", a, 0))
		h.queued(cMutex("a", b, 1_000))
		h.queued(cMutex("a", c, WaitForever))
		out := h.apply(tblStart+1_000, cRelease(KindMutex, "a", a, tok))
		if g := tblOne(t, out.Effects, EffectGranted); g.Session != c {
			t.Fatalf("granted %+v", g)
		}
		if e := tblOne(t, out.Effects, EffectWaitEnded); e.Session != b || e.Reason != ReasonTimeout {
			t.Fatalf("wait ended %+v", e)
		}
	})
	t.Run("cancel withdraws a queued request and the queue moves on", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("a", a, 0))
		wb := h.queued(cMutex("a", b, WaitForever))
		wc := h.queued(cMutex("a", c, WaitForever))
		out := h.run(cCancel(b, wb))
		if r := out.Results[0]; r.Outcome != OutcomeDone || r.Waiter != wb || r.Session != b {
			t.Fatalf("cancel: %+v", r)
		}
		if e := tblOne(t, out.Effects, EffectWaitEnded); e.Reason != ReasonCancelled || e.Waiter != wb {
			t.Fatalf("effect %+v", e)
		}
		if g := tblOne(t, h.run(cRelease(KindMutex, "a", a, tok)).Effects, EffectGranted); g.Waiter != wc {
			t.Fatalf("grant %+v", g)
		}
		h.ok(cCancel(0, h.queued(cMutex("a", b, WaitForever)))) // by waiter id alone
	})
	t.Run("tokens strictly increase per name within one entry", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		old := h.granted(cMutex("a", a, 0))
		h.queued(cMutex("a", b, WaitForever))
		next := FencingToken(h.idx+1) << SlotBits // the next entry's identifiers, in order
		out := h.run(
			cRelease(KindMutex, "a", a, old),  // hands "a" to b: token next
			cRelease(KindMutex, "a", b, next), // b releases it
			cMutex("a", a, 0),                 // a again: next+1
			cRelease(KindMutex, "a", a, next+1),
			cMutex("a", b, 0), // b again: next+2
		)
		for i, r := range out.Results {
			if r.Err != nil {
				t.Fatalf("command %d: %v", i, r.Err)
			}
		}
		var toks []FencingToken
		for _, g := range tblFind(out.Effects, EffectGranted) {
			toks = append(toks, g.Token)
		}
		if len(toks) != 3 || toks[0] != next || toks[1] != next+1 || toks[2] != next+2 || old >= next ||
			out.Results[2].Token != next+1 || out.Results[4].Token != next+2 {
			t.Fatalf("old %d, grants %v, results %+v", old, toks, out.Results)
		}
	})
	t.Run("CheckFence is true only for the current grant", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		t1 := h.granted(cMutex("a", a, 0))
		if !h.fence(KindMutex, "a", t1) || h.fence(KindMutex, "b", t1) || h.fence(KindSemaphore, "a", t1) ||
			h.fence(KindMutex, "a", t1+1) || h.fence(KindMutex, "a", 0) {
			t.Fatal("fence of the current grant")
		}
		h.ok(cRelease(KindMutex, "a", a, t1))
		if h.fence(KindMutex, "a", t1) {
			t.Fatal("a released token still fences")
		}
		t2 := h.granted(cMutex("a", b, 0))
		if h.fence(KindMutex, "a", t1) || !h.fence(KindMutex, "a", t2) {
			t.Fatal("fence after re-grant")
		}
	})
	t.Run("status of a free name is empty, not an error", func(t *testing.T) {
		h := newTblHarness(t)
		for k := KindMutex; k < kindCount; k++ {
			st := h.status(k, "nobody/uses/this")
			if st.Kind != k || st.Name != "nobody/uses/this" || len(st.Holders) != 0 || len(st.Waiters) != 0 || st.Limit != 0 {
				t.Fatalf("%v: %+v", k, st)
			}
		}
	})
}

func TestMutexErrorsTable(t *testing.T) {
	type setup struct {
		h          *tblHarness
		a, b       SessionID
		tok        FencingToken
		waiterOfB  WaiterID
		expiredSID SessionID
	}
	tests := []struct {
		name   string
		cmd    func(s setup) Command
		code   Code
		phrase string
	}{
		{"acquire without a session", func(s setup) Command { return cMutex("m", 0, 0) },
			CodeInvalidArgument, "acquire needs session_id: create a session first"},
		{"acquire with an unknown session", func(s setup) Command { return cMutex("m", 777, 0) },
			CodeNotFound, "session 777 does not exist"},
		{"acquire with an expired session", func(s setup) Command { return cMutex("free", s.expiredSID, 0) },
			CodeNotFound, "create a new session"},
		{"acquire without a kind", func(s setup) Command { c := cMutex("m", s.a, 0); c.Kind = 0; return c },
			CodeInvalidArgument, "acquire takes kind mutex, semaphore or rwlock, not kind(0)"},
		{"acquire of a barrier kind", func(s setup) Command { c := cMutex("m", s.a, 0); c.Kind = KindBarrier; return c },
			CodeInvalidArgument, "not barrier"},
		{"acquire of an election kind", func(s setup) Command { c := cMutex("m", s.a, 0); c.Kind = KindElection; return c },
			CodeInvalidArgument, "not election"},
		{"acquire of an unknown kind", func(s setup) Command { c := cMutex("m", s.a, 0); c.Kind = 99; return c },
			CodeInvalidArgument, "not kind(99)"},
		{"a mutex with a limit", func(s setup) Command { c := cMutex("m", s.a, 0); c.Limit = 2; return c },
			CodeInvalidArgument, "a mutex takes no limit, permits or mode: use a semaphore or an rwlock"},
		{"a mutex with permits", func(s setup) Command { c := cMutex("m", s.a, 0); c.Permits = 1; return c },
			CodeInvalidArgument, "a mutex takes no limit"},
		{"a mutex with a mode", func(s setup) Command { c := cMutex("m", s.a, 0); c.Mode = ModeRead; return c },
			CodeInvalidArgument, "a mutex takes no limit"},
		{"wait below -1", func(s setup) Command { return cMutex("m", s.a, -2) },
			CodeInvalidArgument, "wait_timeout_ms -2 is out of range: use 0 (try once), 1..3600000 ms, or -1"},
		{"wait above the maximum", func(s setup) Command { return cMutex("m", s.a, 3600*1000+1) },
			CodeInvalidArgument, "wait_timeout_ms 3600001 is out of range"},
		{"negative max hold", func(s setup) Command { c := cMutex("m", s.a, 0); c.MaxHoldMs = -1; return c },
			CodeInvalidArgument, "max_hold_ms -1 is out of range: use 0 (none) to 86400000"},
		{"max hold above the maximum", func(s setup) Command { c := cMutex("m", s.a, 0); c.MaxHoldMs = 24*3600*1000 + 1; return c },
			CodeInvalidArgument, "max_hold_ms 86400001 is out of range"},
		{"negative lock-delay", func(s setup) Command { c := cMutex("m", s.a, 0); c.LockDelayMs = -1; return c },
			CodeInvalidArgument, "lock_delay_ms -1 is out of range: use 0 (none) to 60000"},
		{"lock-delay above the maximum", func(s setup) Command { c := cMutex("m", s.a, 0); c.LockDelayMs = 60_001; return c },
			CodeInvalidArgument, "lock_delay_ms 60001 is out of range"},
		{"acquire with a token", func(s setup) Command { c := cMutex("m", s.a, 0); c.Token = s.tok; return c },
			CodeInvalidArgument, "acquire does not take fencing_token: leave it empty"},
		{"acquire with a participant", func(s setup) Command { c := cMutex("m", s.a, 0); c.Participant = "p"; return c },
			CodeInvalidArgument, "acquire does not take participant"},
		{"release without a token", func(s setup) Command { return cRelease(KindMutex, "m", s.a, 0) },
			CodeInvalidArgument, "release needs fencing_token: give the token the acquire answered"},
		{"release without a kind", func(s setup) Command { return cRelease(0, "m", s.a, s.tok) },
			CodeInvalidArgument, "release takes kind mutex, semaphore or rwlock"},
		{"release by another session", func(s setup) Command { return cRelease(KindMutex, "m", s.b, s.tok) },
			CodeConflict, "does not hold mutex \"m\": the grant ended or belongs to someone else"},
		{"release with a token of another name", func(s setup) Command { return cRelease(KindMutex, "other", s.a, s.tok) },
			CodeConflict, "mutex \"other\" is not held: token"},
		{"release with a token of another kind", func(s setup) Command { return cRelease(KindSemaphore, "m", s.a, s.tok) },
			CodeConflict, "semaphore \"m\" is not held"},
		{"release with a made-up token", func(s setup) Command { return cRelease(KindMutex, "m", 0, s.tok+1) },
			CodeConflict, "the grant ended or belongs to someone else"},
		{"release with a waiter", func(s setup) Command { c := cRelease(KindMutex, "m", s.a, s.tok); c.Waiter = 1; return c },
			CodeInvalidArgument, "release does not take waiter_id"},
		{"cancel without a waiter", func(s setup) Command { return cCancel(s.b, 0) },
			CodeInvalidArgument, "cancel needs waiter_id: give the waiter_id the queued request answered"},
		{"cancel of an unknown waiter", func(s setup) Command { return cCancel(s.b, 12345) },
			CodeNotFound, "waiter 12345 is not queued"},
		{"cancel of another session's waiter", func(s setup) Command { return cCancel(s.a, s.waiterOfB) },
			CodeNotFound, "it was granted, timed out or cancelled already"},
		{"cancel with a name", func(s setup) Command { c := cCancel(s.b, s.waiterOfB); c.Name = "m"; return c },
			CodeInvalidArgument, "cancel does not take name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			s := setup{h: h, a: h.session(60_000), b: h.session(60_000)}
			s.expiredSID = h.session(1_000)
			s.tok = h.granted(cMutex("m", s.a, 0))
			s.waiterOfB = h.queued(cMutex("m", s.b, WaitForever))
			h.advance(1_000)
			h.fails(tc.cmd(s), tc.code, tc.phrase)
		})
	}
}
