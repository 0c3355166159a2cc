package core

import "fmt"

// Machine is one replica's state. Apply is the only way it changes; the
// reads in reads.go change nothing. It never reads a clock: time arrives
// stamped on entries.
type Machine struct {
	limits Limits

	index   uint64  // last applied entry
	now     LogTime // log time after the last applied entry
	started bool    // the first entry sets the clock without a step cap
	slot    uint64  // identifiers allocated while applying the current entry
	rules   uint64  // the rules in force: every entry applies by them (rules.go)

	sessions map[SessionID]*session
	objects  map[objectKey]*object
	waiters  map[WaiterID]*waiter
	holds    map[FencingToken]*hold
	nWaiters int

	// lockDelays finds the object whose lock-delay a timer ends, by the token
	// of the grant whose failure started the delay.
	lockDelays map[uint64]*object

	timers  timerHeap
	clients clientTable

	out Output
}

type objectKey struct {
	kind Kind
	name string
}

// New returns an empty machine.
func New(limits Limits) (*Machine, error) {
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	return newMachine(limits), nil
}

func newMachine(limits Limits) *Machine {
	return &Machine{
		limits:   limits,
		rules:    rulesUnmarked,
		sessions: make(map[SessionID]*session),
		objects:  make(map[objectKey]*object),
		waiters:  make(map[WaiterID]*waiter),
		holds:    make(map[FencingToken]*hold),
		clients:  newClientTable(),

		lockDelays: make(map[uint64]*object),
	}
}

// Limits returns the limits the machine enforces.
func (m *Machine) Limits() Limits { return m.limits }

// Index is the last applied entry's index.
func (m *Machine) Index() uint64 { return m.index }

// Now is the log time after the last applied entry.
func (m *Machine) Now() LogTime { return m.now }

// Rules is the rules version in force: the highest a leader-change mark
// applied so far carried, or the rules before marks carried them (3). The
// entries after it apply by these rules, whatever build applies them.
func (m *Machine) Rules() uint64 { return m.rules }

// Apply applies one committed entry. Indexes must strictly increase; gaps are
// allowed (the log carries entries the machine never sees). The returned
// Output is reused by the next Apply.
func (m *Machine) Apply(e Entry) *Output {
	if e.Index <= m.index {
		panic(fmt.Sprintf("core: entry index %d applied after %d", e.Index, m.index))
	}
	if e.Index >= 1<<(64-SlotBits) {
		panic(fmt.Sprintf("core: entry index %d does not fit a fencing token", e.Index))
	}
	if r := newerRules(e.Commands); r != 0 {
		// Written by a build of newer rules (this member was downgraded
		// under its log): applied by this build's rules, this entry and
		// every later one would decide another state than the members
		// that wrote them, silently. Stop before anything changes.
		panic(fmt.Sprintf("core: entry %d carries a leader mark of rules %d, newer than this build's rules %d: "+
			"this build cannot apply this log; run a build of rules %d or later", e.Index, r, RulesVersion, r))
	}
	m.index = e.Index
	m.slot = 0
	m.out.Index = e.Index
	m.out.Results = m.out.Results[:0]
	m.out.Effects = m.out.Effects[:0]

	if rules, ok := m.carriesLeaderChange(e.Commands); ok {
		// The mark's rules are its proposer's: they apply from this entry
		// on, on every member, whichever build it runs (rules.go). They
		// never go back: a mark of older rules raises nothing.
		m.rules = max(m.rules, rules)
		// A new leader's first entry takes its stamp whole, and every
		// deadline moves with it: log time's jump across a change of leader
		// (the election's gap, and the new leader's clock ahead of the old
		// one's, by any amount) counts against no lease, wait, hold limit or
		// lock delay. Caught up a capped step at a time instead, it would
		// run faster than real time and cut every lease renewed meanwhile
		// short. Then the gap, in which no client could keep its session
		// alive, extends the sessions before any timer fires, or the
		// leader-change entry itself would expire them.
		m.shiftDeadlines(m.advanceClockWhole(e.Time))
		m.leaderChange()
	} else {
		m.advanceClock(e.Time)
	}
	m.out.Time = m.now
	m.fireTimers()
	m.clients.expire(m.now, m.limits)

	if len(e.Commands) > m.limits.MaxCommandsPerEntry {
		err := errorf(CodeResourceExhausted, "the entry packs %d commands; at most %d fit one entry: propose smaller batches",
			len(e.Commands), m.limits.MaxCommandsPerEntry)
		for range e.Commands {
			m.out.Results = append(m.out.Results, Result{Err: err})
		}
		m.out.NextDeadline = m.nextDeadline()
		return &m.out
	}
	for i := range e.Commands {
		m.out.Results = append(m.out.Results, m.applyCommand(&e.Commands[i]))
	}
	m.out.NextDeadline = m.nextDeadline()
	return &m.out
}

// NextDeadline is the earliest log time at which something ends by time
// alone, as of the last applied entry; false when nothing would
// (Output.NextDeadline).
func (m *Machine) NextDeadline() (LogTime, bool) {
	if m.timers.Len() == 0 {
		return 0, false
	}
	return m.timers.peek().at, true
}

// nextDeadline drops the stale timers at the top of the heap (a session
// kept alive leaves its old deadline behind) and answers the first live
// one, 0 when none is left. With no stale timer on top, an empty heap
// means nothing in the machine is timed, which advanceClock relies on; a
// restored machine, holding only live timers, agrees.
func (m *Machine) nextDeadline() LogTime {
	for m.timers.Len() > 0 && !m.timerLive(m.timers.peek()) {
		m.timers.pop()
	}
	d, _ := m.NextDeadline()
	return d
}

// advanceClock moves log time to max(now, stamped), by at most MaxClockStepMs
// while anything in the machine is timed, so that one proposer whose clock
// jumps cannot expire every session at once. With nothing timed (no
// session, wait, hold limit or lock delay) a jump expires nothing, and the
// stamp is taken whole: an idle leader proposes nothing (core/replica), so
// the first entry after a quiet hour must bring log time to now, or the
// lease of a session it creates would be measured from an hour ago and end
// at once as later entries caught up. The first stamped entry sets the
// clock: there is nothing earlier to cap against. An entry stamped 0 (no
// time) leaves it alone, and a stamp beyond MaxLogTime counts as
// MaxLogTime, so that deadlines never overflow.
func (m *Machine) advanceClock(stamped LogTime) {
	stamped = min(stamped, MaxLogTime)
	if !m.started {
		if stamped > 0 {
			m.started = true
			m.now = stamped
		}
		return
	}
	if stamped <= m.now {
		return
	}
	if m.timers.Len() == 0 {
		m.now = stamped
		return
	}
	m.now = min(stamped, m.now+LogTime(m.limits.MaxClockStepMs))
}

// advanceClockWhole moves log time to max(now, stamped) without the cap
// and returns how far it moved.
func (m *Machine) advanceClockWhole(stamped LogTime) LogTime {
	was := m.now
	if !m.started {
		m.advanceClock(stamped)
		return 0 // the first entry sets the clock: there is no deadline yet
	}
	m.now = max(m.now, min(stamped, MaxLogTime))
	return m.now - was
}

// shiftDeadlines moves every deadline by d: sessions' leases, waits, hold
// limits and lock delays, and their timers (a uniform shift keeps the
// heap's order, and a stale timer stays stale), and the last use of every
// remembered client, so that the jump forgets no result early (a uniform
// shift keeps the LRU order). Deadlines beyond MaxLogTime stay there.
func (m *Machine) shiftDeadlines(d LogTime) {
	if d <= 0 {
		return
	}
	later := func(t LogTime) LogTime {
		if t == 0 {
			return 0 // none
		}
		return min(t+d, MaxLogTime)
	}
	for i := range m.timers.items {
		m.timers.items[i].at = later(m.timers.items[i].at)
	}
	for _, s := range m.sessions {
		s.deadline = later(s.deadline)
	}
	for _, w := range m.waiters {
		w.deadline = later(w.deadline)
	}
	for _, h := range m.holds {
		h.maxHoldAt = later(h.maxHoldAt)
	}
	for _, o := range m.objects {
		o.lockDelayUntil = later(o.lockDelayUntil)
	}
	for rec := m.clients.head; rec != nil; rec = rec.next {
		rec.lastUsed = min(rec.lastUsed+d, MaxLogTime)
	}
}

// nextID hands out the identifiers of this entry: tokens, sessions, waiters,
// barrier generations. Limits.Validate keeps the count below maxSlots.
func (m *Machine) nextID() uint64 {
	if m.slot >= maxSlots {
		panic(fmt.Sprintf("core: entry %d allocated more than %d identifiers", m.index, maxSlots))
	}
	id := m.index<<SlotBits | m.slot
	m.slot++
	return id
}

func (m *Machine) emit(e Effect) { m.out.Effects = append(m.out.Effects, e) }

// applyCommand validates, dedupes and executes one command. A command that
// fails changes nothing, not even the dedupe table.
func (m *Machine) applyCommand(c *Command) Result {
	if err := m.validate(c); err != nil {
		return Result{Err: err}
	}
	var rec *clientRecord
	var asked uint64
	if c.ClientID != "" {
		var stored *dedupeEntry
		var err *Error
		asked = requestPrint(c)
		rec, stored, err = m.clients.lookup(c.ClientID, c.Seq, asked)
		if err != nil {
			return Result{Err: err}
		}
		if stored != nil {
			r := stored.result
			if r.Err == nil && r.Outcome == OutcomeQueued && r.Waiter != 0 && m.waiters[r.Waiter] == nil && m.rules >= rulesJoinedWaitEnd {
				r = m.joinedWaitEnded(c, r)
			}
			r.Duplicate = true
			return r
		}
		if err := m.clients.admit(rec, c.ClientID, c.LowestPending, newResults(c), m.limits); err != nil {
			return Result{Err: err}
		}
	}
	r := m.execute(c)
	if r.Err == nil && c.ClientID != "" {
		// abandon may have recorded a result for the client; find its
		// record again rather than trust the one looked up before.
		m.clients.record(m.clients.byID[c.ClientID], c.ClientID, c.Seq, c.LowestPending, m.index, asked, r, m.now, m.limits)
	}
	return r
}

func (m *Machine) execute(c *Command) Result {
	switch c.Op {
	case OpSessionCreate:
		return m.sessionCreate(c)
	case OpSessionKeepAlive:
		return m.sessionKeepAlive(c)
	case OpSessionClose:
		return m.sessionClose(c)
	case OpAcquire:
		return m.acquire(c)
	case OpRelease:
		return m.release(c)
	case OpCancel:
		return m.cancel(c)
	case OpBarrierWait:
		return m.barrierWait(c)
	case OpBarrierSet:
		return m.barrierSet(c)
	case OpBarrierRemove:
		return m.barrierRemove(c)
	case OpCampaign:
		return m.campaign(c)
	case OpProclaim:
		return m.proclaim(c)
	case OpResign:
		return m.resign(c)
	case OpLeaderChange:
		return m.leaderChange()
	case OpAbandon:
		return m.abandon(c)
	case OpTickRequest:
		// Its meaning is for the replicas' drivers, which see it applied:
		// the leader answers it with a tick (core/replica).
		return Result{Outcome: OutcomeDone}
	}
	panic(fmt.Sprintf("core: validated command has op %v", c.Op))
}

// fireTimers runs every deadline that log time has reached, in (time, kind,
// id) order, so replicas and restored snapshots agree on the order.
func (m *Machine) fireTimers() {
	for m.timers.Len() > 0 && m.timers.peek().at <= m.now {
		t := m.timers.pop()
		if !m.timerLive(t) {
			continue
		}
		switch t.kind {
		case timerSession:
			m.endSession(m.sessions[SessionID(t.id)], ReasonSessionExpired, true)
		case timerWaiter:
			m.endWait(m.waiters[WaiterID(t.id)], ReasonTimeout)
		case timerMaxHold:
			m.endHold(m.holds[FencingToken(t.id)], ReasonMaxHold)
		case timerLockDelay:
			o := m.lockDelays[t.id]
			delete(m.lockDelays, t.id)
			o.lockDelayUntil = 0
			m.pump(o)
			m.dropIfIdle(o)
		}
	}
}

// timerLive says whether t is still its target's deadline: a timer is
// never removed when its target moves on (kept alive, granted, released),
// only recognised as stale here.
func (m *Machine) timerLive(t timer) bool {
	switch t.kind {
	case timerSession:
		s := m.sessions[SessionID(t.id)]
		return s != nil && s.deadline == t.at
	case timerWaiter:
		w := m.waiters[WaiterID(t.id)]
		return w != nil && w.deadline == t.at
	case timerMaxHold:
		h := m.holds[FencingToken(t.id)]
		return h != nil && h.maxHoldAt == t.at
	case timerLockDelay:
		o := m.lockDelays[t.id]
		return o != nil && o.lockDelayUntil == t.at
	}
	return false
}

// carriesLeaderChange says whether the entry holds a valid leader change
// that will be applied, and the highest rules its marks carry.
func (m *Machine) carriesLeaderChange(cmds []Command) (rules uint64, ok bool) {
	if len(cmds) > m.limits.MaxCommandsPerEntry {
		return 0, false
	}
	for i := range cmds {
		if cmds[i].Op == OpLeaderChange && m.validate(&cmds[i]) == nil {
			rules, ok = max(rules, cmds[i].Rules), true
		}
	}
	return rules, ok
}

// newerRules is the rules of a leader-change mark among cmds newer than
// this build's RulesVersion (the highest, if several), or 0. Such a mark
// says a build of newer rules wrote the log, which this build cannot apply
// by them; valid or not by this build's checks, and in an entry of any
// size, since how the newer rules treat it is not this build's to know.
func newerRules(cmds []Command) (rules uint64) {
	for i := range cmds {
		if cmds[i].Op == OpLeaderChange && cmds[i].Rules > RulesVersion {
			rules = max(rules, cmds[i].Rules)
		}
	}
	return rules
}

// leaderChange is the first entry of a new shard leader: no session may
// expire because the old leader stopped ticking (Chubby's grace period).
func (m *Machine) leaderChange() Result {
	for _, s := range m.sessions {
		if d := m.now + LogTime(s.ttlMs); d > s.deadline {
			s.deadline = d
			m.timers.push(timer{at: d, kind: timerSession, id: uint64(s.id)})
		}
	}
	return Result{Outcome: OutcomeDone}
}
