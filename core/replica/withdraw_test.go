package replica

import (
	"fmt"
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
// caller whose withdrawal was lost. A refused one waits a tick interval
// first: asked again at once, it went round the shard's loop as fast as
// the refusals came until the leader update arrived.
func TestWithdrawSurvivesARefusedProposalAndARoleChange(t *testing.T) {
	h, _, waiter := withdrawHarness(t)
	h.step(WithdrawEvent(4))
	rd := h.ready(false)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("want the cancel proposed, got %+v", rd.Proposals)
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	rd = h.ready(false)
	if cancelsIn(rd, waiter) != 0 {
		t.Fatalf("a refused cancel was asked again at once, with no pause: %+v", rd.Proposals)
	}
	if h.d.Owed() != 1 {
		t.Fatalf("while its cancel waits to be asked again, Owed is %d, want 1 (a closing node waits on it)", h.d.Owed())
	}
	h.advance(DefaultTickIntervalMs - 1)
	if rd = h.ready(false); cancelsIn(rd, waiter) != 0 {
		t.Fatalf("a refused cancel was asked again before a tick interval passed: %+v", rd.Proposals)
	}
	h.advance(1)
	rd = h.ready(false)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("a tick interval after its proposal was refused, want the cancel asked again, got %+v", rd.Proposals)
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
	if h.d.Owed() != 0 {
		t.Fatalf("after its cancel applied, Owed is %d, want 0", h.d.Owed())
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

// TestCancelOwedUntilItApplies: the cancel of a wait whose requester went
// away (CancelEvent: its caller's context ended, as a withdrawn stream's
// does after its grace) is owed until it applies: asked again after its
// proposal is refused and after a change of role. Sent once, a lost
// cancel let the wait be granted later to a session whose client had
// heard it failed.
func TestCancelOwedUntilItApplies(t *testing.T) {
	h, _, waiter := withdrawHarness(t)
	h.step(WithdrawEvent(4))
	h.step(CancelEvent(4))
	rd := h.ready(false)
	if cancelsIn(rd, waiter) == 0 {
		t.Fatalf("want the cancel proposed, got %+v", rd.Proposals)
	}
	for _, p := range rd.Proposals {
		h.step(ProposalFailedEvent(p.ID))
	}
	h.step(LeadershipEvent(false, 2, 2))
	h.step(LeadershipEvent(true, 3, 1))
	rd = h.ready(true)
	if n := cancelsIn(rd, waiter); n != 1 {
		t.Fatalf("after a refused proposal and a change of role, want the owed cancel asked once, got %d in %+v", n, rd.Proposals)
	}
	if st, err := h.m.Status(core.KindMutex, "m"); err != nil || len(st.Waiters) != 0 {
		t.Fatalf("the owed cancel applied, yet: %+v %v", st, err)
	}
	// Applied: nothing is owed any more.
	h.step(LeadershipEvent(false, 4, 2))
	h.step(LeadershipEvent(true, 5, 1))
	if rd := h.ready(true); cancelsIn(rd, waiter) != 0 {
		t.Fatalf("a cancel that applied was asked again: %+v", rd.Proposals)
	}
}

// TestOwedCancelsAreNotRepeated: refused proposals ask again only the
// cancels they carried, each once. Every waiter's cancel was asked again
// at every refusal before, so the list grew without bound while the
// refusals lasted.
func TestOwedCancelsAreNotRepeated(t *testing.T) {
	h := newHarness(t, Config{MaxBatch: 4})
	h.lead(1)
	sa := h.session(1, "a")
	h.step(RequestEvent(2, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	const waits = 10
	for i := range waits {
		id := RequestID(10 + 2*i)
		s := h.session(id, fmt.Sprintf("w%d", i))
		h.step(RequestEvent(id+1, acquire(fmt.Sprintf("w%d", i), 2, s, "m", core.WaitForever)))
		h.ready(true)
	}
	for i := range waits {
		h.step(WithdrawEvent(RequestID(10 + 2*i + 1)))
	}
	for round := range 8 {
		rd := h.ready(false)
		seen := map[core.WaiterID]int{}
		for _, p := range rd.Proposals {
			for _, c := range p.Proposal.Commands {
				if c.Op == core.OpCancel {
					seen[c.Waiter]++
				}
			}
		}
		for w, n := range seen {
			if n > 1 {
				t.Fatalf("round %d: waiter %d's cancel asked %d times in one go", round, w, n)
			}
		}
		if len(d(h).cancels) > waits {
			t.Fatalf("round %d: %d cancels queued for %d waits", round, len(d(h).cancels), waits)
		}
		for _, p := range rd.Proposals {
			h.step(ProposalFailedEvent(p.ID))
		}
		h.advance(DefaultTickIntervalMs)
	}
	h.ready(true)
	if st, err := h.m.Status(core.KindMutex, "m"); err != nil || len(st.Waiters) != 0 {
		t.Fatalf("after the refusals ended, the withdrawn waits are still queued: %+v %v", st.Waiters, err)
	}
}

// d is the harness's driver, for a look at what it queued.
func d(h *harness) *Driver { return h.d }

// TestOwedCancelOutlivesARefusedCancelAndASnapshot: another cancel of the
// same wait that the machine refused does not settle what is owed, and a
// snapshot that skipped the entry carrying it asks it again.
func TestOwedCancelOutlivesARefusedCancelAndASnapshot(t *testing.T) {
	h, _, waiter := withdrawHarness(t)
	h.step(WithdrawEvent(4))
	rd := h.ready(false)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("want the cancel proposed, got %+v", rd.Proposals)
	}
	// An entry of another replica's carries a cancel of the same wait that
	// the machine refuses (its output says so): nothing is settled.
	refused := core.Entry{Index: h.index + 1, Proposal: core.Proposal{Time: h.m.Now(),
		Commands: []core.Command{{Op: core.OpCancel, Waiter: waiter, Session: rd.Proposals[0].Proposal.Commands[0].Session}}}}
	out := &core.Output{Index: refused.Index, Time: h.m.Now(), Results: []core.Result{{Err: &core.Error{Code: core.CodeResourceExhausted, Msg: "refused"}}}}
	h.step(AppliedEvent(refused, out))
	// The carrying proposal is lost with a snapshot that skipped it.
	h.step(ProposalConfirmedEvent(rd.Proposals[0].ID))
	h.step(RestoredEvent(h.m.Now()))
	rd = h.ready(true)
	if cancelsIn(rd, waiter) != 1 {
		t.Fatalf("after a refused cancel and a snapshot, want the owed cancel asked again, got %+v", rd.Proposals)
	}
}

// holders is how many hold the mutex name in h's machine.
func holders(t *testing.T, h *harness, name string) int {
	t.Helper()
	st, err := h.m.Status(core.KindMutex, name)
	if err != nil {
		t.Fatal(err)
	}
	return len(st.Holders)
}

// TestGrantBeforeTheGoneCancelIsReleased: a requester gone for good (the
// runtime's identity, for a REST call that carried none: GoneEvent) that
// went away while queued, whose grant applies before its wait's cancel,
// can never hear of the grant: the driver releases it. Before, it held the mutex
// until its session ended (a REST user found 4 of 40 such grants). A
// requester with its own identity may ask again and hear the grant from
// dedupe: its grant stays.
func TestGrantBeforeTheGoneCancelIsReleased(t *testing.T) {
	for _, gone := range []bool{true, false} {
		t.Run(fmt.Sprintf("gone=%v", gone), func(t *testing.T) {
			h := newHarness(t, Config{})
			h.lead(1)
			sa := h.session(1, "a")
			sb := h.session(2, "b")
			h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
			h.ready(true)
			tokenA := h.reply(3).Result.Token
			h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
			h.ready(true)
			if r := h.reply(4); r.Kind != ReplyQueued {
				t.Fatalf("b's acquire: %+v, want queued", r)
			}
			// a's release is proposed; b goes away; its cancel is proposed
			// after the release, which applies first and grants b.
			h.step(RequestEvent(5, release("a", 3, sa, "m", tokenA)))
			rel := h.ready(false)
			if gone {
				h.step(GoneEvent(4))
			} else {
				h.step(CancelEvent(4))
			}
			cancel := h.ready(false)
			if len(rel.Proposals) != 1 || len(cancel.Proposals) != 1 || cancelsIn(cancel, h.reply(4).Result.Waiter) != 1 {
				t.Fatalf("want the release, then the cancel, proposed: %+v / %+v", rel.Proposals, cancel.Proposals)
			}
			h.apply(rel.Proposals[0])
			h.apply(cancel.Proposals[0])
			h.ready(true)
			want := 1 // b's grant stands: b may ask again and hear it
			if gone {
				want = 0
			}
			if n := holders(t, h, "m"); n != want {
				t.Fatalf("holders of m once b's grant and cancel applied: %d, want %d", n, want)
			}
			if h.d.Owed() != 0 {
				t.Fatalf("Owed %d after everything applied", h.d.Owed())
			}
		})
	}
}

// grantedToAGoneRequester is a leader's harness whose session sa was
// granted mutex "m" at once by request 2, which went away for good
// (GoneEvent) while its proposal was in flight.
func grantedToAGoneRequester(t *testing.T) (*harness, core.SessionID) {
	t.Helper()
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	h.step(RequestEvent(2, acquire("a", 2, sa, "m", 0)))
	rd := h.ready(false)
	h.step(GoneEvent(2))
	h.apply(rd.Proposals[0])
	return h, sa
}

// TestGrantOfAGoneRequesterIsReleased: a request granted at once, in
// flight when its requester went away for good, is released too.
func TestGrantOfAGoneRequesterIsReleased(t *testing.T) {
	h, _ := grantedToAGoneRequester(t)
	if n := holders(t, h, "m"); n != 1 {
		t.Fatalf("the acquire did not apply: %d holders", n)
	}
	h.ready(true)
	h.noReply(2)
	if n := holders(t, h, "m"); n != 0 {
		t.Fatalf("the grant nobody heard of still holds m: %d holders", n)
	}
}

// TestOwedReleaseSurvivesARefusedProposal: a release owed for a grant
// nobody heard of is proposed again after its proposal was refused, as an
// owed cancel is.
func TestOwedReleaseSurvivesARefusedProposal(t *testing.T) {
	h, _ := grantedToAGoneRequester(t)
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpRelease {
		t.Fatalf("want the owed release proposed: %+v", rd.Proposals)
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	h.advance(DefaultTickIntervalMs)
	h.ready(true)
	if n := holders(t, h, "m"); n != 0 {
		t.Fatalf("after the refused release and a tick interval: %d holders, want 0", n)
	}
}

// TestUnheardReleaseKeepsAGrantAnotherMemberAnswered: the race that an
// unconditional release lost. A requester gone for good was granted the
// mutex unheard; before the driver's release applies, the same session's
// acquire, sent through another member (a caller retrying after its own
// timeout), applies and is answered that grant, its live one. The release
// is unheard (rules 5): the machine refuses it, and the grant stays with
// the caller that was told it holds it.
func TestUnheardReleaseKeepsAGrantAnotherMemberAnswered(t *testing.T) {
	h, sa := grantedToAGoneRequester(t)
	st, err := h.m.Status(core.KindMutex, "m")
	if err != nil || len(st.Holders) != 1 {
		t.Fatalf("the acquire did not apply: %+v, %v", st, err)
	}
	tok := st.Holders[0].Token
	rd := h.ready(false)
	if len(rd.Proposals) != 1 {
		t.Fatalf("want the owed release proposed: %+v", rd.Proposals)
	}
	var rel core.Proposal
	rel, err = core.DecodeProposal(rd.Proposals[0].Data)
	if err != nil || len(rel.Commands) != 1 || rel.Commands[0].Op != core.OpRelease || !rel.Commands[0].Unheard {
		t.Fatalf("want one unheard release, proposed %+v (%v)", rel.Commands, err)
	}

	out := h.applyOther(core.Proposal{Time: h.m.Now(), Commands: []core.Command{acquire("elsewhere", 1, sa, "m", 0)}})
	if r := out.Results[0]; r.Outcome != core.OutcomeGranted || r.Token != tok {
		t.Fatalf("the re-acquire through another member: %+v, want granted %d", r, tok)
	}
	h.apply(rd.Proposals[0])
	if n := holders(t, h, "m"); n != 1 {
		t.Fatalf("the unheard release took a grant another request was told it holds: %d holders", n)
	}
	if h.d.Owed() != 0 {
		t.Fatalf("Owed %d once the unheard release was refused: it has nothing left to do", h.d.Owed())
	}
}

// TestGrantAnsweredAsItsRequesterWentIsReleased: the requester goes for
// good after its grant applied but before Ready handed out the reply (the
// runtime collects replies after the apply): the reply is withdrawn and
// the grant released, as a REST caller's that closed its socket at that
// moment must be. Before, the reply was dropped for a request nobody
// waited for, and the grant held the name until the session ended.
func TestGrantAnsweredAsItsRequesterWentIsReleased(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	tokenA := h.reply(3).Result.Token
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	h.ready(true)
	h.step(RequestEvent(5, release("a", 3, sa, "m", tokenA)))
	rd := h.ready(false)
	h.apply(rd.Proposals[0]) // grants b: its reply waits in the next Ready
	h.step(GoneEvent(4))
	rd = h.ready(false)
	for _, r := range rd.Replies {
		if r.Request == 4 {
			t.Fatalf("the reply to a requester gone for good was handed out: %+v", r)
		}
	}
	if len(rd.Proposals) != 1 {
		t.Fatalf("want the unheard release proposed, got %+v", rd.Proposals)
	}
	rel, err := core.DecodeProposal(rd.Proposals[0].Data)
	if err != nil || len(rel.Commands) != 1 || rel.Commands[0].Op != core.OpRelease || !rel.Commands[0].Unheard || rel.Commands[0].Session != sb {
		t.Fatalf("want b's grant released unheard, proposed %+v (%v)", rel.Commands, err)
	}
	h.apply(rd.Proposals[0])
	if n := holders(t, h, "m"); n != 0 {
		t.Fatalf("b's unheard grant still holds m: %d holders", n)
	}
}
