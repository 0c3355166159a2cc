package replica

import (
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// cancelsIn counts the OpCancels for waiter in proposals.
func cancelsIn(rd Ready, waiter core.WaiterID) int {
	n := 0
	for _, p := range rd.Proposals {
		for _, c := range p.Proposal.Commands {
			if c.Op == core.OpCancel && c.Waiter == waiter {
				n++
			}
		}
	}
	return n
}

// withdrawHarness leads, with m held by a and b's acquire (request 4)
// queued behind it, and answers b's waiter.
func withdrawHarness(t *testing.T) (h *harness, sa core.SessionID, waiter core.WaiterID) {
	h = newHarness(t, Config{})
	h.lead(1)
	sa = h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	h.ready(true)
	if r := h.reply(4); r.Kind != ReplyQueued {
		t.Fatalf("b's acquire: %+v, want queued", r)
	}
	return h, sa, h.reply(4).Result.Waiter
}

// TestWithdrawWaitsForTheLog: a withdrawn wait stays a request: its cancel
// is proposed, and its answer is the wait's end from the log.
func TestWithdrawWaitsForTheLog(t *testing.T) {
	h, _, waiter := withdrawHarness(t)
	h.step(WithdrawEvent(4))
	rd := h.ready(true)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("want one OpCancel for waiter %d, got %+v", waiter, rd.Proposals)
	}
	if r := h.reply(4); r.Kind != ReplyWaitEnded || r.Reason != core.ReasonCancelled {
		t.Fatalf("the withdrawn request's answer: %+v, want its wait ended, cancelled", r)
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

// TestWithdrawSurvivesARefusedProposalAndARoleChange: a cancel in a
// proposal that was refused, or dropped when the role ended before it was
// proposed, is asked again; without it the wait was granted later, to a
// caller whose withdrawal was lost.
func TestWithdrawSurvivesARefusedProposalAndARoleChange(t *testing.T) {
	h, _, waiter := withdrawHarness(t)
	h.step(WithdrawEvent(4))
	rd := h.ready(false)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("want the cancel proposed, got %+v", rd.Proposals)
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	rd = h.ready(false)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("after its proposal was refused, want the cancel asked again, got %+v", rd.Proposals)
	}
	// Its new proposal is lost with the role: another member leads, then
	// this one again.
	h.step(LeadershipEvent(false, 2, 2))
	h.step(LeadershipEvent(true, 3, 1))
	rd = h.ready(true)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("after a change of role, want the cancel asked again, got %+v", rd.Proposals)
	}
	if r := h.reply(4); r.Kind != ReplyWaitEnded || r.Reason != core.ReasonCancelled {
		t.Fatalf("the withdrawn request's answer: %+v, want its wait ended, cancelled", r)
	}
}

// TestWithdrawBeforeItQueues: a request withdrawn on its way (a retry of
// one withdrawn before) is withdrawn once it queues, and its caller hears
// the end.
func TestWithdrawBeforeItQueues(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	h.step(WithdrawEvent(4))
	h.ready(true)
	if r := h.reply(4); r.Kind != ReplyWaitEnded || r.Reason != core.ReasonCancelled {
		t.Fatalf("a request withdrawn before it queued: %+v, want its wait ended, cancelled", r)
	}
}

// TestWithdrawnAfterItsGrantHearsTheGrant: the grant that the log applied
// before the cancel is the answer, and the cancel changes nothing.
func TestWithdrawnAfterItsGrantHearsTheGrant(t *testing.T) {
	h, sa, waiter := withdrawHarness(t)
	token := h.reply(3).Result.Token
	rel := cmd("a", 3, core.OpRelease)
	rel.Kind, rel.Name, rel.Session, rel.Token = core.KindMutex, "m", sa, token
	h.step(RequestEvent(5, rel))
	rd := h.ready(false) // the release is proposed, not applied yet
	h.step(WithdrawEvent(4))
	for _, p := range rd.Proposals {
		h.apply(p)
	}
	h.ready(true)
	if r := h.reply(4); r.Kind != ReplyGranted {
		t.Fatalf("a wait granted before its cancel applied: %+v, want the grant", r)
	}
	st, err := h.m.Status(core.KindMutex, "m")
	if err != nil || len(st.Holders) != 1 || st.Holders[0].Session == sa {
		t.Fatalf("after the grant and the late cancel of waiter %d: %+v %v, want b holding", waiter, st, err)
	}
}
