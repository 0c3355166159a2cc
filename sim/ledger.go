package sim

import (
	"sort"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// ledger reads the committed log, in index order, as the first replica to
// apply each entry reported it, and checks the contract of docs/design.md against
// it after every entry: exclusion per primitive, tokens strictly increasing
// per name, log time moving forward by at most the cap per entry, no
// session expiring before its lease (keepalives and leader changes
// included), no session expiring with holds left. It also remembers what
// clients need checked later: every grant ever made, when each ended, and
// the result of every (client_id, seq).
type ledger struct {
	c       *checker
	shard   uint64 // whose log it reads
	next    uint64 // the next index expected
	pending map[uint64]pendingEntry

	started  bool
	prevTime core.LogTime
	// prevTimed: the machine held something timed before this entry, so
	// the entry may move log time at most MaxClockStepMs.
	prevTimed bool

	live       map[core.FencingToken]*grantRec
	grants     map[core.FencingToken]*grantRec // every grant ever made
	objects    map[objKey]*objRec
	sessions   map[core.SessionID]*sessRef
	results    map[dedupeKey]keyResult
	waitEnds   map[core.WaiterID]waitEnd
	waitShapes map[core.WaiterID]shape
	// waitValues is the value each queued campaign leads with when
	// granted: its own, or (rules 4) a later campaign's of its session.
	waitValues map[core.WaiterID]string
	queues     map[objKey][]core.WaiterID // live waiters per object, in queue (id) order
	waitObj    map[core.WaiterID]objKey
	sysOps     []sysOp
	lastIndex  uint64
	expiries   int
	// forcedCloses counts the closes with apply_lock_delay the log
	// applied, closeDelays the lock-delays they started.
	forcedCloses, closeDelays int
	// cleanupCloses counts the cleanup closes (shards.Cleanup: a lost
	// session's copies, closed by a client's fan-out) the log applied,
	// cleanupDelays the lock-delays they started.
	cleanupCloses, cleanupDelays int
	// expiryCloses counts the closes a shard's leader sent to the other
	// shards when it applied a session's expiry (shards.Expired) that the
	// log applied, expiryDelays the lock-delays they started.
	expiryCloses, expiryDelays int

	// rules is the rules in force as the log raises them (core.Machine's
	// Rules): the highest a valid leader-change mark carried. Every entry
	// is checked by the rules in force at it (a mark of the entry
	// included), and the applying machine's Rules after it must agree.
	rules uint64
	// raisedAt is the index whose mark raised the rules above rules 3
	// (the upgrade's moment, Options.Upgrade); refusedCloses counts the
	// closes with apply_lock_delay refused under rules 3; keptValues and
	// setValues the campaigns of a leader with another value under rules
	// 3 (the value kept) and from rules 4 (the value set); raises every
	// mark that raised the rules, in index order (rulesAt).
	raisedAt                             uint64
	raises                               []rulesRaise
	refusedCloses, keptValues, setValues int
	// A replica's unheard releases (Command.Unheard): unheardEnded counts
	// those that ended a grant, unheardKept those refused for a grant
	// another request was answered, unheardRaced those of them whose
	// grant a private request asked for (the race rules 5 closes: its
	// caller's retry, or another request of its session, was answered
	// the grant or joined its wait before the release applied), and
	// unheardUnruled those refused under rules before 5.
	unheardEnded, unheardKept, unheardRaced, unheardUnruled int
	// waitAskers is the request that queued each live waiter, for the
	// grant it gets (grantRec.asker).
	waitAskers map[core.WaiterID]dedupeKey
	// joiners are the requests answered "queued" on a wait their session
	// already had (core's join: a second acquire or campaign of the name,
	// or the retry of a private request that gave up, under the client's
	// own identity), by their identity: the wait's end is their answer
	// too (rules 5, waiter.joiners). joined counts them; joinedEnded
	// counts the retries of one answered a wait's end (granted or
	// refused: a Duplicate no longer "queued"), which core stores when
	// the wait ends (settleWait) or reads from the session
	// (joinedWaitEnded).
	// joinedByRetry counts the joins of a private request's public retry
	// (giveUpPrivate), which found the gone request's wait still queued.
	joiners                            map[dedupeKey]bool
	joined, joinedByRetry, joinedEnded int
	// delays holds, per mutex, when the lock-delay its last holder's
	// failure (or a close that asked for it) started runs out: no grant of
	// it before then.
	delays map[objKey]core.LogTime
}

// The rules versions the ledger follows (core/rules.go).
const (
	rulesUnmarked       = 3 // before any mark carried rules
	rulesCloseLockDelay = 4 // a close may ask for the lock-delay
	rulesCampaignValue  = 4 // a campaign of a session that leads or waits sets its value
	rulesUnheardRelease = 5 // a replica's unheard release may end a grant nobody else was answered
)

// rulesRaise is a mark that raised the rules in force: from index on.
type rulesRaise struct{ index, rules uint64 }

// rulesAt is the rules in force at index idx (a mark of it included).
func (l *ledger) rulesAt(idx uint64) uint64 {
	r := uint64(rulesUnmarked)
	for _, x := range l.raises {
		if x.index <= idx {
			r = x.rules
		}
	}
	return r
}

type pendingEntry struct {
	empty     bool
	forwarded bool   // a follower proposed it (checker.forwarded)
	rules     uint64 // the applying machine's Rules after it; 0: not known
	e         core.Entry
	out       core.Output
}

type objKey struct {
	kind core.Kind
	name string
}

type objRec struct {
	holders   []core.FencingToken // live grants, in grant order
	lastToken core.FencingToken
}

type grantRec struct {
	key       objKey
	session   core.SessionID
	token     core.FencingToken
	permits   int64
	mode      core.Mode
	lockDelay int64  // a mutex's lock_delay_ms
	value     string // an election leader's value, as its effects said
	index     uint64
	ended     bool
	endIdx    uint64
	reason    core.Reason
	asker     dedupeKey // the request it answered: granted at once, or the one that queued its waiter
}

type sessRef struct {
	ttl      int64
	deadline core.LogTime // the earliest log time the contract lets it expire at
}

type dedupeKey struct {
	client string
	seq    uint64
}

type keyResult struct {
	index  uint64
	result core.Result
}

type waitEnd struct {
	index   uint64
	granted bool
	token   core.FencingToken
	gen     uint64
	reason  core.Reason
}

// sysOp is something the machine did on its own to a name — a grant ended
// by session expiry, session close or max hold — that porcupine must place
// among the clients' operations. It happened somewhere between the first
// append of its index and its first application.
type sysOp struct {
	key     objKey
	token   core.FencingToken
	session core.SessionID
	index   uint64
	reason  core.Reason
	delayed bool // it started a lock-delay: a try-once acquire may be refused while nobody holds the name
}

func newLedger(c *checker) *ledger {
	return &ledger{
		c:          c,
		next:       2, // index 1 is the bootstrap snapshot
		pending:    make(map[uint64]pendingEntry),
		live:       make(map[core.FencingToken]*grantRec),
		grants:     make(map[core.FencingToken]*grantRec),
		objects:    make(map[objKey]*objRec),
		sessions:   make(map[core.SessionID]*sessRef),
		results:    make(map[dedupeKey]keyResult),
		waitEnds:   make(map[core.WaiterID]waitEnd),
		waitShapes: make(map[core.WaiterID]shape),
		waitValues: make(map[core.WaiterID]string),
		queues:     make(map[objKey][]core.WaiterID),
		waitObj:    make(map[core.WaiterID]objKey),
		waitAskers: make(map[core.WaiterID]dedupeKey),
		joiners:    make(map[dedupeKey]bool),
		rules:      rulesUnmarked,
		delays:     make(map[objKey]core.LogTime),
	}
}

func (l *ledger) empty(idx uint64) { l.feed(idx, pendingEntry{empty: true}) }

func (l *ledger) entry(e core.Entry, out *core.Output, forwarded bool) {
	l.entryRules(e, out, forwarded, 0)
}

// entryRules is entry with the rules in force the applying machine
// reports after it (Machine.Rules).
func (l *ledger) entryRules(e core.Entry, out *core.Output, forwarded bool, rules uint64) {
	cp := *out
	cp.Results = append([]core.Result(nil), out.Results...)
	cp.Effects = append([]core.Effect(nil), out.Effects...)
	l.feed(e.Index, pendingEntry{e: e, out: cp, forwarded: forwarded, rules: rules})
}

func (l *ledger) feed(idx uint64, p pendingEntry) {
	if idx < l.next {
		return
	}
	l.pending[idx] = p
	for {
		q, ok := l.pending[l.next]
		if !ok {
			return
		}
		delete(l.pending, l.next)
		if !q.empty {
			if q.forwarded && l.started && q.out.Time != l.prevTime {
				l.fail("forward-stamp", "index %d, forwarded by a follower, moved log time from %d to %d (stamped %d): "+
					"only the leader moves time (docs/design.md, Time)", q.e.Index, l.prevTime, q.out.Time, q.e.Time)
			}
			l.process(&q.e, &q.out)
			if q.rules != 0 && q.rules != l.rules {
				l.fail("rules", "after index %d the machine applies rules %d; the log's marks put rules %d in force "+
					"(the highest rules a mark carried, 3 before any: core/rules.go)", q.e.Index, q.rules, l.rules)
			}
		}
		l.lastIndex = l.next
		l.next++
	}
}

func (l *ledger) fail(check, format string, args ...any) { l.c.fail(Safety, check, format, args...) }

func (l *ledger) process(e *core.Entry, out *core.Output) {
	// The contract: applying the leader-change entry extends every live
	// session to now+ttl, so that a failover never expires a session early.
	// A session live before that entry must therefore not expire in it, even
	// though log time stood still during the failover and moves at once.
	mark := false
	for i := range e.Commands {
		if c := &e.Commands[i]; c.Op == core.OpLeaderChange && out.Results[i].Err == nil && !out.Results[i].Duplicate {
			mark = true
			if c.Rules > l.rules {
				if l.raisedAt == 0 {
					l.raisedAt = e.Index
				}
				l.raises = append(l.raises, rulesRaise{e.Index, c.Rules})
			}
			l.rules = max(l.rules, c.Rules) // from this entry on, never lowered
		}
	}
	if mark && l.started && out.Time > l.prevTime {
		// The mark moves every deadline by its jump, lock-delays included.
		for k := range l.delays {
			l.delays[k] += out.Time - l.prevTime
		}
	}
	step := core.LogTime(core.DefaultLimits().MaxClockStepMs)
	if l.started {
		switch {
		case out.Time < l.prevTime:
			l.fail("log-time", "index %d moved log time back from %d to %d", e.Index, l.prevTime, out.Time)
		case mark && out.Time != max(l.prevTime, min(e.Time, core.MaxLogTime)):
			// A leader change takes its stamp whole and moves every deadline
			// by the jump (docs/design.md, Time): caught up in capped steps,
			// log time would run faster than real time and cut leases short.
			l.fail("clock-step", "index %d, a leader change stamped %d, moved log time from %d to %d; it must take its stamp whole",
				e.Index, e.Time, l.prevTime, out.Time)
		case !mark && l.prevTimed && out.Time-l.prevTime > step:
			l.fail("clock-step", "index %d moved log time %d ms forward in one entry while something was timed; the cap is %d ms",
				e.Index, out.Time-l.prevTime, step)
		}
	}
	l.started = true
	l.prevTime = out.Time
	l.prevTimed = out.NextDeadline != 0

	// Within one entry, timers fire first and then each command runs, each
	// emitting its effects; the output does not say which effect came from
	// which command. So the ledger checks leases against the state before
	// the entry, replays grants and releases in effect order, and checks
	// exclusion and session ownership on the state after the entry, the
	// only state anyone can observe.
	x := &entryScratch{shapes: map[core.FencingToken]shape{}, touched: map[objKey]bool{}, gens: map[uint64]int64{}, ended: map[core.SessionID]string{},
		forced: map[core.SessionID]bool{}, cleaned: map[core.SessionID]bool{}, expired: map[core.SessionID]bool{}, now: out.Time, electionCmds: map[string]int{}, grantedFrom: map[core.FencingToken]core.WaiterID{},
		valueBefore: map[core.FencingToken]string{}, askers: map[core.FencingToken]dedupeKey{}}
	for i := range e.Commands {
		if c := &e.Commands[i]; c.Op == core.OpCampaign || c.Op == core.OpProclaim || c.Op == core.OpResign {
			x.electionCmds[c.Name]++
		}
	}
	for i := range out.Effects {
		if ef := &out.Effects[i]; ef.Kind == core.EffectSessionExpired {
			l.checkLease(e.Index, out.Time, ef.Session, mark)
		}
	}
	for i := range e.Commands {
		l.sessionCommand(e.Index, out.Time, &e.Commands[i], &out.Results[i], x)
		l.noteShape(&e.Commands[i], &out.Results[i], x)
	}
	for i := range out.Effects {
		l.effect(e.Index, &out.Effects[i], x)
	}
	for i := range e.Commands {
		l.command(e.Index, &e.Commands[i], &out.Results[i], x)
	}
	keys := make([]objKey, 0, len(x.touched))
	for k := range x.touched {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		return keys[i].name < keys[j].name
	})
	for _, k := range keys {
		l.checkExclusion(e.Index, k)
	}
	ended := make([]core.SessionID, 0, len(x.ended))
	for s := range x.ended {
		ended = append(ended, s)
	}
	sort.Slice(ended, func(i, j int) bool { return ended[i] < ended[j] })
	for _, s := range ended {
		for _, g := range l.liveOf(s) {
			l.fail("session-holds", "index %d: session %d %s but still holds token %d on %s %q",
				e.Index, s, x.ended[s], g.token, g.key.kind, g.key.name)
		}
	}
}

// shape is what a grant holds: permits (semaphore) or mode (RW lock), and
// a mutex's lock-delay.
type shape struct {
	permits   int64
	mode      core.Mode
	lockDelay int64
}

func shapeOf(c *core.Command) shape {
	sh := shape{permits: c.Permits, mode: c.Mode, lockDelay: c.LockDelayMs}
	if c.Kind == core.KindSemaphore && sh.permits == 0 {
		sh.permits = 1
	}
	return sh
}

// noteShape remembers what an acquire asked for, by the token it was granted
// at once or by the waiter it queued as, for the grant effect to find.
func (l *ledger) noteShape(c *core.Command, r *core.Result, x *entryScratch) {
	if r.Err != nil || r.Duplicate {
		return
	}
	// A second acquire of a session that already waits on the object is
	// answered with the same waiter: it queues once. A second campaign
	// sets the value it leads with from rules 4 (rulesCampaignValue).
	_, again := l.waitObj[r.Waiter]
	if c.Op == core.OpCampaign && r.Outcome == core.OutcomeQueued && (!again || l.rules >= rulesCampaignValue) {
		l.waitValues[r.Waiter] = string(c.Value)
	}
	if c.Op == core.OpAcquire || c.Op == core.OpCampaign {
		switch _, seen := x.askers[r.Token]; {
		case r.Outcome == core.OutcomeGranted && !seen:
			// The first request answered a token in its entry asked for
			// it; one answered it after (a re-acquire) did not.
			x.askers[r.Token] = dedupeKey{c.ClientID, c.Seq}
		case r.Outcome == core.OutcomeQueued && !again:
			l.waitAskers[r.Waiter] = dedupeKey{c.ClientID, c.Seq}
		}
	}
	if r.Outcome == core.OutcomeQueued && again && c.ClientID != "" {
		k := dedupeKey{c.ClientID, c.Seq}
		l.joined++
		l.joiners[k] = true
		if l.c.publicRetries[k] {
			l.joinedByRetry++
		}
	}
	if r.Outcome == core.OutcomeQueued && !again {
		k := objKey{c.Kind, c.Name}
		switch c.Op {
		case core.OpCampaign:
			k.kind = core.KindElection
		case core.OpBarrierWait:
			k.kind = core.KindBarrier
		}
		l.queues[k] = append(l.queues[k], r.Waiter)
		l.waitObj[r.Waiter] = k
	}
	if c.Op != core.OpAcquire {
		return
	}
	switch r.Outcome {
	case core.OutcomeGranted:
		x.shapes[r.Token] = shapeOf(c)
	case core.OutcomeQueued:
		l.waitShapes[r.Waiter] = shapeOf(c)
	}
}

// entryScratch is what one entry's replay collects.
type entryScratch struct {
	shapes  map[core.FencingToken]shape
	touched map[objKey]bool
	gens    map[uint64]int64 // barrier generation → parties released through effects
	ended   map[core.SessionID]string
	forced  map[core.SessionID]bool // closed by a close that asked for the lock-delay
	cleaned map[core.SessionID]bool // closed by a cleanup (shards.Cleanup)
	expired map[core.SessionID]bool // closed because it expired in another shard (shards.Expired)
	now     core.LogTime            // log time after the entry's clock moved: when its timers and commands ran
	// electionCmds counts the entry's campaigns, proclaims and resigns
	// per election name; grantedFrom is the waiter each election grant of
	// the entry answered; valueBefore a leader's value before the
	// entry's first value_changed of it.
	electionCmds map[string]int
	grantedFrom  map[core.FencingToken]core.WaiterID
	valueBefore  map[core.FencingToken]string
	// askers: the request each grant made at once in the entry answered
	// (grantRec.asker).
	askers map[core.FencingToken]dedupeKey
}

func (l *ledger) checkLease(idx uint64, now core.LogTime, id core.SessionID, mark bool) {
	s := l.sessions[id]
	if s == nil {
		l.fail("session-lease", "index %d expired session %d, which the log had not created or had ended", idx, id)
		return
	}
	if mark {
		l.fail("leader-change-expiry", "index %d is a leader-change entry, yet it expired session %d, live before it "+
			"(lease to %d, log time moved to %d): a failover must extend every live session to now+ttl, not expire it",
			idx, id, s.deadline, now)
		return
	}
	if now < s.deadline {
		l.fail("session-lease", "index %d expired session %d at log time %d, before its lease ran to %d "+
			"(ttl %d ms from its last keepalive or leader change)", idx, id, now, s.deadline, s.ttl)
	}
}

// sessionCommand keeps the reference leases and the dedupe results.
func (l *ledger) sessionCommand(idx uint64, now core.LogTime, c *core.Command, r *core.Result, x *entryScratch) {
	if c.Op == core.OpSessionClose && c.ApplyLockDelay && r.Err != nil && r.Err.Code == core.CodeFailedPrecondition {
		// Refused as rules 3 refuse it; from rules 4 it must apply.
		if l.rules >= rulesCloseLockDelay {
			l.fail("close-lock-delay", "index %d refused a close of session %d with apply_lock_delay under rules %d (%v): "+
				"from rules %d it ends the session's holds as a failure", idx, c.Session, l.rules, r.Err, rulesCloseLockDelay)
		}
		l.refusedCloses++
	}
	if r.Err != nil {
		return
	}
	if c.ClientID != "" && !r.Duplicate {
		l.results[dedupeKey{c.ClientID, c.Seq}] = keyResult{index: idx, result: *r}
	}
	if r.Duplicate {
		if r.Outcome != core.OutcomeQueued && l.joiners[dedupeKey{c.ClientID, c.Seq}] {
			l.joinedEnded++
		}
		return
	}
	switch c.Op {
	case core.OpSessionCreate:
		l.sessions[r.Session] = &sessRef{ttl: c.TTLMs, deadline: now + core.LogTime(c.TTLMs)}
	case core.OpSessionKeepAlive:
		if s := l.sessions[c.Session]; s != nil {
			if c.TTLMs != 0 {
				s.ttl = c.TTLMs
			}
			s.deadline = max(s.deadline, now+core.LogTime(s.ttl))
		} else {
			l.fail("session-lease", "index %d kept alive session %d, which the log had ended", idx, c.Session)
		}
	case core.OpSessionClose:
		delete(l.sessions, r.Session)
		x.ended[r.Session] = "closed"
		cleanup, expiry := strings.HasSuffix(c.ClientID, cleanupClientSuffix), strings.HasSuffix(c.ClientID, expiryClientSuffix)
		if cleanup || expiry {
			// A session lost in one shard failed: its copies elsewhere
			// must end as its expiry would, lock-delay included.
			if !c.ApplyLockDelay {
				l.fail("cleanup-lock-delay", "index %d closed session %d for a cleanup or another shard's expiry (%s seq=%d) without apply_lock_delay: "+
					"a session lost in one shard failed, and its holds elsewhere must keep their lock-delay", idx, r.Session, c.ClientID, c.Seq)
			}
		}
		switch {
		case cleanup:
			x.cleaned[r.Session] = true
			l.cleanupCloses++
		case expiry:
			x.expired[r.Session] = true
			l.expiryCloses++
		}
		if c.ApplyLockDelay {
			if l.rules < rulesCloseLockDelay {
				l.fail("close-lock-delay", "index %d closed session %d with apply_lock_delay under rules %d: "+
					"before rules %d such a close must be refused and change nothing", idx, r.Session, l.rules, rulesCloseLockDelay)
			}
			x.forced[r.Session] = true
			l.forcedCloses++
		}
	case core.OpLeaderChange:
		for _, s := range l.sessions {
			s.deadline = max(s.deadline, now+core.LogTime(s.ttl))
		}
	}
}

func (l *ledger) liveOf(s core.SessionID) []*grantRec {
	var out []*grantRec
	for _, g := range l.sortedLive() {
		if g.session == s {
			out = append(out, g)
		}
	}
	return out
}

// command checks what a command's result claims against the grants the
// effects made.
func (l *ledger) command(idx uint64, c *core.Command, r *core.Result, x *entryScratch) {
	if (c.Op == core.OpRelease || c.Op == core.OpResign) && c.Unheard {
		l.unheardRelease(idx, c, r)
	}
	if r.Err != nil || r.Duplicate {
		return
	}
	switch c.Op {
	case core.OpAcquire, core.OpCampaign:
		if r.Outcome == core.OutcomeGranted {
			// A new grant also emitted EffectGranted; a holder's re-acquire
			// returns its live grant.
			k := objKey{c.Kind, c.Name}
			if c.Op == core.OpCampaign {
				k.kind = core.KindElection
			}
			g := l.grants[r.Token]
			if g == nil || g.key != k || g.session != c.Session {
				l.fail("grant-ledger", "index %d answered %s %q granted with token %d to session %d, which the log never granted it",
					idx, k.kind, k.name, r.Token, c.Session)
			} else if g.ended && g.endIdx != idx {
				l.fail("grant-ledger", "index %d answered %s %q granted with token %d, which ended at index %d",
					idx, k.kind, k.name, r.Token, g.endIdx)
			}
			x.touched[k] = true
			if c.Op == core.OpCampaign && g != nil && g.index != idx && x.electionCmds[c.Name] == 1 {
				l.campaignAgain(idx, c, g, x)
			}
		}
	case core.OpBarrierWait:
		if r.Outcome == core.OutcomeReleased && c.Parties > 0 {
			// The arrival that completes a generation releases the others
			// in the same entry, with the same generation.
			if n := 1 + x.gens[r.Generation]; n != c.Parties {
				l.fail("barrier", "index %d released generation %d of barrier %q with %d of %d parties",
					idx, r.Generation, c.Name, n, c.Parties)
			}
		}
	}
}

func (l *ledger) effect(idx uint64, ef *core.Effect, x *entryScratch) {
	k := objKey{ef.Object, ef.Name}
	switch ef.Kind {
	case core.EffectGranted:
		if ef.Waiter != 0 {
			if at, ok := l.c.toldEnded[waitKey{l.shard, ef.Waiter}]; ok {
				l.fail("wait-end", "index %d granted waiter %d on %s %q, whose caller was told at %.3fs that its wait ended without a grant",
					idx, ef.Waiter, k.kind, k.name, at.Seconds())
			}
			l.dequeue(idx, ef.Waiter, true)
		}
		if ef.Object == core.KindBarrier && ef.Waiter != 0 {
			l.waitEnds[ef.Waiter] = waitEnd{index: idx, granted: true, gen: ef.Generation}
			x.gens[ef.Generation]++
			return
		}
		l.grant(idx, k, ef, x)
		if ef.Waiter != 0 {
			l.waitEnds[ef.Waiter] = waitEnd{index: idx, granted: true, token: ef.Token}
			if k.kind == core.KindElection {
				x.grantedFrom[ef.Token] = ef.Waiter
			}
		}
		x.touched[k] = true
	case core.EffectLeaderChanged:
		if ef.Token == 0 {
			return // the election has no leader now
		}
		g := l.grants[ef.Token]
		if g == nil || g.key != k {
			l.fail("election-value", "index %d made token %d leader of election %q, which the log never granted it", idx, ef.Token, k.name)
			return
		}
		g.value = string(ef.Value)
		if w, ok := x.grantedFrom[ef.Token]; ok {
			if want, ok := l.waitValues[w]; ok && want != g.value {
				l.fail("election-value", "index %d elected waiter %d of election %q with value %q; its candidacy asked for %q "+
					"(under rules %d a later campaign of its session sets it)", idx, w, k.name, g.value, want, l.rules)
			}
			delete(l.waitValues, w)
		}
	case core.EffectValueChanged:
		g := l.grants[ef.Token]
		if g == nil || g.key != k || g.session != ef.Session {
			l.fail("election-value", "index %d changed the value of token %d of election %q, which is not a leadership of session %d",
				idx, ef.Token, k.name, ef.Session)
			return
		}
		if _, ok := x.valueBefore[ef.Token]; !ok {
			x.valueBefore[ef.Token] = g.value
		}
		g.value = string(ef.Value)
	case core.EffectReleased:
		g := l.live[ef.Token]
		if g == nil || g.key != k {
			l.fail("grant-ledger", "index %d released token %d of %s %q, which is not a live grant of it", idx, ef.Token, k.kind, k.name)
			return
		}
		g.ended, g.endIdx, g.reason = true, idx, ef.Reason
		delete(l.live, ef.Token)
		o := l.objects[k]
		for i, t := range o.holders {
			if t == ef.Token {
				o.holders = append(o.holders[:i], o.holders[i+1:]...)
				break
			}
		}
		// A grant that ends by failure, or by a close that asked for it,
		// leaves its lock-delay behind (docs/design.md, Session).
		failed := ef.Reason == core.ReasonSessionExpired || ef.Reason == core.ReasonMaxHold ||
			(ef.Reason == core.ReasonSessionClosed && x.forced[g.session])
		delayed := k.kind == core.KindMutex && failed && g.lockDelay > 0
		if delayed {
			l.delays[k] = x.now + core.LogTime(g.lockDelay)
			if ef.Reason == core.ReasonSessionClosed {
				l.closeDelays++
				if x.cleaned[g.session] {
					l.cleanupDelays++
				}
				if x.expired[g.session] {
					l.expiryDelays++
				}
			}
		}
		if ef.Reason != core.ReasonReleased && k.kind != core.KindBarrier {
			l.sysOps = append(l.sysOps, sysOp{key: k, token: ef.Token, session: g.session, index: idx, reason: ef.Reason, delayed: delayed})
		}
		x.touched[k] = true
	case core.EffectWaitEnded:
		l.dequeue(idx, ef.Waiter, false)
		l.waitEnds[ef.Waiter] = waitEnd{index: idx, reason: ef.Reason}
		delete(l.waitShapes, ef.Waiter)
		delete(l.waitAskers, ef.Waiter)
		delete(l.waitValues, ef.Waiter)
	case core.EffectSessionExpired:
		l.expiries++
		delete(l.sessions, ef.Session)
		x.ended[ef.Session] = "expired"
	case core.EffectSessionClosed:
		// What a stream pushes to the session's client: it must follow a
		// close the log holds, in this entry, never stand for an expiry.
		if x.ended[ef.Session] != "closed" {
			l.fail("session-lease", "index %d reports session %d closed, and no command of that entry closed it", idx, ef.Session)
		}
	}
}

// unheardRelease follows a replica's unheard release (Command.Unheard):
// one that ends a grant is the machine's own act, which porcupine places
// as it does an expiry's (no client asked for it, and its history would
// otherwise hold the grant forever), and the grant it ended must never
// have been told to a client (acked-grant-lost). One refused is counted:
// under rules 5, for a grant another request was answered.
func (l *ledger) unheardRelease(idx uint64, c *core.Command, r *core.Result) {
	k := objKey{c.Kind, c.Name}
	if c.Op == core.OpResign {
		k.kind = core.KindElection
	}
	switch {
	case r.Err == nil:
		l.unheardEnded++
		l.sysOps = append(l.sysOps, sysOp{key: k, token: c.Token, session: c.Session, index: idx, reason: core.ReasonReleased})
		l.c.unheardEnded(l.shard, k, c.Token, idx)
	case r.Err.Code != core.CodeFailedPrecondition:
		// The grant had ended already (released, expired, closed).
	case l.rules < rulesUnheardRelease:
		l.unheardUnruled++
	default:
		l.unheardKept++
		if g := l.grants[c.Token]; g != nil && l.c.private[g.asker] {
			l.unheardRaced++
		}
	}
}

// campaignAgain checks a campaign answered with a leadership its session
// already had, the entry's only campaign, proclaim or resign of the name:
// from rules 4 it proclaims its value (one value_changed when the value
// differs, none when equal), under rules 3 it keeps the old one.
func (l *ledger) campaignAgain(idx uint64, c *core.Command, g *grantRec, x *entryScratch) {
	before, changed := x.valueBefore[g.token]
	if !changed {
		before = g.value
	}
	if g.value != string(c.Value) || changed {
		if l.rules < rulesCampaignValue {
			l.keptValues++
		} else {
			l.setValues++
		}
	}
	switch {
	case l.rules < rulesCampaignValue && changed:
		l.fail("election-value", "index %d: a campaign of election %q by its leader (session %d) changed its value to %q under rules %d; "+
			"before rules %d it keeps the old value", idx, c.Name, c.Session, g.value, l.rules, rulesCampaignValue)
	case l.rules >= rulesCampaignValue && g.value != string(c.Value):
		l.fail("election-value", "index %d: a campaign of election %q by its leader (session %d) with value %q left the value %q under rules %d; "+
			"it must proclaim the campaign's value", idx, c.Name, c.Session, c.Value, g.value, l.rules)
	case l.rules >= rulesCampaignValue && changed && before == string(c.Value):
		l.fail("election-value", "index %d: a campaign of election %q by its leader with the value it had (%q) emitted a value change",
			idx, c.Name, before)
	}
}

func (l *ledger) sortedLive() []*grantRec {
	out := make([]*grantRec, 0, len(l.live))
	for _, g := range l.live {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].token < out[j].token })
	return out
}

func (l *ledger) grant(idx uint64, k objKey, ef *core.Effect, x *entryScratch) {
	if at, ok := l.c.closed[ef.Session]; ok {
		l.fail("close-everywhere", "index %d granted %s %q to session %d, whose close a client was told succeeded at %.3fs",
			idx, k.kind, k.name, ef.Session, at.Seconds())
	}
	if g := l.grants[ef.Token]; g != nil {
		l.fail("token-unique", "index %d granted token %d on %s %q, already granted at index %d on %s %q",
			idx, ef.Token, k.kind, k.name, g.index, g.key.kind, g.key.name)
		return
	}
	o := l.objects[k]
	if o == nil {
		o = &objRec{}
		l.objects[k] = o
	}
	if ef.Token <= o.lastToken {
		l.fail("token-order", "index %d granted token %d on %s %q after token %d", idx, ef.Token, k.kind, k.name, o.lastToken)
	}
	o.lastToken = max(o.lastToken, ef.Token)
	if until, ok := l.delays[k]; ok {
		if x.now < until {
			l.fail("lock-delay", "index %d granted mutex %q to session %d at log time %d, before the lock-delay its last holder's "+
				"failure or forced close started ran out at %d", idx, k.name, ef.Session, x.now, until)
		}
		delete(l.delays, k)
	}
	g := &grantRec{key: k, session: ef.Session, token: ef.Token, index: idx, asker: x.askers[ef.Token]}
	sh, ok := x.shapes[ef.Token]
	if ef.Waiter != 0 {
		sh, ok = l.waitShapes[ef.Waiter]
		delete(l.waitShapes, ef.Waiter)
		g.asker = l.waitAskers[ef.Waiter]
		delete(l.waitAskers, ef.Waiter)
	}
	if !ok && (k.kind == core.KindSemaphore || k.kind == core.KindRWLock) {
		l.fail("grant-ledger", "index %d granted token %d on %s %q that no acquire asked for", idx, ef.Token, k.kind, k.name)
	}
	g.permits, g.mode, g.lockDelay = sh.permits, sh.mode, sh.lockDelay
	l.grants[ef.Token] = g
	if k.kind != core.KindBarrier {
		l.live[ef.Token] = g
		o.holders = append(o.holders, ef.Token)
	} else {
		l.live[ef.Token] = g
	}
	if s := l.sessions[ef.Session]; s == nil && x.ended[ef.Session] == "" {
		l.fail("session-holds", "index %d granted token %d on %s %q to session %d, which is not live", idx, ef.Token, k.kind, k.name, ef.Session)
	}
}

// checkExclusion checks what may hold one object at once.
func (l *ledger) checkExclusion(idx uint64, k objKey) {
	o := l.objects[k]
	if o == nil {
		return
	}
	switch k.kind {
	case core.KindMutex, core.KindElection:
		if len(o.holders) > 1 {
			l.fail("exclusion", "after index %d, %s %q has %d holders (tokens %v)", idx, k.kind, k.name, len(o.holders), o.holders)
		}
	case core.KindRWLock:
		writers := 0
		for _, t := range o.holders {
			if l.live[t].mode == core.ModeWrite {
				writers++
			}
		}
		if writers > 1 || (writers == 1 && len(o.holders) > 1) {
			l.fail("exclusion", "after index %d, rwlock %q has %d writers among %d holders", idx, k.name, writers, len(o.holders))
		}
	case core.KindSemaphore:
		used := int64(0)
		for _, t := range o.holders {
			used += l.live[t].permits
		}
		if limit := l.c.w.semLimit(k.name); used > limit {
			l.fail("exclusion", "after index %d, semaphore %q has %d permits taken; its limit is %d", idx, k.name, used, limit)
		}
	}
}

// whenApplied returns when an index was first applied.
func (l *ledger) whenApplied(idx uint64) time.Duration {
	t, _ := l.c.firstApplied(l.shard, idx)
	return t
}

// dequeue takes a waiter out of its object's queue. A grant must go to the
// queue's head: FIFO, no barging (docs/design.md), so every waiter queued before
// it has been granted or has ended already.
func (l *ledger) dequeue(idx uint64, w core.WaiterID, granted bool) {
	k, ok := l.waitObj[w]
	if !ok {
		return
	}
	delete(l.waitObj, w)
	q := l.queues[k]
	i := 0
	for i < len(q) && q[i] != w {
		i++
	}
	if i == len(q) {
		return
	}
	if granted && i > 0 && k.kind != core.KindBarrier {
		l.fail("fifo", "index %d granted waiter %d on %s %q ahead of waiter %d, queued before it", idx, w, k.kind, k.name, q[0])
	}
	q = append(q[:i], q[i+1:]...)
	if len(q) == 0 {
		delete(l.queues, k)
	} else {
		l.queues[k] = q
	}
}
