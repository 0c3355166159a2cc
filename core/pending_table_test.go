package core

import (
	"testing"

	"pgregory.net/rapid"
)

// Tests of the pending-results rule (dedupe.go) and of abandon (abandon.go).

// pending returns c with a dedupe key and the lowest seq its client waits for.
func pending(c Command, client string, seq, low uint64) Command {
	c.ClientID, c.Seq, c.LowestPending = client, seq, low
	return c
}

func cAbandon(kind Kind, name string, s SessionID, target uint64) Command {
	return Command{Op: OpAbandon, Kind: kind, Name: name, Session: s, TargetSeq: target}
}

func TestPendingTable(t *testing.T) {
	t.Run("more requests in flight than the window are all kept while pending", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeWindow = 4 })
		// Seqs 1..40 arrive in reverse; none answered yet, so the lowest
		// pending stays 1 and every result must stay.
		first := map[uint64]Result{}
		for seq := uint64(40); seq >= 1; seq-- {
			first[seq] = h.ok(pending(cCreate(60_000), "c", seq, 1))
		}
		for seq := uint64(1); seq <= 40; seq++ {
			if r := h.tblRetry(pending(cCreate(60_000), "c", seq, 1)); !tblSame(r, first[seq]) {
				t.Fatalf("retry of %d answered %+v, first %+v", seq, r, first[seq])
			}
		}
		if n := h.m.Counts().Sessions; n != 40 {
			t.Fatalf("%d sessions for 40 distinct requests", n)
		}
	})
	t.Run("results below the lowest pending seq are forgotten and their retries refused", func(t *testing.T) {
		h := newTblHarness(t)
		for seq := uint64(1); seq <= 10; seq++ {
			h.ok(pending(cCreate(60_000), "c", seq, 1))
		}
		kept := h.ok(pending(cCreate(60_000), "c", 11, 8))
		h.fails(pending(cCreate(60_000), "c", 7, 7), CodeFailedPrecondition, "request_seq 7 of client \"c\" was forgotten")
		for seq := uint64(8); seq <= 10; seq++ {
			h.tblRetry(pending(cCreate(60_000), "c", seq, 8))
		}
		if r := h.tblRetry(pending(cCreate(60_000), "c", 11, 8)); !tblSame(r, kept) {
			t.Fatalf("retry of 11 answered %+v, first %+v", r, kept)
		}
	})
	t.Run("a request that arrives after the client stopped waiting for it is never applied", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		h.ok(pending(cMutex("other", s, 0), "c", 6, 6)) // the client no longer waits for 1..5
		h.fails(pending(cMutex("m", s, 0), "c", 3, 3), CodeFailedPrecondition, "request_seq 3 of client \"c\" was forgotten")
		if len(h.holders(KindMutex, "m")) != 0 {
			t.Fatal("a request below the lowest pending seq was applied")
		}
	})
	t.Run("a client over its pending limit is refused until it moves its lowest pending seq", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.MaxPendingPerClient = 3 })
		for seq := uint64(1); seq <= 3; seq++ {
			h.ok(pending(cCreate(60_000), "c", seq, 1))
		}
		h.fails(pending(cCreate(60_000), "c", 4, 1), CodeResourceExhausted, "client \"c\" has 3 requests pending at or above lowest_pending_seq 1; at most 3")
		h.ok(pending(cCreate(60_000), "c", 4, 2)) // seq 1 answered: room for one more
		h.ok(pending(cCreate(60_000), "c", 5, 5))
		h.ok(with(cCreate(60_000), "d", 1)) // another client is not held back
	})
	t.Run("the results kept across all clients are bounded", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeWindow, l.MaxPendingPerClient, l.MaxDedupeResults = 2, 2, 4 })
		h.ok(pending(cCreate(60_000), "a", 1, 1))
		h.ok(pending(cCreate(60_000), "a", 2, 1))
		h.ok(pending(cCreate(60_000), "b", 1, 1))
		h.ok(pending(cCreate(60_000), "b", 2, 1))
		h.fails(pending(cCreate(60_000), "c", 1, 1), CodeResourceExhausted, "the server keeps 4 request results across all clients")
		h.ok(pending(cCreate(60_000), "a", 3, 3)) // drops a's 1 and 2 first
		h.ok(pending(cCreate(60_000), "c", 1, 1))
	})
	t.Run("a lowest pending seq must come with a client and not exceed the request's own", func(t *testing.T) {
		h := newTblHarness(t)
		h.fails(Command{Op: OpSessionCreate, TTLMs: 60_000, LowestPending: 3}, CodeInvalidArgument, "lowest_pending_seq 3 without a client_id")
		h.fails(pending(cCreate(60_000), "c", 2, 3), CodeInvalidArgument, "lowest_pending_seq 3 is above request_seq 2")
	})
	t.Run("without a lowest pending seq the window of the last results still holds", func(t *testing.T) {
		h := newTblHarness(t, func(l *Limits) { l.DedupeWindow = 3 })
		for seq := uint64(1); seq <= 5; seq++ {
			h.ok(with(cCreate(60_000), "c", seq))
		}
		h.fails(with(cCreate(60_000), "c", 2), CodeFailedPrecondition, "request_seq 2")
		h.tblRetry(with(cCreate(60_000), "c", 3))
	})
}

func TestAbandonTable(t *testing.T) {
	t.Run("abandoned before it arrived, a request is answered cancelled and never applied", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		r := h.ok(pending(cAbandon(KindMutex, "m", s, 5), "c", 6, 5))
		if r.Outcome != OutcomeDone || r.Token != 0 {
			t.Fatalf("abandon answered %+v", r)
		}
		late := h.do(pending(cMutex("m", s, 0), "c", 5, 5))
		if late.Err != nil || late.Outcome != OutcomeRefused || late.Reason != ReasonCancelled || !late.Duplicate {
			t.Fatalf("the late request answered %+v, want refused (cancelled) as a duplicate", late)
		}
		if len(h.holders(KindMutex, "m")) != 0 {
			t.Fatal("the abandoned request was applied")
		}
	})
	t.Run("a queued request is withdrawn", func(t *testing.T) {
		h := newTblHarness(t)
		holder, s := h.session(60_000), h.session(60_000)
		tok := h.granted(cMutex("m", holder, 0))
		w := h.queued(pending(cMutex("m", s, WaitForever), "c", 1, 1))
		out := h.run(pending(cAbandon(KindMutex, "m", s, 1), "c", 2, 1))
		if e := tblOne(t, out.Effects, EffectWaitEnded); e.Waiter != w || e.Reason != ReasonCancelled {
			t.Fatalf("wait ended %+v", e)
		}
		h.ok(cRelease(KindMutex, "m", holder, tok))
		if len(h.holders(KindMutex, "m")) != 0 {
			t.Fatal("the withdrawn wait was granted")
		}
		if r := h.tblRetry(pending(cMutex("m", s, WaitForever), "c", 1, 1)); r.Outcome != OutcomeRefused || r.Reason != ReasonCancelled {
			t.Fatalf("a retry of the withdrawn request answered %+v", r)
		}
	})
	t.Run("a grant the request made is released and the queue moves on", func(t *testing.T) {
		h := newTblHarness(t)
		s, next := h.session(60_000), h.session(60_000)
		tok := h.granted(pending(cMutex("m", s, 0), "c", 1, 1))
		h.queued(cMutex("m", next, WaitForever))
		out := h.run(pending(cAbandon(KindMutex, "m", s, 1), "c", 2, 1))
		if r := out.Results[0]; r.Err != nil || r.Token != tok {
			t.Fatalf("abandon answered %+v, want the released token %d", r, tok)
		}
		if e := tblOne(t, out.Effects, EffectReleased); e.Token != tok || e.Reason != ReasonReleased {
			t.Fatalf("released %+v", e)
		}
		if got := h.holders(KindMutex, "m"); len(got) != 1 || got[0] != next {
			t.Fatalf("holders %v, want the next waiter %d", got, next)
		}
		if r := h.tblRetry(pending(cMutex("m", s, 0), "c", 1, 1)); r.Outcome != OutcomeRefused || r.Reason != ReasonCancelled {
			t.Fatalf("a retry of the abandoned grant answered %+v", r)
		}
	})
	t.Run("a grant made after the request queued is released", func(t *testing.T) {
		h := newTblHarness(t)
		holder, s := h.session(60_000), h.session(60_000)
		tok := h.granted(cSem("sem", holder, 1, 1, 0))
		h.queued(pending(cSem("sem", s, 1, 1, WaitForever), "c", 1, 1))
		h.ok(cRelease(KindSemaphore, "sem", holder, tok))
		if got := h.holders(KindSemaphore, "sem"); len(got) != 1 || got[0] != s {
			t.Fatalf("holders %v", got)
		}
		h.ok(pending(cAbandon(KindSemaphore, "sem", s, 1), "c", 2, 1))
		if got := h.holders(KindSemaphore, "sem"); len(got) != 0 {
			t.Fatalf("holders %v after abandon", got)
		}
	})
	t.Run("a re-acquire answered with an earlier grant leaves that grant alone", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		tok := h.granted(pending(cMutex("m", s, 0), "c", 1, 1))
		h.advance(10)
		if again := h.granted(pending(cMutex("m", s, 0), "c", 2, 2)); again != tok {
			t.Fatalf("re-acquire granted %d, want the existing %d", again, tok)
		}
		if r := h.ok(pending(cAbandon(KindMutex, "m", s, 2), "c", 3, 2)); r.Token != 0 {
			t.Fatalf("abandon released %d", r.Token)
		}
		if !h.fence(KindMutex, "m", tok) {
			t.Fatal("the earlier grant was released")
		}
	})
	t.Run("an elected campaign resigns and a barrier arrival leaves", func(t *testing.T) {
		h := newTblHarness(t)
		s, other := h.session(60_000), h.session(60_000)
		h.granted(pending(cCampaign("e", s, "v", 0), "c", 1, 1))
		h.queued(cCampaign("e", other, "w", WaitForever))
		h.ok(pending(cAbandon(KindElection, "e", s, 1), "c", 2, 1))
		if got := h.holders(KindElection, "e"); len(got) != 1 || got[0] != other {
			t.Fatalf("leader %v, want %d", got, other)
		}
		h.queued(pending(cArrive("b", s, 2, "p1", WaitForever), "c", 3, 3))
		h.ok(pending(cAbandon(KindBarrier, "b", s, 3), "c", 4, 3))
		if got := h.waiting(KindBarrier, "b"); len(got) != 0 {
			t.Fatalf("barrier waiters %v after abandon", got)
		}
	})
	t.Run("abandon refuses another session's or object's request and changes nothing", func(t *testing.T) {
		h := newTblHarness(t)
		s, other := h.session(60_000), h.session(60_000)
		h.granted(pending(cMutex("m", s, 0), "c", 1, 1))
		h.fails(pending(cAbandon(KindMutex, "m", other, 1), "c", 2, 1), CodeFailedPrecondition,
			"request_seq 1 of client \"c\" was not made by session")
		h.fails(pending(cAbandon(KindMutex, "n", s, 1), "c", 2, 1), CodeFailedPrecondition, "was not made by session")
		h.fails(pending(cAbandon(KindMutex, "m", s, 9), "c", 9, 9), CodeInvalidArgument, "equals this request's own request_seq")
		h.fails(pending(cAbandon(KindMutex, "m", s, 1), "c", 9, 2), CodeInvalidArgument, "lowest_pending_seq 2 is above abandon_seq 1")
		h.fails(Command{Op: OpAbandon, Kind: KindMutex, Name: "m", Session: s, TargetSeq: 1}, CodeInvalidArgument, "abandon needs client_id")
		h.fails(pending(cAbandon(KindBarrier+10, "m", s, 1), "c", 2, 1), CodeInvalidArgument, "abandon takes kind")
	})
	t.Run("abandon twice changes nothing the second time", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		h.granted(pending(cMutex("m", s, 0), "c", 1, 1))
		h.ok(pending(cAbandon(KindMutex, "m", s, 1), "c", 2, 1))
		h.tblRetry(pending(cAbandon(KindMutex, "m", s, 1), "c", 2, 1))
		twin := h.twin()
		h.ok(pending(cAbandon(KindMutex, "m", s, 1), "c", 3, 1))
		twin.ok(pending(cCreate(60_000), "x", 1, 1)) // keep the two machines' entry counts equal
		if len(h.holders(KindMutex, "m")) != 0 {
			t.Fatal("held after abandon")
		}
	})
	t.Run("abandon of a forgotten request is refused", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		h.ok(pending(cMutex("m", s, 0), "c", 5, 5))
		h.fails(pending(cAbandon(KindMutex, "m", s, 2), "c", 6, 2), CodeFailedPrecondition, "request_seq 2 of client \"c\" was forgotten")
	})
	t.Run("pending results and their entry indexes survive a snapshot", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(60_000)
		tok := h.granted(pending(cMutex("m", s, 0), "c", 1, 1))
		h.advance(10)
		h.granted(pending(cMutex("m", s, 0), "c", 2, 2)) // a re-acquire
		twin := h.twin()
		if r := twin.ok(pending(cAbandon(KindMutex, "m", s, 2), "c", 3, 2)); r.Token != 0 {
			t.Fatal("after a restore, abandon of a re-acquire released the earlier grant")
		}
		if !twin.fence(KindMutex, "m", tok) {
			t.Fatal("the earlier grant is gone after restore and abandon")
		}
	})
}

// TestPropertyPendingExactlyOnce sends a client's requests in a random order
// (as concurrent callers do), with lost replies and retries, while the
// lowest pending seq follows what the client has seen answered: every
// request is applied exactly once, and every retry is answered with the
// first result, however far the window of DedupeWindow results is exceeded.
func TestPropertyPendingExactlyOnce(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 120).Draw(rt, "requests")
		order := make([]uint64, n)
		for i := range order {
			order[i] = uint64(i + 1)
		}
		order = rapid.Permutation(order).Draw(rt, "order")
		h := newTblHarness(t, func(l *Limits) { l.DedupeWindow = 2 })
		answered := make([]bool, n+1)
		first := make([]*Result, n+1)
		low := func() uint64 {
			for i := 1; i <= n; i++ {
				if !answered[i] {
					return uint64(i)
				}
			}
			return uint64(n + 1)
		}
		send := func(seq uint64) Result {
			r := h.do(pending(cCreate(60_000), "c", seq, min(low(), seq)))
			if r.Err != nil {
				rt.Fatalf("seq %d (lowest pending %d): %v", seq, low(), r.Err)
			}
			if first[seq] == nil {
				if r.Duplicate {
					rt.Fatalf("the first delivery of %d answered as a duplicate", seq)
				}
				first[seq] = &r
			} else if !r.Duplicate || !tblSame(r, *first[seq]) {
				rt.Fatalf("retry of %d answered %+v, first %+v", seq, r, *first[seq])
			}
			return r
		}
		var lost []uint64 // delivered, reply lost: the client retries them
		for _, seq := range order {
			send(seq)
			if rapid.IntRange(0, 3).Draw(rt, "lost") == 0 {
				lost = append(lost, seq)
			} else {
				answered[seq] = true
			}
			if len(lost) > 0 && rapid.Bool().Draw(rt, "retry now") {
				i := rapid.IntRange(0, len(lost)-1).Draw(rt, "which")
				send(lost[i])
				answered[lost[i]] = true
				lost = append(lost[:i], lost[i+1:]...)
			}
		}
		for _, seq := range lost {
			send(seq)
			answered[seq] = true
		}
		if got := h.m.Counts().Sessions; got != n {
			rt.Fatalf("%d sessions for %d distinct requests", got, n)
		}
	})
}

func TestLabelsArePrintable(t *testing.T) {
	h := newTblHarness(t)
	h.fails(Command{Op: OpSessionCreate, TTLMs: 60_000, Owner: "x\x00\x1b[31mred"}, CodeInvalidArgument,
		"owner has an unprintable character U+0000 at byte 1: labels are printable UTF-8")
	s := h.session(60_000)
	h.fails(Command{Op: OpAcquire, Kind: KindMutex, Name: "m", Session: s, Owner: "a\x1b"}, CodeInvalidArgument, "owner has an unprintable character U+001B")
	h.fails(cArrive("b", s, 2, "p\x07", 0), CodeInvalidArgument, "participant has an unprintable character U+0007")
	h.fails(Command{Op: OpCampaign, Name: "e", Session: s, Owner: "bad\xff"}, CodeInvalidArgument, "owner is not valid UTF-8 at byte 3")
	h.ok(Command{Op: OpSessionCreate, TTLMs: 60_000, Owner: "worker-3 ✓"})
}
