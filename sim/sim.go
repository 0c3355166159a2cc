package sim

import (
	"fmt"
	mrand "math/rand/v2"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Result is what one run found.
type Result struct {
	Seed           uint64      `json:"seed"`
	OK             bool        `json:"ok"`
	TraceHash      string      `json:"trace_hash"`
	Ops            int         `json:"ops"`
	VirtualSeconds float64     `json:"virtual_seconds"`
	Faults         int         `json:"faults"`
	Violations     []Violation `json:"violations"`
	Warnings       []Violation `json:"warnings,omitempty"` // tolerated checks, first of each
	Severity       Severity    `json:"-"`
	Kind           string      `json:"failure,omitempty"`
	Steps          uint64      `json:"steps"`
	Applies        int         `json:"applies"`
	LeaderChanges  int         `json:"leader_changes"`
	SnapInstalls   int         `json:"snapshot_installs"`
	// Batched counts proposals that carried two or more client commands:
	// requests that waited in a driver's queue together (see Options.Gate).
	Batched int `json:"batched_proposals"`
	// Forwarded counts proposals of client commands a follower forwarded
	// to its leader; ForwardsLost those of them refused to the driver (a
	// timeout, a leader or term change, raft's refusal): requests that met
	// a fault on the way and were answered unknown.
	Forwarded    int `json:"forwarded_proposals"`
	ForwardsLost int `json:"forwards_lost"`
	// Ticks counts committed tick entries, TickRequests forwarders' tick
	// requests (once per log index and shard): an idle cluster with
	// nothing timed commits neither (issue 16).
	Ticks         int    `json:"ticks"`
	TickRequests  int    `json:"tick_requests"`
	Linearizable  string `json:"linearizable"`
	FenceAccepted int    `json:"fence_accepted"`
	FenceRejected int    `json:"fence_rejected"`
	Expiries      int    `json:"session_expiries"`
	// ForcedCloses counts the closes with apply_lock_delay the log applied
	// (once per shard), CloseDelays the lock-delays they started.
	ForcedCloses int `json:"forced_closes"`
	CloseDelays  int `json:"close_lock_delays"`
	// CleanupCloses counts the closes of a lost session's copies by a
	// client's fan-out (shards.Cleanup) the log applied, CleanupDelays the
	// lock-delays they started (both also in ForcedCloses, CloseDelays).
	CleanupCloses int `json:"cleanup_closes,omitempty"`
	CleanupDelays int `json:"cleanup_lock_delays,omitempty"`
	// ExpiryCloses counts the closes of an expired session's copies that
	// the leader of the shard where it expired sent to the others
	// (shards.Expired) the log applied, ExpiryDelays the lock-delays they
	// started (both also in ForcedCloses, CloseDelays).
	ExpiryCloses int `json:"expiry_closes,omitempty"`
	ExpiryDelays int `json:"expiry_lock_delays,omitempty"`
	// Over every shard, what the rules in force decided (Options.Upgrade):
	// RulesRaisedAt is the index whose mark raised shard 0's rules above
	// rules 3 (0: never), RefusedCloses the closes with apply_lock_delay
	// refused under rules 3, KeptValues and SetValues the campaigns of a
	// leader with another value under rules 3 and from rules 4.
	RulesRaisedAt uint64  `json:"rules_raised_at,omitempty"`
	RefusedCloses int     `json:"refused_closes,omitempty"`
	KeptValues    int     `json:"campaign_values_kept,omitempty"`
	SetValues     int     `json:"campaign_values_set,omitempty"`
	Options       Options `json:"-"`
	Flags         string  `json:"flags"`

	// In a run with private requests (Options.Private): how many clients
	// sent, gave up on, and followed with a fresh request of the same
	// name; and over every shard, the replicas' unheard releases that
	// ended a grant, that were refused for a grant another request was
	// answered (UnheardRaced of them for one a private request asked
	// for: the race rules 5 closes), and that were refused under rules
	// before 5 (a run that upgrades, before the mark that raises them).
	PrivateRequests int `json:"private_requests,omitempty"`
	PrivateGiveUps  int `json:"private_give_ups,omitempty"`
	PrivateRetries  int `json:"private_retries,omitempty"`
	UnheardEnded    int `json:"unheard_releases_ended,omitempty"`
	UnheardKept     int `json:"unheard_releases_kept,omitempty"`
	UnheardRaced    int `json:"unheard_releases_raced,omitempty"`
	UnheardUnruled  int `json:"unheard_releases_before_rules_5,omitempty"`
	// PublicRetries counts the private retries sent as public requests:
	// the client's own identity, resent until answered.
	PublicRetries int `json:"public_retries,omitempty"`

	// Over every shard, the requests the log answered "queued" on a wait
	// their session already had (core's join), JoinedByRetry of them a
	// private request's public retry, and the retries of one the log
	// answered how that wait ended (rules 5: settleWait's
	// waiter.joiners, or joinedWaitEnded), in any run.
	JoinedRequests int `json:"joined_requests,omitempty"`
	JoinedByRetry  int `json:"joined_by_public_retries,omitempty"`
	JoinedEnded    int `json:"joined_retries_answered_end,omitempty"`

	// Set on request: the trace's text and porcupine's visualization.
	TraceLines    []string `json:"-"`
	PorcupineHTML []byte   `json:"-"`
	// Determinism checking.
	StepHashes []uint64 `json:"-"`
	Diverged   bool     `json:"-"`
	DivergedAt uint64   `json:"-"`
	LastLines  []string `json:"-"`
}

// RunConfig says what a run keeps besides its verdict.
type RunConfig struct {
	CaptureTrace  bool     // keep every trace line
	AllEvents     bool     // with CaptureTrace: a line for every event, not only the story (ops, faults, leaders)
	RecordSteps   bool     // keep the hash after every step
	CompareSteps  []uint64 // stop at the first step whose hash differs from these
	RingLines     int      // keep the last lines of the trace
	Visualize     bool     // render porcupine's HTML of the history
	SkipPorcupine bool     // scenario tests that only look at invariants
	StopAtStep    uint64   // end the run after this many steps, unchecked (determinism reports)

	// Scenario tests: actions at fixed virtual times, and clients that run
	// a fixed plan once instead of drawing activities.
	script []scripted
	plans  map[int][]step
}

type phase uint8

const (
	phaseSafety phase = iota + 1
	phaseLiveness
	phaseDone
)

type stats struct {
	ops           int
	faults        int
	applies       int
	leaderChanges int
	snapInstalls  int
	batched       int
	forwarded     int
	forwardsLost  int
	ticks         int // committed entries without commands (a leader's ticks), counted once per index
	tickRequests  int // committed tick requests of forwarders
	// privateRequests counts the private acquires and campaigns clients
	// sent, privateGiveUps those their callers gave up on, privateRetries
	// the give-ups followed by a fresh request of the same name,
	// publicRetries those of them sent under the client's own identity.
	privateRequests, privateGiveUps, privateRetries, publicRetries int
}

// world is one run: the queue, the clock, every actor and the checkers.
// Nothing in it reads the wall clock, starts a goroutine or lets map order
// decide anything.
type world struct {
	opts Options
	cfg  RunConfig
	bug  Bug

	now time.Duration
	q   eventQueue
	tr  *trace

	net       *network
	nodes     []*node   // shard 0's nodes, 1-based: the replicas as faults and scenarios see them
	groups    [][]*node // by shard, then replica (1-based); groups[0] is nodes
	clients   []*client
	res       *resource
	chk       *checker
	hist      *history
	confState *pb.ConfState

	rngDisk  *mrand.Rand
	rngFault *mrand.Rand

	phase         phase
	livenessStart time.Duration
	stats         stats
	faults        *faults
	names         *names
	muxes         []*muxClient // multiplexed clients (mux.go), addressed after the resource
	muxChk        *muxChecker
	// stalledUntil: a replica (1-based) whose process stands still until
	// then, as a stopped process or a stalled host does: its timers, disk
	// completions and incoming messages wait in stalledEvents, in the
	// order they came (a stopped process reads its sockets in order when it
	// resumes), while its clocks run on.
	stalledUntil  []time.Duration
	stalledEvents [][]*event
	upg           *upgrade // the rolling upgrade, nil without one (upgrade.go)
}

type scripted struct {
	at time.Duration
	do func(w *world)
}

func (w *world) schedule(e *event) { w.q.schedule(e) }

func (w *world) tolerated(check string) bool {
	for _, c := range strings.Split(w.opts.Tolerate, ",") {
		if c != "" && c == check {
			return true
		}
	}
	return false
}

func (w *world) diskLatency() time.Duration {
	base := w.opts.DiskLatency
	return base/2 + time.Duration(w.rngDisk.Int64N(int64(base)+1))
}

func (w *world) addrResource() int { return w.opts.Replicas + w.opts.Clients + 1 }

// Run runs one seed to the end and checks it.
func Run(o Options, cfg RunConfig) (res Result) {
	o, err := o.resolve()
	if err != nil {
		return Result{Seed: o.Seed, Severity: Crash, Kind: "crash",
			Violations: []Violation{{Severity: Crash, Kind: "crash", Check: "options", Msg: err.Error()}}}
	}
	restore := installRaftRand(o.Seed)
	defer restore()
	w := newWorld(o, cfg)
	defer func() {
		if p := recover(); p != nil {
			w.chk.violations = append(w.chk.violations, Violation{At: w.now, Severity: Crash, Kind: "crash", Check: "panic",
				Msg: fmt.Sprintf("%v\n%s", p, debug.Stack())})
			res = w.result()
		}
	}()
	w.loop()
	w.finalChecks()
	return w.result()
}

func newWorld(o Options, cfg RunConfig) *world {
	w := &world{opts: o, cfg: cfg, tr: newTrace()}
	w.bug, _ = bugByName(o.Bug)
	w.tr.capture = cfg.CaptureTrace
	w.tr.record = cfg.RecordSteps
	w.tr.compare = cfg.CompareSteps
	if cfg.RingLines > 0 {
		w.tr.ring = make([]string, cfg.RingLines)
	}
	w.rngDisk = stream(o.Seed, "disk")
	w.rngFault = stream(o.Seed, "faults")
	w.net = newNetwork(stream(o.Seed, "network"), o, w.addrResource()+max(o.Mux, 0))
	w.chk = newChecker(w)
	w.hist = newHistory()
	w.names = newNames(o, stream(o.Seed, "names"))
	w.phase = phaseSafety

	voters := make([]uint64, o.Replicas)
	for i := range voters {
		voters[i] = uint64(i + 1)
	}
	w.confState = &pb.ConfState{Voters: voters}
	w.groups = make([][]*node, o.Shards)
	for s := range w.groups {
		w.groups[s] = make([]*node, o.Replicas+1)
	}
	for i := 1; i <= o.Replicas; i++ {
		r := stream(o.Seed, fmt.Sprintf("clock-%d", i))
		clk := &clock{}
		if o.ClockSkew > 0 {
			clk.offset = time.Duration(r.Int64N(2*int64(o.ClockSkew)+1)) - o.ClockSkew
		}
		if o.DriftPPM > 0 {
			clk.driftPPM = r.Int64N(2*o.DriftPPM+1) - o.DriftPPM
		}
		for s := range w.groups {
			n := &node{w: w, id: i, shard: uint64(s), clk: clk}
			n.bootstrap(voters)
			w.groups[s][i] = n
		}
	}
	w.nodes = w.groups[0]
	w.upg = newUpgrade(w)
	for i := 1; i <= o.Replicas; i++ {
		for _, g := range w.groups {
			g[i].start()
		}
	}
	w.res = newResource(w)
	for i := 0; i < o.Clients; i++ {
		c := newClient(w, i)
		w.clients = append(w.clients, c)
		c.begin()
	}
	w.startMux()
	w.faults = newFaults(w)
	w.faults.begin()
	for i, sc := range cfg.script {
		w.schedule(&event{at: sc.at, kind: evScript, arg: i})
	}
	w.tr.logf(0, "banner %s", o.Banner())
	return w
}

// loop runs events in order until the run ends or a check fails.
func (w *world) loop() {
	end := w.opts.Duration + w.opts.LivenessBound
	for w.q.Len() > 0 && w.phase != phaseDone {
		e := w.q.next()
		if e.at > end {
			w.now = end
			break
		}
		w.now = e.at
		if w.phase == phaseSafety && w.now >= w.opts.Duration {
			w.startLiveness()
		}
		if w.tr.ring != nil || w.cfg.AllEvents {
			w.tr.logf(w.now, "step %d: %v node=%d gen=%d arg=%d%s", w.tr.steps+1, e.kind, e.node, e.gen, e.arg, describeMsg(e.msg))
		}
		w.dispatch(e)
		w.tr.step()
		if w.chk.stop || w.tr.diverged || (w.cfg.StopAtStep > 0 && w.tr.steps >= w.cfg.StopAtStep) {
			return
		}
		if w.phase == phaseLiveness && w.livenessMet() {
			w.phase = phaseDone
		}
	}
	if w.phase != phaseDone {
		w.chk.fail(Liveness, "liveness", "the cluster did not settle within %v of healing: %s", w.opts.LivenessBound,
			strings.Join(w.unsettledItems(maxUnsettledItems), "; "))
	}
}

func (w *world) dispatch(e *event) {
	w.tr.mix(uint64(e.at), uint64(e.kind), uint64(e.node), e.gen, uint64(e.arg))
	if w.deferStalled(e) {
		return
	}
	switch e.kind {
	case evDeliver:
		w.deliver(e.msg)
	case evRaftTick, evProcess, evSynced:
		n := w.groups[e.arg][e.node]
		if !n.up || n.inc != e.gen {
			return
		}
		switch e.kind {
		case evRaftTick:
			n.tick()
		case evProcess:
			n.process()
		case evSynced:
			n.synced()
		}
	case evRestart:
		// A replica restarts with all its shards (they crashed together).
		for _, g := range w.groups {
			if n := g[e.node]; !n.up && n.inc == e.gen {
				w.tr.logf(w.now, "%s restarts", n)
				n.start()
			}
		}
	case evClient:
		w.clients[e.node].timer(e.arg, e.gen)
	case evResource:
		w.res.timer(e.gen)
	case evFault:
		w.faults.fire(e.arg)
	case evHeal:
		w.faults.heal(e.arg, e.gen)
	case evScript:
		w.cfg.script[e.arg].do(w)
	case evMux:
		w.muxTimer(e)
	case evUpgrade:
		w.upgradeNext()
	}
}

// stall stands replica id's process still for d: everything it would do
// meanwhile waits for the end of the stall, in the order it was due.
func (w *world) stall(id int, d time.Duration) {
	if w.stalledUntil == nil {
		w.stalledUntil = make([]time.Duration, w.opts.Replicas+1)
		w.stalledEvents = make([][]*event, w.opts.Replicas+1)
	}
	w.stalledUntil[id] = max(w.stalledUntil[id], w.now+d)
	w.schedule(&event{at: w.stalledUntil[id], kind: evHeal, arg: faultStall, gen: uint64(id)})
	w.tr.logf(w.now, "n%d stalls for %v", id, d)
}

// resume ends replica id's stall, unless a later one extended it: what
// waited runs now, in the order it came.
func (w *world) resume(id int) {
	if w.stalledUntil == nil || w.now < w.stalledUntil[id] {
		return
	}
	waited := w.stalledEvents[id]
	w.stalledEvents[id] = nil
	if len(waited) > 0 {
		w.tr.logf(w.now, "n%d resumes: %d events waited", id, len(waited))
	}
	for _, e := range waited {
		w.dispatch(e)
	}
}

// endStall ends replica id's stall at once, dropping what waited: a
// stopped process that is killed (kill -9) takes its unread messages and
// timers with it, and the next process runs.
func (w *world) endStall(id int) {
	if w.stalledUntil != nil {
		w.stalledUntil[id] = 0
		w.stalledEvents[id] = nil
	}
}

// deferStalled keeps an event of a stalled replica (its timers, its disk's
// completions, a message to it) for the end of the stall, and says so.
func (w *world) deferStalled(e *event) bool {
	if w.stalledUntil == nil {
		return false
	}
	id := 0
	switch e.kind {
	case evRaftTick, evProcess, evSynced:
		id = e.node
	case evDeliver:
		if e.msg.to >= 1 && e.msg.to <= w.opts.Replicas {
			id = e.msg.to
		}
	}
	if id == 0 || w.now >= w.stalledUntil[id] {
		return false
	}
	w.stalledEvents[id] = append(w.stalledEvents[id], e)
	return true
}

// deliver hands a message to its recipient, unless it was lost, its link
// is cut, or the recipient is down.
func (w *world) deliver(m *message) {
	toNode := m.to >= 1 && m.to <= w.opts.Replicas
	dropped := m.lost || w.net.blocked(m.from, m.to) || (toNode && !w.groups[m.shard][m.to].up)
	if m.raft != nil {
		w.tr.mix(uint64(m.raft.GetType()), m.raft.GetTerm(), m.raft.GetIndex(), m.raft.GetCommit(), uint64(len(m.raft.GetEntries())), boolWord(dropped))
	} else {
		w.tr.mix(uint64(m.kind), uint64(m.from), uint64(m.to), m.attempt, boolWord(dropped))
	}
	if m.shard != 0 {
		w.tr.mix(0x5ba2d, m.shard) // only then: a one-shard run hashes as before shards
	}
	if m.raft != nil && m.raft.GetType() == pb.MessageType_MsgSnap {
		w.reportSnapshot(m, dropped)
	}
	if dropped {
		w.net.dropped++
		return
	}
	switch {
	case toNode:
		n := w.groups[m.shard][m.to]
		switch m.kind {
		case msgRaft:
			_ = n.rn.Step(m.raft)
			n.markDirty()
		case msgRequest:
			if m.conn && !w.clients[m.from-w.opts.Replicas-1].readPrivate(m.attempt) {
				return // its caller closed the connection first, or the node read it already
			}
			n.request(m)
		case msgRead:
			n.read(m)
		case msgCancel:
			n.cancel(m)
		case msgWithdraw:
			n.withdraw(m)
		}
	case m.to == w.addrResource():
		w.res.receive(m)
	case m.to > w.addrResource():
		w.muxReceive(m)
	default:
		w.clients[m.to-w.opts.Replicas-1].receive(m)
	}
}

// reportSnapshot tells the leader whether its snapshot arrived, as a
// transport would, so that raft retries a lost one.
func (w *world) reportSnapshot(m *message, dropped bool) {
	from := w.groups[m.shard][m.from]
	if !from.up || from.inc != m.fromInc {
		return
	}
	status := raft.SnapshotFinish
	if dropped {
		status = raft.SnapshotFailure
	}
	from.rn.ReportSnapshot(uint64(m.to), status)
	from.markDirty()
}

// startLiveness ends the faults: every link heals, every replica restarts,
// paused clients wake, the network stops losing and duplicating, clocks
// stop jumping; then clients finish what they hold and the cluster must
// settle within LivenessBound.
func (w *world) startLiveness() {
	w.phase = phaseLiveness
	w.livenessStart = w.now
	w.tr.logf(w.now, "liveness phase: faults off, heal everything")
	w.faults.stop()
	w.net.heal()
	w.net.quiet = true
	for _, g := range w.groups {
		for _, n := range g[1:] {
			if !n.up {
				n.start()
			}
		}
	}
	for _, c := range w.clients {
		c.quiesce()
	}
	w.muxQuiesce()
}

// livenessMet: a leader every replica follows, every replica at the same
// applied index, and no client or resource request unanswered.
func (w *world) livenessMet() bool {
	return len(w.unsettledItems(1)) == 0
}

// maxUnsettledItems is how much a liveness failure lists: the first item
// alone misled (seed 84 of -mux 4 -stall-rate 1 printed two replicas
// apart, a cluster still writing, while every read was refused).
const maxUnsettledItems = 8

// unsettledItems says what keeps the run from settling, up to limit items:
// the groups first, then the clients, the resource and the multiplexed
// clients.
func (w *world) unsettledItems(limit int) []string {
	var items []string
	add := func(s string) bool {
		if s != "" {
			items = append(items, s)
		}
		return len(items) >= limit
	}
	for _, g := range w.groups {
		if add(unsettledGroup(g)) {
			return items
		}
	}
	for _, c := range w.clients {
		if s := c.busy(); s != "" && add(fmt.Sprintf("client %d: %s", c.idx, s)) {
			return items
		}
	}
	if s := w.res.busy(); s != "" && add("resource: "+s) {
		return items
	}
	for _, m := range w.muxes {
		if s := m.busyReport(); s != "" && add("multiplexed client "+s) {
			return items
		}
	}
	return items
}

// unsettledGroup says what keeps one shard's group from settling.
func unsettledGroup(nodes []*node) string {
	var lead uint64
	for _, n := range nodes[1:] {
		if !n.up {
			return fmt.Sprintf("replica %s is down", n)
		}
		if n.leader {
			lead = uint64(n.id)
		}
	}
	if lead == 0 {
		if nodes[1].w.opts.Shards > 1 {
			return fmt.Sprintf("no leader in shard %d", nodes[1].shard)
		}
		return "no leader"
	}
	applied := nodes[1].applied
	for _, n := range nodes[1:] {
		if n.lead != lead {
			return fmt.Sprintf("replica %s follows %d, not the leader %d", n, n.lead, lead)
		}
		if n.applied != applied {
			return fmt.Sprintf("replica %s applied %d, replica 1 applied %d", n, n.applied, applied)
		}
	}
	if n := nodes[lead]; n.rn.BasicStatus().GetCommit() != applied {
		return fmt.Sprintf("the leader %s committed %d but replicas applied %d", n, n.rn.BasicStatus().GetCommit(), applied)
	}
	return ""
}

func (w *world) result() Result {
	forced, delays := w.chk.forcedCloses()
	cleanups, cleanupDelays := w.chk.cleanupCloses()
	expiryCloses, expiryDelays := w.chk.expiryCloses()
	r := Result{
		Seed:           w.opts.Seed,
		TraceHash:      w.tr.hex(),
		Ops:            w.stats.ops,
		VirtualSeconds: w.now.Seconds(),
		Faults:         w.stats.faults,
		Violations:     w.chk.violations,
		Warnings:       w.chk.warnings,
		Steps:          w.tr.steps,
		Applies:        w.stats.applies,
		LeaderChanges:  w.stats.leaderChanges,
		SnapInstalls:   w.stats.snapInstalls,
		Batched:        w.stats.batched,
		Forwarded:      w.stats.forwarded,
		Ticks:          w.stats.ticks,
		TickRequests:   w.stats.tickRequests,
		ForwardsLost:   w.stats.forwardsLost,
		Linearizable:   w.hist.verdict,
		FenceAccepted:  w.res.accepted,
		FenceRejected:  w.res.rejected,
		Expiries:       w.chk.expiries(),
		ForcedCloses:   forced,
		CloseDelays:    delays,
		CleanupCloses:  cleanups,
		CleanupDelays:  cleanupDelays,
		ExpiryCloses:   expiryCloses,
		ExpiryDelays:   expiryDelays,
		Options:        w.opts,
		Flags:          w.opts.Flags(),
		TraceLines:     w.tr.lines,
		PorcupineHTML:  w.hist.html,
		StepHashes:     w.tr.stepHash,
		Diverged:       w.tr.diverged,
		DivergedAt:     w.tr.divergeAt,
	}
	if w.tr.ring != nil {
		r.LastLines = w.tr.lastLines()
	}
	if r.Violations == nil {
		r.Violations = []Violation{}
	}
	r.OK = len(r.Violations) == 0
	// One verdict per run: a safety violation outranks a crash, which
	// outranks a liveness failure.
	for _, want := range []Severity{Safety, Crash, Liveness} {
		for _, v := range r.Violations {
			if r.Severity == 0 && v.Severity == want {
				r.Severity = want
			}
		}
	}
	if !r.OK {
		r.Kind = r.Severity.String()
	}
	if w.opts.Private != PrivateNone {
		r.PrivateRequests, r.PrivateGiveUps, r.PrivateRetries = w.stats.privateRequests, w.stats.privateGiveUps, w.stats.privateRetries
		r.UnheardEnded, r.UnheardKept, r.UnheardRaced, r.UnheardUnruled = w.chk.unheardCounts()
		r.PublicRetries = w.stats.publicRetries
	}
	r.JoinedRequests, r.JoinedByRetry, r.JoinedEnded = w.chk.joinedCounts()
	if w.opts.Upgrade != UpgradeNone {
		r.RulesRaisedAt = w.chk.logs[0].led.raisedAt
		r.RefusedCloses, r.KeptValues, r.SetValues = w.chk.rulesCounts()
	}
	return r
}

// finalChecks run once the cluster settled: the replicas agree on their
// whole state, the ledger's live grants are what the machines hold, and the
// client histories are linearizable.
func (w *world) finalChecks() {
	if w.tr.diverged || w.cfg.StopAtStep > 0 {
		return
	}
	if w.chk.stop {
		if w.cfg.Visualize {
			w.hist.check(w) // the history up to the failure, for the visualization
		}
		return
	}
	w.checkConverged()
	w.muxChk.final()
	if w.chk.stop {
		return
	}
	w.hist.check(w)
}

func (w *world) checkConverged() {
	for s, g := range w.groups {
		w.checkGroupConverged(g, w.chk.logs[s].led)
		if w.chk.stop {
			return
		}
	}
}

// checkGroupConverged checks one shard's settled group against its ledger.
// Names of other shards have no holders in it, and none in its ledger.
func (w *world) checkGroupConverged(nodes []*node, led *ledger) {
	var ref *node
	for _, n := range nodes[1:] {
		if !n.up {
			continue
		}
		if ref == nil {
			ref = n
			continue
		}
		if n.applied == ref.applied && n.sm.Hash() != ref.sm.Hash() {
			w.chk.fail(Safety, "state-hash", "replicas %s and %s differ at index %d after settling", ref, n, n.applied)
			return
		}
	}
	if ref == nil || ref.applied != led.lastIndex {
		return
	}
	// Every grant the ledger has live is held in the machine, and nothing else.
	byKey := map[objKey][]*grantRec{}
	for _, g := range led.sortedLive() {
		byKey[g.key] = append(byKey[g.key], g)
	}
	for _, k := range w.names.all() {
		st, err := ref.sm.Status(k.kind, k.name)
		if err != nil {
			w.chk.fail(Safety, "final-state", "status of %s %q: %v", k.kind, k.name, err)
			continue
		}
		want := byKey[k]
		got := st.Holders
		ok := len(got) == len(want)
		if ok {
			tokens := make([]uint64, len(got))
			for i, h := range got {
				tokens[i] = uint64(h.Token)
			}
			sort.Slice(tokens, func(i, j int) bool { return tokens[i] < tokens[j] })
			for i := range tokens {
				if tokens[i] != uint64(want[i].token) {
					ok = false
				}
			}
		}
		if !ok {
			w.chk.fail(Safety, "acked-grant-lost", "%s %q: the machine holds %d grants, the log says %d are live",
				k.kind, k.name, len(got), len(want))
		}
	}
}

func describeMsg(m *message) string {
	if m == nil {
		return ""
	}
	if m.raft != nil {
		return fmt.Sprintf(" %d->%d %v term=%d index=%d commit=%d entries=%d lost=%v", m.from, m.to, m.raft.GetType(),
			m.raft.GetTerm(), m.raft.GetIndex(), m.raft.GetCommit(), len(m.raft.GetEntries()), m.lost)
	}
	return fmt.Sprintf(" %d->%d %v attempt=%d lost=%v", m.from, m.to, m.kind, m.attempt, m.lost)
}
