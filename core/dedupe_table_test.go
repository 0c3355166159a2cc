package core

import "testing"

// tblRetry applies a retried command and checks that it is answered as a
// duplicate and changes nothing (the state equals a twin's that applied an
// empty entry).
func (h *tblHarness) tblRetry(c Command) Result {
	h.t.Helper()
	twin := h.twin()
	out := h.run(c)
	twin.run()
	r := out.Results[0]
	if r.Err != nil || !r.Duplicate {
		h.t.Fatalf("retry of %q/%d: want a duplicate, got %+v", c.ClientID, c.Seq, r)
	}
	if h.m.Hash() != twin.m.Hash() || len(out.Effects) != 0 {
		h.t.Fatalf("retry of %q/%d changed the state or had effects:\n%s", c.ClientID, c.Seq, tblEffects(out.Effects))
	}
	return r
}

// tblSame compares results ignoring Duplicate.
func tblSame(a, b Result) bool {
	a.Duplicate, b.Duplicate = false, false
	return a == b
}

func TestDedupeTable(t *testing.T) {
	t.Run("a forgotten client that reuses a seq keeps its new answer when the old wait ends", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeRetentionMs = 1_000 })
		holder, waiter := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("m", holder, 0))
		w := h.queued(with(cMutex("m", waiter, WaitForever), "c", 1))
		h.advance(1_500) // the client "c" is forgotten; its wait stays queued
		h.ok(cKeep(holder))
		h.ok(cKeep(waiter))
		other := h.ok(with(cCreate(5_000), "c", 1)) // the seq is reused for another request
		h.ok(cRelease(KindMutex, "m", holder, tok)) // the old wait is granted now
		if len(h.holders(KindMutex, "m")) != 1 || h.holders(KindMutex, "m")[0] != waiter {
			t.Fatalf("waiter %d was not granted", w)
		}
		if r := h.tblRetry(with(cCreate(5_000), "c", 1)); !tblSame(r, other) {
			t.Fatalf("the reused seq answers %+v, want its own result %+v", r, other)
		}
	})
	t.Run("a retry returns the first result and changes nothing", func(t *testing.T) {
		h := newTblHarness(t)
		first := h.ok(with(cCreate(5_000), "c", 1))
		if first.Duplicate {
			t.Fatal("the first execution is marked duplicate")
		}
		h.advance(1_000)
		if r := h.tblRetry(with(cCreate(5_000), "c", 1)); !tblSame(r, first) {
			t.Fatalf("retry %+v, first %+v", r, first)
		}
		if h.m.Counts().Sessions != 1 {
			t.Fatal("the retry created a session")
		}
	})
	t.Run("a retried acquire after a release does not acquire again", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		tok := h.granted(with(cMutex("m", s, 0), "c", 1))
		h.ok(with(cRelease(KindMutex, "m", s, tok), "c", 2))
		if r := h.tblRetry(with(cMutex("m", s, 0), "c", 1)); r.Token != tok || r.Outcome != OutcomeGranted {
			t.Fatalf("retry %+v", r)
		}
		if h.fence(KindMutex, "m", tok) || h.m.Counts().Objects != 0 {
			t.Fatal("the retry re-acquired")
		}
		// Retrying the release is as safe.
		h.tblRetry(with(cRelease(KindMutex, "m", s, tok), "c", 2))
	})
	t.Run("a retry in the same entry is a duplicate", func(t *testing.T) {
		h := newTblHarness(t)
		out := h.run(with(cCreate(1_000), "c", 1), with(cCreate(1_000), "c", 1))
		a, b := out.Results[0], out.Results[1]
		if a.Duplicate || !b.Duplicate || !tblSame(a, b) || h.m.Counts().Sessions != 1 {
			t.Fatalf("results %+v %+v", a, b)
		}
	})
	t.Run("a queued request's retry learns the grant", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("m", a, 0))
		q := h.ok(with(cMutex("m", b, WaitForever), "cb", 7))
		if r := h.tblRetry(with(cMutex("m", b, WaitForever), "cb", 7)); r.Outcome != OutcomeQueued || r.Waiter != q.Waiter {
			t.Fatalf("retry while queued %+v", r)
		}
		g := tblOne(t, h.run(cRelease(KindMutex, "m", a, tok)).Effects, EffectGranted)
		r := h.tblRetry(with(cMutex("m", b, WaitForever), "cb", 7))
		if r.Outcome != OutcomeGranted || r.Token != g.Token || r.Session != b {
			t.Fatalf("retry after the grant %+v (grant %+v)", r, g)
		}
	})
	t.Run("a queued request's retry learns how the wait ended", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.granted(cMutex("m", a, 0))
		h.granted(cCampaign("e", a, "", 0))
		h.ok(with(cMutex("m", b, 1_000), "cb", 1))
		q := h.ok(with(cCampaign("e", b, "", WaitForever), "cb", 2))
		h.advance(1_000)
		if r := h.tblRetry(with(cMutex("m", b, 1_000), "cb", 1)); r.Outcome != OutcomeRefused || r.Reason != ReasonTimeout {
			t.Fatalf("after a timeout %+v", r)
		}
		h.ok(cCancel(b, q.Waiter))
		if r := h.tblRetry(with(cCampaign("e", b, "", WaitForever), "cb", 2)); r.Outcome != OutcomeRefused || r.Reason != ReasonCancelled || r.Waiter != q.Waiter {
			t.Fatalf("after a cancel %+v", r)
		}
	})
	t.Run("a barrier arrival's retry learns its generation", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		h.ok(with(cArrive("bar", a, 2, "", WaitForever), "ca", 1))
		gen := h.ok(cArrive("bar", b, 2, "", WaitForever)).Generation
		if r := h.tblRetry(with(cArrive("bar", a, 2, "", WaitForever), "ca", 1)); r.Outcome != OutcomeReleased || r.Generation != gen {
			t.Fatalf("retry %+v, generation %d", r, gen)
		}
	})
	t.Run("a failed command is not remembered: its retry runs again", func(t *testing.T) {
		h := newTblHarness(t)
		h.fails(with(cMutex("m", 99, 0), "c", 1), CodeNotFound, "does not exist")
		h.fails(with(cMutex("m", 99, 0), "c", 1), CodeNotFound, "does not exist")
		if h.m.Counts().Clients != 0 {
			t.Fatal("a failed command recorded its client")
		}
		s := h.session(60_000)
		if r := h.ok(with(cMutex("m", s, 0), "c", 1)); r.Duplicate || r.Outcome != OutcomeGranted {
			t.Fatalf("the seq of a failed command %+v", r)
		}
	})
	t.Run("clients are independent", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.ok(with(cCreate(1_000), "c1", 1))
		b := h.ok(with(cCreate(1_000), "c2", 1))
		if b.Duplicate || a.Session == b.Session {
			t.Fatalf("%+v %+v", a, b)
		}
	})
	t.Run("the key, not the command, names the request", func(t *testing.T) {
		h := newTblHarness(t)
		first := h.ok(with(cCreate(1_000), "c", 1))
		if r := h.tblRetry(with(cCreate(2_000), "c", 1)); !tblSame(r, first) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("seqs may arrive out of order within the window", func(t *testing.T) {
		h := newTblHarness(t)
		h.ok(with(cCreate(1_000), "c", 5))
		if r := h.ok(with(cCreate(1_000), "c", 3)); r.Duplicate {
			t.Fatal("an unseen lower seq was taken for a retry")
		}
		h.tblRetry(with(cCreate(1_000), "c", 3))
		h.tblRetry(with(cCreate(1_000), "c", 5))
	})
	t.Run("a seq older than the window is refused", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeWindow = 3 })
		for seq := uint64(1); seq <= 4; seq++ {
			h.ok(with(cCreate(60_000), "c", seq))
		}
		h.fails(with(cCreate(60_000), "c", 1), CodeFailedPrecondition,
			"request_seq 1 of client \"c\" was forgotten (results at or below 1 are no longer kept): its outcome is unknown; read the status instead of retrying")
		for seq := uint64(2); seq <= 4; seq++ {
			h.tblRetry(with(cCreate(60_000), "c", seq))
		}
		h.ok(with(cCreate(60_000), "c", 9))
		h.fails(with(cCreate(60_000), "c", 2), CodeFailedPrecondition, "request_seq 2")
	})
	t.Run("an idle client is forgotten after the retention", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeRetentionMs = 5_000 })
		first := h.ok(with(cCreate(60_000), "c", 1))
		h.ok(with(cCreate(60_000), "d", 1))
		h.advance(3_000)
		h.ok(with(cCreate(60_000), "d", 2)) // d stays in use
		h.advance(1_999)
		h.tblRetry(with(cCreate(60_000), "c", 1))
		h.advance(1)
		if n := h.m.Counts().Clients; n != 1 {
			t.Fatalf("%d clients after c's retention", n)
		}
		if r := h.ok(with(cCreate(60_000), "c", 1)); r.Duplicate || r.Session == first.Session {
			t.Fatalf("a forgotten client's retry %+v", r)
		}
		h.tblRetry(with(cCreate(60_000), "d", 1))
	})
	t.Run("a retry does not keep a client remembered", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeRetentionMs = 5_000 })
		h.ok(with(cCreate(60_000), "c", 1))
		h.advance(4_000)
		h.tblRetry(with(cCreate(60_000), "c", 1))
		h.advance(1_000)
		if n := h.m.Counts().Clients; n != 0 {
			t.Fatalf("%d clients", n)
		}
	})
	t.Run("past MaxClients the least recently used client is forgotten", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.MaxClients = 2 })
		h.ok(with(cCreate(60_000), "a", 1))
		h.ok(with(cCreate(60_000), "b", 1))
		h.ok(with(cCreate(60_000), "a", 2)) // a is now the most recent
		h.ok(with(cCreate(60_000), "c", 1)) // b goes
		if n := h.m.Counts().Clients; n != 2 {
			t.Fatalf("%d clients", n)
		}
		h.tblRetry(with(cCreate(60_000), "a", 1))
		h.tblRetry(with(cCreate(60_000), "c", 1))
		if r := h.ok(with(cCreate(60_000), "b", 1)); r.Duplicate {
			t.Fatal("b was remembered")
		}
	})
	t.Run("remembered results survive a snapshot", func(t *testing.T) {
		h := newTblHarness(t)
		first := h.ok(with(cCreate(60_000), "c", 1))
		r := h.twin().tblRetry(with(cCreate(60_000), "c", 1))
		if !tblSame(r, first) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("a seq used again for another request is refused, not answered with the first's result", func(t *testing.T) {
		// A client whose seq counter repeated (or that restarted under its
		// old client_id) was answered a grant of another name, and took
		// itself for the holder of a lock nobody held.
		h := newTblHarness(t)
		s := h.session(60_000)
		tok := h.granted(with(cSem("sem", s, 5, 1, 0), "c", 1))
		const phrase = "request_seq 1 of client \"c\" was already used for another request"
		for _, other := range []Command{
			cMutex("other", s, 0),    // another kind and name
			cSem("sem2", s, 5, 1, 0), // another name
			cSem("sem", s, 5, 3, 0),  // other permits
			cRelease(KindSemaphore, "sem", s, tok),
			cCampaign("sem", s, "v", 0),
		} {
			h.fails(with(other, "c", 1), CodeFailedPrecondition, phrase)
		}
		if len(h.holders(KindMutex, "other")) != 0 {
			t.Fatal("the refused request acquired")
		}
		// A faithful retry is still answered, and one that resends the time
		// it has left to wait is one.
		if r := h.tblRetry(with(cSem("sem", s, 5, 1, 0), "c", 1)); r.Token != tok {
			t.Fatalf("retry %+v, want token %d", r, tok)
		}
		if r := h.tblRetry(with(cSem("sem", s, 5, 1, 700), "c", 1)); r.Token != tok {
			t.Fatalf("retry with another wait %+v, want token %d", r, tok)
		}
		// The request it answered survives a snapshot.
		h.twin().fails(with(cMutex("other", s, 0), "c", 1), CodeFailedPrecondition, phrase)
	})
	t.Run("an abandon's tombstone answers whatever request arrives under its seq", func(t *testing.T) {
		// The abandon knows only the seq it withdraws, not the request.
		h := newTblHarness(t)
		s := h.session(60_000)
		h.ok(with(cAbandon(KindMutex, "m", s, 4), "c", 5))
		r := h.tblRetry(with(cMutex("m", s, 0), "c", 4))
		if r.Outcome != OutcomeRefused || r.Reason != ReasonCancelled {
			t.Fatalf("the abandoned request %+v, want refused: cancelled", r)
		}
	})
}
