package core

// Two barriers share the kind:
//   - a party barrier (parties >= 2) releases everyone when the last of
//     `parties` participants arrives, then starts a new generation
//     (Curator's DistributedDoubleBarrier entry, etcd's recipe);
//   - a set/remove barrier (parties = 0) is raised by a session with
//     OpBarrierSet; waiters pass when it is removed or its session ends
//     (Curator's DistributedBarrier).
// A name is one or the other while it lives.

func (m *Machine) barrierWait(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	o := m.object(KindBarrier, c.Name)
	if o != nil {
		if c.Parties != o.parties {
			return Result{Err: m.barrierMismatch(o, c.Parties, OpBarrierWait)}
		}
		if w := findWait(o, s, c.Participant); w != nil {
			m.join(w, c)
			return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: s.id, Deadline: w.deadline, Generation: o.generation}
		}
	}
	if c.Parties == 0 && (o == nil || o.setBy == nil) {
		return Result{Outcome: OutcomeReleased, Session: s.id}
	}
	if c.Parties > 0 && o != nil && int64(o.queue.Len())+1 >= c.Parties {
		gen := m.releaseWaiters(o, ReasonNone)
		m.dropIfIdle(o)
		return Result{Outcome: OutcomeReleased, Session: s.id, Generation: gen}
	}
	if c.WaitMs == 0 {
		return Result{Outcome: OutcomeRefused, Session: s.id}
	}
	if o == nil {
		if o, err = m.createObject(KindBarrier, c.Name); err != nil {
			return Result{Err: err}
		}
		o.parties = c.Parties
	}
	w, err := m.enqueue(o, s, c, request{})
	if err != nil {
		m.dropIfIdle(o)
		return Result{Err: err}
	}
	if o.parties > 0 && o.generation == 0 {
		o.generation = uint64(w.id) // the first arrival opens the generation
	}
	return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: s.id, Deadline: w.deadline, Generation: o.generation}
}

func (m *Machine) barrierMismatch(o *object, parties int64, op Op) *Error {
	if o.parties == 0 {
		return errorf(CodeFailedPrecondition, "barrier %q is a set/remove barrier: wait with parties=0", o.key.name)
	}
	if parties == 0 && op != OpBarrierWait {
		return errorf(CodeFailedPrecondition, "barrier %q counts %d parties; it cannot be set: use another name", o.key.name, o.parties)
	}
	if parties == 0 {
		return errorf(CodeFailedPrecondition,
			"barrier %q counts %d parties: wait with parties=%d (parties=0 waits for a set barrier's removal, and this one is a counting barrier)",
			o.key.name, o.parties, o.parties)
	}
	return errorf(CodeFailedPrecondition, "barrier %q counts %d parties, not %d: wait with parties=%d", o.key.name, o.parties, parties, o.parties)
}

// releaseWaiters lets every waiter of a barrier through as one generation:
// a counting barrier's current one, or for a set/remove barrier a fresh id.
// A waiter whose session or wait has already run out is not released, just
// as pump never grants one: when a setter's session expires while deadlines
// fire, such a waiter's own timer fires later in the same entry and ends it
// with its own reason (session expired, timeout), whatever order the
// deadlines that fell due together fire in.
func (m *Machine) releaseWaiters(o *object, why Reason) uint64 {
	gen := o.generation
	if gen == 0 {
		gen = m.nextID()
	}
	o.generation = 0 // the next arrival opens the next generation
	for w := o.queue.front(); w != nil; {
		next := w.next
		if !w.session.live(m.now) || (w.deadline != 0 && w.deadline <= m.now) {
			w = next
			continue
		}
		m.unlinkWaiter(w)
		m.emit(Effect{Kind: EffectGranted, Reason: why, Object: KindBarrier, Name: o.key.name, Session: w.session.id, Waiter: w.id, Generation: gen})
		m.settleWait(w, Result{Outcome: OutcomeReleased, Session: w.session.id, Waiter: w.id, Generation: gen})
		w = next
	}
	m.emit(Effect{Kind: EffectBarrierReleased, Reason: why, Object: KindBarrier, Name: o.key.name, Generation: gen})
	return gen
}

func (m *Machine) barrierSet(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	o := m.object(KindBarrier, c.Name)
	if o != nil {
		if o.parties != 0 {
			return Result{Err: m.barrierMismatch(o, 0, OpBarrierSet)}
		}
		if o.setBy != nil {
			if o.setBy.session == s {
				return Result{Outcome: OutcomeDone, Session: s.id, Token: o.setBy.token}
			}
			return Result{Err: errorf(CodeConflict, "barrier %q is already set by session %d: wait for it with parties=0", c.Name, o.setBy.session.id)}
		}
	}
	if err := m.checkSessionRoom(s); err != nil {
		return Result{Err: err}
	}
	if o == nil {
		if o, err = m.createObject(KindBarrier, c.Name); err != nil {
			return Result{Err: err}
		}
	}
	h := &hold{obj: o, session: s, token: FencingToken(m.nextID()), acquiredAt: m.now}
	m.addHold(h)
	m.emit(Effect{Kind: EffectGranted, Object: KindBarrier, Name: c.Name, Session: s.id, Token: h.token})
	return Result{Outcome: OutcomeDone, Session: s.id, Token: h.token}
}

// barrierRemove lowers a set barrier. Removing one that is not set does
// nothing, as in Curator: the caller wanted it down, and it is.
func (m *Machine) barrierRemove(c *Command) Result {
	o := m.object(KindBarrier, c.Name)
	if o != nil && o.parties != 0 {
		return Result{Err: m.barrierMismatch(o, 0, OpBarrierRemove)}
	}
	if o == nil || o.setBy == nil {
		return Result{Outcome: OutcomeDone}
	}
	h := o.setBy
	m.endHold(h, ReasonReleased)
	return Result{Outcome: OutcomeDone, Session: h.session.id, Token: h.token}
}
