package core

// A reference model of the state machine for the property tests in
// property_test.go. It is written from the semantics (docs/design.md and the
// issue), not from the implementation: plain slices scanned linearly, state
// recomputed rather than indexed, no timers, no linked lists. Where the
// semantics leave a choice to the implementation, the model says so.
//
// The one thing the model does not decide by itself is which low bits
// (slots) the grants and barrier generations made while deadlines fire get:
// the semantics fix the final state after a time step, not the order in which
// deadlines that fell due together are processed. The model computes that
// final state, predicts how many identifiers the time step allocates (so the
// identifiers commands allocate afterwards are checked exactly), and then
// adopts the tokens core reports for those grants after checking that each is
// one of the time step's identifiers (see resolveTimerIDs).

import (
	"fmt"
	"sort"
	"unicode"
	"unicode/utf8"
)

type refSession struct {
	id       SessionID
	ttl      int64
	deadline LogTime
	created  LogTime
	owner    string
}

// refHold is one grant: a lock, permits, a leadership, or a raised barrier
// (kind barrier).
type refHold struct {
	key       objectKey
	session   SessionID
	token     FencingToken
	acquired  LogTime
	maxHoldAt LogTime
	lockDelay int64
	permits   int64
	mode      Mode
	owner     string
	value     []byte
}

// refWait is one queued request. Queues are FIFO and waiter ids only grow, so
// an object's queue is its waits in id order.
type refWait struct {
	id          WaiterID
	key         objectKey
	session     SessionID
	enqueued    LogTime
	deadline    LogTime
	permits     int64
	mode        Mode
	owner       string
	value       []byte
	participant string
	lockDelay   int64
	maxHold     int64
	client      string
	seq         uint64
}

// refAttrs are the properties an object keeps while it lives.
type refAttrs struct {
	limit          int64   // semaphore
	parties        int64   // barrier
	generation     uint64  // counting barrier: the id of the arrival that opened the current generation
	lockDelayUntil LogTime // mutex: no grant before
}

type refClient struct {
	id       string
	lastUsed LogTime
	order    uint64 // when it last recorded a result, for least-recently-used eviction
	floor    uint64
	results  map[uint64]Result
}

type refEndings struct {
	waits    map[WaiterID]string // granted, released, or refused <reason>
	holds    map[FencingToken]Reason
	sessions map[SessionID]bool // expired
}

func (e *refEndings) wait(id WaiterID, how string) {
	if _, dup := e.waits[id]; dup {
		panic(fmt.Sprintf("model: waiter %d ended twice", id))
	}
	e.waits[id] = how
}

type refPendingGrant struct {
	hold *refHold
	wait *refWait
}

type refPendingGen struct {
	key     objectKey
	waiters []*refWait
	gen     uint64
}

type refModel struct {
	lim     Limits
	index   uint64
	now     LogTime
	started bool
	slot    uint64

	sessions []*refSession
	holds    []*refHold // token order (grant order)
	waits    []*refWait // id order (queue order)
	attrs    map[objectKey]*refAttrs
	clients  []*refClient
	uses     uint64

	// How the current entry ended waits, grants and sessions, to compare
	// with core's effects (as sets: the order in which deadlines that fell
	// due together fire is not part of the semantics).
	endings refEndings

	// Identifiers the current time step allocated, resolved from core.
	pendGrants []refPendingGrant
	pendGens   []*refPendingGen
}

func newRefModel(l Limits) *refModel {
	return &refModel{lim: l, attrs: map[objectKey]*refAttrs{}}
}

func refErr(code Code) Result { return Result{Err: &Error{Code: code}} }

// ---- lookups (linear scans) ----

func (m *refModel) session(id SessionID) *refSession {
	for _, s := range m.sessions {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (m *refModel) holdsOn(k objectKey) []*refHold {
	var hs []*refHold
	for _, h := range m.holds {
		if h.key == k {
			hs = append(hs, h)
		}
	}
	return hs
}

func (m *refModel) queue(k objectKey) []*refWait {
	var ws []*refWait
	for _, w := range m.waits {
		if w.key == k {
			ws = append(ws, w)
		}
	}
	return ws
}

func (m *refModel) holdOf(k objectKey, s SessionID) *refHold {
	for _, h := range m.holds {
		if h.key == k && h.session == s {
			return h
		}
	}
	return nil
}

func (m *refModel) waitOf(k objectKey, s SessionID, participant string) *refWait {
	for _, w := range m.waits {
		if w.key == k && w.session == s && w.participant == participant {
			return w
		}
	}
	return nil
}

func (m *refModel) holdByToken(t FencingToken) *refHold {
	for _, h := range m.holds {
		if h.token == t && t != 0 {
			return h
		}
	}
	return nil
}

func (m *refModel) waitByID(id WaiterID) *refWait {
	for _, w := range m.waits {
		if w.id == id {
			return w
		}
	}
	return nil
}

func (m *refModel) lockDelayUntil(k objectKey) LogTime {
	if a := m.attrs[k]; a != nil {
		return a.lockDelayUntil
	}
	return 0
}

// exists: an object lives while something refers to it.
func (m *refModel) exists(k objectKey) bool {
	return len(m.holdsOn(k)) > 0 || len(m.queue(k)) > 0 || m.lockDelayUntil(k) != 0
}

// keys lists the live objects in (kind, name) order.
func (m *refModel) keys() []objectKey {
	seen := map[objectKey]bool{}
	for _, h := range m.holds {
		seen[h.key] = true
	}
	for _, w := range m.waits {
		seen[w.key] = true
	}
	for k, a := range m.attrs {
		if a.lockDelayUntil != 0 {
			seen[k] = true
		}
	}
	var ks []objectKey
	for k := range seen {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].kind != ks[j].kind {
			return ks[i].kind < ks[j].kind
		}
		return ks[i].name < ks[j].name
	})
	return ks
}

func (m *refModel) gc() {
	for k := range m.attrs {
		if !m.exists(k) {
			delete(m.attrs, k)
		}
	}
}

func (m *refModel) client(id string) *refClient {
	for _, c := range m.clients {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (m *refModel) sessionLoad(s SessionID) int {
	n := 0
	for _, h := range m.holds {
		if h.session == s {
			n++
		}
	}
	for _, w := range m.waits {
		if w.session == s {
			n++
		}
	}
	return n
}

// ---- mutations ----

func (m *refModel) alloc() uint64 {
	id := m.index<<SlotBits | m.slot
	m.slot++
	return id
}

func (m *refModel) removeHold(h *refHold) {
	for i, x := range m.holds {
		if x == h {
			m.holds = append(m.holds[:i], m.holds[i+1:]...)
			return
		}
	}
	panic("model: hold not found")
}

func (m *refModel) removeWait(w *refWait) {
	for i, x := range m.waits {
		if x == w {
			m.waits = append(m.waits[:i], m.waits[i+1:]...)
			return
		}
	}
	panic("model: wait not found")
}

func (m *refModel) removeSession(s *refSession) {
	for i, x := range m.sessions {
		if x == s {
			m.sessions = append(m.sessions[:i], m.sessions[i+1:]...)
			return
		}
	}
	panic("model: session not found")
}

// settle replaces a queued request's stored result, if it is still stored.
func (m *refModel) settle(client string, seq uint64, r Result) {
	if client == "" {
		return
	}
	if c := m.client(client); c != nil {
		// Only the answer that still says "queued" for this waiter: a
		// forgotten client may have reused the seq for another request.
		if old, ok := c.results[seq]; ok && old.Outcome == OutcomeQueued && old.Waiter == r.Waiter {
			c.results[seq] = r
		}
	}
}

// fits says whether a request fits beside the object's current holders.
func (m *refModel) fits(k objectKey, permits int64, mode Mode) bool {
	hs := m.holdsOn(k)
	switch k.kind {
	case KindMutex:
		return len(hs) == 0 && m.lockDelayUntil(k) == 0
	case KindElection:
		return len(hs) == 0
	case KindSemaphore:
		used := int64(0)
		for _, h := range hs {
			used += h.permits
		}
		return used+permits <= m.attrs[k].limit
	case KindRWLock:
		if mode == ModeWrite {
			return len(hs) == 0
		}
		for _, h := range hs {
			if h.mode == ModeWrite {
				return false
			}
		}
		return true
	}
	panic("model: fits on " + k.kind.String())
}

// eligible: a waiter may be granted only while its session is live and its
// own deadline has not passed.
func (m *refModel) eligible(w *refWait) bool {
	s := m.session(w.session)
	return s != nil && s.deadline > m.now && (w.deadline == 0 || w.deadline > m.now)
}

// grantQueue grants the object's queue from its head while the head fits.
// pending: the grant is made while deadlines fire; its token is resolved
// later.
func (m *refModel) grantQueue(k objectKey, pending bool) {
	if k.kind == KindBarrier {
		return
	}
	for {
		q := m.queue(k)
		if len(q) == 0 || !m.eligible(q[0]) || !m.fits(k, q[0].permits, q[0].mode) {
			return
		}
		w := q[0]
		m.removeWait(w)
		h := &refHold{key: k, session: w.session, acquired: m.now, lockDelay: w.lockDelay, permits: w.permits,
			mode: w.mode, owner: w.owner, value: w.value}
		if w.maxHold > 0 {
			h.maxHoldAt = m.now + LogTime(w.maxHold)
		}
		m.holds = append(m.holds, h)
		m.endings.wait(w.id, "granted")
		if pending {
			m.pendGrants = append(m.pendGrants, refPendingGrant{h, w})
			continue
		}
		h.token = FencingToken(m.alloc())
		m.settle(w.client, w.seq, Result{Outcome: OutcomeGranted, Token: h.token, Session: w.session, Waiter: w.id})
	}
}

// releaseBarrier lets every waiter of a barrier through as one generation.
func (m *refModel) releaseBarrier(k objectKey, pending bool) uint64 {
	q := m.queue(k)
	for _, w := range q {
		m.removeWait(w)
		m.endings.wait(w.id, "released")
	}
	if pending {
		m.pendGens = append(m.pendGens, &refPendingGen{key: k, waiters: q})
		return 0
	}
	var gen uint64
	if a := m.attrs[k]; a != nil && a.parties > 0 {
		gen, a.generation = a.generation, 0
	} else {
		gen = m.alloc()
	}
	for _, w := range q {
		m.settle(w.client, w.seq, Result{Outcome: OutcomeReleased, Session: w.session, Waiter: w.id, Generation: gen})
	}
	return gen
}

// endWait ends a wait without a grant (command phase) and hands the object on.
func (m *refModel) endWait(w *refWait, why Reason) {
	m.removeWait(w)
	m.endings.wait(w.id, "refused "+why.String())
	m.settle(w.client, w.seq, Result{Outcome: OutcomeRefused, Waiter: w.id, Session: w.session, Reason: why})
	m.grantQueue(w.key, false)
}

// endHold ends a grant (command phase: release, resign, close, remove) and
// hands the object on. No lock-delay: none of these is a failure.
func (m *refModel) endHold(h *refHold, why Reason) {
	m.removeHold(h)
	m.endings.holds[h.token] = why
	if h.key.kind == KindBarrier {
		m.releaseBarrier(h.key, false)
		return
	}
	m.grantQueue(h.key, false)
}

// ---- applying entries ----

// apply applies one entry. coreEffects are core's effects for the same
// entry, from which the tokens of the time step's grants are adopted.
func (m *refModel) apply(e Entry, coreEffects []Effect) ([]Result, error) {
	m.index = e.Index
	m.slot = 0
	m.endings = refEndings{waits: map[WaiterID]string{}, holds: map[FencingToken]Reason{}, sessions: map[SessionID]bool{}}

	// Clock.
	stamped := e.Time
	if stamped > MaxLogTime {
		stamped = MaxLogTime
	}
	if !m.started {
		if stamped > 0 {
			m.started = true
			m.now = stamped
		}
	} else {
		next := stamped
		if next > m.now+LogTime(m.lim.MaxClockStepMs) {
			next = m.now + LogTime(m.lim.MaxClockStepMs)
		}
		if next > m.now {
			m.now = next
		}
	}

	// A valid leader-change entry extends every session before anything
	// expires: the failover gap must not expire them (docs/design.md, Time).
	for _, c := range e.Commands {
		if c.Op == OpLeaderChange && c.ClientID == "" && c.Seq == 0 && len(e.Commands) <= m.lim.MaxCommandsPerEntry &&
			c.setFields() == 0 {
			for _, s := range m.sessions {
				if d := m.now + LogTime(s.ttl); d > s.deadline {
					s.deadline = d
				}
			}
			break
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
			cl = &refClient{id: c.ClientID, results: map[uint64]Result{}}
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
		if len(cl.results) > m.lim.DedupeWindow {
			min := c.Seq
			for s := range cl.results {
				if s < min {
					min = s
				}
			}
			delete(cl.results, min)
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

// ---- validation: the stateless rules ----

// refFields names the fields each op takes; every other must be zero.
var refFields = map[Op][]string{
	OpSessionCreate:    {"ttl", "owner", "session"},
	OpSessionKeepAlive: {"session", "ttl"},
	OpSessionClose:     {"session"},
	OpAcquire:          {"kind", "name", "session", "wait", "lockdelay", "maxhold", "limit", "permits", "mode", "owner", "value"},
	OpRelease:          {"kind", "name", "session", "token"},
	OpCancel:           {"session", "waiter"},
	OpBarrierWait:      {"name", "session", "wait", "parties", "participant"},
	OpBarrierSet:       {"name", "session"},
	OpBarrierRemove:    {"name"},
	OpCampaign:         {"name", "session", "wait", "owner", "value"},
	OpProclaim:         {"name", "session", "token", "value"},
	OpResign:           {"name", "session", "token"},
	OpLeaderChange:     {},
}

func refValid(l *Limits, c *Command) bool {
	allowed, known := refFields[c.Op]
	if !known {
		return false
	}
	set := map[string]bool{
		"kind": c.Kind != 0, "name": c.Name != "", "session": c.Session != 0, "token": c.Token != 0,
		"waiter": c.Waiter != 0, "ttl": c.TTLMs != 0, "wait": c.WaitMs != 0, "lockdelay": c.LockDelayMs != 0,
		"maxhold": c.MaxHoldMs != 0, "limit": c.Limit != 0, "permits": c.Permits != 0, "mode": c.Mode != 0,
		"parties": c.Parties != 0, "participant": c.Participant != "", "owner": c.Owner != "", "value": len(c.Value) > 0,
	}
	for _, f := range allowed {
		delete(set, f)
	}
	for _, on := range set {
		if on {
			return false
		}
	}
	if (c.ClientID == "") != (c.Seq == 0) || len(c.ClientID) > MaxClientIDBytes || (c.ClientID != "" && c.Op == OpLeaderChange) {
		return false
	}
	nameOK := func(n string) bool {
		if len(n) < 1 || len(n) > l.MaxNameBytes || !utf8.ValidString(n) {
			return false
		}
		for _, r := range n {
			if !unicode.IsPrint(r) {
				return false
			}
		}
		return true
	}
	ttlOK := func(t int64) bool { return t >= l.MinTTLMs && t <= l.MaxTTLMs }
	waitOK := func(w int64) bool { return w == WaitForever || (w >= 0 && w <= l.MaxWaitMs) }
	ownerOK := func(o string) bool { return len(o) <= l.MaxOwnerBytes && utf8.ValidString(o) }
	valueOK := func(v []byte) bool { return len(v) <= l.MaxValueBytes }
	lockKind := c.Kind == KindMutex || c.Kind == KindSemaphore || c.Kind == KindRWLock

	switch c.Op {
	case OpSessionCreate:
		return ttlOK(c.TTLMs) && ownerOK(c.Owner)
	case OpSessionKeepAlive:
		return c.Session != 0 && (c.TTLMs == 0 || ttlOK(c.TTLMs))
	case OpSessionClose:
		return c.Session != 0
	case OpAcquire:
		if !lockKind || !nameOK(c.Name) || c.Session == 0 || !waitOK(c.WaitMs) || !ownerOK(c.Owner) || !valueOK(c.Value) {
			return false
		}
		if c.MaxHoldMs < 0 || c.MaxHoldMs > l.MaxHoldMs || c.LockDelayMs < 0 || c.LockDelayMs > l.MaxLockDelayMs {
			return false
		}
		switch c.Kind {
		case KindMutex:
			return c.Limit == 0 && c.Permits == 0 && c.Mode == 0
		case KindSemaphore:
			return c.Limit >= 1 && c.Limit <= l.MaxSemaphoreLimit && c.Permits >= 0 && c.Permits <= c.Limit &&
				c.Mode == 0 && c.LockDelayMs == 0
		default:
			return (c.Mode == ModeRead || c.Mode == ModeWrite) && c.Limit == 0 && c.Permits == 0 && c.LockDelayMs == 0
		}
	case OpRelease:
		return lockKind && nameOK(c.Name) && c.Token != 0
	case OpCancel:
		return c.Waiter != 0
	case OpBarrierWait:
		return nameOK(c.Name) && c.Session != 0 && waitOK(c.WaitMs) &&
			(c.Parties == 0 || (c.Parties >= 2 && c.Parties <= int64(l.MaxParties))) && len(c.Participant) <= l.MaxOwnerBytes
	case OpBarrierSet:
		return nameOK(c.Name) && c.Session != 0
	case OpBarrierRemove:
		return nameOK(c.Name)
	case OpCampaign:
		return nameOK(c.Name) && c.Session != 0 && waitOK(c.WaitMs) && ownerOK(c.Owner) && valueOK(c.Value)
	case OpProclaim:
		return nameOK(c.Name) && c.Session != 0 && c.Token != 0 && valueOK(c.Value)
	case OpResign:
		return nameOK(c.Name) && c.Session != 0 && c.Token != 0
	case OpLeaderChange:
		return true
	}
	return false
}

// ---- reads, in the shapes core returns ----

func (m *refModel) status(k objectKey) Status {
	st := Status{Kind: k.kind, Name: k.name}
	if !m.exists(k) {
		return st
	}
	a := m.attrs[k]
	st.Limit, st.Parties, st.Generation, st.LockDelayUntil = a.limit, a.parties, a.generation, a.lockDelayUntil
	for _, h := range m.holdsOn(k) {
		exp := m.session(h.session).deadline
		if h.maxHoldAt != 0 && h.maxHoldAt < exp {
			exp = h.maxHoldAt
		}
		st.Used += h.permits
		st.Holders = append(st.Holders, Holder{Session: h.session, Token: h.token, Owner: h.owner, Value: h.value,
			Permits: h.permits, Mode: h.mode, AcquiredAt: h.acquired, ExpiresAt: exp, MaxHoldUntil: h.maxHoldAt, LockDelayMs: h.lockDelay})
	}
	for _, w := range m.queue(k) {
		st.Waiters = append(st.Waiters, Waiter{ID: w.id, Session: w.session, Owner: w.owner, Permits: w.permits,
			Mode: w.mode, Participant: w.participant, EnqueuedAt: w.enqueued, Deadline: w.deadline})
	}
	return st
}

func (m *refModel) sessionInfo(id SessionID) (SessionInfo, bool) {
	s := m.session(id)
	if s == nil {
		return SessionInfo{}, false
	}
	info := SessionInfo{ID: s.id, TTLMs: s.ttl, Deadline: s.deadline, CreatedAt: s.created, Owner: s.owner}
	for _, h := range m.holds {
		if h.session == id {
			info.Holds = append(info.Holds, ObjectRef{Kind: h.key.kind, Name: h.key.name, Token: h.token})
		}
	}
	for _, w := range m.waits {
		if w.session == id {
			info.Waits = append(info.Waits, ObjectRef{Kind: w.key.kind, Name: w.key.name, Waiter: w.id})
		}
	}
	return info, true
}

func (m *refModel) counts() Counts {
	return Counts{Sessions: len(m.sessions), Objects: len(m.keys()), Holds: len(m.holds), Waiters: len(m.waits),
		Clients: len(m.clients)}
}
