package core

import (
	"fmt"
	"slices"
)

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

// sessionCreate starts a session. With c.Session 0 the machine allocates
// its id; with an id, it adopts that id: a runtime with several shards
// creates a session in shard 0 and then mirrors it, same id, into every
// other shard, so that a lock in any shard can name it. Adopting is
// idempotent: an id already live with the same TTL and owner answers that
// session, unchanged, so a mirror retried under another (client, seq) does
// no harm; with another TTL or owner it is refused, as it cannot be the
// same session. An id that is not live is adopted whatever it was before:
// the machine keeps no record of ended sessions, so the runtime must not
// adopt an id again once its session ended (its dedupe of the mirror's
// (client, seq) covers retries).
func (m *Machine) sessionCreate(c *Command) Result {
	if c.Session != 0 {
		if s := m.sessions[c.Session]; s != nil {
			if s.ttlMs != c.TTLMs || s.owner != c.Owner {
				return Result{Err: errorf(CodeFailedPrecondition,
					"session %d is live with ttl_ms %d and owner %q, not ttl_ms %d and owner %q: adopt an id with the TTL and owner it was created with, or create a new session",
					c.Session, s.ttlMs, s.owner, c.TTLMs, c.Owner)}
			}
			return Result{Outcome: OutcomeDone, Session: s.id, Deadline: s.deadline}
		}
	}
	if len(m.sessions) >= m.limits.MaxSessions {
		return Result{Err: errorf(CodeResourceExhausted, "%d sessions are live, the limit: close unused sessions", len(m.sessions))}
	}
	id := c.Session
	if id == 0 {
		id = SessionID(m.nextID())
	}
	s := &session{
		id:        id,
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

// sessionClose ends a session at its holder's or an operator's request.
// Its holds end as released by a close, with no lock-delay, unless the
// close asks for one (ApplyLockDelay, from rules 4): then they end as a
// failure would end them, and a mutex's lock_delay_ms keeps the name from
// the next holder while the closed session's process may still run.
func (m *Machine) sessionClose(c *Command) Result {
	if c.ApplyLockDelay && m.rules < rulesCloseLockDelay {
		// An entry of rules 3 cannot say it: a build of those rules refuses
		// the field. Dropping it would close without the lock-delay asked
		// for, so it is refused instead, and changes nothing.
		return Result{Err: errorf(CodeFailedPrecondition,
			"apply_lock_delay needs rules %d, and this shard still applies rules %d (no leader of a build of rules %d has been elected in it since the upgrade): retry once one has, or close without the lock-delay",
			rulesCloseLockDelay, m.rules, rulesCloseLockDelay)}
	}
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	m.endSession(s, ReasonSessionClosed, c.ApplyLockDelay)
	return Result{Outcome: OutcomeDone, Session: s.id}
}

// endSession releases everything a session holds and withdraws everything it
// waits for, in a fixed order (waits first, then holds by token), so that
// releasing a hold never grants to a waiter of the dying session. Its holds
// end as a failure (lock-delay applies) on expiry, or when a close asks.
func (m *Machine) endSession(s *session, why Reason, asFailure bool) {
	for len(s.waits) > 0 {
		m.endWait(s.waits[0], why)
	}
	for len(s.holds) > 0 {
		m.endHoldAs(s.holds[0], why, asFailure || why == ReasonSessionExpired)
	}
	delete(m.sessions, s.id)
	// The session's own end comes last, after what it released: a watcher
	// of sessions (a stream pushing their loss to their clients) learns of
	// an end it did not ask for, a close by another caller included.
	switch why {
	case ReasonSessionExpired:
		m.emit(Effect{Kind: EffectSessionExpired, Reason: why, Session: s.id})
	case ReasonSessionClosed:
		m.emit(Effect{Kind: EffectSessionClosed, Reason: why, Session: s.id})
	default:
		panic(fmt.Sprintf("core: session %d ended for %v, neither closed nor expired", s.id, why))
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
