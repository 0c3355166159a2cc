package replica

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// harness is one replica whose log commits every proposal at once: the
// driver, a core machine, and the index of the last entry.
type harness struct {
	t       *testing.T
	d       *Driver
	m       *core.Machine
	index   uint64
	now     core.LogTime
	replies []Reply
	applied []core.Proposal
	// remote: another replica leads, and answers every tick request this
	// one makes with a tick stamped with the log's time (its clock reads
	// what the log says), as a leader's driver would.
	remote bool
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := core.New(core.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, d: d, m: m, now: 1_000_000}
	h.step(TickEvent(h.now))
	return h
}

func (h *harness) step(ev Event) {
	h.t.Helper()
	if err := h.d.Step(ev); err != nil {
		h.t.Fatal(err)
	}
}

// lead makes the replica leader of term.
func (h *harness) lead(term uint64) { h.step(LeadershipEvent(true, term, 1)) }

// ready collects the driver's actions and, when commit is set, applies every
// proposal (after decoding its bytes), feeds the outputs back and confirms
// it, until the driver proposes nothing more (the gate lets more out as
// proposals are confirmed); it returns every proposal made.
func (h *harness) ready(commit bool) Ready {
	h.t.Helper()
	rd := h.d.Ready()
	h.replies = append(h.replies, rd.Replies...)
	if !commit {
		return rd
	}
	for next := rd.Proposals; len(next) > 0; {
		for _, p := range next {
			h.apply(p)
		}
		more := h.d.Ready()
		h.replies = append(h.replies, more.Replies...)
		rd.Proposals = append(rd.Proposals, more.Proposals...)
		next = more.Proposals
	}
	return rd
}

func (h *harness) apply(p Proposal) {
	h.t.Helper()
	dec, err := core.DecodeProposal(p.Data)
	if err != nil {
		h.t.Fatalf("proposal %d does not decode: %v", p.ID, err)
	}
	h.index++
	e := core.Entry{Index: h.index, Proposal: dec}
	out := h.m.Apply(e)
	if err := h.m.CheckInvariants(); err != nil {
		h.t.Fatal(err)
	}
	h.applied = append(h.applied, dec)
	h.step(AppliedEvent(e, out))
	h.step(ProposalConfirmedEvent(p.ID))
	if h.remote && len(dec.Commands) == 1 && dec.Commands[0].Op == core.OpTickRequest {
		h.applyOther(core.Proposal{Time: h.m.Now()})
	}
}

// applyOther applies an entry another replica proposed.
func (h *harness) applyOther(p core.Proposal) *core.Output {
	h.t.Helper()
	h.index++
	e := core.Entry{Index: h.index, Proposal: p}
	out := h.m.Apply(e)
	h.applied = append(h.applied, p)
	h.step(AppliedEvent(e, out))
	return out
}

func (h *harness) advance(ms int64) {
	h.now += core.LogTime(ms)
	h.step(TickEvent(h.now))
}

// reply returns the last reply to request id.
func (h *harness) reply(id RequestID) Reply {
	h.t.Helper()
	for i := len(h.replies) - 1; i >= 0; i-- {
		if h.replies[i].Request == id {
			return h.replies[i]
		}
	}
	h.t.Fatalf("no reply to request %d; replies: %+v", id, h.replies)
	return Reply{}
}

func (h *harness) noReply(id RequestID) {
	h.t.Helper()
	for _, r := range h.replies {
		if r.Request == id {
			h.t.Fatalf("request %d got %v, want no reply yet", id, r.Kind)
		}
	}
}

func cmd(client string, seq uint64, op core.Op) core.Command {
	return core.Command{ClientID: client, Seq: seq, Op: op}
}

func createSession(client string, seq uint64) core.Command {
	c := cmd(client, seq, core.OpSessionCreate)
	c.TTLMs = 10_000
	return c
}

func acquire(client string, seq uint64, s core.SessionID, name string, waitMs int64) core.Command {
	c := cmd(client, seq, core.OpAcquire)
	c.Kind, c.Name, c.Session, c.WaitMs = core.KindMutex, name, s, waitMs
	return c
}

// session creates a session for client through the driver.
func (h *harness) session(id RequestID, client string) core.SessionID {
	h.t.Helper()
	h.step(RequestEvent(id, createSession(client, 1)))
	h.ready(true)
	r := h.reply(id)
	if r.Kind != ReplyResult || r.Result.Err != nil {
		h.t.Fatalf("session create: %+v", r)
	}
	return r.Result.Session
}

func TestFollowerRefersToTheLeader(t *testing.T) {
	h := newHarness(t, Config{})
	h.step(LeadershipEvent(false, 3, 2))
	h.step(RequestEvent(1, createSession("a", 1)))
	rd := h.ready(false)
	if len(rd.Proposals) != 0 {
		t.Fatalf("a follower proposed %d entries", len(rd.Proposals))
	}
	if r := h.reply(1); r.Kind != ReplyNotLeader || r.Leader != 2 {
		t.Fatalf("got %+v, want not_leader with hint 2", r)
	}
	if h.d.Role() != RoleFollower || h.d.Proposes() {
		t.Fatalf("a replica that applied nothing is a %v; it must not forward a stamp of 0", h.d.Role())
	}
}

func TestRejectsRequestsWithoutDedupeKey(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	h.step(RequestEvent(1, core.Command{Op: core.OpSessionCreate, TTLMs: 1000}))
	h.step(RequestEvent(2, cmd("a", 1, core.OpLeaderChange)))
	h.ready(true)
	for _, id := range []RequestID{1, 2} {
		if r := h.reply(id); r.Kind != ReplyRejected {
			t.Fatalf("request %d: got %v, want rejected", id, r.Kind)
		}
	}
}

func TestLeaderMarksFirstThenPacksStampedCommands(t *testing.T) {
	h := newHarness(t, Config{})
	h.advance(0)
	h.lead(1)
	h.step(RequestEvent(1, createSession("a", 1)))
	h.step(RequestEvent(2, createSession("b", 1)))
	h.step(RequestEvent(3, createSession("c", 1)))
	rd := h.ready(true)
	if len(rd.Proposals) != 2 {
		t.Fatalf("got %d proposals, want the leader mark and one packed batch", len(rd.Proposals))
	}
	mark, batch := rd.Proposals[0].Proposal, rd.Proposals[1].Proposal
	if len(mark.Commands) != 1 || mark.Commands[0].Op != core.OpLeaderChange || mark.Commands[0].Rules != core.RulesVersion {
		t.Fatalf("first proposal is %+v, want the leader-change mark carrying rules %d", mark, core.RulesVersion)
	}
	if len(batch.Commands) != 3 || batch.Time != h.now || mark.Time != h.now {
		t.Fatalf("batch %+v: want 3 commands stamped %d", batch, h.now)
	}
	seen := map[core.SessionID]bool{}
	for id := RequestID(1); id <= 3; id++ {
		r := h.reply(id)
		if r.Kind != ReplyResult || r.Result.Outcome != core.OutcomeDone || seen[r.Result.Session] {
			t.Fatalf("request %d: %+v", id, r)
		}
		seen[r.Result.Session] = true
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

// An idle leader with nothing timed in the machine proposes nothing, however
// long it waits (issue 16: an idle cluster writes nothing); the next command
// it stamps carries its clock, and log time takes it whole.
func TestIdleLeaderWithNothingTimedProposesNothing(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100})
	h.lead(1)
	h.ready(true) // the mark
	for range 100 {
		h.advance(100)
		if rd := h.ready(true); len(rd.Proposals) != 0 {
			t.Fatalf("idle with nothing timed, proposed %+v at %d", rd.Proposals, h.now)
		}
	}
	s := h.session(1, "a")
	if h.m.Now() != h.now {
		t.Fatalf("log time %d after a quiet spell, want the leader's clock %d", h.m.Now(), h.now)
	}
	info, _ := h.m.SessionInfo(s)
	if info.Deadline != h.now+10_000 {
		t.Fatalf("lease ends at %d, want %d: it must start when the create was stamped", info.Deadline, h.now+10_000)
	}
}

// While anything is timed, a leader ticks when a deadline comes due (after a
// quiet tick interval) and at least every KeepTimeMs, so that log time never
// falls more than MaxClockStepMs behind its clock; when the last timed thing
// ends, the ticks stop.
func TestLeaderTicksAtDeadlinesAndToKeepTime(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, KeepTimeMs: 1000})
	h.lead(1)
	h.ready(true)
	c := createSession("a", 1)
	c.TTLMs = 2_500
	h.step(RequestEvent(1, c))
	h.ready(true)
	created := h.now
	var ticks []core.LogTime
	for range 40 {
		h.advance(100)
		for _, p := range h.ready(true).Proposals {
			if len(p.Proposal.Commands) != 0 {
				t.Fatalf("proposed %+v", p.Proposal)
			}
			ticks = append(ticks, p.Proposal.Time-created)
		}
	}
	// Every KeepTimeMs (1 s, 2 s), then at the lease's end (2.5 s), which
	// expires it; after that nothing is timed and nothing is proposed.
	want := []core.LogTime{1_000, 2_000, 2_500}
	if fmt.Sprint(ticks) != fmt.Sprint(want) {
		t.Fatalf("ticks at %v ms after the create, want %v", ticks, want)
	}
	if n := h.m.Counts().Sessions; n != 0 {
		t.Fatalf("%d sessions after the lease's end", n)
	}
	// A clock that steps back does not stop the ticks.
	h.session(2, "b")
	before := h.m.Now()
	h.advance(-10_000)
	h.advance(1_000)
	if rd := h.ready(true); len(rd.Proposals) != 1 {
		t.Fatalf("no tick after the clock stepped back and ran KeepTimeMs")
	}
	if h.m.Now() != before {
		t.Fatalf("log time went back to %d", h.m.Now())
	}
}

// A leader's wall clock stepped while it leads (NTP stepping it, a virtual
// machine resumed from a pause) moves no log time: the leader stamps with
// the wall clock it read when it took the role, carried forward by its
// monotonic clock, so no lease ends early or late by the step. The next
// term starts at the wall clock again, or where log time stands if the
// wall clock is behind it.
func TestLeaderStampsThroughAWallClockStep(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, KeepTimeMs: 1000})
	wall, mono := h.now, core.LogTime(5) // any origin for the monotonic clock
	tick := func(dWall, dMono core.LogTime) {
		wall, mono = wall+dWall, mono+dMono
		h.step(ClockEvent(wall, mono))
	}
	tick(0, 0)
	h.lead(1)
	h.ready(true)
	start, startMono := h.m.Now(), mono
	if start != wall {
		t.Fatalf("the first term's log time starts at %d, want the wall clock %d", start, wall)
	}
	s := h.session(1, "a") // TTL 10 s
	info, _ := h.m.SessionInfo(s)

	// The wall clock jumps 5 s ahead, then 100 ms pass.
	tick(5_000+100, 100)
	h.session(2, "b")
	if got := h.m.Now(); got != start+100 {
		t.Fatalf("after a 5 s step of the wall clock and 100 ms, log time moved %d ms, want 100", got-start)
	}
	if got := h.d.ClockOffset(); got != 5_000 {
		t.Fatalf("ClockOffset %d, want the 5,000 ms the wall clock was stepped", got)
	}
	// Lease a lives until 10 s of monotonic time after its create.
	for range 98 {
		tick(100, 100)
		h.ready(true)
	}
	if _, err := h.m.SessionInfo(s); err != nil {
		t.Fatalf("session a expired at log time %d, before its deadline %d", h.m.Now(), info.Deadline)
	}
	// A step back does not hold log time either.
	tick(-20_000, 100)
	h.session(3, "c")
	if got, want := h.m.Now(), start+(mono-startMono); got != want {
		t.Fatalf("after the wall clock stepped 20 s back, log time %d, want %d: the monotonic time since the term began", got, want)
	}
	for range 3 {
		tick(100, 100)
		h.ready(true)
	}
	if _, err := h.m.SessionInfo(s); err == nil {
		t.Fatalf("session a outlived its deadline %d (log time %d)", info.Deadline, h.m.Now())
	}

	// A new term starts where log time stands when the wall clock (20 s
	// back) is behind it: log time runs on rather than waiting for the
	// wall clock to catch up.
	h.step(LeadershipEvent(false, 2, 2))
	tick(100, 100)
	applied := h.m.Now()
	h.lead(3)
	rd := h.ready(true)
	if len(rd.Proposals) == 0 || rd.Proposals[0].Proposal.Time != applied {
		t.Fatalf("the new term's first proposal %+v, want it stamped with the applied log time %d (the wall clock %d is behind)", rd.Proposals, applied, wall)
	}
	if got := h.d.ClockOffset(); got != wall-applied {
		t.Fatalf("ClockOffset %d, want %d: the wall clock behind log time", got, wall-applied)
	}
	tick(100, 100)
	h.session(4, "d")
	if got := h.m.Now(); got != applied+100 {
		t.Fatalf("100 ms into the new term, log time %d, want %d: on at real rate from where it stood", got, applied+100)
	}

	// A new term starts at the wall clock when it is ahead of log time.
	tick(60_000, 100)
	h.step(LeadershipEvent(false, 4, 2))
	tick(100, 100)
	h.lead(5)
	rd = h.ready(true)
	if len(rd.Proposals) == 0 || rd.Proposals[0].Proposal.Time != wall {
		t.Fatalf("the new term's first proposal %+v, want it stamped with the wall clock %d", rd.Proposals, wall)
	}
	if got := h.d.ClockOffset(); got != 0 {
		t.Fatalf("ClockOffset %d after the new term's anchor at the wall clock, want 0", got)
	}
}

// A tick request applied in the log (a forwarder asked) is answered by the
// leader with a tick at once, quiet interval or not.
func TestLeaderAnswersATickRequest(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100})
	h.lead(1)
	h.ready(true)
	h.advance(10)
	h.applyOther(core.Proposal{Time: h.m.Now(), Commands: []core.Command{{Op: core.OpTickRequest, Owner: "n2/1"}}})
	rd := h.ready(true)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 0 || rd.Proposals[0].Proposal.Time != h.now {
		t.Fatalf("want one tick stamped %d answering the request, got %+v", h.now, rd.Proposals)
	}
	if rd := h.ready(true); len(rd.Proposals) != 0 {
		t.Fatalf("a second tick for one request: %+v", rd.Proposals)
	}
}

func TestQueuedRequestIsAnsweredByTheGrant(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	ra := h.reply(3)
	if ra.Result.Outcome != core.OutcomeGranted {
		t.Fatalf("a: %+v", ra)
	}
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", 5000)))
	h.ready(true)
	q := h.reply(4)
	if q.Kind != ReplyQueued || q.Final() || q.Result.Waiter == 0 {
		t.Fatalf("b: got %+v, want an interim queued reply", q)
	}
	rel := cmd("a", 3, core.OpRelease)
	rel.Kind, rel.Name, rel.Session, rel.Token = core.KindMutex, "m", sa, ra.Result.Token
	h.step(RequestEvent(5, rel))
	h.ready(true)
	g := h.reply(4)
	if g.Kind != ReplyGranted || g.Result.Token <= ra.Result.Token || g.Result.Session != sb {
		t.Fatalf("b after release: %+v", g)
	}
	// A retry after the reply was lost hears the same grant from dedupe,
	// the waiter id it had while queued included (the reply left it out,
	// so a REST acquire answered waiter_id 0 and its retry the id).
	h.step(RequestEvent(6, acquire("b", 2, sb, "m", 5000)))
	h.ready(true)
	r := h.reply(6)
	if r.Kind != ReplyResult || !r.Result.Duplicate || r.Result.Token != g.Result.Token {
		t.Fatalf("retry: %+v, want the stored grant %d", r, g.Result.Token)
	}
	r.Result.Duplicate = false
	if r.Result != g.Result || g.Result.Waiter != q.Result.Waiter {
		t.Fatalf("the retry hears %+v, the blocked request heard %+v: want the same, with waiter %d", r.Result, g.Result, q.Result.Waiter)
	}
}

func TestQueuedRequestTimesOut(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", 500)))
	h.ready(true)
	h.advance(600)
	h.ready(true) // the tick that passes the deadline
	r := h.reply(4)
	if r.Kind != ReplyWaitEnded || r.Reason != core.ReasonTimeout || r.Result.Outcome != core.OutcomeRefused {
		t.Fatalf("got %+v, want wait_ended(timeout)", r)
	}
}

func TestLeadershipLossFailsWhatIsNotApplied(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	h.step(RequestEvent(2, acquire("a", 2, sa, "m", 0)))
	rd := h.ready(false) // proposed, not yet committed
	h.step(RequestEvent(3, createSession("b", 1)))
	h.step(LeadershipEvent(false, 2, 7))
	h.ready(false)
	if r := h.reply(2); r.Kind != ReplyUnknown {
		t.Fatalf("in flight: got %v, want unknown", r.Kind)
	}
	if r := h.reply(3); r.Kind != ReplyNotLeader {
		t.Fatalf("queued: got %v, want not_leader", r.Kind)
	}
	// The entry commits under the next leader anyway; a retry learns it.
	for _, p := range rd.Proposals {
		h.apply(p)
	}
	h.lead(3)
	h.step(RequestEvent(4, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	if r := h.reply(4); r.Kind != ReplyResult || !r.Result.Duplicate || r.Result.Outcome != core.OutcomeGranted {
		t.Fatalf("retry: %+v, want the stored grant", r)
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

// Several requests queued (not yet proposed, as under group commit while
// earlier entries are unconfirmed) when leadership goes: each is answered
// NotLeader and forgotten. Forgetting one used to shift the queue under the
// loop that walked it, which skipped requests and then met a cleared slot
// (a nil request): a panic that took down every node of a sharded cluster
// when its leaders moved under load.
func TestLeadershipLossFailsEveryQueuedRequest(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	h.session(1, "a")
	const queued = 5
	for i := range RequestID(queued) {
		h.step(RequestEvent(10+i, createSession(fmt.Sprintf("q%d", i), 1)))
	}
	h.step(LeadershipEvent(false, 2, 0))
	h.ready(false)
	for i := range RequestID(queued) {
		if r := h.reply(10 + i); r.Kind != ReplyNotLeader {
			t.Errorf("queued request %d: got %v, want not_leader", 10+i, r.Kind)
		}
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

func TestNewTermProposesTheMarkAgain(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	h.ready(true)
	h.lead(4) // lost and regained between two reports
	rd := h.ready(true)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("want a new mark in the new term, got %+v", rd.Proposals)
	}
}

func TestBatchAndInflightBounds(t *testing.T) {
	h := newHarness(t, Config{MaxBatch: 2, MaxInflight: 3, MaxPending: 5})
	h.lead(1)
	h.ready(true)
	for i := 1; i <= 6; i++ {
		h.step(RequestEvent(RequestID(i), createSession(string(rune('a'+i)), 1)))
	}
	rd := h.ready(false)
	if r := h.reply(6); r.Kind != ReplyBusy {
		t.Fatalf("sixth request: %v, want busy", r.Kind)
	}
	if len(rd.Proposals) != 2 || len(rd.Proposals[0].Proposal.Commands) != 2 || len(rd.Proposals[1].Proposal.Commands) != 1 {
		t.Fatalf("want batches of 2 and 1 (in-flight bound 3), got %d proposals", len(rd.Proposals))
	}
	for _, p := range rd.Proposals {
		h.apply(p)
	}
	rd = h.ready(true)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 2 {
		t.Fatalf("the rest after the apply: %+v", rd.Proposals)
	}
	for i := 1; i <= 5; i++ {
		if r := h.reply(RequestID(i)); r.Kind != ReplyResult {
			t.Fatalf("request %d: %v", i, r.Kind)
		}
	}
}

func TestCancelWithdrawsTheWait(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	h.ready(true)
	waiter := h.reply(4).Result.Waiter
	h.step(CancelEvent(4))
	rd := h.ready(true)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpCancel ||
		rd.Proposals[0].Proposal.Commands[0].Waiter != waiter {
		t.Fatalf("want one OpCancel for waiter %d, got %+v", waiter, rd.Proposals)
	}
	st, err := h.m.Status(core.KindMutex, "m")
	if err != nil || len(st.Waiters) != 0 {
		t.Fatalf("status after cancel: %+v %v", st, err)
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

func TestCancelInFlightWithdrawsWhenItQueues(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	rd := h.ready(false)
	h.step(CancelEvent(4))
	for _, p := range rd.Proposals {
		h.apply(p)
	}
	rd = h.ready(true)
	h.noReply(4)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpCancel {
		t.Fatalf("want the queued wait withdrawn, got %+v", rd.Proposals)
	}
}

func TestRefusedProposalIsUnknown(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	h.ready(true)
	h.step(RequestEvent(1, createSession("a", 1)))
	rd := h.ready(false)
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	h.ready(false)
	if r := h.reply(1); r.Kind != ReplyUnknown {
		t.Fatalf("got %v, want unknown", r.Kind)
	}
}

func TestRefusedLeaderMarkIsProposedAgain(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("want the mark first, got %+v", rd.Proposals)
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	rd = h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 1 ||
		rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("want the refused mark proposed again, got %+v", rd.Proposals)
	}
	// A refused ordinary proposal does not bring the mark back.
	h.step(RequestEvent(1, createSession("a", 1)))
	rd = h.ready(false)
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	for _, p := range h.ready(false).Proposals {
		for _, c := range p.Proposal.Commands {
			if c.Op == core.OpLeaderChange {
				t.Fatalf("a refused client proposal brought back the mark: %+v", p)
			}
		}
	}
}

func TestBarrierWaitIsReleased(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	wait := func(client string, s core.SessionID) core.Command {
		c := cmd(client, 2, core.OpBarrierWait)
		c.Name, c.Session, c.Parties, c.Participant, c.WaitMs = "b", s, 2, client, 5000
		return c
	}
	h.step(RequestEvent(3, wait("a", sa)))
	h.ready(true)
	h.step(RequestEvent(4, wait("b", sb)))
	h.ready(true)
	ra, rb := h.reply(3), h.reply(4)
	if ra.Kind != ReplyGranted || ra.Result.Outcome != core.OutcomeReleased || rb.Result.Outcome != core.OutcomeReleased ||
		ra.Result.Generation == 0 || ra.Result.Generation != rb.Result.Generation {
		t.Fatalf("a: %+v, b: %+v", ra, rb)
	}
}

func TestStepRejectsBrokenContract(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	h.step(RequestEvent(1, createSession("a", 1)))
	if err := h.d.Step(RequestEvent(1, createSession("a", 1))); err == nil {
		t.Fatal("a reused request id was accepted")
	}
	e := core.Entry{Index: 1, Proposal: core.Proposal{Commands: []core.Command{createSession("a", 1)}}}
	if err := h.d.Step(AppliedEvent(e, &core.Output{})); err == nil {
		t.Fatal("an output without results was accepted")
	}
	if err := (Config{MaxBatch: 10, MaxInflight: 5}).Validate(); err == nil {
		t.Fatal("MaxInflight below MaxBatch was accepted")
	}
}

func TestRestoreFailsWhatWaitsHere(t *testing.T) {
	h := newHarness(t, Config{})
	h.lead(1)
	sa := h.session(1, "a")
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", 5000)))
	h.ready(true)
	h.step(RestoredEvent(h.m.Now()))
	h.ready(false)
	if r := h.reply(4); r.Kind != ReplyUnknown {
		t.Fatalf("blocked request after restore: %v, want unknown", r.Kind)
	}
	if h.d.Pending() != 0 {
		t.Fatalf("%d requests still pending", h.d.Pending())
	}
}

// The gate: with MaxUnconfirmed proposals out, requests wait in the queue and
// go out packed together once one is confirmed; replies still flow.
func TestGateHoldsProposalsUntilConfirmed(t *testing.T) {
	h := newHarness(t, Config{MaxUnconfirmed: 1})
	h.lead(1)
	mark := h.ready(false)
	if len(mark.Proposals) != 1 || h.d.Unconfirmed() != 1 {
		t.Fatalf("want the mark alone out, got %d proposals, %d unconfirmed", len(mark.Proposals), h.d.Unconfirmed())
	}
	for i := RequestID(1); i <= 3; i++ {
		h.step(RequestEvent(i, createSession(fmt.Sprintf("c%d", i), 1)))
	}
	h.step(RequestEvent(9, core.Command{Op: core.OpSessionCreate})) // rejected: no dedupe key
	h.advance(500)                                                  // a tick is due too
	rd := h.ready(false)
	if len(rd.Proposals) != 0 {
		t.Fatalf("the gate let %d proposals out", len(rd.Proposals))
	}
	if r := h.reply(9); r.Kind != ReplyRejected {
		t.Fatalf("a reply was held back by the gate: %+v", r)
	}
	// An id the driver never proposed, or one already settled, frees nothing.
	h.step(ProposalConfirmedEvent(mark.Proposals[0].ID + 100))
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("an unknown confirmation opened the gate")
	}
	h.apply(mark.Proposals[0])
	rd = h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 3 {
		t.Fatalf("want the three queued requests in one entry, got %+v", rd.Proposals)
	}
	// A refusal opens the gate as a confirmation does.
	h.step(RequestEvent(4, createSession("d", 1)))
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("the gate let a second proposal out")
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	if rd := h.ready(false); len(rd.Proposals) != 1 || h.d.Unconfirmed() != 1 {
		t.Fatalf("after the refusal: %d proposals, %d unconfirmed", len(rd.Proposals), h.d.Unconfirmed())
	}
	if r := h.reply(1); r.Kind != ReplyUnknown {
		t.Fatalf("a request of the refused proposal: %v, want unknown", r.Kind)
	}
}

// A new term does not wait for the proposals of the last one: the gate
// empties when leadership changes and when a snapshot replaces the machine.
func TestGateEmptiesWhenTheRoleEnds(t *testing.T) {
	h := newHarness(t, Config{MaxUnconfirmed: 1})
	h.lead(1)
	h.ready(false) // the mark, never confirmed
	h.lead(2)
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("the new term's mark waited behind the old term's: %+v", rd.Proposals)
	}
	h.step(RestoredEvent(h.m.Now()))
	h.step(RequestEvent(1, createSession("a", 1)))
	if rd := h.ready(false); len(rd.Proposals) != 1 {
		t.Fatalf("after a restore the gate still held %d proposals", h.d.Unconfirmed())
	}
	if err := (Config{MaxUnconfirmed: MaxMaxUnconfirmed + 1}).Validate(); err == nil {
		t.Fatal("a gate above MaxMaxUnconfirmed was accepted")
	}
}

// follow makes the harness a follower of leader in term, after it led term
// 1 and applied a session for "a" (so it has a log time to stamp with).
func (h *harness) follow(term, leader uint64) core.SessionID {
	h.t.Helper()
	h.lead(1)
	sa := h.session(1, "a")
	h.step(LeadershipEvent(false, term, leader))
	h.remote = true
	if h.d.Role() != RoleForwarder || !h.d.Proposes() || h.d.IsLeader() {
		h.t.Fatalf("a follower of %d that applied entries is a %v, want a forwarder", leader, h.d.Role())
	}
	return sa
}

// A follower forwards: it packs requests as the leader would, stamps them
// with the log time it has applied (never its own clock, which may run
// ahead), and proposes no mark and no tick (docs/design.md, Time). Before
// it forwards, it makes sure that log time is fresh: it asks the leader for
// a tick and waits for a tick that follows its own request in the log.
func TestFollowerForwardsStampedWithAppliedLogTime(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, Name: "n3"})
	h.follow(2, 7)
	h.remote = false // this test answers the request itself
	h.advance(5_000) // this replica's clock runs 5 s ahead of the log
	h.step(RequestEvent(2, createSession("b", 1)))
	h.step(RequestEvent(3, createSession("c", 1)))
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 1 ||
		rd.Proposals[0].Proposal.Commands[0].Op != core.OpTickRequest || rd.Proposals[0].Proposal.Commands[0].Owner != "n3/1" {
		t.Fatalf("want a tick request before any forward, got %+v", rd.Proposals)
	}
	ask := rd.Proposals[0]
	// A tick and another replica's request before its own do not count.
	h.applyOther(core.Proposal{Time: h.m.Now() + 10})
	h.applyOther(core.Proposal{Time: h.m.Now(), Commands: []core.Command{{Op: core.OpTickRequest, Owner: "n2/1"}}})
	h.apply(ask)
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("forwarded %+v before a tick followed its own request", rd.Proposals)
	}
	h.applyOther(core.Proposal{Time: h.m.Now() + 20}) // the leader's answer
	applied := h.m.Now()
	rd = h.ready(false)
	if len(rd.Proposals) != 1 {
		t.Fatalf("want one forwarded entry, got %+v", rd.Proposals)
	}
	p := rd.Proposals[0].Proposal
	if p.Time != applied || len(p.Commands) != 2 || p.Commands[0].Op != core.OpSessionCreate {
		t.Fatalf("forwarded %+v: want two creates stamped with the applied log time %d (clock %d)", p, applied, h.now)
	}
	h.apply(rd.Proposals[0])
	h.ready(false)
	if r := h.reply(2); r.Kind != ReplyResult || r.Result.Err != nil {
		t.Fatalf("forwarded create: %+v", r)
	}
	if h.m.Now() != applied {
		t.Fatalf("a forward moved log time from %d to %d", applied, h.m.Now())
	}
	h.advance(1_000)
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("a forwarder proposed %+v: only the leader ticks", rd.Proposals)
	}
	// A tick interval after it asked, its log time is no longer known to be
	// fresh: it asks again, and a request refused by the consensus library
	// is asked again too.
	h.step(RequestEvent(4, createSession("d", 1)))
	rd = h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Owner != "n3/2" {
		t.Fatalf("want a second tick request, got %+v", rd.Proposals)
	}
	h.step(ProposalFailedEvent(rd.Proposals[0].ID))
	rd = h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Owner != "n3/3" {
		t.Fatalf("want the refused tick request made again, got %+v", rd.Proposals)
	}
}

// An answer slower than a tick interval still lets out what it was asked
// for: the requests held when the forwarder asked arrived before the
// leader stamped its answering tick, so the log time applied since is not
// before they arrived. A request that arrived after the ask is not covered
// by it and waits for an answer of its own. Before, a forwarder whose asks
// were answered later than TickIntervalMs (commits slower than the tick
// interval) asked again and again and forwarded nothing.
func TestSlowAnswerForwardsWhatItWasAskedFor(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, Name: "n3"})
	h.follow(2, 7)
	h.remote = false // this test answers the requests itself, late
	h.advance(1_000)
	h.step(RequestEvent(2, createSession("b", 1)))
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Owner != "n3/1" {
		t.Fatalf("want a tick request before any forward, got %+v", rd.Proposals)
	}
	ask := rd.Proposals[0]
	h.advance(10)
	h.step(RequestEvent(3, createSession("c", 1))) // after the ask
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("proposed %+v while its ask is out", rd.Proposals)
	}
	answer := func(ask Proposal) core.LogTime {
		t.Helper()
		h.advance(500) // five tick intervals: stale on arrival
		h.apply(ask)
		h.applyOther(core.Proposal{Time: h.m.Now() + 500})
		return h.m.Now()
	}
	applied := answer(ask)
	rd = h.ready(false)
	var forwards []core.Proposal
	var asks []Proposal
	for _, p := range rd.Proposals {
		if len(p.Proposal.Commands) == 1 && p.Proposal.Commands[0].Op == core.OpTickRequest {
			asks = append(asks, p)
		} else {
			forwards = append(forwards, p.Proposal)
		}
	}
	if len(forwards) != 1 || len(forwards[0].Commands) != 1 || forwards[0].Commands[0].ClientID != "b" || forwards[0].Time != applied {
		t.Fatalf("after a slow answer, forwarded %+v: want request 2 alone (it arrived before the ask), stamped %d", forwards, applied)
	}
	if len(asks) != 1 || asks[0].Proposal.Commands[0].Owner != "n3/2" {
		t.Fatalf("want a new tick request for request 3, which arrived after the first, got %+v", asks)
	}
	for _, p := range rd.Proposals {
		if p.ID != asks[0].ID {
			h.apply(p)
		}
	}
	h.ready(false)
	if r := h.reply(2); r.Kind != ReplyResult || r.Result.Err != nil {
		t.Fatalf("forwarded create: %+v", r)
	}
	h.noReply(3)
	applied = answer(asks[0])
	rd = h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 1 || rd.Proposals[0].Proposal.Commands[0].ClientID != "c" ||
		rd.Proposals[0].Proposal.Time != applied {
		t.Fatalf("after the second slow answer, proposed %+v: want request 3 forwarded, stamped %d", rd.Proposals, applied)
	}
}

// The forwarder's role ends with its leader: queued requests are referred to
// the new leader, forwarded ones are unknown (the forward may have reached
// the old leader or not), and requests blocked on a waiter stay and are
// answered through the log in the next role, which may withdraw them too.
func TestForwarderRoleEndsWithItsLeader(t *testing.T) {
	h := newHarness(t, Config{MaxUnconfirmed: 1})
	sa := h.follow(2, 7)
	h.step(RequestEvent(2, acquire("a", 2, sa, "m", 0)))
	h.ready(true)           // the tick request, the leader's tick, the forward
	sb := h.session(3, "b") // forwarded and applied
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	q := h.ready(false)
	h.apply(q.Proposals[0])
	h.ready(false)
	if r := h.reply(4); r.Kind != ReplyQueued {
		t.Fatalf("b's forwarded acquire: %+v, want queued", r)
	}
	h.step(RequestEvent(5, createSession("c", 1)))
	fwd := h.ready(false) // in flight, unconfirmed: the gate is full
	h.step(RequestEvent(6, createSession("d", 1)))
	if len(fwd.Proposals) != 1 || len(h.ready(false).Proposals) != 0 {
		t.Fatalf("the forwarder's gate: %d proposals, then more", len(fwd.Proposals))
	}
	h.step(LeadershipEvent(false, 3, 9))
	h.ready(false)
	if r := h.reply(5); r.Kind != ReplyUnknown {
		t.Fatalf("forwarded under the old leader: %v, want unknown", r.Kind)
	}
	if r := h.reply(6); r.Kind != ReplyNotLeader || r.Leader != 9 {
		t.Fatalf("queued under the old leader: %+v, want not_leader naming 9", r)
	}
	if r := h.reply(4); r.Kind != ReplyQueued || h.d.Pending() != 1 {
		t.Fatalf("b's wait after the leader changed: %v, %d pending; want it still waiting", r.Kind, h.d.Pending())
	}
	if h.d.Role() != RoleForwarder || h.d.Unconfirmed() != 0 {
		t.Fatalf("under the new leader: %v with %d unconfirmed, want a forwarder with an empty gate", h.d.Role(), h.d.Unconfirmed())
	}
	// This replica wins the next term: its mark does not wait behind the
	// forward the gate held, and b's wait, forwarded as a follower, is
	// withdrawn by the leader when b gives up.
	h.step(LeadershipEvent(true, 4, 1))
	h.step(CancelEvent(4))
	rd := h.ready(true)
	if len(rd.Proposals) < 2 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("the new leader's proposals: %+v, want its mark first", rd.Proposals)
	}
	cancelled := false
	for _, p := range rd.Proposals {
		cancelled = cancelled || p.Proposal.Commands[0].Op == core.OpCancel
	}
	if st, _ := h.m.Status(core.KindMutex, "m"); !cancelled || len(st.Waiters) != 0 {
		t.Fatalf("b's wait after the cancel: proposed %v, waiters %+v", cancelled, st.Waiters)
	}
}

// A follower that knows no leader refers requests and proposes nothing,
// not even the cancel of a wait it holds: the caller must cancel elsewhere.
func TestFollowerWithoutLeaderProposesNothing(t *testing.T) {
	h := newHarness(t, Config{})
	sa := h.follow(2, 7)
	h.step(RequestEvent(2, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	h.step(LeadershipEvent(false, 3, 0))
	if h.d.Proposes() {
		t.Fatalf("a follower without a leader is a %v", h.d.Role())
	}
	h.step(RequestEvent(3, createSession("b", 1)))
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("proposed %+v without a leader", rd.Proposals)
	}
	if r := h.reply(3); r.Kind != ReplyNotLeader || r.Leader != 0 {
		t.Fatalf("got %+v, want not_leader with no hint", r)
	}
}

// forwardedWait makes h a forwarder (leader 2, term 7) on which request 4
// waits for mutex "m", held through request 3, and returns its waiter.
func forwardedWait(h *harness) core.WaiterID {
	sa := h.follow(2, 7)
	sb := h.session(2, "b")
	h.step(RequestEvent(3, acquire("a", 2, sa, "m", 0)))
	h.step(RequestEvent(4, acquire("b", 2, sb, "m", core.WaitForever)))
	h.ready(true)
	return h.reply(4).Result.Waiter
}

// A forwarder withdraws a wait whose requester went away, as a leader does:
// the OpCancel is forwarded like any command.
func TestForwarderWithdrawsAWait(t *testing.T) {
	h := newHarness(t, Config{})
	waiter := forwardedWait(h)
	h.step(CancelEvent(4))
	rd := h.ready(true)
	if len(rd.Proposals) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpCancel ||
		rd.Proposals[0].Proposal.Commands[0].Waiter != waiter || rd.Proposals[0].Proposal.Time != h.m.Now() {
		t.Fatalf("want one forwarded OpCancel of waiter %d, got %+v", waiter, rd.Proposals)
	}
	if st, _ := h.m.Status(core.KindMutex, "m"); len(st.Waiters) != 0 || h.d.Pending() != 0 {
		t.Fatalf("after the cancel: waiters %+v, %d pending", st.Waiters, h.d.Pending())
	}
}

// A withdrawal does not wait for fresh time: a forwarder whose log time is
// stale proposes the cancel at once (a closing node flushes it once and
// has no time for a tick round trip), and asks for no tick for it.
func TestForwarderWithdrawsWithoutAskingForTime(t *testing.T) {
	h := newHarness(t, Config{Name: "n3"})
	waiter := forwardedWait(h)
	h.advance(5_000) // long past the last tick it asked for
	h.step(CancelEvent(4))
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 1 ||
		rd.Proposals[0].Proposal.Commands[0].Op != core.OpCancel || rd.Proposals[0].Proposal.Commands[0].Waiter != waiter {
		t.Fatalf("want the cancel of waiter %d alone, at once, got %+v", waiter, rd.Proposals)
	}
}

// rideSetup makes a leader where session a holds mutex m and session b
// waits for it through this replica; session c is ready to ask for it.
func rideSetup(t *testing.T, cfg Config) (h *harness, sa, sc core.SessionID, token core.FencingToken) {
	t.Helper()
	h = newHarness(t, cfg)
	h.lead(1)
	sa = h.session(1, "a")
	sb := h.session(2, "b")
	sc = h.session(3, "c")
	h.step(RequestEvent(4, acquire("a", 2, sa, "m", 0)))
	h.ready(true)
	g := h.reply(4)
	if g.Result.Outcome != core.OutcomeGranted {
		t.Fatalf("a: %+v", g)
	}
	h.step(RequestEvent(5, acquire("b", 2, sb, "m", core.WaitForever)))
	h.ready(true)
	if q := h.reply(5); q.Kind != ReplyQueued {
		t.Fatalf("b: %+v, want queued", q)
	}
	return h, sa, sc, g.Result.Token
}

func release(client string, seq uint64, s core.SessionID, name string, token core.FencingToken) core.Command {
	c := cmd(client, seq, core.OpRelease)
	c.Kind, c.Name, c.Session, c.Token = core.KindMutex, name, s, token
	return c
}

// A blocking acquire of a mutex that a request blocked here waits for can
// only queue: it waits for the next proposal and rides in it, in its place
// in arrival order, so a hand-off takes one entry, not two.
func TestAcquireOfAQueuedMutexRidesWithTheNextProposal(t *testing.T) {
	h, sa, sc, token := rideSetup(t, Config{})
	h.step(RequestEvent(6, acquire("c", 2, sc, "m", core.WaitForever)))
	if rd := h.ready(true); len(rd.Proposals) != 0 {
		t.Fatalf("proposed %+v for an acquire that can only queue", rd.Proposals[0].Proposal)
	}
	h.noReply(6)
	h.advance(DefaultRideAlongMs - 1)
	if rd := h.ready(true); len(rd.Proposals) != 0 {
		t.Fatalf("proposed before the ride-along bound: %+v", rd.Proposals[0].Proposal)
	}
	h.step(RequestEvent(7, release("a", 3, sa, "m", token)))
	rd := h.ready(true)
	if len(rd.Proposals) != 1 {
		t.Fatalf("got %d proposals, want the release with the acquire in it", len(rd.Proposals))
	}
	cmds := rd.Proposals[0].Proposal.Commands
	if len(cmds) != 2 || cmds[0].Op != core.OpAcquire || cmds[1].Op != core.OpRelease {
		t.Fatalf("proposal %+v: want [acquire, release] in arrival order", cmds)
	}
	// c joined the queue before a released: b got the mutex, c waits.
	if g := h.reply(5); g.Kind != ReplyGranted {
		t.Fatalf("b: %+v, want granted", g)
	}
	if q := h.reply(6); q.Kind != ReplyQueued {
		t.Fatalf("c: %+v, want queued behind b", q)
	}
}

// Nothing rides for longer than RideAlongMs: the acquire goes out alone.
func TestRideAlongIsBounded(t *testing.T) {
	h, _, sc, _ := rideSetup(t, Config{RideAlongMs: 30})
	h.step(RequestEvent(6, acquire("c", 2, sc, "m", core.WaitForever)))
	h.ready(true)
	h.advance(29)
	if rd := h.ready(true); len(rd.Proposals) != 0 {
		t.Fatalf("proposed after 29 ms of a 30 ms bound")
	}
	h.advance(1)
	rd := h.ready(true)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 1 {
		t.Fatalf("after the bound: %+v, want the acquire alone", rd.Proposals)
	}
	if q := h.reply(6); q.Kind != ReplyQueued {
		t.Fatalf("c: %+v, want queued", q)
	}
}

// Only blocking acquires of a name queued here ride: a try, another name,
// or any acquire once the last wait here ended goes out at once, as do all
// when RideAlongMs is -1.
func TestOnlyAcquiresThatMustQueueRide(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		cmd  func(sc core.SessionID) core.Command
	}{
		{"a try", Config{}, func(sc core.SessionID) core.Command { return acquire("c", 2, sc, "m", 0) }},
		{"another name", Config{}, func(sc core.SessionID) core.Command { return acquire("c", 2, sc, "n", core.WaitForever) }},
		{"another kind", Config{}, func(sc core.SessionID) core.Command {
			c := acquire("c", 2, sc, "m", core.WaitForever)
			c.Kind, c.Limit = core.KindSemaphore, 1
			return c
		}},
		{"ride-along off", Config{RideAlongMs: -1}, func(sc core.SessionID) core.Command {
			return acquire("c", 2, sc, "m", core.WaitForever)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, _, sc, _ := rideSetup(t, tc.cfg)
			h.step(RequestEvent(6, tc.cmd(sc)))
			if rd := h.ready(true); len(rd.Proposals) != 1 {
				t.Fatalf("got %d proposals, want the acquire at once", len(rd.Proposals))
			}
			h.reply(6)
		})
	}
	t.Run("the wait here ended", func(t *testing.T) {
		h, sa, sc, token := rideSetup(t, Config{})
		h.step(RequestEvent(6, release("a", 3, sa, "m", token)))
		h.ready(true)
		if g := h.reply(5); g.Kind != ReplyGranted {
			t.Fatalf("b: %+v", g)
		}
		h.step(RequestEvent(7, acquire("c", 2, sc, "m", core.WaitForever)))
		if rd := h.ready(true); len(rd.Proposals) != 1 {
			t.Fatalf("got %d proposals: nothing waits here any more, the acquire must go at once", len(rd.Proposals))
		}
		if q := h.reply(7); q.Kind != ReplyQueued {
			t.Fatalf("c: %+v", q)
		}
		if len(h.d.queuedOn) != 1 {
			t.Fatalf("queuedOn %v, want c's wait alone", h.d.queuedOn)
		}
	})
}

// A full proposal's worth goes out at once, riders or not.
func TestRidersFillingABatchGoAtOnce(t *testing.T) {
	h, _, _, _ := rideSetup(t, Config{MaxBatch: 3, MaxInflight: 3})
	var ss []core.SessionID
	for i := range 3 {
		ss = append(ss, h.session(RequestID(10+i), fmt.Sprintf("r%d", i)))
	}
	for i, s := range ss[:2] {
		h.step(RequestEvent(RequestID(20+i), acquire(fmt.Sprintf("r%d", i), 2, s, "m", core.WaitForever)))
	}
	if rd := h.ready(false); len(rd.Proposals) != 0 {
		t.Fatalf("two riders of a batch of three went out")
	}
	h.step(RequestEvent(22, acquire("r2", 2, ss[2], "m", core.WaitForever)))
	rd := h.ready(false)
	if len(rd.Proposals) != 1 || len(rd.Proposals[0].Proposal.Commands) != 3 {
		t.Fatalf("got %+v, want one full proposal", rd.Proposals)
	}
}

// The count of waits per object follows every way a wait ends here.
func TestQueuedOnFollowsTheWaits(t *testing.T) {
	h, _, sc, _ := rideSetup(t, Config{RideAlongMs: -1})
	h.step(RequestEvent(6, acquire("c", 2, sc, "m", core.WaitForever)))
	h.ready(true)
	if n := h.d.queuedOn[objectKey{core.KindMutex, "m"}]; n != 2 {
		t.Fatalf("queuedOn[m] = %d, want 2", n)
	}
	h.step(CancelEvent(6))
	h.ready(true)
	if n := h.d.queuedOn[objectKey{core.KindMutex, "m"}]; n != 1 {
		t.Fatalf("after a cancel queuedOn[m] = %d, want 1", n)
	}
	// A blocked request outlives the role (the grant still reaches it
	// through the log); a snapshot that skips entries fails it.
	h.step(LeadershipEvent(false, 2, 2))
	if n := h.d.queuedOn[objectKey{core.KindMutex, "m"}]; n != 1 {
		t.Fatalf("after the role ended queuedOn[m] = %d, want b's wait still counted", n)
	}
	h.step(RestoredEvent(h.now))
	if len(h.d.queuedOn) != 0 {
		t.Fatalf("after a restore queuedOn = %v, want empty", h.d.queuedOn)
	}
}

func TestRideAlongMsIsValidated(t *testing.T) {
	for _, ms := range []int64{-2, MaxRideAlongMs + 1} {
		if _, err := New(Config{RideAlongMs: ms}); err == nil || !strings.Contains(err.Error(), "RideAlongMs") {
			t.Fatalf("RideAlongMs %d: got %v, want an error naming it", ms, err)
		}
	}
}

// A leader stopped while its clock ran on (its process paused, its host
// or disk stalled, with the majority that kept it leader) finds log time
// standing where it stopped. Its next proposal is a leader-change mark,
// which takes the stamp whole and moves every deadline by the jump, and
// only one while it is on its way: caught up MaxClockStepMs at a time,
// log time would run faster than real time, and a session created right
// after the stall would end within a few entries, its lock given to
// another while its client counts seconds of lease left.
func TestStalledLeaderMarksTheJump(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, KeepTimeMs: 1000})
	h.lead(1)
	h.ready(true)
	h.session(1, "a") // 10 s: something is timed
	h.advance(1_500)
	for _, p := range h.ready(true).Proposals {
		if len(p.Proposal.Commands) > 0 && p.Proposal.Commands[0].Op == core.OpLeaderChange {
			t.Fatalf("a mark after 1.5 s of a running leader: %+v", p.Proposal)
		}
	}
	h.advance(20_000) // stalled
	c := createSession("b", 1)
	c.TTLMs = 5_000
	h.step(RequestEvent(2, c))
	rd := h.ready(false)
	if len(rd.Proposals) == 0 || len(rd.Proposals[0].Proposal.Commands) != 1 || rd.Proposals[0].Proposal.Commands[0].Op != core.OpLeaderChange {
		t.Fatalf("the first proposal after a 20 s stall: %+v, want a leader-change mark", rd.Proposals)
	}
	h.advance(100)
	more := h.d.Ready()
	for _, p := range append(rd.Proposals[1:], more.Proposals...) {
		if len(p.Proposal.Commands) > 0 && p.Proposal.Commands[0].Op == core.OpLeaderChange {
			t.Fatalf("a second mark while the first is on its way: %+v", p.Proposal)
		}
	}
	for _, p := range append(rd.Proposals, more.Proposals...) {
		h.apply(p)
	}
	h.ready(true)
	if r := h.reply(2); r.Kind != ReplyResult || r.Result.Err != nil {
		t.Fatalf("the create after the stall: %+v", r)
	}
	for range 48 { // 4.8 s of the 5 s lease, ticking as the leader does
		h.advance(100)
		h.ready(true)
	}
	if n := h.m.Counts().Sessions; n != 2 {
		t.Fatalf("%d sessions 4.8 s after a 5 s session was created past a stall, want both: log time ran ahead of the clock", n)
	}
}

// TestMarkRules: the mark carries the configured rules, none for a build
// of rules 3 (MarkRulesUnmarked), this build's by default; other rules are
// refused.
func TestMarkRules(t *testing.T) {
	for _, tc := range []struct{ cfg, want uint64 }{
		{0, core.RulesVersion},
		{MarkRulesUnmarked, 0},
		{core.RulesVersion, core.RulesVersion},
	} {
		h := newHarness(t, Config{MarkRules: tc.cfg})
		h.advance(0)
		h.lead(1)
		rd := h.ready(true)
		if len(rd.Proposals) == 0 {
			t.Fatalf("MarkRules %d: no mark proposed", tc.cfg)
		}
		mark := rd.Proposals[0].Proposal
		if len(mark.Commands) != 1 || mark.Commands[0].Op != core.OpLeaderChange || mark.Commands[0].Rules != tc.want {
			t.Fatalf("MarkRules %d: mark is %+v, want a leader change carrying rules %d", tc.cfg, mark, tc.want)
		}
	}
	for _, r := range []uint64{1, 2, core.RulesVersion + 1} {
		if err := (Config{MarkRules: r}).Validate(); err == nil {
			t.Errorf("MarkRules %d: accepted", r)
		}
	}
}
