package sim

import (
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
)

// A multiplexed client is the application process the Go client serves in
// production (issue 17): ONE client id shared by several sessions and many
// concurrent callers. It keeps more requests in flight on that id than
// core's DedupeWindow, so they reach the leader out of order (the network
// reorders them), and it must therefore say on every command the lowest seq
// it still waits for (Command.LowestPending). Each session renews itself
// under a dedupe identity of its own; a lost session is reopened under the
// same client id; a caller that gives up on a wait withdraws the request
// with OpAbandon, retried until answered; and the client's view of each
// lease ends before the server's can (leaseGuard), at which point the
// session is Done for its callers.
//
// Everything it decides comes from its own stream ("mux-N") and from the
// order of events; maps are only looked up, never walked.

const (
	// muxMaxOutstanding bounds the commands a multiplexed client has in
	// flight on its client id (queued waits included): twice core's
	// DedupeWindow, so the window alone cannot serve it.
	muxMaxOutstanding = 64
	// muxPrivateNames is how many mutexes only multiplexed clients use,
	// besides the workload's shared ones: enough (session, name) pairs for
	// more than muxMaxOutstanding/2 callers to wait at once.
	muxPrivateNames = 16
	// leaseTick is the driver's tick interval: a command may be stamped with
	// a log time up to one tick old (a follower forwarded it), and the expiry
	// itself waits for the next tick entry.
	leaseTick = replica.DefaultTickIntervalMs * time.Millisecond
)

// mux timer kinds (the event's arg, low bits; the high bits name a caller
// or a session slot).
const (
	muxRetry  = iota // gen: the attempt that timed out
	muxGiveUp        // gen: the call's id
	muxWake          // gen: the caller's generation
	muxKA            // gen: the session's keepalive generation
	muxLease         // gen: the session's lease generation
	muxOutage        // gen: the outage generation; starts or ends one
	muxTimerKinds
)

// A multiplexed client loses the network now and then when the run cuts
// links or pauses clients (Options.PartitionRate or PauseRate above 0): its
// host's link goes down, or it sits
// behind a node that stopped answering (issue 17, 9). Every message to or
// from it is dropped for 0.5 × the shortest TTL to 1.5 × the longest, so
// its sessions often lapse while it holds names others wait for, at an
// expiry the cluster decides on its own, healthy: the moment a lease view
// must already have ended (Done before regrant). The gaps between outages
// are exponential with this mean, drawn from the client's own stream, so
// runs without multiplexed clients draw as before.
const muxOutageGap = 6 * time.Second

type muxCallKind uint8

const (
	mcAcquire muxCallKind = iota + 1 // acquire or campaign
	mcRelease                        // release or resign
	mcCreate
	mcKeepAlive
	mcAbandon
	mcRead   // read-then-release-cleanup: the status read
	mcCancel // read-then-release-cleanup: cancel our waiter
)

// muxCall is one request of a multiplexed client over all its attempts.
type muxCall struct {
	id       uint64
	kind     muxCallKind
	cmd      core.Command
	read     readRequest
	key      objKey
	caller   *muxCaller // nil for session traffic
	sess     *muxSession
	attempts []uint64
	attempt  uint64
	first    time.Duration // virtual time of the first attempt
	queued   bool
	hist     int
	active   bool
	given    bool   // the caller gave up on it (an abandon is under way)
	target   uint64 // clean-up calls: the seq of the request given up on
}

// muxSession is one of the client's sessions, as the client sees it.
type muxSession struct {
	slot    int
	id      core.SessionID
	ttl     time.Duration
	done    bool // the client's lease view ended, or the cluster said it is gone
	kaID    string
	kaSeq   uint64
	kaGen   uint64
	ka      *muxCall
	leaseG  uint64
	doneAt  time.Duration // virtual time at which the client's view of the lease ends
	inUse   map[objKey]bool
	held    map[objKey]core.FencingToken // what the client believes the session holds
	creator *muxCall

	// for the checkers: the keepalive (or create) the lease view rests on
	basisKey  kaKey
	basisSent time.Duration
	expired   bool
	expiredL  core.LogTime
	expiredAt time.Duration
}

type kaKey struct {
	client  string
	seq     uint64
	session core.SessionID
}

// muxCaller is one application thread: take a lock, hold it, release it,
// with a wait that it may give up on.
type muxCaller struct {
	idx     int
	gen     uint64
	call    *muxCall
	sess    *muxSession
	key     objKey
	tok     core.FencingToken
	busy    bool // inside an activity
	holding bool // between the grant and the release: the next wake releases
}

type muxClient struct {
	w        *world
	idx      int
	addr     int
	id       string
	rng      *mrand.Rand
	clk      clock
	seq      uint64
	nextID   uint64
	attempts uint64
	guess    int
	quiet    bool

	sessions []*muxSession
	callers  []*muxCaller
	pending  []uint64 // seqs of ClientID still awaited, ascending
	byTry    map[uint64]*muxCall
	byID     map[uint64]*muxCall

	// Scenario knobs, set by a script: callers take only these names, and
	// hold what they get this long (0: 0-100 ms drawn).
	only    []objKey
	holdFor time.Duration

	maxPending int // the most requests awaited at once on ClientID
	kaReused   int // renewals refused because their seq had answered another request
	abandons   int
	lostCount  int

	offline   bool   // in an outage: cut off from every replica
	outageGen uint64 // voids the timer of an outage ended early
}

func newMuxClient(w *world, i int) *muxClient {
	m := &muxClient{
		w:     w,
		idx:   i,
		addr:  w.addrResource() + 1 + i,
		id:    fmt.Sprintf("x%d", i),
		rng:   stream(w.opts.Seed, fmt.Sprintf("mux-%d", i)),
		byTry: map[uint64]*muxCall{},
		byID:  map[uint64]*muxCall{},
	}
	if d := w.opts.DriftPPM; d > 0 {
		m.clk.driftPPM = m.rng.Int64N(2*d+1) - d
	}
	m.guess = 1 + m.rng.IntN(w.opts.Replicas)
	nSess := 2 + m.rng.IntN(3)
	for s := 0; s < nSess; s++ {
		m.sessions = append(m.sessions, &muxSession{slot: s, done: true})
	}
	nCallers := 34 + m.rng.IntN(15)
	for c := 0; c < nCallers; c++ {
		m.callers = append(m.callers, &muxCaller{idx: c})
	}
	return m
}

func (m *muxClient) logf(format string, args ...any) {
	if m.w.tr.text() {
		m.w.tr.logf(m.w.now, "%s "+format, append([]any{m.id}, args...)...)
	}
}

func (m *muxClient) timerAt(at time.Duration, kind, who int, gen uint64) {
	m.w.schedule(&event{at: max(at, m.w.now), kind: evMux, node: m.idx, arg: kind + muxTimerKinds*who, gen: gen})
}

func (m *muxClient) begin() {
	for _, s := range m.sessions {
		m.open(s)
	}
	for _, c := range m.callers {
		m.wake(c, time.Duration(m.rng.IntN(800))*time.Millisecond)
	}
	m.nextOutage()
}

// nextOutage schedules the next outage, in a run that cuts links or pauses
// clients.
func (m *muxClient) nextOutage() {
	if o := m.w.opts; o.PauseRate <= 0 && o.PartitionRate <= 0 || m.quiet {
		return
	}
	m.outageGen++
	gap := time.Duration(m.rng.ExpFloat64() * float64(muxOutageGap))
	m.timerAt(m.w.now+gap, muxOutage, 0, m.outageGen)
}

// outage starts an outage, or ends the one under way.
func (m *muxClient) outage() {
	w := m.w
	if m.offline {
		m.reconnect()
		m.nextOutage()
		return
	}
	if m.quiet || w.now >= w.opts.Duration {
		return
	}
	lo, hi := w.opts.TTLMin/2, 3*w.opts.TTLMax/2
	d := lo + time.Duration(m.rng.Int64N(int64(hi-lo)+1))
	m.offline = true
	w.net.offline[m.addr] = true
	w.stats.faults++
	w.tr.logf(w.now, "FAULT %s cut off from the cluster for %v", m.id, d)
	m.outageGen++
	m.timerAt(w.now+d, muxOutage, 0, m.outageGen)
}

func (m *muxClient) reconnect() {
	m.offline = false
	m.w.net.offline[m.addr] = false
	m.outageGen++
	m.w.tr.logf(m.w.now, "%s reconnected", m.id)
}

func (m *muxClient) wake(c *muxCaller, d time.Duration) {
	c.gen++
	m.timerAt(m.w.now+d, muxWake, c.idx, c.gen)
}

// timer is one of the client's timers firing.
func (m *muxClient) timer(arg int, gen uint64) {
	kind, who := arg%muxTimerKinds, arg/muxTimerKinds
	switch kind {
	case muxRetry:
		if cl := m.byTry[gen]; cl != nil && cl.active && cl.attempt == gen {
			m.guess = m.guess%m.w.opts.Replicas + 1
			m.send(cl)
		}
	case muxGiveUp:
		if cl := m.byID[gen]; cl != nil && cl.active && !cl.given {
			m.giveUp(cl)
		}
	case muxWake:
		c := m.callers[who]
		switch {
		case c.gen != gen:
		case c.holding:
			m.release(c)
		case !c.busy:
			m.activity(c)
		}
	case muxKA:
		if s := m.sessions[who]; s.kaGen == gen && !s.done && s.ka == nil {
			m.keepAlive(s)
		}
	case muxLease:
		if s := m.sessions[who]; s.leaseG == gen && !s.done {
			m.lost(s, "its lease ran out on the client's clock")
		}
	case muxOutage:
		if gen == m.outageGen {
			m.outage()
		}
	}
}

// --- requests -------------------------------------------------------------

func (m *muxClient) newCall(kind muxCallKind, cmd core.Command) *muxCall {
	m.nextID++
	cl := &muxCall{id: m.nextID, kind: kind, cmd: cmd, hist: -1, active: true, first: m.w.now}
	m.byID[cl.id] = cl
	return cl
}

// command numbers a command of the shared client id and sends it.
func (m *muxClient) command(kind muxCallKind, cmd core.Command) *muxCall {
	m.seq++
	cmd.ClientID, cmd.Seq = m.id, m.seq
	m.pending = append(m.pending, m.seq)
	m.maxPending = max(m.maxPending, len(m.pending))
	cl := m.newCall(kind, cmd)
	return cl
}

// lowestPending is what every command says: the lowest seq still awaited.
func (m *muxClient) lowestPending() uint64 {
	if m.w.bug.mux == muxNoLowestPending || len(m.pending) == 0 {
		return 0
	}
	return m.pending[0]
}

func (m *muxClient) settle(seq uint64) {
	for i, s := range m.pending {
		if s == seq {
			m.pending = append(m.pending[:i], m.pending[i+1:]...)
			return
		}
	}
}

func (m *muxClient) send(cl *muxCall) {
	m.attempts++
	cl.attempt = m.attempts
	cl.attempts = append(cl.attempts, cl.attempt)
	m.byTry[cl.attempt] = cl
	msg := &message{from: m.addr, to: m.guess, attempt: cl.attempt, payload: &payload{}}
	if cl.kind == mcRead {
		msg.kind, msg.read = msgRead, cl.read
	} else {
		cmd := cl.cmd
		if cmd.ClientID == m.id {
			cmd.LowestPending = m.lowestPending()
		}
		msg.kind, msg.cmd = msgRequest, cmd
	}
	m.w.send(msg)
	timeout := 400*time.Millisecond + 4*m.w.opts.MaxDelay
	if cl.queued {
		timeout = 3 * time.Second
		if cl.cmd.WaitMs > 0 {
			timeout = time.Duration(cl.cmd.WaitMs)*time.Millisecond + time.Second
		}
	}
	m.timerAt(m.w.now+timeout, muxRetry, 0, cl.attempt)
}

// finish forgets a call's attempts: late answers find nothing.
func (m *muxClient) finish(cl *muxCall) {
	cl.active = false
	for _, a := range cl.attempts {
		delete(m.byTry, a)
	}
	delete(m.byID, cl.id)
}

func (m *muxClient) receive(msg *message) {
	cl := m.byTry[msg.attempt]
	if cl == nil || !cl.active {
		return
	}
	if msg.kind == msgReadReply {
		if msg.readRes.notServed {
			m.guess = m.guess%m.w.opts.Replicas + 1
			m.send(cl)
			return
		}
		m.finish(cl)
		m.readDone(cl, msg.readRes)
		return
	}
	r := msg.reply
	switch r.Kind {
	case replica.ReplyResult, replica.ReplyGranted, replica.ReplyWaitEnded:
		m.guess = msg.from
		m.finish(cl)
		m.answered(cl, r.Result)
	case replica.ReplyQueued:
		m.guess = msg.from
		cl.queued = true
		m.attempts++ // re-arm the timer for the longer wait; late replies still match
		cl.attempt = m.attempts
		cl.attempts = append(cl.attempts, cl.attempt)
		m.byTry[cl.attempt] = cl
		timeout := 3 * time.Second
		if cl.cmd.WaitMs > 0 {
			timeout = time.Duration(cl.cmd.WaitMs)*time.Millisecond + time.Second
		}
		m.timerAt(m.w.now+timeout, muxRetry, 0, cl.attempt)
	case replica.ReplyNotLeader:
		if r.Leader >= 1 && r.Leader <= uint64(m.w.opts.Replicas) {
			m.guess = int(r.Leader)
		} else {
			m.guess = m.guess%m.w.opts.Replicas + 1
		}
		m.send(cl)
	case replica.ReplyUnknown, replica.ReplyBusy:
		m.guess = m.guess%m.w.opts.Replicas + 1
		m.send(cl)
	case replica.ReplyRejected:
		panic(fmt.Sprintf("sim: mux client %s sent a request the replica rejects: %+v", m.id, cl.cmd))
	}
}

// answered is a call's final answer.
func (m *muxClient) answered(cl *muxCall, r core.Result) {
	if cl.cmd.ClientID == m.id {
		m.settle(cl.cmd.Seq)
	}
	m.w.tr.mix(0x3c11, uint64(m.idx), cl.cmd.Seq, uint64(r.Outcome), uint64(r.Token), boolWord(r.Err != nil))
	m.logf("%v %s seq=%d -> %s", cl.cmd.Op, cl.cmd.Name, cl.cmd.Seq, describeResult(r))
	if r.Err != nil && r.Err.Code == core.CodeFailedPrecondition && strings.Contains(r.Err.Msg, "was forgotten") {
		m.w.chk.fail(Safety, "mux-forgotten", "client %s was refused request seq %d (%v) as forgotten while it still waited for it: %s",
			cl.cmd.ClientID, cl.cmd.Seq, cl.cmd.Op, r.Err.Msg)
	}
	if r.Err == nil && r.Outcome == core.OutcomeRefused && r.Waiter != 0 {
		m.w.chk.waitEndAnswered("client "+m.id, cl.cmd, r)
	}
	switch cl.kind {
	case mcCreate:
		m.created(cl, r)
	case mcKeepAlive:
		m.renewed(cl, r)
	case mcAcquire:
		m.acquired(cl, r)
	case mcRelease:
		m.w.hist.end(cl.hist, r, m.w.now)
		m.w.stats.ops++
		m.endActivity(cl.caller)
	case mcAbandon, mcCancel:
		m.cleanedUp(cl, r)
	}
}

// --- sessions -------------------------------------------------------------

func (m *muxClient) open(s *muxSession) {
	if m.quiet {
		return
	}
	o := m.w.opts
	ttl := (o.TTLMin + time.Duration(m.rng.Int64N(int64(o.TTLMax-o.TTLMin)+1))).Truncate(time.Millisecond)
	cl := m.command(mcCreate, core.Command{Op: core.OpSessionCreate, TTLMs: ttl.Milliseconds(), Owner: m.id})
	cl.sess = s
	s.creator = cl
	m.send(cl)
}

func (m *muxClient) created(cl *muxCall, r core.Result) {
	s := cl.sess
	s.creator = nil
	if r.Err != nil {
		m.open(s)
		return
	}
	// A fresh record per session: the checkers keep what they know of the
	// old one under its id.
	s = &muxSession{slot: s.slot, id: r.Session, ttl: time.Duration(cl.cmd.TTLMs) * time.Millisecond, kaGen: s.kaGen, leaseG: s.leaseG,
		inUse: map[objKey]bool{}, held: map[objKey]core.FencingToken{}}
	m.sessions[s.slot] = s
	s.kaID = m.kaIdentity(s)
	m.w.muxChk.sessionOf[s.id] = s
	m.extend(s, cl, kaKey{m.id, cl.cmd.Seq, 0})
	m.scheduleKA(s, cl.first+s.ttl/3)
}

// kaIdentity is the dedupe identity of a session's keepalives: its own, so
// that one session's renewal is never answered from another's stored result.
func (m *muxClient) kaIdentity(s *muxSession) string {
	if m.w.bug.mux == muxSharedKA {
		return m.id + "/ka" // issue 17 (1): every session's keepalive under one identity, counters from 1
	}
	return fmt.Sprintf("%s/ka/%d", m.id, s.id)
}

func (m *muxClient) scheduleKA(s *muxSession, at time.Duration) {
	s.kaGen++
	m.timerAt(at, muxKA, s.slot, s.kaGen)
}

func (m *muxClient) keepAlive(s *muxSession) {
	s.kaSeq++
	cmd := core.Command{Op: core.OpSessionKeepAlive, ClientID: s.kaID, Seq: s.kaSeq, Session: s.id}
	if m.w.bug.mux != muxSharedKA && m.w.bug.mux != muxNoLowestPending {
		cmd.LowestPending = s.kaSeq // one renewal at a time per identity
	}
	cl := m.newCall(mcKeepAlive, cmd)
	cl.sess = s
	s.ka = cl
	m.send(cl)
}

func (m *muxClient) renewed(cl *muxCall, r core.Result) {
	s := cl.sess
	s.ka = nil
	if s.done || s.id != cl.cmd.Session {
		return
	}
	if r.Err != nil {
		if r.Err.Code == core.CodeNotFound {
			m.lost(s, "the cluster says it is gone")
			return
		}
		if r.Err.Code == core.CodeFailedPrecondition && strings.Contains(r.Err.Msg, "already used for another request") {
			m.kaReused++
		}
		m.scheduleKA(s, m.w.now)
		return
	}
	m.extend(s, cl, kaKey{cl.cmd.ClientID, cl.cmd.Seq, s.id})
	m.scheduleKA(s, cl.first+s.ttl/3)
}

// leaseGuard is how much earlier than send time + TTL the client's lease
// view ends. The server measures the lease from the log time that stamped
// the renewal, which may be up to one tick older than the send (a command
// forwarded by a follower), and expires it at the first tick entry after:
// two ticks. Both the client's clock and the leader's may drift by DriftPPM,
// in opposite directions: twice the drift over the TTL.
func (m *muxClient) leaseGuard(ttl time.Duration) time.Duration {
	if m.w.bug.mux == muxLeaseFromSend {
		return 0 // issue 17 (6): the lease ends at send time + TTL
	}
	return 2*leaseTick + time.Duration(2*m.w.opts.DriftPPM*int64(ttl)/1_000_000)
}

// extend moves the client's view of a session's lease to the send time of
// the successful renewal cl (its first attempt) + TTL − guard, by the
// client's own clock, and sets the timer at which the session is Done.
func (m *muxClient) extend(s *muxSession, cl *muxCall, basis kaKey) {
	end := m.clientTime(cl.first) + s.ttl - m.leaseGuard(s.ttl)
	s.doneAt = max(s.doneAt, m.clk.every(end))
	s.basisKey, s.basisSent = basis, cl.first
	s.leaseG++
	m.timerAt(s.doneAt, muxLease, s.slot, s.leaseG)
	m.w.muxChk.keptAlive(m, s)
}

// clientTime is the client's monotonic clock at virtual time v.
func (m *muxClient) clientTime(v time.Duration) time.Duration {
	return m.clk.wall(v) - clockEpoch
}

// lost ends a session for the client: its callers stop believing they hold
// anything under it, and a new session takes its slot.
func (m *muxClient) lost(s *muxSession, why string) {
	if s.done {
		return
	}
	m.logf("session %d is done: %s", s.id, why)
	m.lostCount++
	s.done = true
	s.held = map[objKey]core.FencingToken{}
	s.leaseG++
	s.kaGen++
	if s.ka != nil {
		m.finish(s.ka)
		s.ka = nil
	}
	m.w.tr.mix(0x3c12, uint64(m.idx), uint64(s.id))
	m.open(s)
}

// --- callers --------------------------------------------------------------

// activity starts a caller's next lock: pick a live session and a name it
// is not using, acquire with a wait (or try once), hold, release.
func (m *muxClient) activity(c *muxCaller) {
	if m.quiet {
		return
	}
	if len(m.pending) >= muxMaxOutstanding {
		m.wake(c, 20*time.Millisecond)
		return
	}
	r := m.rng
	s := m.sessions[r.IntN(len(m.sessions))]
	key := m.pickName()
	if s.done || s.inUse[key] {
		m.wake(c, time.Duration(10+r.IntN(40))*time.Millisecond)
		return
	}
	wait := int64(100 + r.IntN(2000))
	switch r.IntN(8) {
	case 0:
		wait = 0
	case 1:
		wait = core.WaitForever
	}
	cmd := core.Command{Op: core.OpAcquire, Kind: key.kind, Name: key.name, Session: s.id, WaitMs: wait, Owner: m.id}
	if key.kind == core.KindElection {
		cmd = core.Command{Op: core.OpCampaign, Name: key.name, Session: s.id, WaitMs: wait, Owner: m.id,
			Value: []byte(fmt.Sprintf("%s-v%d", m.id, m.seq+1))}
	}
	c.busy, c.sess, c.key, c.tok = true, s, key, 0
	s.inUse[key] = true
	cl := m.command(mcAcquire, cmd)
	cl.caller, cl.sess, cl.key = c, s, key
	c.call = cl
	cl.hist = m.w.hist.beginMux(m, key, cl.cmd)
	if wait != 0 && r.IntN(3) == 0 {
		// An impatient caller: its context ends, maybe before the request
		// even reached the leader.
		m.timerAt(m.w.now+time.Duration(10+r.IntN(1500))*time.Millisecond, muxGiveUp, 0, cl.id)
	}
	m.send(cl)
}

func (m *muxClient) pickName() objKey {
	nm := m.w.names
	r := m.rng
	if len(m.only) > 0 {
		return m.only[r.IntN(len(m.only))]
	}
	switch r.IntN(6) {
	case 0:
		return objKey{core.KindMutex, nm.mutexes[r.IntN(len(nm.mutexes))]}
	case 1:
		return objKey{core.KindElection, nm.elections[r.IntN(len(nm.elections))]}
	}
	return objKey{core.KindMutex, fmt.Sprintf("xm%d", r.IntN(muxPrivateNames))}
}

func (m *muxClient) acquired(cl *muxCall, r core.Result) {
	c, s := cl.caller, cl.sess
	m.w.hist.end(cl.hist, r, m.w.now)
	m.w.stats.ops++
	if r.Err == nil && r.Outcome == core.OutcomeGranted {
		m.w.muxChk.ackedGrant(m, cl.key, cl.cmd.Session, r.Token)
		if s.done || s.id != cl.cmd.Session {
			m.endActivity(c) // granted to a session the client no longer trusts: it lapses with it
			return
		}
		c.tok = r.Token
		s.held[cl.key] = r.Token
		m.hold(c)
		return
	}
	if r.Err != nil && r.Err.Code == core.CodeNotFound {
		if s.id == cl.cmd.Session {
			m.lost(s, "the cluster says it is gone")
		}
	}
	m.endActivity(c)
}

// hold keeps a grant for up to a second, or, one hold in four, for a long
// job: one to two of the longest TTLs, across renewals and outages, relying
// on the session's Done to say when the lock can no longer be trusted.
func (m *muxClient) hold(c *muxCaller) {
	c.holding, c.call = true, nil
	d := time.Duration(m.rng.IntN(1000)) * time.Millisecond
	if m.rng.IntN(4) == 0 {
		ttl := m.w.opts.TTLMax
		d = ttl + time.Duration(m.rng.Int64N(int64(ttl)+1))
	}
	if m.holdFor > 0 {
		d = m.holdFor
	}
	m.wake(c, d)
}

// release is a holding caller's timer: give the lock back.
func (m *muxClient) release(c *muxCaller) {
	c.holding = false
	s, key := c.sess, c.key
	if s.done || s.id == 0 || s.held[key] != c.tok {
		m.endActivity(c) // the session lapsed under the caller: nothing to release
		return
	}
	delete(s.held, key) // the caller stops relying on the lock as it asks to release it
	cmd := core.Command{Op: core.OpRelease, Kind: key.kind, Name: key.name, Session: s.id, Token: c.tok}
	if key.kind == core.KindElection {
		cmd = core.Command{Op: core.OpResign, Name: key.name, Session: s.id, Token: c.tok}
	}
	cl := m.command(mcRelease, cmd)
	cl.caller, cl.sess, cl.key = c, s, key
	c.call = cl
	cl.hist = m.w.hist.beginMux(m, key, cl.cmd)
	m.send(cl)
}

func (m *muxClient) endActivity(c *muxCaller) {
	if c.sess != nil && c.sess.inUse != nil {
		delete(c.sess.inUse, c.key)
	}
	c.busy, c.holding, c.call, c.sess = false, false, nil, nil
	m.wake(c, time.Duration(m.rng.IntN(200))*time.Millisecond)
}

// --- giving up --------------------------------------------------------------

// giveUp is an impatient caller's context ending: the caller is told the
// acquire failed at once, and the client withdraws the request with
// OpAbandon by its dedupe identity, retrying until answered, while
// LowestPending stays at or below its seq.
func (m *muxClient) giveUp(cl *muxCall) {
	cl.given = true
	m.logf("gives up on %v %s seq=%d", cl.cmd.Op, cl.cmd.Name, cl.cmd.Seq)
	m.abandons++
	m.finish(cl) // the caller was told it failed: late answers go nowhere
	m.w.tr.mix(0x3c13, uint64(m.idx), cl.cmd.Seq)
	if m.w.bug.mux == muxReadThenRelease {
		// issue 17 (3): forget the request, then read the session's holds
		// and release what is found — racing the request itself.
		m.settle(cl.cmd.Seq)
		rd := m.newCall(mcRead, core.Command{})
		rd.read = readRequest{kind: cl.key.kind, name: cl.key.name}
		rd.caller, rd.sess, rd.key = cl.caller, cl.sess, cl.key
		rd.target = cl.cmd.Seq
		rd.caller.call = rd
		m.send(rd)
		return
	}
	ab := m.command(mcAbandon, core.Command{Op: core.OpAbandon, Kind: cl.key.kind, Name: cl.key.name,
		Session: cl.cmd.Session, TargetSeq: cl.cmd.Seq})
	ab.caller, ab.sess, ab.key, ab.target = cl.caller, cl.sess, cl.key, cl.cmd.Seq
	ab.caller.call = ab
	m.send(ab)
}

// readDone is the old clean-up's status read: release our grant if there is
// one, cancel our waiter if there is one, else nothing.
func (m *muxClient) readDone(rd *muxCall, res readResult) {
	c, s := rd.caller, rd.sess
	if res.err == nil {
		for _, h := range res.status.Holders {
			if h.Session == s.id {
				cmd := core.Command{Op: core.OpRelease, Kind: rd.key.kind, Name: rd.key.name, Session: s.id, Token: h.Token}
				if rd.key.kind == core.KindElection {
					cmd = core.Command{Op: core.OpResign, Name: rd.key.name, Session: s.id, Token: h.Token}
				}
				cl := m.command(mcCancel, cmd)
				cl.caller, cl.sess, cl.key = c, s, rd.key
				cl.target = rd.target
				cl.hist = m.w.hist.beginMux(m, rd.key, cl.cmd)
				c.call = cl
				m.send(cl)
				return
			}
		}
		for _, wt := range res.status.Waiters {
			if wt.Session == s.id {
				cl := m.command(mcCancel, core.Command{Op: core.OpCancel, Waiter: wt.ID, Session: s.id})
				cl.caller, cl.sess, cl.key = c, s, rd.key
				cl.target = rd.target
				c.call = cl
				m.send(cl)
				return
			}
		}
	}
	m.w.muxChk.cleanedUp(m, rd.target, rd.key, 0)
	m.endActivity(c)
}

func (m *muxClient) cleanedUp(cl *muxCall, r core.Result) {
	if cl.hist >= 0 {
		m.w.hist.end(cl.hist, r, m.w.now)
	}
	target := cl.target
	if cl.kind == mcAbandon {
		m.settle(target) // the abandoned request is no longer awaited
		if r.Err != nil && r.Err.Code != core.CodeNotFound {
			m.logf("abandon of seq %d refused: %v", target, r.Err)
		}
	}
	by := uint64(0)
	if cl.kind == mcAbandon {
		by = cl.cmd.Seq
	}
	m.w.muxChk.cleanedUp(m, target, cl.key, by)
	m.endActivity(cl.caller)
}

// --- liveness -------------------------------------------------------------

// quiesce starts the liveness phase: no new work, and an outage under way
// ends now.
func (m *muxClient) quiesce() {
	m.quiet = true
	if m.offline {
		m.reconnect()
	}
}

func (m *muxClient) busyReport() string {
	for _, c := range m.callers {
		if c.busy {
			if c.call != nil && c.call.active {
				return fmt.Sprintf("%s caller %d: %v seq=%d waits since %.3fs", m.id, c.idx, c.call.cmd.Op, c.call.cmd.Seq, c.call.first.Seconds())
			}
			return fmt.Sprintf("%s caller %d holds %s %q", m.id, c.idx, c.key.kind, c.key.name)
		}
	}
	for _, s := range m.sessions {
		if s.creator != nil {
			return fmt.Sprintf("%s opens a session", m.id)
		}
		if s.ka != nil && m.w.now-s.ka.first > 2*time.Second {
			return fmt.Sprintf("%s keepalive of session %d waits since %.3fs", m.id, s.id, s.ka.first.Seconds())
		}
	}
	return ""
}

// --- world hooks ----------------------------------------------------------

func (w *world) startMux() {
	w.muxChk = newMuxChecker(w)
	for i := 0; i < max(w.opts.Mux, 0); i++ {
		m := newMuxClient(w, i)
		w.muxes = append(w.muxes, m)
		m.begin()
	}
}

func (w *world) muxTimer(e *event) { w.muxes[e.node].timer(e.arg, e.gen) }

func (w *world) muxReceive(msg *message) {
	w.muxes[msg.to-w.addrResource()-1].receive(msg)
}

func (w *world) muxQuiesce() {
	for _, m := range w.muxes {
		m.quiesce()
	}
}

// muxBug is a planted bug of the multiplexed client (bugs.go): each brings
// back one of issue 17's old behaviours.
type muxBug uint8

const (
	muxSharedKA        muxBug = iota + 1 // every session's keepalive under one identity, counters from 1
	muxNoLowestPending                   // LowestPending 0: the old window of DedupeWindow results
	muxReadThenRelease                   // give up by reading the holds and releasing what is found
	muxLeaseFromSend                     // lease view ends at send time + TTL
)
