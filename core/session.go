package core

import "slices"

// session is a client's lease. Every hold and wait belongs to one; when it
// ends, by Close or by expiry, all of them end with it.
type session struct {
	id        SessionID
	ttlMs     int64
	deadline  LogTime
	createdAt LogTime
	owner     string
	holds     []*hold   // in grant order
	waits     []*waiter // in queue order
}

func (s *session) live(now LogTime) bool { return s.deadline > now }

func (m *Machine) sessionCreate(c *Command) Result {
	if len(m.sessions) >= m.limits.MaxSessions {
		return Result{Err: errorf(CodeResourceExhausted, "%d sessions are live, the limit: close unused sessions", len(m.sessions))}
	}
	s := &session{
		id:        SessionID(m.nextID()),
		ttlMs:     c.TTLMs,
		deadline:  m.now + LogTime(c.TTLMs),
		createdAt: m.now,
		owner:     c.Owner,
	}
	m.sessions[s.id] = s
	m.timers.push(timer{at: s.deadline, kind: timerSession, id: uint64(s.id)})
	return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}
}

// liveSession finds the command's session. Expired sessions are gone by the
// time commands run (fireTimers ran first), so found means live.
func (m *Machine) liveSession(id SessionID) (*session, *Error) {
	s := m.sessions[id]
	if s == nil {
		return nil, errorf(CodeNotFound, "session %d does not exist (it expired, was closed, or never was): create a new session", id)
	}
	return s, nil
}

func (m *Machine) sessionKeepAlive(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	if c.TTLMs != 0 {
		s.ttlMs = c.TTLMs
	}
	s.deadline = m.now + LogTime(s.ttlMs)
	m.timers.push(timer{at: s.deadline, kind: timerSession, id: uint64(s.id)})
	return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}
}

func (m *Machine) sessionClose(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	m.endSession(s, ReasonSessionClosed)
	return Result{Outcome: OutcomeDone, Session: s.id}
}

// endSession releases everything a session holds and withdraws everything it
// waits for, in a fixed order (waits first, then holds by token), so that
// releasing a hold never grants to a waiter of the dying session.
func (m *Machine) endSession(s *session, why Reason) {
	for len(s.waits) > 0 {
		m.endWait(s.waits[0], why)
	}
	for len(s.holds) > 0 {
		m.endHold(s.holds[0], why)
	}
	delete(m.sessions, s.id)
	if why == ReasonSessionExpired {
		m.emit(Effect{Kind: EffectSessionExpired, Reason: why, Session: s.id})
	}
}

func (s *session) addHold(h *hold) { s.holds = append(s.holds, h) }

func (s *session) removeHold(h *hold) {
	s.holds = removeOne(s.holds, h, "a hold missing from its session")
}
func (s *session) removeWait(w *waiter) {
	s.waits = removeOne(s.waits, w, "a waiter missing from its session")
}

// removeOne deletes x from list, keeping the order (grant order, queue
// order) that status and snapshots show. x must be there: a link missing is
// a broken invariant, not an input error.
func removeOne[T comparable](list []T, x T, what string) []T {
	i := slices.Index(list, x)
	if i < 0 {
		panic("core: " + what)
	}
	return slices.Delete(list, i, i+1)
}
