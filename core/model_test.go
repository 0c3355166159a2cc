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
//
// This file holds the model's state, lookups, mutations and reads;
// model_apply_test.go applies entries and model_validate_test.go states the
// stateless rules.

import (
	"fmt"
	"sort"
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
	asked    map[uint64]refAsk // what each kept result's request asked
}

// refAsk is what a request asks of which object, the part a retry must
// repeat: everything but the dedupe key, the wait, the TTL, the
// lock-delay, the hold limit and the owner label.
type refAsk struct {
	op                     Op
	kind                   Kind
	mode                   Mode
	name, participant      string
	value                  string
	session                SessionID
	token                  FencingToken
	waiter                 WaiterID
	limit, permits, partis int64
	target                 uint64
}

func refAskOf(c *Command) refAsk {
	return refAsk{op: c.Op, kind: c.Kind, mode: c.Mode, name: c.Name, participant: c.Participant, value: string(c.Value),
		session: c.Session, token: c.Token, waiter: c.Waiter, limit: c.Limit, permits: c.Permits, partis: c.Parties, target: c.TargetSeq}
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
