package core

// The reference model applying entries: time steps and the deadlines that
// fall due in them, then each command by the semantics (model_test.go holds
// the model's state and lookups).

import (
	"fmt"
	"sort"
)

// ---- applying entries ----

// nextDeadline is the earliest time at which anything ends by time alone:
// a session's lease, a wait's deadline, a hold limit, a lock delay.
func (m *refModel) nextDeadline() (LogTime, bool) {
	var at LogTime
	take := func(d LogTime) {
		if d != 0 && (at == 0 || d < at) {
			at = d
		}
	}
	for _, s := range m.sessions {
		take(s.deadline)
	}
	for _, w := range m.waits {
		take(w.deadline)
	}
	for _, h := range m.holds {
		take(h.maxHoldAt)
	}
	for _, a := range m.attrs {
		take(a.lockDelayUntil)
	}
	return at, at != 0
}

// shift moves every deadline d later (none stays none; MaxLogTime caps).
func (m *refModel) shift(d LogTime) {
	later := func(t *LogTime) {
		if *t != 0 {
			*t = min(*t+d, MaxLogTime)
		}
	}
	for _, s := range m.sessions {
		later(&s.deadline)
	}
	for _, w := range m.waits {
		later(&w.deadline)
	}
	for _, h := range m.holds {
		later(&h.maxHoldAt)
	}
	for _, a := range m.attrs {
		later(&a.lockDelayUntil)
	}
	for _, c := range m.clients {
		c.lastUsed = min(c.lastUsed+d, MaxLogTime)
	}
}

// apply applies one entry. coreEffects are core's effects for the same
// entry, from which the tokens of the time step's grants are adopted.
func (m *refModel) apply(e Entry, coreEffects []Effect) ([]Result, error) {
	m.index = e.Index
	m.slot = 0
	m.endings = refEndings{waits: map[WaiterID]string{}, holds: map[FencingToken]Reason{}, sessions: map[SessionID]bool{}}

	mark := false
	for _, c := range e.Commands {
		if c.Op == OpLeaderChange && c.ClientID == "" && c.Seq == 0 && len(e.Commands) <= m.lim.MaxCommandsPerEntry &&
			c.setFields() == 0 {
			mark = true
		}
	}

	// Clock.
	stamped := e.Time
	if stamped > MaxLogTime {
		stamped = MaxLogTime
	}
	switch {
	case !m.started:
		if stamped > 0 {
			m.started = true
			m.now = stamped
		}
	case mark:
		// A leader change takes its stamp whole, and every deadline moves
		// by the jump (docs/design.md, Time).
		if stamped > m.now {
			m.shift(stamped - m.now)
			m.now = stamped
		}
	default:
		next := stamped
		if _, timed := m.nextDeadline(); timed && next > m.now+LogTime(m.lim.MaxClockStepMs) {
			next = m.now + LogTime(m.lim.MaxClockStepMs)
		}
		if next > m.now {
			m.now = next
		}
	}

	// A valid leader-change entry extends every session before anything
	// expires: the failover gap must not expire them (docs/design.md, Time).
	if mark {
		for _, s := range m.sessions {
			if d := m.now + LogTime(s.ttl); d > s.deadline {
				s.deadline = d
			}
		}
	}

	m.expireDue()
	if err := m.resolveTimerIDs(coreEffects); err != nil {
		return nil, err
	}

	// Dedupe records idle for the retention are forgotten.
	var keep []*refClient
	for _, c := range m.clients {
		if c.lastUsed+LogTime(m.lim.DedupeRetentionMs) > m.now {
			keep = append(keep, c)
		}
	}
	m.clients = keep

	results := make([]Result, len(e.Commands))
	if len(e.Commands) > m.lim.MaxCommandsPerEntry {
		for i := range results {
			results[i] = refErr(CodeResourceExhausted)
		}
		return results, nil
	}
	for i := range e.Commands {
		results[i] = m.command(&e.Commands[i])
	}
	return results, nil
}

// expireDue ends everything whose deadline has come, then grants what can be
// granted: the state after it has no expired session, no overdue waiter, no
// overdue grant, no finished lock-delay, and every queue granted greedily from
// its head.
func (m *refModel) expireDue() {
	m.pendGrants, m.pendGens = nil, nil
	expired := func(id SessionID) (bool, LogTime) {
		s := m.session(id)
		return s.deadline <= m.now, s.deadline
	}
	// Waits of expired sessions, and overdue waits. When both apply, the
	// deadline that came first names the reason (a tie: session expired).
	for _, w := range append([]*refWait(nil), m.waits...) {
		sExp, sAt := expired(w.session)
		wExp := w.deadline != 0 && w.deadline <= m.now
		if !sExp && !wExp {
			continue
		}
		why := ReasonSessionExpired
		if wExp && (!sExp || w.deadline < sAt) {
			why = ReasonTimeout
		}
		m.removeWait(w)
		m.endings.wait(w.id, "refused "+why.String())
		m.settle(w.client, w.seq, Result{Outcome: OutcomeRefused, Waiter: w.id, Session: w.session, Reason: why})
	}
	// Grants of expired sessions, and grants past their maximum hold: both
	// are failures, after which a mutex may keep a lock-delay.
	for _, h := range append([]*refHold(nil), m.holds...) {
		sExp, sAt := expired(h.session)
		hExp := h.maxHoldAt != 0 && h.maxHoldAt <= m.now
		if !sExp && !hExp {
			continue
		}
		why := ReasonSessionExpired
		if hExp && (!sExp || h.maxHoldAt < sAt) {
			why = ReasonMaxHold
		}
		m.removeHold(h)
		m.endings.holds[h.token] = why
		if h.key.kind == KindMutex && h.lockDelay > 0 {
			m.attrs[h.key].lockDelayUntil = m.now + LogTime(h.lockDelay)
		}
		if h.key.kind == KindBarrier {
			m.releaseBarrier(h.key, true)
		}
	}
	for _, s := range append([]*refSession(nil), m.sessions...) {
		if s.deadline <= m.now {
			m.removeSession(s)
			m.endings.sessions[s.id] = true
		}
	}
	for _, a := range m.attrs {
		if a.lockDelayUntil != 0 && a.lockDelayUntil <= m.now {
			a.lockDelayUntil = 0
		}
	}
	for _, k := range m.keys() {
		m.grantQueue(k, true)
	}
	m.gc()
}

// resolveTimerIDs adopts the tokens and generations core gave the grants and
// barrier releases of the time step, after checking each is an identifier of
// this entry's time step (its slot below the number the model predicts),
// and none is given twice.
func (m *refModel) resolveTimerIDs(effects []Effect) error {
	base := uint64(len(m.pendGrants) + len(m.pendGens))
	used := map[uint64]bool{}
	check := func(id uint64, what string) error {
		if id>>SlotBits != m.index || id&(maxSlots-1) >= base || used[id] {
			return fmt.Errorf("model: %s got id %d (index %d slot %d); expected a fresh slot < %d of entry %d",
				what, id, id>>SlotBits, id&(maxSlots-1), base, m.index)
		}
		used[id] = true
		return nil
	}
	for _, p := range m.pendGrants {
		h, w := p.hold, p.wait
		var tok FencingToken
		for _, e := range effects {
			if e.Kind == EffectGranted && e.Waiter == w.id && e.Token != 0 {
				if e.Object != h.key.kind || e.Name != h.key.name || e.Session != h.session {
					return fmt.Errorf("model: core granted waiter %d as %s %q to session %d; model: %s %q to session %d",
						w.id, e.Object, e.Name, e.Session, h.key.kind, h.key.name, h.session)
				}
				tok = e.Token
			}
		}
		if tok == 0 {
			return fmt.Errorf("model: waiter %d of session %d is granted %s %q as deadlines fire; core reports no grant",
				w.id, h.session, h.key.kind, h.key.name)
		}
		if err := check(uint64(tok), "a grant made as deadlines fire"); err != nil {
			return err
		}
		h.token = tok
		m.settle(w.client, w.seq, Result{Outcome: OutcomeGranted, Token: tok, Session: w.session, Waiter: w.id})
	}
	for _, g := range m.pendGens {
		for _, e := range effects {
			if e.Kind == EffectBarrierReleased && e.Name == g.key.name && e.Generation>>SlotBits == m.index &&
				e.Generation&(maxSlots-1) < base && !used[e.Generation] {
				g.gen = e.Generation
				break
			}
		}
		if g.gen == 0 {
			return fmt.Errorf("model: barrier %q is lowered as its session expires; core reports no release", g.key.name)
		}
		if err := check(g.gen, "a barrier release as deadlines fire"); err != nil {
			return err
		}
		for _, w := range g.waiters {
			m.settle(w.client, w.seq, Result{Outcome: OutcomeReleased, Session: w.session, Waiter: w.id, Generation: g.gen})
		}
	}
	sort.Slice(m.holds, func(i, j int) bool { return m.holds[i].token < m.holds[j].token })
	m.slot = base
	return nil
}

// command validates, dedupes and executes one command.
func (m *refModel) command(c *Command) Result {
	if !refValid(&m.lim, c) {
		return refErr(CodeInvalidArgument)
	}
	var cl *refClient
	if c.ClientID != "" {
		if cl = m.client(c.ClientID); cl != nil {
			if r, ok := cl.results[c.Seq]; ok {
				if cl.asked[c.Seq] != refAskOf(c) {
					return refErr(CodeFailedPrecondition) // the seq was used for another request
				}
				r.Duplicate = true
				return r
			}
			if c.Seq <= cl.floor {
				return refErr(CodeFailedPrecondition)
			}
		}
	}
	r := m.exec(c)
	if r.Err == nil && c.ClientID != "" {
		m.uses++
		if cl == nil {
			cl = &refClient{id: c.ClientID, results: map[uint64]Result{}, asked: map[uint64]refAsk{}}
			m.clients = append(m.clients, cl)
			cl.order = m.uses
			for len(m.clients) > m.lim.MaxClients {
				oldest := 0
				for i, x := range m.clients {
					if x.order < m.clients[oldest].order {
						oldest = i
					}
				}
				m.clients = append(m.clients[:oldest], m.clients[oldest+1:]...)
			}
		}
		cl.order = m.uses
		cl.lastUsed = m.now
		cl.results[c.Seq] = r
		cl.asked[c.Seq] = refAskOf(c)
		if len(cl.results) > m.lim.DedupeWindow {
			min := c.Seq
			for s := range cl.results {
				if s < min {
					min = s
				}
			}
			delete(cl.results, min)
			delete(cl.asked, min)
			cl.floor = min
		}
	}
	m.gc()
	return r
}

func (m *refModel) exec(c *Command) Result {
	switch c.Op {
	case OpSessionCreate:
		// With an id: adopt it (the runtime's mirror of a session into
		// another shard). A live id with the same TTL and owner answers
		// that session unchanged; with others it is refused.
		if s := m.session(c.Session); c.Session != 0 && s != nil {
			if s.ttl != c.TTLMs || s.owner != c.Owner {
				return refErr(CodeFailedPrecondition)
			}
			return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}
		}
		if len(m.sessions) >= m.lim.MaxSessions {
			return refErr(CodeResourceExhausted)
		}
		id := c.Session
		if id == 0 {
			id = SessionID(m.alloc())
		}
		s := &refSession{id: id, ttl: c.TTLMs, deadline: m.now + LogTime(c.TTLMs), created: m.now, owner: c.Owner}
		m.sessions = append(m.sessions, s)
		return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}

	case OpSessionKeepAlive:
		s := m.session(c.Session)
		if s == nil {
			return refErr(CodeNotFound)
		}
		if c.TTLMs != 0 {
			s.ttl = c.TTLMs
		}
		s.deadline = m.now + LogTime(s.ttl)
		return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}

	case OpSessionClose:
		s := m.session(c.Session)
		if s == nil {
			return refErr(CodeNotFound)
		}
		m.endSession(s.id)
		m.removeSession(s)
		return Result{Outcome: OutcomeDone, Session: s.id}

	case OpAcquire, OpCampaign:
		return m.acquire(c)

	case OpRelease:
		h := m.holdByToken(c.Token)
		if h == nil || h.key != (objectKey{c.Kind, c.Name}) || (c.Session != 0 && h.session != c.Session) {
			return refErr(CodeConflict)
		}
		m.endHold(h, ReasonReleased)
		return Result{Outcome: OutcomeDone, Session: h.session, Token: h.token}

	case OpCancel:
		w := m.waitByID(c.Waiter)
		if w == nil || (c.Session != 0 && w.session != c.Session) {
			return refErr(CodeNotFound)
		}
		m.endWait(w, ReasonCancelled)
		return Result{Outcome: OutcomeDone, Waiter: w.id, Session: w.session}

	case OpBarrierWait:
		return m.barrierWait(c)

	case OpBarrierSet:
		if m.session(c.Session) == nil {
			return refErr(CodeNotFound)
		}
		k := objectKey{KindBarrier, c.Name}
		live := m.exists(k)
		if live {
			if m.attrs[k].parties != 0 {
				return refErr(CodeFailedPrecondition)
			}
			if hs := m.holdsOn(k); len(hs) > 0 {
				if hs[0].session == c.Session {
					return Result{Outcome: OutcomeDone, Session: c.Session, Token: hs[0].token}
				}
				return refErr(CodeConflict)
			}
		}
		if m.sessionLoad(c.Session) >= m.lim.MaxHoldsPerSession {
			return refErr(CodeResourceExhausted)
		}
		if !live {
			if len(m.keys()) >= m.lim.MaxObjects {
				return refErr(CodeResourceExhausted)
			}
			m.attrs[k] = &refAttrs{}
		}
		h := &refHold{key: k, session: c.Session, token: FencingToken(m.alloc()), acquired: m.now}
		m.holds = append(m.holds, h)
		return Result{Outcome: OutcomeDone, Session: c.Session, Token: h.token}

	case OpBarrierRemove:
		k := objectKey{KindBarrier, c.Name}
		if m.exists(k) && m.attrs[k].parties != 0 {
			return refErr(CodeFailedPrecondition)
		}
		hs := m.holdsOn(k)
		if len(hs) == 0 {
			return Result{Outcome: OutcomeDone}
		}
		m.endHold(hs[0], ReasonReleased)
		return Result{Outcome: OutcomeDone, Session: hs[0].session, Token: hs[0].token}

	case OpProclaim, OpResign:
		h := m.holdByToken(c.Token)
		if h == nil || h.key != (objectKey{KindElection, c.Name}) || h.session != c.Session {
			return refErr(CodeConflict)
		}
		if c.Op == OpProclaim {
			h.value = c.Value
		} else {
			m.endHold(h, ReasonReleased)
		}
		return Result{Outcome: OutcomeDone, Token: h.token, Session: h.session}

	case OpLeaderChange:
		for _, s := range m.sessions {
			if d := m.now + LogTime(s.ttl); d > s.deadline {
				s.deadline = d
			}
		}
		return Result{Outcome: OutcomeDone}
	}
	panic("model: op " + c.Op.String())
}

// endSession (close): its waits end first, then its grants, so that no grant
// goes to the session that is going away. A close is not a failure: no
// lock-delay.
func (m *refModel) endSession(id SessionID) {
	for _, w := range append([]*refWait(nil), m.waits...) {
		if w.session == id {
			m.endWait(w, ReasonSessionClosed)
		}
	}
	for _, h := range append([]*refHold(nil), m.holds...) {
		if h.session == id {
			m.endHold(h, ReasonSessionClosed)
		}
	}
}

// acquire serves mutex, semaphore and RW lock acquires and campaigns (an
// election is a lock whose holder leads).
func (m *refModel) acquire(c *Command) Result {
	if m.session(c.Session) == nil {
		return refErr(CodeNotFound)
	}
	k := objectKey{c.Kind, c.Name}
	if c.Op == OpCampaign {
		k.kind = KindElection
	}
	permits := c.Permits
	if k.kind == KindSemaphore && permits == 0 {
		permits = 1
	}
	live := m.exists(k)
	if live {
		if k.kind == KindSemaphore && m.attrs[k].limit != c.Limit {
			return refErr(CodeFailedPrecondition)
		}
		if h := m.holdOf(k, c.Session); h != nil {
			if h.permits != permits || h.mode != c.Mode {
				return refErr(CodeFailedPrecondition)
			}
			return Result{Outcome: OutcomeGranted, Token: h.token, Session: c.Session}
		}
		if w := m.waitOf(k, c.Session, ""); w != nil {
			if w.permits != permits || w.mode != c.Mode {
				return refErr(CodeFailedPrecondition)
			}
			return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: c.Session, Deadline: w.deadline}
		}
	}
	if !live || (len(m.queue(k)) == 0 && m.fits(k, permits, c.Mode)) {
		if m.sessionLoad(c.Session) >= m.lim.MaxHoldsPerSession {
			return refErr(CodeResourceExhausted)
		}
		if !live {
			if len(m.keys()) >= m.lim.MaxObjects {
				return refErr(CodeResourceExhausted)
			}
			m.attrs[k] = &refAttrs{limit: c.Limit}
		}
		h := &refHold{key: k, session: c.Session, token: FencingToken(m.alloc()), acquired: m.now,
			lockDelay: c.LockDelayMs, permits: permits, mode: c.Mode, owner: c.Owner, value: c.Value}
		if c.MaxHoldMs > 0 {
			h.maxHoldAt = m.now + LogTime(c.MaxHoldMs)
		}
		m.holds = append(m.holds, h)
		return Result{Outcome: OutcomeGranted, Token: h.token, Session: c.Session}
	}
	if c.WaitMs == 0 {
		return Result{Outcome: OutcomeRefused, Session: c.Session}
	}
	if r, ok := m.queueRoom(k, c.Session); !ok {
		return r
	}
	w := &refWait{id: WaiterID(m.alloc()), key: k, session: c.Session, enqueued: m.now, permits: permits, mode: c.Mode,
		owner: c.Owner, value: c.Value, lockDelay: c.LockDelayMs, maxHold: c.MaxHoldMs, client: c.ClientID, seq: c.Seq}
	if c.WaitMs > 0 {
		w.deadline = m.now + LogTime(c.WaitMs)
	}
	m.waits = append(m.waits, w)
	return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: c.Session, Deadline: w.deadline}
}

func (m *refModel) queueRoom(k objectKey, s SessionID) (Result, bool) {
	if m.sessionLoad(s) >= m.lim.MaxHoldsPerSession || len(m.queue(k)) >= m.lim.MaxWaitersPerObject ||
		len(m.waits) >= m.lim.MaxWaiters {
		return refErr(CodeResourceExhausted), false
	}
	return Result{}, true
}

func (m *refModel) barrierWait(c *Command) Result {
	if m.session(c.Session) == nil {
		return refErr(CodeNotFound)
	}
	k := objectKey{KindBarrier, c.Name}
	live := m.exists(k)
	if live {
		if m.attrs[k].parties != c.Parties {
			return refErr(CodeFailedPrecondition)
		}
		if w := m.waitOf(k, c.Session, c.Participant); w != nil {
			return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: c.Session, Deadline: w.deadline, Generation: m.attrs[k].generation}
		}
	}
	raised := len(m.holdsOn(k)) > 0
	if c.Parties == 0 && !raised {
		return Result{Outcome: OutcomeReleased, Session: c.Session}
	}
	if c.Parties > 0 && int64(len(m.queue(k)))+1 >= c.Parties {
		gen := m.releaseBarrier(k, false)
		return Result{Outcome: OutcomeReleased, Session: c.Session, Generation: gen}
	}
	if c.WaitMs == 0 {
		return Result{Outcome: OutcomeRefused, Session: c.Session}
	}
	if !live && len(m.keys()) >= m.lim.MaxObjects {
		return refErr(CodeResourceExhausted)
	}
	if r, ok := m.queueRoom(k, c.Session); !ok {
		return r
	}
	if !live {
		m.attrs[k] = &refAttrs{parties: c.Parties}
	}
	w := &refWait{id: WaiterID(m.alloc()), key: k, session: c.Session, enqueued: m.now, participant: c.Participant,
		client: c.ClientID, seq: c.Seq}
	if c.WaitMs > 0 {
		w.deadline = m.now + LogTime(c.WaitMs)
	}
	m.waits = append(m.waits, w)
	if a := m.attrs[k]; a.parties > 0 && a.generation == 0 {
		a.generation = uint64(w.id)
	}
	return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: c.Session, Deadline: w.deadline, Generation: m.attrs[k].generation}
}
