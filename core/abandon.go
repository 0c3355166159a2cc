package core

// abandon serves OpAbandon. A client whose caller gave up on a request (its
// context ended while the request was in flight or queued) cannot know
// whether the request was applied: it may still be on its way through the
// log. Reading the session's holds races with it. Abandon settles the
// question in the log itself, by the request's own dedupe identity
// (ClientID, TargetSeq):
//   - never applied: a result that says "cancelled" takes its seq, so the
//     request, arriving later, is answered from it and never applied;
//   - queued: the wait is withdrawn;
//   - granted (an acquire or a campaign): the grant it made is released,
//     unless it answered a grant the session already held (a re-acquire);
//   - anything else (refused, ended, a barrier released): nothing to undo.
//
// Once abandoned, a retry of the request answers "cancelled". The client
// must keep LowestPending at or below TargetSeq until abandon answers, or
// the tombstone could be forgotten before the request arrives.
//
// It answers OutcomeDone with the token it released (0: none).
func (m *Machine) abandon(c *Command) Result {
	key := objectKey{c.Kind, c.Name}
	cancelled := Result{Outcome: OutcomeRefused, Session: c.Session, Reason: ReasonCancelled}
	rec, stored, err := m.clients.lookup(c.ClientID, c.TargetSeq, 0)
	if err != nil {
		return Result{Err: err}
	}
	if stored == nil {
		m.clients.record(rec, c.ClientID, c.TargetSeq, c.LowestPending, m.index, 0, cancelled, m.now, m.limits)
		return Result{Outcome: OutcomeDone, Session: c.Session}
	}
	r := stored.result
	switch r.Outcome {
	case OutcomeQueued:
		w := m.waiters[r.Waiter]
		if w == nil {
			break // ended in the meantime; settle recorded how
		}
		if w.session.id != c.Session || w.obj.key != key {
			return Result{Err: m.notTheRequest(c)}
		}
		m.endWait(w, ReasonCancelled)
	case OutcomeGranted:
		h := m.holds[r.Token]
		if h == nil {
			break // the grant ended already
		}
		if h.session.id != c.Session || h.obj.key != key {
			return Result{Err: m.notTheRequest(c)}
		}
		if stored.index != 0 && uint64(r.Token)>>SlotBits < stored.index {
			// A re-acquire answered the session's existing grant, made by an
			// earlier request: that grant is not this request's to undo.
			return Result{Outcome: OutcomeDone, Session: c.Session}
		}
		stored.result = cancelled
		m.endHold(h, ReasonReleased)
		return Result{Outcome: OutcomeDone, Session: c.Session, Token: h.token}
	}
	return Result{Outcome: OutcomeDone, Session: c.Session}
}

func (m *Machine) notTheRequest(c *Command) *Error {
	return errorf(CodeFailedPrecondition,
		"request_seq %d of client %q was not made by session %d on %s %q: name the session and object of the request to abandon",
		c.TargetSeq, c.ClientID, c.Session, c.Kind, c.Name)
}

// newResults is how many dedupe results applying c may add: its own, and
// for an abandon the tombstone of the request it withdraws.
func newResults(c *Command) int {
	if c.Op == OpAbandon {
		return 2
	}
	return 1
}
