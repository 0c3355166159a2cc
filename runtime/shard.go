package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4/client"
	"github.com/lni/dragonboat/v4/raftio"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
	"github.com/lockstepd/lockstep/core/shards"
)

// shard runs one Raft group on this node: its state machine, and the node
// logic of core/replica around it.
//
// One driver serves the shard in every role (replica.Role): while this node
// leads, it stamps client commands with the node's clock, packs them,
// proposes ticks and the leader-change entry; while another node leads, it
// forwards: it packs the same way, stamps with the log time this node has
// applied (never its clock, so a follower cannot move log time), and its
// proposals travel through Dragonboat, which hands a follower's proposal to
// the leader. It sees every applied entry and routes results to its
// requests by (ClientID, Seq), and grants and ended waits by waiter id.
//
// step performs what the driver asks: it feeds the clock, takes its Ready,
// hands replies to the waiting Do calls and proposals to Dragonboat. One
// goroutine (run) steps on ticks and when kicked; the goroutines that
// change the driver on the hot path (a request submitted, entries applied,
// a proposal confirmed) step themselves when no one else is stepping
// (stepNow), which saves a wake-up of run on every request's way in and
// every reply's way out. stepMu keeps the proposals in the order Ready gave
// them. The driver's own gate (replica.Config's MaxUnconfirmed)
// holds its proposals while two are unconfirmed, so under load the requests
// that arrive during a commit are packed into the next entry (group
// commit): fewer entries to encode, replicate, sync and apply.
type shard struct {
	n         *Node
	index     uint64 // the API's shard id
	dbID      uint64 // Dragonboat's shard id: index+1
	label     string
	replicaID uint64
	log       *slog.Logger
	m         shardMetrics
	sm        *stateMachine
	session   *client.Session
	watch     *watchHub // this shard's events: indexes are this shard's log

	kickC  chan struct{}
	flushC chan chan struct{} // run a step now and say when it is done
	stepMu sync.Mutex         // held through a step: its proposals reach Dragonboat in the driver's order

	mu            sync.Mutex
	drv           *replica.Driver
	pending       map[replica.RequestID]*pending
	nextReq       replica.RequestID
	isLeader      bool
	leaderID      uint64
	term          uint64
	leaderSince   time.Time     // when this node learned of the current leader
	leaderChanged chan struct{} // closed and replaced at every leadership event
	clockOffset   core.LogTime  // the driver's ClockOffset last reported in the log
}

// clockOffsetReported is how far a leader's clock offset must have moved,
// since it was last reported, before the log says so again.
const clockOffsetReported = 1000 // ms

// noteClockOffset shows how far this member's wall clock stands off log
// time (docs/design.md, Time), and on a leader logs it: its wall clock was
// stepped during its term, which log time ignored, or was behind log time
// when it took the lead, which log time did not wait for. Log times read
// that far off the wall clock meanwhile. A follower's figure is its
// clock's offset from the leader's. Holds s.mu.
func (s *shard) noteClockOffset() {
	offset := s.drv.ClockOffset()
	s.m.clockOffset.Set(float64(offset) / 1000)
	if !s.drv.IsLeader() {
		// A follower's figure reads high while it replays old entries after
		// a restart: the gauge (and its alert, which waits) is enough.
		s.clockOffset = 0
		return
	}
	if d := offset - s.clockOffset; d >= clockOffsetReported || d <= -clockOffsetReported {
		s.clockOffset = offset
		s.log.Warn("this leader's wall clock stands off log time (a step during its term, or behind when it took the lead): log time follows its monotonic clock; fix the time source",
			"shard", s.index, "offset_ms", int64(offset))
	}
}

// pending is one request a Do call waits for.
type pending struct {
	id     replica.RequestID
	ch     chan replica.Reply // at most a Queued and a final reply
	waiter core.WaiterID      // set when the Queued reply arrives (under shard.mu)
}

var errNoLeader = errors.New("no leader is known")

// driverConfig is a shard driver's configuration from the consensus keys.
func driverConfig(replicaID uint64, c config.Consensus) replica.Config {
	cfg := replica.Config{
		Name:           strconv.FormatUint(replicaID, 16),
		TickIntervalMs: int64(c.TickIntervalMs),
		MaxBatch:       c.MaxBatch,
		RideAlongMs:    int64(c.RideAlongMs),
	}
	if cfg.RideAlongMs == 0 {
		cfg.RideAlongMs = -1 // the configuration's "never"; the driver's 0 is its default
	}
	return cfg
}

func newShard(n *Node, index uint64) (*shard, error) {
	drv, err := replica.New(driverConfig(n.replicaID, n.cfg.Consensus))
	if err != nil {
		return nil, err
	}
	label := strconv.FormatUint(index, 10)
	s := &shard{
		n: n, index: index, dbID: index + 1, label: label, replicaID: n.replicaID,
		log:           n.log.With("shard", index),
		m:             n.metrics.forShard(label),
		kickC:         make(chan struct{}, 1),
		flushC:        make(chan chan struct{}),
		drv:           drv,
		pending:       map[replica.RequestID]*pending{},
		leaderChanged: make(chan struct{}),
		watch:         newWatchHub(n.metrics.watchSubscribers, index),
	}
	s.watch.dropped = n.metrics.pushesDropped
	if s.sm, err = newStateMachine(s); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *shard) kick() {
	select {
	case s.kickC <- struct{}{}:
	default:
	}
}

// stepNow steps on the calling goroutine unless another is stepping; then
// it kicks run, which steps again after it, so nothing the caller gave the
// driver waits for a tick.
func (s *shard) stepNow() {
	if !s.stepMu.TryLock() {
		s.kick()
		return
	}
	s.stepLocked()
	s.stepMu.Unlock()
}

// run is the shard's loop until stop closes.
func (s *shard) run(stop <-chan struct{}) {
	every := time.Duration(s.n.cfg.Consensus.TickIntervalMs) * time.Millisecond / 5
	t := time.NewTicker(min(max(every, 5*time.Millisecond), 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.kickC:
		case <-t.C:
		case done := <-s.flushC:
			s.step()
			close(done)
			continue
		case <-stop:
			return
		}
		s.step()
	}
}

// flush makes the loop propose what the driver holds now (Close uses it so
// that the cancels of withdrawn waits are proposed before it stops).
func (s *shard) flush(timeout time.Duration) {
	done := make(chan struct{})
	select {
	case s.flushC <- done:
		select {
		case <-done:
		case <-time.After(timeout):
		}
	case <-time.After(timeout):
	}
}

type proposalWork struct {
	id   replica.ProposalID
	data []byte
	lead bool // made by the driver as leader: stamped with this member's clock
}

// step takes the driver's Ready: replies go to their Do calls at once,
// proposals are made outside the lock, in order. A refused leader-change
// entry is proposed again by the driver itself (it re-marks on
// ProposalFailedEvent).
func (s *shard) step() {
	s.stepMu.Lock()
	defer s.stepMu.Unlock()
	s.stepLocked()
}

func (s *shard) stepLocked() {
	s.mu.Lock()
	s.drv.Step(s.n.clockEvent())
	s.noteClockOffset()
	rd := s.drv.Ready()
	for _, r := range rd.Replies {
		s.deliver(r)
	}
	work := make([]proposalWork, 0, len(rd.Proposals))
	for _, p := range rd.Proposals {
		work = append(work, proposalWork{id: p.ID, data: p.Data, lead: s.drv.Role() == replica.RoleLeader})
	}
	s.m.pendingRequests.Set(float64(s.drv.Pending()))
	s.m.proposalsFlight.Set(float64(s.drv.Unconfirmed()))
	s.mu.Unlock()
	for _, w := range work {
		s.propose(w)
	}
}

func (s *shard) deliver(r replica.Reply) {
	p := s.pending[r.Request]
	if p == nil {
		return // its Do call went away
	}
	if r.Kind == replica.ReplyQueued {
		p.waiter = r.Result.Waiter
	}
	select {
	case p.ch <- r:
	default:
		s.log.Error("dropping a reply: the request already has two", "request", r.Request, "kind", r.Kind)
	}
	if r.Final() {
		delete(s.pending, r.Request)
	}
}

// propose hands one proposal to Dragonboat and, when it is confirmed or
// refused, tells the driver and the loop.
func (s *shard) propose(w proposalWork) {
	start := time.Now()
	if w.lead {
		if id, _, ok, err := s.n.nh.GetLeaderID(s.dbID); err != nil || !ok || id != s.replicaID {
			// Dragonboat stepped down before its leader update reached the
			// driver (a leader resumed from a stall, deposed meanwhile). It
			// would forward the proposal to the new leader, and its stamp,
			// this member's clock, would move log time as no forward may
			// (a forward is stamped with the applied log time, core/replica):
			// caught up 2 s an entry, leases would run fast. It fails; the
			// requests are answered unknown, and their clients retry.
			s.confirmed(w, false, start)
			return
		}
	}
	rs, err := s.n.nh.Propose(s.session, w.data, s.n.proposalTimeout)
	if err != nil {
		s.log.Debug("proposal refused", "err", err)
		s.confirmed(w, false, start)
		return
	}
	go func() {
		r := <-rs.ResultC()
		rs.Release()
		s.confirmed(w, r.Completed(), start)
	}()
}

func (s *shard) confirmed(w proposalWork, ok bool, start time.Time) {
	s.mu.Lock()
	ev := replica.ProposalConfirmedEvent(w.id)
	if !ok {
		s.m.proposalsFailed.Inc()
		ev = replica.ProposalFailedEvent(w.id)
	}
	if err := s.drv.Step(ev); err != nil {
		s.log.Error("driver refused an event", "err", err)
	}
	s.mu.Unlock()
	if ok {
		s.m.commitLatency.Observe(time.Since(start).Seconds())
	}
	s.stepNow()
}

// leaderUpdated is Dragonboat's report of a leader change. It must return
// quickly.
func (s *shard) leaderUpdated(info raftio.LeaderInfo) {
	s.mu.Lock()
	isLeader := info.LeaderID != 0 && info.LeaderID == s.replicaID
	elected := info.LeaderID != 0 && (info.Term != s.term || info.LeaderID != s.leaderID)
	s.isLeader, s.leaderID, s.term = isLeader, info.LeaderID, info.Term
	if elected {
		s.leaderSince = time.Now()
	}
	s.drv.Step(s.n.clockEvent())
	s.drv.Step(replica.LeadershipEvent(isLeader, info.Term, info.LeaderID))
	close(s.leaderChanged)
	s.leaderChanged = make(chan struct{})
	s.mu.Unlock()
	if elected {
		s.m.leaderElections.Inc()
		s.log.Info("leader elected", "term", info.Term, "leader", s.n.nodeName(info.LeaderID), "self", isLeader)
	}
	if isLeader {
		s.m.isLeader.Set(1)
	} else {
		s.m.isLeader.Set(0)
	}
	s.showLeader()
	s.kick()
}

// showLeader sets lockstep_raft_has_leader: 1 while a leader is known and
// no peer refuses this member (a removed member keeps its old leader id,
// and would show 1 to alerts and dashboards that count members without a
// leader).
func (s *shard) showLeader() {
	s.mu.Lock()
	known := s.leaderID != 0
	s.mu.Unlock()
	if known && s.n.cut.reason() == "" {
		s.m.hasLeader.Set(1)
	} else {
		s.m.hasLeader.Set(0)
	}
}

// applied is called by the state machine, under its lock, for every core
// entry: the driver routes what it answered, and watchers see its effects.
// Expired sessions are counted by the member that leads the shard when it
// applies the expiry, so that summing lockstep_sessions_expired_total over
// members counts each once (an expiry applied during a leader change may go
// uncounted; a replay at restart is not counted, as no member leads then).
//
// The same member closes an expired session in the other shards, in the
// background (shards.Expired): a session abandoned by its client sends no
// keepalive whose fan-out would learn it is lost, and a leader change in
// another shard extended its copy there by a TTL.
func (s *shard) applied(e core.Entry, out *core.Output) {
	s.mu.Lock()
	if s.isLeader {
		for i := range out.Effects {
			if out.Effects[i].Kind == core.EffectSessionExpired {
				s.m.sessionsExpired.Inc()
			}
		}
	}
	closes := shards.Expired(s.index, len(s.n.shards), s.drv.IsLeader(), out)
	if err := s.drv.Step(replica.AppliedEvent(e, out)); err != nil {
		s.log.Error("driver refused an applied entry", "index", e.Index, "err", err)
	}
	s.mu.Unlock()
	for i := range closes {
		s.log.Info("closing a session that expired in this shard in the others", "session", closes[i].Session, "shards", closes[i].Shards)
		s.n.closeBestEffort(&closes[i])
	}
	s.watch.publish(out)
}

// restored is called when the state machine jumped to a snapshot whose log
// time is now.
func (s *shard) restored(index uint64, now core.LogTime) {
	s.mu.Lock()
	s.drv.Step(replica.RestoredEvent(now))
	s.mu.Unlock()
	s.watch.reset(index)
	s.kick()
}

// submit gives cmd to the driver, when it can propose it now (as leader or
// forwarder).
func (s *shard) submit(cmd core.Command) (*pending, error) {
	s.mu.Lock()
	if !s.drv.Proposes() {
		s.mu.Unlock()
		return nil, errNoLeader
	}
	s.nextReq++
	p := &pending{id: s.nextReq, ch: make(chan replica.Reply, 2)}
	if err := s.drv.Step(replica.RequestEvent(p.id, cmd)); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.pending[p.id] = p
	s.mu.Unlock()
	s.stepNow()
	return p, nil
}

// abandon withdraws a request whose caller went away. A request blocked on
// a waiter is cancelled through the log by the driver, which owes the
// cancel until one applies (replica.Driver's owed cancels): at once as
// leader or forwarder, or once it can propose. gone: nobody will ask for
// its answer again (its identity is the node's own: not resendable), so
// a grant that comes anyway is released (replica.GoneEvent).
func (s *shard) abandon(p *pending, gone bool) {
	s.mu.Lock()
	if _, ok := s.pending[p.id]; ok {
		delete(s.pending, p.id)
		ev := replica.CancelEvent(p.id)
		if gone {
			ev = replica.GoneEvent(p.id)
		}
		s.drv.Step(ev)
	}
	s.mu.Unlock()
	s.kick()
}

// answered is the final reply already delivered to p, which its caller
// did not take (ok false: none came).
func (s *shard) answered(p *pending) (replica.Reply, bool) {
	for {
		select {
		case rep := <-p.ch:
			if rep.Final() {
				return rep, true
			}
			// Its queued reply, not yet taken when the caller left: the
			// final one may be behind it (the channel holds both).
		default:
			return replica.Reply{}, false
		}
	}
}

// unheard tells the driver that a private request's caller left without
// rep, its answer to cmd: a grant in it is released
// (replica.UnheardEvent).
func (s *shard) unheard(cmd core.Command, rep replica.Reply) {
	if rep.Kind != replica.ReplyGranted && rep.Kind != replica.ReplyResult {
		return
	}
	s.mu.Lock()
	err := s.drv.Step(replica.UnheardEvent(cmd, rep.Result))
	s.mu.Unlock()
	if err != nil {
		s.log.Error("releasing a grant its caller did not hear", "err", err)
	}
	s.kick()
}

func (s *shard) leadership() (isLeader bool, leaderID, term uint64, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isLeader, s.leaderID, s.term, s.leaderChanged
}

// leaderState is the leadership as this node knows it, and since when.
func (s *shard) leaderState() (isLeader bool, leaderID, term uint64, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isLeader, s.leaderID, s.term, s.leaderSince
}

func (s *shard) isBlocked(p *pending) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p.waiter != 0
}

func (s *shard) String() string { return fmt.Sprintf("shard %d", s.index) }

// do runs cmd on this shard until its final answer, within ctx and by
// deadline (the zero time: none), which ends it as a deadline of ctx would.
func (s *shard) do(ctx context.Context, deadline time.Time, cmd core.Command) (core.Result, error) {
	n := s.n
	start := time.Now()
	why := ""
	var qw queuedWait // across attempts: a retry of a withdrawn wait stays withdrawn
	// A command with its caller's own identity can be sent again, to
	// another member, and re-attach to its wait by dedupe: a wait this node
	// stops serving as it closes is left in the queue for it (stopServing).
	// One the node identified (Do's node-local identity) cannot: nobody
	// else knows its identity.
	resendable := !n.clients.local(cmd.ClientID)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-n.closing:
				return core.Result{}, ErrShuttingDown
			default:
			}
			if time.Since(start) > n.retryBudget {
				if why == errNoLeader.Error() {
					return core.Result{}, s.noLeader(time.Since(start))
				}
				return core.Result{}, fmt.Errorf("%w: %s: %s after %v", ErrUnavailable, s, why, time.Since(start).Round(time.Millisecond))
			}
		}
		p, err := s.submit(cmd)
		if err == nil && qw.withdrawn {
			s.withdrawAndWait(p) // asked in an earlier attempt: the driver withdraws it once it queues
		}
		if errors.Is(err, errNoLeader) {
			why = errNoLeader.Error()
			if err := s.waitLeader(ctx, deadline, start, n.retryBudget); err != nil {
				return core.Result{}, err
			}
			continue
		}
		if err != nil {
			return core.Result{}, err
		}
		rep, queued, err := s.await(ctx, deadline, p, &qw, resendable)
		if !resendable {
			// Its caller leaves without the answer (gone, or told its
			// wait timed out), and nobody else can ask for it: a grant
			// that came anyway is released.
			switch {
			case err != nil:
				if late, ok := s.answered(p); ok {
					s.unheard(cmd, late)
				}
			case ctx.Err() != nil && rep.Result.Err == nil && rep.Result.Outcome == core.OutcomeGranted:
				s.unheard(cmd, rep)
				return core.Result{}, ctx.Err()
			}
		}
		if err != nil {
			return core.Result{}, err
		}
		if queued {
			start = time.Now() // it waited, healthy, until now: the budget counts from here
		}
		switch rep.Kind {
		case replica.ReplyResult, replica.ReplyGranted, replica.ReplyWaitEnded:
			return rep.Result, nil
		case replica.ReplyNotLeader:
			why = "leadership moved"
			if err := s.waitLeader(ctx, deadline, time.Now(), 10*time.Millisecond); err != nil && !errors.Is(err, ErrUnavailable) {
				return core.Result{}, err
			}
		case replica.ReplyUnknown:
			why = "the proposal was not confirmed (leader lost, or no quorum)"
		case replica.ReplyBusy:
			return core.Result{}, ErrOverloaded
		case replica.ReplyRejected:
			return refused("the runtime cannot propose this command"), nil
		default:
			return core.Result{}, fmt.Errorf("runtime: unexpected reply %v", rep.Kind)
		}
	}
}

// noLeader is the ErrUnavailable of a request that found no leader known
// to this member for waited.
func (s *shard) noLeader(waited time.Duration) error {
	return fmt.Errorf("%w: %s: this member found no leader within %v: %s", ErrUnavailable, s, roundWait(waited), noQuorumHere)
}

// waitLeader waits for a leadership event, until budget has passed since
// start or ctx ends; without a leader by its deadline, ctx's or the given
// one (the zero time: none), or the budget's end, it answers
// ErrUnavailable saying so, not DeadlineExceeded.
func (s *shard) waitLeader(ctx context.Context, deadline time.Time, start time.Time, budget time.Duration) error {
	left := budget - time.Since(start)
	if left <= 0 {
		return s.noLeader(budget)
	}
	wait, late := min(left, 20*time.Millisecond), false // the forwarder also waits for a first applied entry
	if !deadline.IsZero() {
		d := time.Until(deadline)
		if d <= 0 {
			return s.noLeader(time.Since(start)) // as ctx's deadline, below
		}
		if d <= wait {
			wait, late = d, true
		}
	}
	_, _, _, changed := s.leadership()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
		if late {
			return s.noLeader(time.Since(start)) // as ctx's deadline, below
		}
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The caller's deadline came before a leader: what stopped the
			// request is that none is known, as at the end of the budget.
			return s.noLeader(time.Since(start))
		}
		return ctx.Err()
	case <-s.n.stopped:
		return ErrShuttingDown
	}
	return nil
}

// stuckTimers are await's timers, reused: one for each request was a
// tenth of the leader's allocated bytes with the request's context.
var stuckTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// await waits for p's final reply. A queued request keeps waiting until
// granted, ended, its ctx ends, its deadline passes (the zero time: none),
// or the node closes. Until it is queued (or answered), a request is
// bounded by the proposal timeout plus the retry budget, whatever ctx
// says: the drivers answer sooner when leadership is lost, but a request
// must not wait on a stuck pipeline forever. One timer serves both bounds:
// it runs to the earlier (late: the deadline), and once the request is
// queued, to the deadline alone. A deadline that passes ends the request
// as ctx's would: withdrawn, with context.DeadlineExceeded.
// queuedWait is what one Do learnt of its command's wait, across the
// attempts of shard.do: whether its caller was told it queued (the
// function of WithQueued runs once per Do, not once per attempt), and
// WithWithdrawal's channel and whether it was closed. A retry of a
// withdrawn wait (after a snapshot or a lost leader failed the first
// attempt as unknown) is withdrawn too, and its answer from the servers'
// memory, cancelled, is ErrWithdrawn as the first attempt's would be.
type queuedWait struct {
	told      bool
	withdraw  <-chan struct{}
	withdrawn bool
}

// queued tells the caller, the first time.
func (q *queuedWait) queued(ctx context.Context, waiter core.WaiterID) {
	if !q.told {
		q.told = true
		q.withdraw = NotifyQueued(ctx, waiter)
	}
}

// ended is the error of a final reply: ErrWithdrawn for a withdrawn wait
// that ended cancelled, nil otherwise.
func (q *queuedWait) ended(rep replica.Reply) error {
	if !q.withdrawn {
		return nil
	}
	cancelled := rep.Kind == replica.ReplyWaitEnded && rep.Reason == core.ReasonCancelled ||
		rep.Kind == replica.ReplyResult && rep.Result.Err == nil && rep.Result.Outcome == core.OutcomeRefused && rep.Result.Reason == core.ReasonCancelled
	if cancelled {
		return ErrWithdrawn
	}
	return nil
}

func (s *shard) await(ctx context.Context, deadline time.Time, p *pending, qw *queuedWait, resendable bool) (rep replica.Reply, queued bool, err error) {
	closing := s.n.closing
	stuck := stuckTimers.Get().(*time.Timer)
	wait, late := s.n.proposalTimeout+s.n.retryBudget, false
	if !deadline.IsZero() {
		if d := time.Until(deadline); d <= wait {
			wait, late = d, true
		}
	}
	stuck.Reset(wait)
	defer func() {
		stuck.Stop() // since Go 1.23 a stopped timer delivers nothing after a Reset
		stuckTimers.Put(stuck)
	}()
	stuckC := stuck.C
	var withdrawC <-chan struct{} // WithWithdrawal's, once queued, until closed
	for {
		select {
		case rep = <-p.ch:
			if rep.Kind != replica.ReplyQueued {
				return rep, queued, qw.ended(rep)
			}
			if !queued {
				qw.queued(ctx, rep.Result.Waiter)
				if !qw.withdrawn {
					withdrawC = qw.withdraw
				}
			}
			queued = true
			if closing == nil { // the node is closing: do not start a long wait
				return replica.Reply{}, queued, s.stopServing(p, qw, resendable)
			}
			switch {
			case deadline.IsZero():
				stuckC = nil
			case !late:
				stuck.Reset(time.Until(deadline))
				late = true
			}
		case <-withdrawC:
			withdrawC, qw.withdrawn = nil, true
			s.withdrawAndWait(p)
		case <-ctx.Done():
			s.abandon(p, !resendable)
			return replica.Reply{}, queued, ctx.Err()
		case <-closing:
			if s.isBlocked(p) {
				return replica.Reply{}, queued, s.stopServing(p, qw, resendable)
			}
			closing = nil // let it finish: Close drains in-flight requests
		case <-stuckC:
			s.abandon(p, !resendable)
			if late {
				return replica.Reply{}, queued, context.DeadlineExceeded
			}
			return replica.Reply{}, queued, fmt.Errorf("%w: %s: no answer within %v (it may still apply)", ErrUnavailable, s,
				s.n.proposalTimeout+s.n.retryBudget)
		case <-s.n.stopped:
			// Still not answered at the drain's end: a wait is ended as
			// those above, a request not queued is withdrawn.
			return replica.Reply{}, queued, s.stopServing(p, qw, resendable)
		}
	}
}

// stopServing ends p as this node closes, and answers the error its
// caller gets. A queued wait whose caller can send it again elsewhere
// (resendable) stays in the queue, as after a kill -9 of this node: the
// caller's resend to another member re-attaches to it by dedupe and keeps
// its place in the FIFO, where a withdrawal would send it to the back. A
// grant that lands on it while nobody comes back is bounded by its
// session, as after a kill -9: a session of its own client's dies with
// that client, and one the API made for the request alone is kept alive
// only while the request waits, so it expires with its TTL. Any other
// wait is withdrawn through the log, as is one whose caller asked it
// withdrawn (WithWithdrawal): nobody can come back for it, or its caller
// wants it gone. A request not queued yet (still on its way when the
// drain timeout ends) is withdrawn, as before.
func (s *shard) stopServing(p *pending, qw *queuedWait, resendable bool) error {
	if !resendable || qw.withdrawn || !s.isBlocked(p) {
		s.abandon(p, !resendable)
		return ErrShuttingDown
	}
	s.detach(p)
	return ErrWaitKept
}

// detach stops waiting for p's replies without withdrawing its request:
// the driver keeps it, and delivers its replies to nobody, until the node
// is gone. Only a closing node detaches.
func (s *shard) detach(p *pending) {
	s.mu.Lock()
	delete(s.pending, p.id)
	s.mu.Unlock()
}

// withdrawAndWait asks the machine to withdraw p's wait, through the log,
// while p waits on to hear whether its grant or the withdrawal applied
// first (WithWithdrawal). The driver owes the cancel until one applies.
func (s *shard) withdrawAndWait(p *pending) {
	s.mu.Lock()
	if _, live := s.pending[p.id]; live {
		s.drv.Step(replica.WithdrawEvent(p.id))
	}
	s.mu.Unlock()
	s.kick()
}
