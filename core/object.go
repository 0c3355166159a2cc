package core

// object is one named mutex, semaphore, RW lock, barrier or election. It
// exists while anything refers to it (a holder, a waiter, a raised barrier,
// a pending lock-delay) and is dropped when idle, so an unused name costs
// nothing and a semaphore's limit can be chosen again once it is free.
type object struct {
	key     objectKey
	holders []*hold // in grant order; for an election, holders[0] is the leader
	queue   WaitQueue

	used int64 // semaphore: permits held

	limit          int64   // semaphore size, fixed while the object lives
	lockDelayUntil LogTime // mutex: no grant before this time
	lockDelayID    uint64

	parties int64 // barrier: arrivals that release a generation (0: a set/remove barrier)
	// generation is a counting barrier's current generation: the waiter id
	// of the arrival that opened it (a log-derived id, so generations of
	// one name strictly increase). A counting barrier lives exactly while
	// someone waits at it, so it is never 0 while the object exists; a
	// set/remove barrier keeps 0.
	generation uint64
	setBy      *hold // set/remove barrier: the raise, held by a session
}

// hold is one grant: a lock held, permits taken, a leadership, a raised
// barrier. It dies with its session.
type hold struct {
	obj         *object
	session     *session
	token       FencingToken
	acquiredAt  LogTime
	maxHoldAt   LogTime // 0: no maximum hold
	lockDelayMs int64
	permits     int64
	mode        Mode
	owner       string
	value       []byte
	// shared: a request other than the one that asked for this grant was
	// answered it (a re-acquire or campaign of its session, or a request
	// that joined its wait), so a replica's unheard release may not end it
	// (Command.Unheard): someone heard of it.
	shared bool
}

// waiter is one queued request: an acquire, a campaign, a barrier arrival.
type waiter struct {
	id         WaiterID
	obj        *object
	session    *session
	enqueuedAt LogTime
	deadline   LogTime // 0: no deadline

	permits     int64
	mode        Mode
	owner       string
	value       []byte
	participant string
	lockDelayMs int64
	maxHoldMs   int64
	// joined: another request of its session was answered this wait (an
	// acquire, campaign or arrival that found it queued), and will hear
	// its grant too: the grant is shared (hold.shared).
	joined bool
	// joiners are those requests, by their dedupe identity (from rules
	// 5): the wait's end is stored as each one's answer too, so that a
	// retry of one hears how the wait ended, as a retry of the request
	// that queued it does (clientID, seq).
	joiners []requestKey

	// The request that queued it, whose stored dedupe result is updated when
	// the wait ends.
	clientID string
	seq      uint64

	prev, next *waiter
}

// WaitQueue is a FIFO of waiters, linked through the waiters themselves so
// that a timeout or cancel in the middle costs O(1).
type WaitQueue struct {
	head, tail *waiter
	n          int
}

func (q *WaitQueue) Len() int       { return q.n }
func (q *WaitQueue) front() *waiter { return q.head }

func (q *WaitQueue) pushBack(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
	q.n++
}

func (q *WaitQueue) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
	q.n--
}

// object returns the named object, creating it when create is set and the
// object limit allows.
func (m *Machine) object(kind Kind, name string) *object {
	return m.objects[objectKey{kind, name}]
}

func (m *Machine) createObject(kind Kind, name string) (*object, *Error) {
	if len(m.objects) >= m.limits.MaxObjects {
		return nil, errorf(CodeResourceExhausted, "%d objects are live, the limit: release or close sessions before creating %s %q",
			len(m.objects), kind, name)
	}
	o := &object{key: objectKey{kind, name}}
	m.objects[o.key] = o
	return o, nil
}

// dropIfIdle forgets an object nothing refers to any more.
func (m *Machine) dropIfIdle(o *object) {
	if len(o.holders) == 0 && o.queue.Len() == 0 && o.lockDelayUntil == 0 && o.setBy == nil {
		if m.objects[o.key] == o {
			delete(m.objects, o.key)
		}
	}
}

func (o *object) holderOf(s *session) *hold {
	for _, h := range o.holders {
		if h.session == s {
			return h
		}
	}
	return nil
}

func (o *object) removeHolder(h *hold) {
	o.holders = removeOne(o.holders, h, "a hold missing from its object")
}
