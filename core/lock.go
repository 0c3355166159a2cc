package core

import (
	"bytes"
	"strconv"
)

// This file holds the engine that mutexes, semaphores, RW locks and elections
// share: a FIFO WaitQueue in front of a set of holders. Only the queue's head
// is ever granted (no barging), and each kind says, in canGrant, when the
// head fits beside the current holders.

// request is what an acquire, campaign or queued waiter asks for. Its value
// is the machine's own copy: a caller may reuse its command buffers.
type request struct {
	permits     int64
	mode        Mode
	owner       string
	value       []byte
	lockDelayMs int64
	maxHoldMs   int64
}

func requestOf(c *Command) request {
	r := request{permits: c.Permits, mode: c.Mode, owner: c.Owner, value: bytes.Clone(c.Value),
		lockDelayMs: c.LockDelayMs, maxHoldMs: c.MaxHoldMs}
	if c.Op == OpAcquire && c.Kind == KindSemaphore && r.permits == 0 {
		r.permits = 1
	}
	return r
}

// canGrant says whether a request at the head of the queue fits beside the
// current holders.
func (m *Machine) canGrant(o *object, r *request) bool {
	switch o.key.kind {
	case KindMutex:
		return len(o.holders) == 0 && o.lockDelayUntil == 0
	case KindSemaphore:
		return o.used+r.permits <= o.limit
	case KindRWLock:
		if r.mode == ModeWrite {
			return len(o.holders) == 0
		}
		return len(o.holders) == 0 || o.holders[0].mode == ModeRead
	case KindElection:
		return len(o.holders) == 0
	}
	return false
}

// findHold returns the session's grant on the object, scanning whichever of
// the two lists is shorter.
func findHold(o *object, s *session) *hold {
	if len(o.holders) <= len(s.holds) {
		return o.holderOf(s)
	}
	for _, h := range s.holds {
		if h.obj == o {
			return h
		}
	}
	return nil
}

func findWait(o *object, s *session, participant string) *waiter {
	for _, w := range s.waits {
		if w.obj == o && w.participant == participant {
			return w
		}
	}
	return nil
}

// acquire serves OpAcquire for mutexes, semaphores and RW locks.
func (m *Machine) acquire(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	req := requestOf(c)
	o := m.object(c.Kind, c.Name)
	if o != nil {
		if c.Kind == KindSemaphore && o.limit != c.Limit {
			return Result{Err: errorf(CodeFailedPrecondition,
				"semaphore %q has limit %d, set by its first acquirer: acquire with limit %d, or use another name",
				c.Name, o.limit, o.limit)}
		}
		if h := findHold(o, s); h != nil {
			if h.permits != req.permits || h.mode != req.mode {
				return Result{Err: errorf(CodeFailedPrecondition,
					"session %d already holds %s %q (%s): release it before asking for a different grant",
					s.id, c.Kind, c.Name, describeGrant(h.permits, h.mode))}
			}
			h.shared = true
			return Result{Outcome: OutcomeGranted, Token: h.token, Session: s.id}
		}
		if w := findWait(o, s, ""); w != nil {
			if w.permits != req.permits || w.mode != req.mode {
				return Result{Err: errorf(CodeFailedPrecondition,
					"session %d already waits for %s %q (%s): cancel that wait first", s.id, c.Kind, c.Name,
					describeGrant(w.permits, w.mode))}
			}
			m.join(w, c)
			return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: s.id, Deadline: w.deadline}
		}
	}
	return m.grantOrQueue(o, c.Kind, s, c, req)
}

// grantOrQueue ends an acquire or campaign that found no grant or wait of
// the session's own: granted now when the queue is empty and the request
// fits, refused when it may not wait, queued otherwise.
func (m *Machine) grantOrQueue(o *object, kind Kind, s *session, c *Command, req request) Result {
	if o == nil || (o.queue.Len() == 0 && m.canGrant(o, &req)) {
		if err := m.checkSessionRoom(s); err != nil {
			return Result{Err: err}
		}
		if o == nil {
			var err *Error
			if o, err = m.createObject(kind, c.Name); err != nil {
				return Result{Err: err}
			}
			o.limit = c.Limit
		}
		h := m.grant(o, s, &req, 0)
		return Result{Outcome: OutcomeGranted, Token: h.token, Session: s.id}
	}
	if c.WaitMs == 0 {
		return Result{Outcome: OutcomeRefused, Session: s.id}
	}
	w, err := m.enqueue(o, s, c, req)
	if err != nil {
		return Result{Err: err}
	}
	return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: s.id, Deadline: w.deadline}
}

func describeGrant(permits int64, mode Mode) string {
	switch {
	case mode != 0:
		return mode.String()
	case permits != 0:
		return strconv.FormatInt(permits, 10) + " permits"
	}
	return "exclusive"
}

func (m *Machine) checkSessionRoom(s *session) *Error {
	if n := len(s.holds) + len(s.waits); n >= m.limits.MaxHoldsPerSession {
		return errorf(CodeResourceExhausted, "session %d has %d grants and waits, the limit: release some first", s.id, n)
	}
	return nil
}

// enqueue queues a request that cannot be granted now.
func (m *Machine) enqueue(o *object, s *session, c *Command, req request) (*waiter, *Error) {
	if err := m.checkSessionRoom(s); err != nil {
		return nil, err
	}
	if o.queue.Len() >= m.limits.MaxWaitersPerObject {
		return nil, errorf(CodeResourceExhausted, "%d requests already wait for %s %q, the limit: try again later",
			o.queue.Len(), o.key.kind, o.key.name)
	}
	if m.nWaiters >= m.limits.MaxWaiters {
		return nil, errorf(CodeResourceExhausted, "%d requests wait across the cluster, the limit: try again later", m.nWaiters)
	}
	w := &waiter{
		id: WaiterID(m.nextID()), obj: o, session: s, enqueuedAt: m.now,
		permits: req.permits, mode: req.mode, owner: req.owner, value: req.value,
		lockDelayMs: req.lockDelayMs, maxHoldMs: req.maxHoldMs,
		participant: c.Participant, clientID: c.ClientID, seq: c.Seq,
	}
	if c.WaitMs > 0 {
		w.deadline = m.now + LogTime(c.WaitMs)
		m.timers.push(timer{at: w.deadline, kind: timerWaiter, id: uint64(w.id)})
	}
	m.addWaiter(w)
	return w, nil
}

// addWaiter links a waiter into its queue, its session and the index. It is
// also how Restore rebuilds them.
func (m *Machine) addWaiter(w *waiter) {
	w.obj.queue.pushBack(w)
	w.session.waits = append(w.session.waits, w)
	m.waiters[w.id] = w
	m.nWaiters++
}

func (m *Machine) unlinkWaiter(w *waiter) {
	w.obj.queue.remove(w)
	w.session.removeWait(w)
	delete(m.waiters, w.id)
	m.nWaiters--
}

// grant makes a hold. waiter is the queued request it answers, 0 for an
// immediate grant.
func (m *Machine) grant(o *object, s *session, r *request, waiter WaiterID) *hold {
	h := &hold{
		obj: o, session: s, token: FencingToken(m.nextID()), acquiredAt: m.now,
		lockDelayMs: r.lockDelayMs, permits: r.permits, mode: r.mode, owner: r.owner, value: r.value,
	}
	if r.maxHoldMs > 0 {
		h.maxHoldAt = m.now + LogTime(r.maxHoldMs)
		m.timers.push(timer{at: h.maxHoldAt, kind: timerMaxHold, id: uint64(h.token)})
	}
	m.addHold(h)
	m.emit(Effect{Kind: EffectGranted, Object: o.key.kind, Name: o.key.name, Session: s.id, Waiter: waiter, Token: h.token})
	if o.key.kind == KindElection {
		m.emit(Effect{Kind: EffectLeaderChanged, Object: KindElection, Name: o.key.name, Session: s.id, Token: h.token, Value: h.value})
	}
	return h
}

// addHold links a hold into its object, its session and the index.
func (m *Machine) addHold(h *hold) {
	o := h.obj
	if o.key.kind == KindBarrier {
		o.setBy = h
	} else {
		o.holders = append(o.holders, h)
		o.used += h.permits
	}
	h.session.addHold(h)
	m.holds[h.token] = h
}

// pump grants the queue's head while it fits. A head whose session or wait
// has already run out (its timer fires later in this same entry) is never
// granted: it blocks the queue until its timer removes it.
func (m *Machine) pump(o *object) {
	if o.key.kind == KindBarrier {
		return
	}
	for w := o.queue.front(); w != nil; w = o.queue.front() {
		if !w.session.live(m.now) || (w.deadline != 0 && w.deadline <= m.now) {
			return
		}
		req := request{permits: w.permits, mode: w.mode, owner: w.owner, value: w.value,
			lockDelayMs: w.lockDelayMs, maxHoldMs: w.maxHoldMs}
		if !m.canGrant(o, &req) {
			return
		}
		m.unlinkWaiter(w)
		h := m.grant(o, w.session, &req, w.id)
		h.shared = w.joined
		m.settleWait(w, Result{Outcome: OutcomeGranted, Token: h.token, Session: w.session.id, Waiter: w.id})
	}
}

// release serves OpRelease: only the grant named by its token ends.
func (m *Machine) release(c *Command) Result {
	h := m.holds[c.Token]
	if h == nil || h.obj.key != (objectKey{c.Kind, c.Name}) || (c.Session != 0 && h.session.id != c.Session) {
		return Result{Err: m.notHolder(c.Kind, c.Name, c.Session, c.Token)}
	}
	if err := m.checkUnheard(c, h); err != nil {
		return Result{Err: err}
	}
	m.endHold(h, ReasonReleased)
	return Result{Outcome: OutcomeDone, Session: h.session.id, Token: h.token}
}

// requestKey is a request's dedupe identity.
type requestKey struct {
	clientID string
	seq      uint64
}

// join records that request c of w's session was answered w (it found the
// session's wait queued): its grant is shared, and from rules 5 its end is
// c's answer too (settleWait).
func (m *Machine) join(w *waiter, c *Command) {
	w.joined = true
	if c.ClientID != "" && m.rules >= rulesJoinedWaitEnd && len(w.joiners) < maxJoinersPerWait {
		w.joiners = append(w.joiners, requestKey{c.ClientID, c.Seq})
	}
}

// maxJoinersPerWait bounds the requests a wait remembers as joined
// (waiter.joiners): a session asking again and again for a name it waits
// for would otherwise grow one wait without end. A retry of a request past
// it is answered from what its session holds (joinedWaitEnded). A client
// that retries by its own (client_id, request_seq) joins once per request.
const maxJoinersPerWait = 64

// settleWait stores how w ended as the answer of the request that queued
// it and of every request that joined it.
func (m *Machine) settleWait(w *waiter, r Result) {
	m.clients.settle(w.clientID, w.seq, r)
	for _, k := range w.joiners {
		m.clients.settle(k.clientID, k.seq, r)
	}
}

// joinedWaitEnded answers a retry of a request whose stored answer says it
// waits as waiter r.Waiter, which has ended without settling it: one that
// joined a wait a snapshot before waiter.joiners restored, or past
// maxJoinersPerWait. Under rules 4
// such a request kept "queued", and a retry of it was answered a wait that
// no longer exists and blocked until its own deadline (the simulator found
// one that waited forever). From rules 5 it is answered what its session
// holds now: the grant, when it holds the name (which it then heard of:
// hold.shared), or else that the wait ended without one (cancelled, as a
// wait withdrawn is: how it ended is not kept). A barrier arrival is
// answered so too.
func (m *Machine) joinedWaitEnded(c *Command, r Result) Result {
	kind := c.Kind
	if c.Op == OpCampaign {
		kind = KindElection
	}
	if s := m.sessions[r.Session]; s != nil && c.Op != OpBarrierWait {
		if o := m.object(kind, c.Name); o != nil {
			if h := findHold(o, s); h != nil {
				h.shared = true
				return Result{Outcome: OutcomeGranted, Token: h.token, Session: s.id, Waiter: r.Waiter}
			}
		}
	}
	return Result{Outcome: OutcomeRefused, Session: r.Session, Waiter: r.Waiter, Reason: ReasonCancelled}
}

// checkUnheard refuses an unheard release or resign (Command.Unheard)
// under rules before it, or of a grant another request heard of: that
// caller was told it holds the grant, and keeps it.
func (m *Machine) checkUnheard(c *Command, h *hold) *Error {
	switch {
	case !c.Unheard:
		return nil
	case m.rules < rulesUnheardRelease:
		return errorf(CodeFailedPrecondition, "an unheard %s needs rules %d, and rules %d are in force: it is the build of rules %d's own",
			c.Op, rulesUnheardRelease, m.rules, rulesUnheardRelease)
	case h.shared:
		return errorf(CodeFailedPrecondition, "token %d of session %d was answered to another request of its session: it stays held",
			h.token, h.session.id)
	}
	return nil
}

// notHolder explains a release, proclaim or resign by someone who does not
// hold the grant, naming the current holders so the caller can tell a stale
// token from a wrong name.
func (m *Machine) notHolder(kind Kind, name string, session SessionID, token FencingToken) *Error {
	if session != 0 && m.sessions[session] == nil {
		// The commonest way to get here: the caller's session ended (it
		// expired while its client was paused or cut off, or was closed),
		// and every grant ended with it. Say so, or the caller hunts for a
		// token mix-up.
		return errorf(CodeConflict, "session %d is gone (it expired or was closed), and its grants ended with it: token %d no longer holds %s %q",
			session, token, kind, name)
	}
	o := m.object(kind, name)
	if o == nil || (len(o.holders) == 0 && o.setBy == nil) {
		return errorf(CodeConflict, "%s %q is not held: token %d is stale (its grant ended)", kind, name, token)
	}
	if session != 0 {
		return errorf(CodeConflict, "session %d with token %d does not hold %s %q: the grant ended or belongs to someone else",
			session, token, kind, name)
	}
	return errorf(CodeConflict, "token %d does not hold %s %q: the grant ended or belongs to someone else", token, kind, name)
}

// endHold ends one grant and hands the object on; a grant that failed
// (its session expired, its maximum hold passed) leaves a mutex's
// lock-delay behind.
func (m *Machine) endHold(h *hold, why Reason) {
	m.endHoldAs(h, why, why == ReasonSessionExpired || why == ReasonMaxHold)
}

// endHoldAs ends one grant as endHold does, failed saying whether the
// lock-delay applies (a close that asks for it ends its holds so).
func (m *Machine) endHoldAs(h *hold, why Reason, failed bool) {
	o := h.obj
	delete(m.holds, h.token)
	h.session.removeHold(h)
	if o.key.kind == KindBarrier {
		o.setBy = nil
	} else {
		o.removeHolder(h)
		o.used -= h.permits
	}
	m.emit(Effect{Kind: EffectReleased, Reason: why, Object: o.key.kind, Name: o.key.name, Session: h.session.id, Token: h.token})
	if o.key.kind == KindMutex && failed && h.lockDelayMs > 0 {
		// Chubby's lock-delay: a holder that died may still have requests in
		// flight; keep the name unavailable while they drain.
		o.lockDelayUntil = m.now + LogTime(h.lockDelayMs)
		o.lockDelayID = uint64(h.token)
		m.lockDelays[o.lockDelayID] = o
		m.timers.push(timer{at: o.lockDelayUntil, kind: timerLockDelay, id: o.lockDelayID})
	}
	switch o.key.kind {
	case KindBarrier:
		m.releaseWaiters(o, ReasonBarrierRemoved)
	case KindElection:
		m.pump(o)
		if len(o.holders) == 0 {
			m.emit(Effect{Kind: EffectLeaderChanged, Object: KindElection, Name: o.key.name})
		}
	default:
		m.pump(o)
	}
	m.dropIfIdle(o)
}

// cancel serves OpCancel: a waiter withdraws.
func (m *Machine) cancel(c *Command) Result {
	w := m.waiters[c.Waiter]
	if w == nil || (c.Session != 0 && w.session.id != c.Session) {
		return Result{Err: errorf(CodeNotFound, "waiter %d is not queued for session %d: it was granted, timed out or cancelled already",
			c.Waiter, c.Session)}
	}
	if c.Unheard && w.joined && m.rules >= rulesUnheardRelease {
		// Under rules 4 it is the plain cancel those rules had: the wait
		// ends, as a gone requester's did.
		return Result{Err: errorf(CodeFailedPrecondition, "waiter %d of session %d was answered to another request of its session: it stays queued",
			w.id, w.session.id)}
	}
	m.endWait(w, ReasonCancelled)
	return Result{Outcome: OutcomeDone, Waiter: w.id, Session: w.session.id}
}

// endWait ends a queued request without a grant.
func (m *Machine) endWait(w *waiter, why Reason) {
	o := w.obj
	m.unlinkWaiter(w)
	m.emit(Effect{Kind: EffectWaitEnded, Reason: why, Object: o.key.kind, Name: o.key.name, Session: w.session.id, Waiter: w.id})
	m.settleWait(w, Result{Outcome: OutcomeRefused, Waiter: w.id, Session: w.session.id, Reason: why})
	m.pump(o)
	m.dropIfIdle(o)
}
