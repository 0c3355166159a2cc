package core

import "fmt"

// CheckInvariants verifies what must hold between entries. Tests and the
// simulator call it after every Apply; Restore calls it on what it read. It
// walks the whole state, so production does not call it per entry.
func (m *Machine) CheckInvariants() error {
	fail := func(format string, args ...any) error { return fmt.Errorf("invariant: "+format, args...) }
	limit := FencingToken((m.index + 1) << SlotBits)
	holds, waits := 0, 0
	if m.rules < rulesUnmarked || m.rules > RulesVersion {
		return fail("rules in force %d outside %d..%d", m.rules, rulesUnmarked, RulesVersion)
	}
	for id, s := range m.sessions {
		if s.id != id {
			return fail("session %d indexed as %d", s.id, id)
		}
		if !s.live(m.now) {
			return fail("session %d is past its deadline %d at %d but was not expired", s.id, s.deadline, m.now)
		}
		for i, h := range s.holds {
			if h.session != s || m.holds[h.token] != h {
				return fail("session %d lists a hold it does not own", s.id)
			}
			if i > 0 && s.holds[i-1].token >= h.token {
				return fail("session %d holds out of grant order", s.id)
			}
		}
		for i, w := range s.waits {
			if w.session != s || m.waiters[w.id] != w {
				return fail("session %d lists a wait it does not own", s.id)
			}
			if i > 0 && s.waits[i-1].id >= w.id {
				return fail("session %d waits out of queue order", s.id)
			}
		}
		holds += len(s.holds)
		waits += len(s.waits)
		if len(s.holds)+len(s.waits) > m.limits.MaxHoldsPerSession {
			return fail("session %d has %d holds and waits, over the limit", s.id, len(s.holds)+len(s.waits))
		}
	}
	if holds != len(m.holds) || waits != len(m.waiters) || waits != m.nWaiters {
		return fail("counts disagree: %d/%d holds, %d/%d/%d waits", holds, len(m.holds), waits, len(m.waiters), m.nWaiters)
	}
	if len(m.objects) > m.limits.MaxObjects || len(m.sessions) > m.limits.MaxSessions || m.nWaiters > m.limits.MaxWaiters {
		return fail("a limit is exceeded: %d objects, %d sessions, %d waiters", len(m.objects), len(m.sessions), m.nWaiters)
	}
	for k, o := range m.objects {
		if err := m.checkObject(k, o, limit); err != nil {
			return err
		}
	}
	for id, o := range m.lockDelays {
		if m.objects[o.key] != o || o.lockDelayID != id || o.lockDelayUntil <= m.now {
			return fail("lock-delay %d of %s %q is stale", id, o.key.kind, o.key.name)
		}
	}
	n, results := 0, 0
	for c := m.clients.head; c != nil; c = c.next {
		n++
		results += len(c.results)
		if m.clients.byID[c.id] != c || len(c.results) > max(m.limits.DedupeWindow, m.limits.MaxPendingPerClient) {
			return fail("client %q is badly recorded", c.id)
		}
		if c.next != nil && c.next.lastUsed < c.lastUsed {
			return fail("clients out of use order")
		}
		for i := range c.results {
			if c.results[i].seq <= c.floor || (i > 0 && c.results[i-1].seq >= c.results[i].seq) {
				return fail("client %q results out of order", c.id)
			}
		}
	}
	if n != m.clients.len() || n > m.limits.MaxClients {
		return fail("%d clients listed, %d indexed", n, m.clients.len())
	}
	if results != m.clients.results || results > m.limits.MaxDedupeResults {
		return fail("%d results kept, %d counted (at most %d)", results, m.clients.results, m.limits.MaxDedupeResults)
	}
	return nil
}

func (m *Machine) checkObject(k objectKey, o *object, limit FencingToken) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("invariant: %s %q: "+format, append([]any{k.kind, k.name}, args...)...)
	}
	if o.key != k {
		return fail("indexed under another key")
	}
	if len(o.holders) == 0 && o.queue.Len() == 0 && o.lockDelayUntil == 0 && o.setBy == nil {
		return fail("idle but not dropped")
	}
	var used int64
	for i, h := range o.holders {
		if h.obj != o || m.holds[h.token] != h || h.token >= limit {
			return fail("hold %d is not linked or its token is from the future", h.token)
		}
		if i > 0 && o.holders[i-1].token >= h.token {
			return fail("holders out of grant order")
		}
		if h.maxHoldAt != 0 && h.maxHoldAt <= m.now {
			return fail("hold %d outlived its maximum hold time", h.token)
		}
		used += h.permits
	}
	switch k.kind {
	case KindMutex, KindElection:
		if len(o.holders) > 1 {
			return fail("%d holders", len(o.holders))
		}
	case KindSemaphore:
		if used != o.used || used > o.limit {
			return fail("%d permits used of %d (counted %d)", used, o.limit, o.used)
		}
	case KindRWLock:
		for _, h := range o.holders {
			if h.mode == ModeWrite && len(o.holders) > 1 {
				return fail("a writer holds beside %d others", len(o.holders)-1)
			}
		}
	case KindBarrier:
		if len(o.holders) > 0 || (o.setBy != nil && o.parties != 0) {
			return fail("a barrier holds like a lock")
		}
		if o.parties != 0 && int64(o.queue.Len()) >= o.parties {
			return fail("%d parties arrived of %d but were not released", o.queue.Len(), o.parties)
		}
		if head := o.queue.front(); o.parties != 0 && (o.generation == 0 || head == nil || o.generation > uint64(head.id)) {
			return fail("counting barrier at generation %d with %d waiting: a generation is opened by its first arrival", o.generation, o.queue.Len())
		}
		if o.parties == 0 && o.generation != 0 {
			return fail("set/remove barrier with generation %d", o.generation)
		}
	}
	if o.setBy != nil && (o.setBy.obj != o || m.holds[o.setBy.token] != o.setBy) {
		return fail("raised by an unlinked hold")
	}
	if o.lockDelayUntil != 0 && (k.kind != KindMutex || m.lockDelays[o.lockDelayID] != o) {
		return fail("lock-delay not indexed")
	}
	n := 0
	for w := o.queue.front(); w != nil; w = w.next {
		n++
		if w.obj != o || m.waiters[w.id] != w || (w.next != nil && w.next.prev != w) {
			return fail("waiter %d is badly linked", w.id)
		}
		if w.deadline != 0 && w.deadline <= m.now {
			return fail("waiter %d is past its deadline", w.id)
		}
	}
	if n != o.queue.Len() || n > m.limits.MaxWaitersPerObject {
		return fail("queue length %d, counted %d", o.queue.Len(), n)
	}
	if head := o.queue.front(); head != nil && k.kind != KindBarrier {
		r := request{permits: head.permits, mode: head.mode}
		if m.canGrant(o, &r) {
			return fail("the queue's head (waiter %d) could be granted but waits", head.id)
		}
	}
	return nil
}
