package sim

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
	"github.com/lockstepd/lockstep/core/shards"
)

// A client is one application process: a main thread that runs activities
// (take a lock, write to the fenced resource, release; wait at a barrier;
// campaign...) one request at a time, and a keepalive thread that renews
// its session. Both retry a request with the same (client_id, seq) until a
// replica answers it, following leader hints and moving on when a replica
// is silent. A client may pause (its timers and messages wait) or die.

const (
	threadMain = iota
	threadKA
)

// timer purposes (the event's arg)
const (
	argMainTimeout = iota
	argKATimeout
	argMainWake
	argKAWake
	argResume
	argGiveUp
	argWithdraw
)

type callKind uint8

const (
	callCmd callKind = iota + 1
	callRead
	callWrite
)

// call is one request in progress, over all its attempts.
type call struct {
	active       bool
	kind         callKind
	cmd          core.Command
	read         readRequest
	write        fenceWrite
	firstAttempt uint64
	attempt      uint64
	target       int
	started      time.Duration
	queued       bool
	hist         int // index in the history, -1 when not recorded
	session      core.SessionID
	queuedAt     int           // the replica that said "queued"
	queuedTry    uint64        // the attempt it said it to
	giveUp       bool          // a give-up timer is set
	withdrawn    bool          // it asked its wait withdrawn: a retry that queues again asks again, as the runtime's Do does
	waiter       core.WaiterID // the machine's id for its wait, from the "queued" answer
	// private: sent without a client_id of its own (Options.Private), so
	// its identity is the node's alone: sent once, to one node, over one
	// connection, and ended for good by anything short of its answer
	// (giveUpPrivate). taken: the node read it off that connection
	// (readPrivate). st is the step it serves, sent afresh by a caller
	// that retries after giving up.
	private bool
	taken   bool
	st      step

	// A command travels through core/shards, as the runtime's route does:
	// the Fanout says what to send, wave by wave; the client sends a wave's
	// commands one after the other (sub is the one in flight, to shard), and
	// feeds their answers back. One send alone (a name's command, or any
	// command with one shard) is retried until answered, as before shards.
	// A send of a wider wave gives up after subBudget, as the runtime's
	// retry budget does, and counts as unavailable there.
	fan      *shards.Fanout
	wave     []shards.Send
	answers  []shards.Answer
	sub      core.Command
	shard    uint64
	subStart time.Duration
}

// subBudget is how long one shard's part of a fanned-out command is retried
// before it counts as unavailable: the runtime's retry budget at the
// default 300 ms election timeout (docs/runtime.md).
const subBudget = 1500 * time.Millisecond

var errShardUnavailable = errors.New("sim: the shard did not answer within the retry budget")

type stepKind uint8

const (
	stCreate stepKind = iota + 1
	stClose
	stAcquire
	stRelease
	stWrite
	stSleep
	stBarrier
	stCampaign
	stProclaim
	stResign
	stStatus
	stPause // the client freezes itself (scenarios)
	stSet   // raise a set/remove barrier
	stRemove
	stReconcile // after giving up on a wait: read the status, release or cancel what is ours
	stCancel    // withdraw a queued request by its waiter id
	// stForceClose closes another client's session, as an operator's
	// 'lockstep session close' does: with apply_lock_delay, so that its
	// mutexes locked with a lock-delay stay blocked for it (rules 4).
	stForceClose
	// stCampaignAgain campaigns again for an election the client leads,
	// as a restarted process that resumed its session does: rules 4
	// answers its leadership and proclaims the value (an equal one
	// changes nothing).
	stCampaignAgain
)

// step is one thing an activity does next.
type step struct {
	kind    stepKind
	key     objKey
	waitMs  int64
	permits int64
	limit   int64
	mode    core.Mode
	dur     time.Duration
	value   string
	maxHold int64 // ms; 0: none
	// lockDelay is a mutex acquire's lock_delay_ms (0: none): how long
	// the name stays blocked after the grant ends by failure.
	lockDelay int64
	waiter    core.WaiterID
	// private: a caller without a client_id retrying its acquire or
	// campaign after giving up on it (giveUpPrivate): without one again.
	// public: a caller with a client_id of its own retrying so: sent
	// under the client's identity and retried as any request is, never
	// drawn private.
	private bool
	public  bool
}

type client struct {
	w     *world
	idx   int
	addr  int
	id    string
	kaID  string
	rng   *mrand.Rand
	seq   uint64
	kaSeq uint64

	dead     bool
	paused   bool
	deferred []deferredTimer
	inbox    []*message
	quiet    bool

	session core.SessionID
	ttl     time.Duration
	guesses []int  // by shard: the replica believed to lead it
	clSeq   uint64 // the cleanup closes' identity (clID)

	main     call
	ka       call
	plan     []step
	wakeGen  uint64
	kaGen    uint64
	attempts uint64

	planUsed       bool
	reconcile      objKey // the name a status read reconciles, after giving up
	scenarioCloses bool   // a scenario's: every activity ends with a close

	token   core.FencingToken // the grant the current activity holds
	holding bool
	lastOp  time.Duration
}

type deferredTimer struct {
	arg int
	gen uint64
}

func newClient(w *world, i int) *client {
	c := &client{
		w:    w,
		idx:  i,
		addr: w.opts.Replicas + 1 + i,
		id:   fmt.Sprintf("c%d", i),
		kaID: fmt.Sprintf("c%d.ka", i),
		rng:  stream(w.opts.Seed, fmt.Sprintf("client-%d", i)),
	}
	for range w.opts.Shards {
		c.guesses = append(c.guesses, 1+i%w.opts.Replicas)
	}
	return c
}

// begin starts the client after a small random delay.
func (c *client) begin() {
	c.sleep(time.Duration(c.rng.IntN(500)) * time.Millisecond)
}

func (c *client) logf(format string, args ...any) {
	if c.w.tr.text() {
		c.w.tr.logf(c.w.now, "c%d "+format, append([]any{c.idx}, args...)...)
	}
}

// attemptTimeout is how long one try waits for an answer before moving on.
func (c *client) attemptTimeout() time.Duration {
	return 400*time.Millisecond + 4*c.w.opts.MaxDelay
}

func (c *client) sleep(d time.Duration) {
	c.wakeGen++
	c.w.schedule(&event{at: c.w.now + d, kind: evClient, node: c.idx, arg: argMainWake, gen: c.wakeGen})
}

// timer is a timer event for this client.
func (c *client) timer(arg int, gen uint64) {
	if c.dead {
		return
	}
	if arg == argResume {
		c.resume()
		return
	}
	if c.paused {
		c.deferred = append(c.deferred, deferredTimer{arg, gen})
		return
	}
	switch arg {
	case argMainWake:
		if gen == c.wakeGen && !c.main.active {
			c.next()
		}
	case argMainTimeout:
		if c.main.active && gen == c.main.attempt {
			c.retry(&c.main, threadMain)
		}
	case argKAWake:
		if gen == c.kaGen && !c.ka.active {
			c.keepAlive()
		}
	case argKATimeout:
		if c.ka.active && gen == c.ka.attempt {
			c.retry(&c.ka, threadKA)
		}
	case argWithdraw:
		if cl := &c.main; cl.active && cl.queued && gen == cl.firstAttempt {
			c.logf("asks %v %s seq=%d withdrawn", cl.cmd.Op, cl.cmd.Name, cl.cmd.Seq)
			cl.withdrawn = true
			c.w.send(&message{kind: msgWithdraw, from: c.addr, to: cl.queuedAt, attempt: cl.queuedTry, shard: cl.shard, payload: &payload{}})
			if c.w.bug.withdrawAtOnce {
				// The planted bug: the old path, which cut the caller's wait
				// and answered at once, whatever the log then did.
				c.finishCmd(core.Result{Outcome: core.OutcomeRefused, Session: cl.cmd.Session, Waiter: cl.waiter, Reason: core.ReasonCancelled})
			}
		}
	case argGiveUp:
		if cl := &c.main; cl.active && gen == cl.firstAttempt {
			switch {
			case cl.private:
				c.giveUpPrivate()
			case cl.queued:
				c.abandon()
			}
		}
	}
}

// receive is a message for this client.
func (c *client) receive(m *message) {
	if c.dead {
		return
	}
	if c.paused {
		c.inbox = append(c.inbox, m)
		return
	}
	switch {
	case c.main.owns(m.attempt):
		c.onReply(&c.main, threadMain, m)
	case c.ka.owns(m.attempt):
		c.onReply(&c.ka, threadKA, m)
	}
}

// pause freezes the client: no timers fire, messages wait.
func (c *client) pause(d time.Duration) {
	if c.dead || c.paused {
		return
	}
	c.paused = true
	c.logf("pauses for %v", d)
	c.w.schedule(&event{at: c.w.now + d, kind: evClient, node: c.idx, arg: argResume})
}

func (c *client) resume() {
	if !c.paused {
		return
	}
	c.paused = false
	c.logf("resumes")
	timers, inbox := c.deferred, c.inbox
	c.deferred, c.inbox = nil, nil
	for _, t := range timers {
		c.timer(t.arg, t.gen)
	}
	for _, m := range inbox {
		c.receive(m)
	}
}

func (c *client) die() {
	if c.dead {
		return
	}
	c.dead = true
	c.logf("dies")
	if cl := &c.main; cl.active && cl.private {
		// The process's connections close with it, and the node hears
		// that a private request's caller is gone.
		c.closePrivate(cl)
	}
}

// quiesce: the liveness phase. Finish the current activity, start no more.
func (c *client) quiesce() {
	c.quiet = true
	c.resume()
	if !c.dead && !c.main.active && len(c.plan) == 0 {
		c.wakeGen++ // cancel the think-time sleep: nothing follows it
	}
}

// busy says what the client still waits for, "" when it is settled.
func (c *client) busy() string {
	if c.dead {
		return ""
	}
	if c.main.active {
		switch c.main.kind {
		case callRead:
			return fmt.Sprintf("status read of %s %q waits since %.3fs", c.main.read.kind, c.main.read.name, c.main.started.Seconds())
		case callWrite:
			return fmt.Sprintf("fenced write to %s %q waits since %.3fs", c.main.write.key.kind, c.main.write.key.name, c.main.started.Seconds())
		}
		return fmt.Sprintf("request %v %q waits since %.3fs", c.main.cmd.Op, c.main.cmd.Name, c.main.started.Seconds())
	}
	if len(c.plan) > 0 {
		return fmt.Sprintf("%d steps left", len(c.plan))
	}
	if c.ka.active && c.w.now-c.ka.started > 2*time.Second {
		return fmt.Sprintf("keepalive waits since %.3fs", c.ka.started.Seconds())
	}
	return ""
}

// next runs the next step of the plan, choosing a new activity when the
// plan is empty.
func (c *client) next() {
	if c.dead || c.paused || c.main.active {
		return
	}
	if len(c.plan) == 0 {
		if c.quiet {
			return
		}
		c.plan = c.activity()
		if len(c.plan) == 0 {
			return // a scenario client that ran its plan
		}
	}
	st := c.plan[0]
	c.plan = c.plan[1:]
	switch st.kind {
	case stSleep:
		c.sleep(st.dur)
		return
	case stPause:
		c.sleep(0) // fires after the pause, and carries on with the plan
		c.pause(st.dur)
		return
	case stStatus:
		c.startRead(readRequest{kind: st.key.kind, name: st.key.name}, st)
		return
	case stReconcile:
		if c.session == 0 {
			c.next()
			return
		}
		c.reconcile = st.key
		c.startRead(readRequest{kind: st.key.kind, name: st.key.name}, step{kind: stStatus, key: st.key})
		return
	case stWrite:
		if !c.holding {
			c.next()
			return
		}
		c.startWrite(fenceWrite{key: st.key, token: c.token, client: c.idx})
		return
	}
	cmd := core.Command{Op: 0, ClientID: c.id, Kind: st.key.kind, Name: st.key.name, Session: c.session}
	switch st.kind {
	case stCreate:
		cmd.Op = core.OpSessionCreate
		cmd.Kind, cmd.Name = 0, ""
		c.ttl = c.w.opts.TTLMin + time.Duration(c.rng.Int64N(int64(c.w.opts.TTLMax-c.w.opts.TTLMin)+1))
		c.ttl = c.ttl.Truncate(time.Millisecond)
		if st.dur > 0 { // a scenario's plan gives the TTL (after the draw: the stream stays as it was)
			c.ttl = st.dur
		}
		cmd.TTLMs = c.ttl.Milliseconds()
		cmd.Owner = c.id
	case stClose:
		cmd.Op = core.OpSessionClose
		cmd.Kind, cmd.Name = 0, ""
	case stForceClose:
		target := c.forceCloseTarget()
		if target == 0 {
			c.next() // nobody else has a session to close
			return
		}
		cmd.Op, cmd.Session, cmd.ApplyLockDelay = core.OpSessionClose, target, true
		cmd.Kind, cmd.Name = 0, ""
	case stAcquire:
		cmd.Op = core.OpAcquire
		cmd.WaitMs, cmd.Permits, cmd.Limit, cmd.Mode = st.waitMs, st.permits, st.limit, st.mode
		cmd.MaxHoldMs = st.maxHold
		cmd.LockDelayMs = st.lockDelay
		cmd.Owner = c.id
	case stSet:
		cmd.Op, cmd.Kind = core.OpBarrierSet, 0
	case stRemove:
		cmd.Op, cmd.Kind, cmd.Session = core.OpBarrierRemove, 0, 0
	case stCancel:
		cmd.Op, cmd.Kind, cmd.Name, cmd.Waiter = core.OpCancel, 0, "", st.waiter
	case stRelease:
		cmd.Op, cmd.Token = core.OpRelease, c.token
	case stBarrier:
		cmd.Op, cmd.WaitMs, cmd.Participant = core.OpBarrierWait, st.waitMs, c.id
		cmd.Kind = 0
		cmd.Parties = c.w.names.parties[st.key.name]
	case stCampaign, stCampaignAgain:
		cmd.Op, cmd.WaitMs, cmd.Value, cmd.Owner = core.OpCampaign, st.waitMs, []byte(st.value), c.id
		cmd.Kind = 0
	case stProclaim:
		cmd.Op, cmd.Token, cmd.Value = core.OpProclaim, c.token, []byte(st.value)
		cmd.Kind = 0
	case stResign:
		cmd.Op, cmd.Token = core.OpResign, c.token
		cmd.Kind = 0
	}
	if needsHold(st.kind) && !c.holding {
		c.next()
		return
	}
	if st.kind != stCreate && st.kind != stRemove && st.kind != stForceClose && c.session == 0 {
		c.plan = nil // the session is gone: drop the activity
		c.next()
		return
	}
	c.seq++
	cmd.Seq = c.seq
	c.startCmd(cmd, st)
}

// forceCloseTarget picks the session of another client (alive or dead:
// an operator closes a crashed process's session too) for stForceClose,
// one that holds something if any does (an operator's stuck holder), 0
// when no other client has a session.
func (c *client) forceCloseTarget() core.SessionID {
	var live, holding []core.SessionID
	for _, o := range c.w.clients {
		if o != c && o.session != 0 {
			live = append(live, o.session)
			if o.holding {
				holding = append(holding, o.session)
			}
		}
	}
	if len(holding) > 0 {
		live = holding
	}
	if len(live) == 0 {
		return 0
	}
	return live[c.rng.IntN(len(live))]
}

func needsHold(k stepKind) bool {
	return k == stRelease || k == stProclaim || k == stResign || k == stRemove || k == stCampaignAgain
}

func (c *client) startCmd(cmd core.Command, st step) {
	c.main = call{active: true, kind: callCmd, cmd: cmd, started: c.w.now, hist: -1, session: c.session, st: st}
	c.main.hist = c.w.hist.begin(c, st, cmd)
	giveUp, private := c.drawPrivate(st)
	if private {
		c.main.private, c.main.giveUp = true, true
		c.w.stats.privateRequests++
		c.w.chk.privateSent(cmd)
	}
	if st.public {
		c.w.chk.publicRetrySent(cmd)
	}
	c.route(&c.main, threadMain)
	if private {
		c.w.schedule(&event{at: c.w.now + giveUp, kind: evClient, node: c.idx, arg: argGiveUp, gen: c.main.firstAttempt})
	}
}

// drawPrivate decides whether an acquire or campaign goes out as a
// private request (Options.Private), and how long its caller waits for
// it before giving up: half the time within a few network delays of the
// send, while the request, its grant or its reply is on the way, which is
// when a grant its caller never hears is made; otherwise within 1.5 s,
// often while it waits in the queue. Nothing is drawn in a run without
// private requests, so such a run draws as before they existed.
func (c *client) drawPrivate(st step) (time.Duration, bool) {
	if st.public {
		return 0, false
	}
	if !st.private {
		if c.w.opts.Private <= 0 || c.quiet {
			return 0, false
		}
		switch st.kind {
		case stAcquire, stCampaign, stCampaignAgain:
		default:
			return 0, false
		}
		if c.rng.Float64() >= c.w.opts.Private {
			return 0, false
		}
	}
	if c.rng.IntN(2) == 0 {
		return time.Duration(c.rng.Int64N(int64(4*c.w.opts.MaxDelay + 20*time.Millisecond))), true
	}
	return time.Duration(c.rng.Int64N(int64(1500 * time.Millisecond))), true
}

// route starts a command on its way through the shards (core/shards).
func (c *client) route(cl *call, thread int) {
	cl.fan, cl.wave, cl.answers = shards.Start(cl.cmd, c.w.opts.Shards), nil, nil
	c.nextWave(cl, thread)
}

func (c *client) nextWave(cl *call, thread int) {
	if len(cl.fan.Sends()) == 0 {
		c.fanDone(cl, thread) // cl.answers are the last wave's
		return
	}
	cl.wave, cl.answers = cl.fan.Sends(), nil
	c.sendSub(cl, thread)
}

// sendSub sends the next command of the wave, as a new request: replies to
// an earlier one of the wave are not taken for its.
func (c *client) sendSub(cl *call, thread int) {
	s := cl.wave[len(cl.answers)]
	cl.sub, cl.shard, cl.subStart = s.Cmd, s.Shard, c.w.now
	cl.firstAttempt, cl.queued = 0, false
	c.send(cl, thread)
}

// subAnswered takes one shard's answer, and sends the next or steps the
// Fanout once the wave is answered.
func (c *client) subAnswered(cl *call, thread int, a shards.Answer) {
	a.Shard = cl.shard
	cl.answers = append(cl.answers, a)
	if len(cl.answers) < len(cl.wave) {
		c.sendSub(cl, thread)
		return
	}
	if err := cl.fan.Step(cl.answers); err != nil {
		panic("sim: " + err.Error())
	}
	c.nextWave(cl, thread)
}

// budgeted: a send of a wider wave gives up after subBudget.
func (cl *call) budgeted() bool { return len(cl.wave) > 1 }

// fanDone finishes a command with what the Fanout merged. An error (some
// shard did not answer) is what the runtime answers as 503: the client
// sends the whole command again, with the same identity.
func (c *client) fanDone(cl *call, thread int) {
	out := cl.fan.Outcome()
	if c.w.bug.closeFirst && cl.cmd.Op == core.OpSessionClose {
		// The planted bug: the old runtime's merge, the first success.
		for _, a := range cl.answers {
			if a.Err == nil && a.Result.Err == nil {
				out = shards.Outcome{Result: a.Result}
				break
			}
		}
	}
	if cu := out.Cleanup; cu != nil {
		c.cleanup(cu)
	}
	if out.Err != nil {
		c.logf("%v seq=%d: a shard did not answer, again", cl.cmd.Op, cl.cmd.Seq)
		c.route(cl, thread)
		return
	}
	if thread == threadKA {
		c.finishKA(out.Result)
	} else {
		c.finishCmd(out.Result)
	}
}

// cleanupClientSuffix marks the client ids of cleanup closes, so that the
// ledger knows them.
const cleanupClientSuffix = ".cl"

// cleanup closes a session's copies where the Fanout says, once, without
// waiting for answers: the runtime's closeBestEffort.
func (c *client) cleanup(cu *shards.Cleanup) {
	for _, k := range cu.Shards {
		c.clSeq++
		cmd := cu.Close()
		cmd.ClientID, cmd.Seq = c.id+cleanupClientSuffix, c.clSeq
		c.w.send(&message{kind: msgRequest, from: c.addr, to: c.guesses[k], shard: k, payload: &payload{cmd: cmd}})
	}
}

func (c *client) startRead(q readRequest, st step) {
	c.main = call{active: true, kind: callRead, read: q, started: c.w.now, hist: -1, shard: shards.Of(q.name, c.w.opts.Shards)}
	c.main.hist = c.w.hist.beginRead(c, st)
	c.send(&c.main, threadMain)
}

func (c *client) startWrite(fw fenceWrite) {
	c.main = call{active: true, kind: callWrite, write: fw, started: c.w.now, hist: -1}
	c.send(&c.main, threadMain)
}

// owns says whether a reply's attempt id belongs to this call: any of its
// attempts counts, since a late answer to an earlier try is still the answer.
func (cl *call) owns(attempt uint64) bool {
	return cl.active && attempt >= cl.firstAttempt && attempt <= cl.attempt && attempt%2 == cl.firstAttempt%2
}

// newAttempt numbers a try: the two threads draw from disjoint (even, odd)
// sequences, so a reply can never be taken for the other thread's.
func (c *client) newAttempt(thread int) uint64 {
	c.attempts++
	return 2*c.attempts + uint64(thread)
}

// send makes one attempt of a call.
func (c *client) send(cl *call, thread int) {
	cl.attempt = c.newAttempt(thread)
	if cl.firstAttempt == 0 {
		cl.firstAttempt = cl.attempt
	}
	cl.target = c.guesses[cl.shard]
	m := &message{from: c.addr, to: cl.target, attempt: cl.attempt, shard: cl.shard, conn: cl.private, payload: &payload{}}
	switch cl.kind {
	case callCmd:
		m.kind, m.cmd = msgRequest, cl.sub
	case callRead:
		m.kind, m.read = msgRead, cl.read
	case callWrite:
		m.kind, m.to, m.write = msgWrite, c.w.addrResource(), cl.write
	}
	c.w.send(m)
	timeout := c.attemptTimeout()
	if cl.queued {
		timeout = c.queuedTimeout(cl)
	}
	arg := argMainTimeout
	if thread == threadKA {
		arg = argKATimeout
	}
	c.w.schedule(&event{at: c.w.now + timeout, kind: evClient, node: c.idx, arg: arg, gen: cl.attempt})
}

// queuedTimeout is how long a queued request waits for its answer before
// the client asks again (a retry returns the stored outcome, or queues the
// caller on the new replica).
func (c *client) queuedTimeout(cl *call) time.Duration {
	if cl.cmd.WaitMs > 0 {
		return time.Duration(cl.cmd.WaitMs)*time.Millisecond + time.Second
	}
	return 3 * time.Second
}

// retry moves a call to the next replica after silence or a refusal to
// answer.
func (c *client) retry(cl *call, thread int) {
	if cl.private {
		c.giveUpPrivate()
		return
	}
	if c.overBudget(cl, thread) {
		return
	}
	c.guesses[cl.shard] = c.guesses[cl.shard]%c.w.opts.Replicas + 1
	c.send(cl, thread)
}

func (c *client) retryAfter(cl *call, thread int, hint uint64) {
	if cl.private {
		c.giveUpPrivate()
		return
	}
	if hint >= 1 && hint <= uint64(c.w.opts.Replicas) {
		if c.overBudget(cl, thread) {
			return
		}
		c.guesses[cl.shard] = int(hint)
		c.send(cl, thread)
		return
	}
	c.retry(cl, thread)
}

// overBudget gives up on a budgeted send that ran out of time: that shard
// answers unavailable (its command may still commit later).
func (c *client) overBudget(cl *call, thread int) bool {
	if cl.kind != callCmd || !cl.budgeted() || c.w.now-cl.subStart < subBudget {
		return false
	}
	c.logf("%v seq=%d: shard %d did not answer within %v", cl.cmd.Op, cl.cmd.Seq, cl.shard, subBudget)
	c.subAnswered(cl, thread, shards.Answer{Err: errShardUnavailable})
	return true
}

func (c *client) onReply(cl *call, thread int, m *message) {
	switch m.kind {
	case msgReadReply:
		if m.readRes.notServed {
			c.retry(cl, thread)
			return
		}
		c.finishRead(m.readRes)
		return
	case msgWriteReply:
		c.finishWrite(m.writeOK)
		return
	}
	r := m.reply
	switch r.Kind {
	case replica.ReplyResult, replica.ReplyGranted, replica.ReplyWaitEnded:
		c.guesses[cl.shard] = m.from
		c.subAnswered(cl, thread, shards.Answer{Result: r.Result})
	case replica.ReplyQueued:
		c.guesses[cl.shard] = m.from
		cl.queued = true
		cl.waiter = r.Result.Waiter
		if cl.withdrawn && (cl.queuedAt != m.from || cl.queuedTry != m.attempt) {
			// A retry queued again: withdraw it there too.
			c.w.send(&message{kind: msgWithdraw, from: c.addr, to: m.from, attempt: m.attempt, shard: cl.shard, payload: &payload{}})
		}
		cl.queuedAt, cl.queuedTry = m.from, m.attempt
		if thread == threadMain && !cl.giveUp && !c.quiet && (cl.cmd.Op == core.OpAcquire || cl.cmd.Op == core.OpCampaign) {
			switch c.rng.IntN(9) {
			case 0, 1, 2:
				// An impatient caller: its context ends before the wait does.
				cl.giveUp = true
				d := time.Duration(200+c.rng.IntN(1800)) * time.Millisecond
				c.w.schedule(&event{at: c.w.now + d, kind: evClient, node: c.idx, arg: argGiveUp, gen: cl.firstAttempt})
			case 3:
				// A wait its server withdraws (a reload that no longer
				// allows it): the caller stays to hear its grant or end.
				cl.giveUp = true
				d := time.Duration(c.rng.IntN(1500)) * time.Millisecond
				c.w.schedule(&event{at: c.w.now + d, kind: evClient, node: c.idx, arg: argWithdraw, gen: cl.firstAttempt})
			}
		}
		cl.attempt = c.newAttempt(thread) // re-arm the timer for the longer wait; late replies still match
		arg := argMainTimeout
		if thread == threadKA {
			arg = argKATimeout
		}
		c.w.schedule(&event{at: c.w.now + c.queuedTimeout(cl), kind: evClient, node: c.idx, arg: arg, gen: cl.attempt})
	case replica.ReplyNotLeader:
		c.retryAfter(cl, thread, r.Leader)
	case replica.ReplyUnknown, replica.ReplyBusy:
		c.retry(cl, thread)
	case replica.ReplyRejected:
		panic(fmt.Sprintf("sim: client %d sent a request the replica rejects: %+v", c.idx, cl.cmd))
	}
}

// finishCmd completes the main thread's command.
func (c *client) finishCmd(r core.Result) {
	cmd := c.main.cmd
	c.main.active = false
	c.w.hist.end(c.main.hist, r, c.w.now)
	c.w.stats.ops++
	c.lastOp = c.w.now
	c.w.tr.mix(0xc11e, uint64(c.idx), cmd.Seq, uint64(r.Outcome), uint64(r.Token))
	c.logf("%v %s seq=%d -> %s", cmd.Op, cmd.Name, cmd.Seq, describeResult(r))
	if r.Err == nil && r.Outcome == core.OutcomeRefused && r.Waiter != 0 {
		c.w.chk.waitEndAnswered(fmt.Sprintf("client %d", c.idx), cmd, r)
	}
	if cmd.Op == core.OpSessionClose && cmd.ApplyLockDelay {
		// Another client's session: whatever the answer (closed, gone
		// already), this client's own session and grants are as they were.
		if r.Err == nil {
			c.w.chk.closeAnswered(c, cmd.Session)
		}
		c.think()
		return
	}
	if r.Err != nil {
		if r.Err.Code == core.CodeNotFound && cmd.Op != core.OpCancel {
			c.lostSession(cmd.Session)
		}
		c.holding = false
		c.plan = dropHeld(c.plan)
		c.think()
		return
	}
	switch cmd.Op {
	case core.OpSessionCreate:
		c.session = r.Session
		c.kaGen++
		c.scheduleKA(c.w.now)
	case core.OpSessionClose:
		c.w.chk.closeAnswered(c, cmd.Session)
		c.session = 0
		c.holding = false
	case core.OpAcquire, core.OpCampaign:
		if r.Outcome == core.OutcomeGranted {
			c.holding, c.token = true, r.Token
			kind := cmd.Kind
			if cmd.Op == core.OpCampaign {
				kind = core.KindElection
			}
			c.w.chk.ackedGrant(c, objKey{kind, cmd.Name}, cmd.Session, r.Token)
		} else {
			c.holding = false
			c.plan = dropHeld(c.plan)
		}
	case core.OpBarrierSet:
		c.holding, c.token = true, r.Token
	case core.OpRelease, core.OpResign, core.OpBarrierRemove:
		c.holding = false
	}
	c.think()
}

// dropHeld removes the rest of an activity that needed the grant it did not
// get.
func dropHeld(plan []step) []step {
	for len(plan) > 0 && plan[0].kind != stCreate && plan[0].kind != stAcquire && plan[0].kind != stCampaign &&
		plan[0].kind != stBarrier && plan[0].kind != stStatus && plan[0].kind != stSet && plan[0].kind != stReconcile {
		plan = plan[1:]
	}
	return plan
}

func (c *client) think() {
	c.sleep(time.Duration(c.rng.IntN(20)) * time.Millisecond)
}

// abandon gives up on a queued request: it tells the replica (which
// withdraws the wait when it leads), forgets the request — whose outcome is
// now unknown to it — and then reads the status to release or cancel
// whatever the request may still have become.
func (c *client) abandon() {
	cl := &c.main
	c.w.send(&message{kind: msgCancel, from: c.addr, to: cl.queuedAt, attempt: cl.queuedTry, shard: cl.shard, payload: &payload{}})
	key := objKey{cl.cmd.Kind, cl.cmd.Name}
	if cl.cmd.Op == core.OpCampaign {
		key.kind = core.KindElection
	}
	c.logf("gives up on %v %s seq=%d", cl.cmd.Op, cl.cmd.Name, cl.cmd.Seq)
	cl.active = false
	c.plan = append([]step{{kind: stReconcile, key: key}}, dropHeld(c.plan)...)
	c.think()
}

// giveUpPrivate ends a private request for good: its caller's own
// timeout ran out, or the node answered what the runtime would retry
// under the request's identity and the caller cannot (not leader,
// unknown, busy), or nothing came. The connection closes, which the node
// hears as the caller gone (replica.GoneEvent), and the request's outcome
// stays unknown to the client: a late reply is ignored. Then the caller
// either sends a fresh acquire or campaign of the same name, with the same
// session and parameters and a new identity (half the time private again:
// the caller has no client_id; otherwise public, the client's own and
// resent until answered, which may join the gone request's wait while it
// is still queued and must then hear how it ended: core's waiter.joiners,
// rules 5), through a node of its choice (a caller retrying after
// its own timeout: answered the grant the node is about to release, or
// joining its wait, it must keep it), or goes away, and the
// process looks a while later for what the request left its session
// holding or waiting for, and releases or cancels it (stReconcile): a
// grant whose reply was on its way when the connection closed stays with
// the session, and nothing else ends it before the session does.
func (c *client) giveUpPrivate() {
	cl := &c.main
	c.logf("gives up on private %v %s seq=%d", cl.cmd.Op, cl.cmd.Name, cl.cmd.Seq)
	c.w.tr.mix(0x9e7a, uint64(c.idx), cl.cmd.Seq)
	c.w.stats.privateGiveUps++
	c.closePrivate(cl)
	cl.active = false
	if c.rng.IntN(3) == 0 {
		key := objKey{cl.cmd.Kind, cl.cmd.Name}
		if cl.cmd.Op == core.OpCampaign {
			key.kind = core.KindElection
		}
		later := 200*time.Millisecond + time.Duration(c.rng.Int64N(int64(1800*time.Millisecond)))
		c.plan = append([]step{{kind: stSleep, dur: later}, {kind: stReconcile, key: key}}, dropHeld(c.plan)...)
	} else {
		c.w.stats.privateRetries++
		c.guesses[cl.shard] = 1 + c.rng.IntN(c.w.opts.Replicas)
		again := cl.st
		if c.rng.IntN(2) == 0 {
			again.private = true
		} else {
			again.public = true
			c.w.stats.publicRetries++
		}
		c.plan = append([]step{again}, c.plan...)
	}
	c.think()
}

// closePrivate closes a private request's connection: the node it went
// to hears that its caller is gone (node.cancel).
func (c *client) closePrivate(cl *call) {
	c.w.send(&message{kind: msgCancel, from: c.addr, to: cl.target, attempt: cl.firstAttempt, shard: cl.shard, conn: true, payload: &payload{}})
}

// readPrivate says whether a node may read the private request sent as
// attempt off its connection now, and notes that it did: only while its
// caller waits for it, and once. A request the network held past its
// caller's give-up, or duplicated, is never read: a closed connection
// delivers nothing, and an open one nothing twice.
func (c *client) readPrivate(attempt uint64) bool {
	cl := &c.main
	if c.dead || !cl.active || !cl.private || cl.firstAttempt != attempt || cl.taken {
		return false
	}
	cl.taken = true
	return true
}

// reconciled acts on the status read after giving up: release the grant
// the abandoned request got, or cancel its wait and look again.
func (c *client) reconciled(k objKey, st core.Status) {
	for _, h := range st.Holders {
		if h.Session == c.session {
			c.holding, c.token = true, h.Token
			release := step{kind: stRelease, key: k}
			if k.kind == core.KindElection {
				release.kind = stResign
			}
			c.plan = append([]step{release}, c.plan...)
			return
		}
	}
	for _, w := range st.Waiters {
		if w.Session == c.session {
			c.plan = append([]step{{kind: stCancel, key: k, waiter: w.ID}, {kind: stReconcile, key: k}}, c.plan...)
			return
		}
	}
}

func (c *client) finishRead(r readResult) {
	c.main.active = false
	if k := c.reconcile; k.name != "" {
		c.reconcile = objKey{}
		if r.err == nil {
			c.reconciled(k, r.status)
		}
	}
	c.w.hist.endRead(c.main.hist, r, c.w.now)
	c.w.stats.ops++
	c.w.tr.mix(0xc12e, uint64(c.idx), r.index, uint64(len(r.status.Holders)))
	c.logf("status %s %q at %d -> %d holders", c.main.read.kind, c.main.read.name, r.index, len(r.status.Holders))
	c.think()
}

func (c *client) finishWrite(ok bool) {
	c.main.active = false
	c.w.stats.ops++
	c.w.tr.mix(0xc13e, uint64(c.idx), boolWord(ok))
	c.logf("fenced write %s %q token=%d -> accepted=%v", c.main.write.key.kind, c.main.write.key.name, c.main.write.token, ok)
	c.think()
}

// lostSession forgets a session the cluster says is gone.
func (c *client) lostSession(s core.SessionID) {
	if s != 0 && c.session == s {
		c.logf("lost session %d", s)
		c.session = 0
		c.holding = false
	}
}

func (c *client) scheduleKA(at time.Duration) {
	c.kaGen++
	c.w.schedule(&event{at: max(at, c.w.now), kind: evClient, node: c.idx, arg: argKAWake, gen: c.kaGen})
}

func (c *client) keepAlive() {
	if c.session == 0 {
		return
	}
	c.kaSeq++
	cmd := core.Command{Op: core.OpSessionKeepAlive, ClientID: c.kaID, Seq: c.kaSeq, Session: c.session}
	c.ka = call{active: true, kind: callCmd, cmd: cmd, started: c.w.now, hist: -1, session: c.session}
	c.route(&c.ka, threadKA)
}

func (c *client) finishKA(r core.Result) {
	s := c.ka.cmd.Session
	started := c.ka.started
	c.ka.active = false
	c.w.tr.mix(0xc14e, uint64(c.idx), uint64(s), boolWord(r.Err == nil))
	if r.Err != nil {
		c.lostSession(s)
	}
	switch {
	case c.session == 0:
	case s == c.session:
		c.scheduleKA(started + c.ttl/3)
	default:
		c.scheduleKA(c.w.now) // a new session was created meanwhile: renew it now
	}
}

func describeResult(r core.Result) string {
	if r.Err != nil {
		return r.Err.Error()
	}
	s := r.Outcome.String()
	if r.Token != 0 {
		s += fmt.Sprintf(" token=%d", r.Token)
	}
	if r.Reason != core.ReasonNone {
		s += " reason=" + r.Reason.String()
	}
	if r.Duplicate {
		s += " (dup)"
	}
	return s
}

// activity draws what the client does next from the workload mix.
func (c *client) activity() []step {
	if fixed, ok := c.w.cfg.plans[c.idx]; ok {
		if c.planUsed {
			return nil
		}
		c.planUsed = true
		return append([]step(nil), fixed...)
	}
	var plan []step
	if c.session == 0 {
		plan = append(plan, step{kind: stCreate})
	}
	mix := c.w.opts.Workload
	weights := []int{mix.Mutex, mix.TryLock, mix.Semaphore, mix.RWLock, mix.Barrier, mix.Election, mix.Status}
	total := 0
	for _, x := range weights {
		total += x
	}
	pickN := c.rng.IntN(total)
	choice := 0
	for i, x := range weights {
		if pickN < x {
			choice = i
			break
		}
		pickN -= x
	}
	nm := c.w.names
	r := c.rng
	hold := func() step {
		// Usually short; sometimes a good part of the lease, so that a pause
		// in the middle outlives it.
		d := time.Duration(r.IntN(100)) * time.Millisecond
		if r.IntN(5) == 0 && c.ttl > 0 {
			d = time.Duration(r.Int64N(int64(c.ttl/2) + 1))
		}
		return step{kind: stSleep, dur: d}
	}
	wait := func() int64 {
		switch r.IntN(8) {
		case 0:
			return core.WaitForever
		case 1, 2:
			return 0
		}
		return int64(100 + r.IntN(3000))
	}
	pick := func(ns []string) string { return ns[r.IntN(len(ns))] }
	switch choice {
	case 0, 1: // mutex, blocking or try-once
		k := objKey{core.KindMutex, pick(nm.mutexes)}
		w := wait()
		if choice == 1 {
			w = 0
		}
		acq := step{kind: stAcquire, key: k, waitMs: w}
		if r.IntN(6) == 0 {
			acq.maxHold = int64(200 + r.IntN(1800)) // the grant may end under the holder
		}
		if r.IntN(2) == 0 {
			acq.lockDelay = int64(100 + r.IntN(1400)) // blocked a while after a failure or a forced close
		}
		plan = append(plan, acq, hold(), step{kind: stWrite, key: k}, step{kind: stRelease, key: k})
	case 2:
		name := pick(nm.sems)
		k := objKey{core.KindSemaphore, name}
		plan = append(plan, step{kind: stAcquire, key: k, waitMs: wait(), permits: 1, limit: nm.semLimits[name]}, hold(),
			step{kind: stRelease, key: k})
	case 3:
		k := objKey{core.KindRWLock, pick(nm.rwlocks)}
		mode := core.ModeRead
		if r.IntN(3) == 0 {
			mode = core.ModeWrite
		}
		plan = append(plan, step{kind: stAcquire, key: k, waitMs: wait(), mode: mode}, hold())
		if mode == core.ModeWrite {
			plan = append(plan, step{kind: stWrite, key: k})
		}
		plan = append(plan, step{kind: stRelease, key: k})
	case 4:
		switch r.IntN(4) {
		case 0: // raise the set/remove barrier, hold it, lower it
			k := objKey{core.KindBarrier, nm.setBarrier}
			plan = append(plan, step{kind: stSet, key: k}, hold(), step{kind: stRemove, key: k})
		case 1: // wait for the set/remove barrier to come down
			k := objKey{core.KindBarrier, nm.setBarrier}
			plan = append(plan, step{kind: stBarrier, key: k, waitMs: int64(200 + r.IntN(3000))})
		default:
			k := objKey{core.KindBarrier, pick(nm.barriers)}
			plan = append(plan, step{kind: stBarrier, key: k, waitMs: int64(200 + r.IntN(3000))})
		}
	case 5:
		k := objKey{core.KindElection, pick(nm.elections)}
		w := wait()
		plan = append(plan, step{kind: stCampaign, key: k, waitMs: w, value: fmt.Sprintf("%s-v%d", c.id, c.seq)}, hold())
		if r.IntN(2) == 0 {
			// One in three (by the seq, drawing nothing) campaigns again
			// instead of proclaiming: with a new value, or half of those
			// times the one it leads with.
			switch {
			case c.seq%6 == 0:
				plan = append(plan, step{kind: stCampaignAgain, key: k, waitMs: w, value: fmt.Sprintf("%s-v%d", c.id, c.seq)}, hold())
			case c.seq%3 == 0:
				plan = append(plan, step{kind: stCampaignAgain, key: k, waitMs: w, value: fmt.Sprintf("%s-c%d", c.id, c.seq)}, hold())
			default:
				plan = append(plan, step{kind: stProclaim, key: k, value: fmt.Sprintf("%s-p%d", c.id, c.seq)}, hold())
			}
		}
		plan = append(plan, step{kind: stStatus, key: k}, step{kind: stResign, key: k})
	case 6:
		keys := nm.all()
		plan = append(plan, step{kind: stStatus, key: keys[r.IntN(len(keys))]})
	}
	// With several shards a close fans out to every shard, which is what
	// the shard policy must get right (docs/runtime.md, Shards): one
	// activity in five closes then, one in 25 otherwise (one draw either
	// way, so a one-shard run draws as before).
	closeOneIn := 25
	if c.w.opts.Shards > 1 {
		closeOneIn = 5
	}
	if r.IntN(closeOneIn) == 0 || c.scenarioCloses {
		plan = append(plan, step{kind: stClose})
	}
	// An operator's force-close of another client's session, with the
	// lock-delay: one activity in 30.
	if r.IntN(30) == 0 {
		plan = append(plan, step{kind: stForceClose})
	}
	return plan
}
