package core

import (
	"cmp"
	"slices"
	"strings"
)

// Reads answer from the applied state and change nothing. Under Raft they
// are linearizable when served after a ReadIndex confirms this replica has
// applied everything committed before the read began.

// Holder is one grant as status shows it.
type Holder struct {
	Session    SessionID
	Token      FencingToken
	Owner      string
	Value      []byte
	Permits    int64
	Mode       Mode
	AcquiredAt LogTime
	// ExpiresAt is when the grant ends unless renewed: the session's deadline,
	// or the maximum hold time if that comes first.
	ExpiresAt LogTime
	// MaxHoldUntil is when the grant ends even while its session lives (0:
	// no maximum), and LockDelayMs how long the name stays blocked if the
	// grant ends by failure.
	MaxHoldUntil LogTime
	LockDelayMs  int64
}

// Waiter is one queued request as status shows it.
type Waiter struct {
	ID          WaiterID
	Session     SessionID
	Owner       string
	Permits     int64
	Mode        Mode
	Participant string
	EnqueuedAt  LogTime
	Deadline    LogTime // 0: waits until granted or cancelled
}

// Status is one object's visible state. A name nobody holds or waits for has
// an empty Status: free is not an error.
type Status struct {
	Kind           Kind
	Name           string
	Limit          int64  // semaphore
	Used           int64  // semaphore permits held
	Parties        int64  // party barrier
	Generation     uint64 // party barrier: the current generation, the one arrivals join now (0: nobody waits)
	LockDelayUntil LogTime
	Holders        []Holder // in grant order; an election's leader first
	Waiters        []Waiter // the wait queue, in order
}

// SessionInfo is one session as reads show it.
type SessionInfo struct {
	ID        SessionID
	TTLMs     int64
	Deadline  LogTime
	CreatedAt LogTime
	Owner     string
	Holds     []ObjectRef
	Waits     []ObjectRef
}

// ObjectRef names an object and the grant or wait on it.
type ObjectRef struct {
	Kind   Kind
	Name   string
	Token  FencingToken
	Waiter WaiterID
}

// Status returns the state of one object.
func (m *Machine) Status(kind Kind, name string) (Status, error) {
	if !kind.valid() {
		return Status{}, errorf(CodeInvalidArgument, "unknown kind %d: use mutex, semaphore, rwlock, barrier or election", uint8(kind))
	}
	if err := m.validateName(name); err != nil {
		return Status{}, err
	}
	o := m.object(kind, name)
	if o == nil {
		return Status{Kind: kind, Name: name}, nil
	}
	return m.statusOf(o), nil
}

func (m *Machine) statusOf(o *object) Status {
	st := Status{Kind: o.key.kind, Name: o.key.name, Limit: o.limit, Used: o.used, Parties: o.parties,
		Generation: o.generation, LockDelayUntil: o.lockDelayUntil}
	holders := o.holders
	if o.setBy != nil {
		holders = []*hold{o.setBy}
	}
	for _, h := range holders {
		st.Holders = append(st.Holders, holderOf(h))
	}
	for w := o.queue.front(); w != nil; w = w.next {
		st.Waiters = append(st.Waiters, Waiter{ID: w.id, Session: w.session.id, Owner: w.owner, Permits: w.permits,
			Mode: w.mode, Participant: w.participant, EnqueuedAt: w.enqueuedAt, Deadline: w.deadline})
	}
	return st
}

func holderOf(h *hold) Holder {
	exp := h.session.deadline
	if h.maxHoldAt != 0 && h.maxHoldAt < exp {
		exp = h.maxHoldAt
	}
	return Holder{Session: h.session.id, Token: h.token, Owner: h.owner, Value: h.value, Permits: h.permits,
		Mode: h.mode, AcquiredAt: h.acquiredAt, ExpiresAt: exp, MaxHoldUntil: h.maxHoldAt, LockDelayMs: h.lockDelayMs}
}

// List returns the objects of one kind (0: every kind) whose names start
// with prefix, ordered by kind then name, at most limit of them (0 or more
// than MaxListResults: MaxListResults). more says the list was cut.
func (m *Machine) List(kind Kind, prefix string, limit int) (list []Status, more bool, err error) {
	return m.list(kind, prefix, limit, nil, compareKeys)
}

// list checks List's arguments, and answers the objects of kind (0: every
// kind) under prefix that keep takes (nil: all), sorted by order and cut
// at limit (0 or more than MaxListResults: MaxListResults).
func (m *Machine) list(kind Kind, prefix string, limit int, keep func(objectKey) bool, order func(a, b objectKey) int) (list []Status, more bool, err error) {
	if kind != 0 && !kind.valid() {
		return nil, false, errorf(CodeInvalidArgument, "unknown kind %d: use 0 for all kinds, or mutex, semaphore, rwlock, barrier, election", uint8(kind))
	}
	if len(prefix) > m.limits.MaxNameBytes {
		return nil, false, errorf(CodeInvalidArgument, "the prefix is %d bytes: at most %d", len(prefix), m.limits.MaxNameBytes)
	}
	if limit <= 0 || limit > m.limits.MaxListResults {
		limit = m.limits.MaxListResults
	}
	var keys []objectKey
	for k := range m.objects {
		if (kind == 0 || k.kind == kind) && strings.HasPrefix(k.name, prefix) && (keep == nil || keep(k)) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, order)
	if len(keys) > limit {
		keys, more = keys[:limit], true
	}
	for _, k := range keys {
		list = append(list, m.statusOf(m.objects[k]))
	}
	return list, more, nil
}

// ListQuery asks ListFrom for one shard's part of a page of a list.
type ListQuery struct {
	Kind   Kind   // 0: every kind
	Prefix string // names starting with it
	// After, when set, starts the list just after the object (AfterName,
	// AfterKind) in name-then-kind order: a page's cursor.
	After     bool
	AfterName string
	AfterKind Kind
	Keep      func(name string) bool // nil: every name; else only those it keeps
	Limit     int                    // at most this many (0 or more than MaxListResults: MaxListResults)
}

// ListFrom answers q in name-then-kind order, the order of a page across
// shards (core/shards.ListPage), and more when objects past the limit were
// left out. Unlike List, a cursor pages past any number of objects, and a
// read filter (Keep) costs no place to the names it keeps: List's first
// MaxListResults in kind order could hide both.
func (m *Machine) ListFrom(q ListQuery) (list []Status, more bool, err error) {
	byName := func(a, b objectKey) int { return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind)) }
	from := objectKey{kind: q.AfterKind, name: q.AfterName}
	keep := func(k objectKey) bool {
		return (!q.After || byName(k, from) > 0) && (q.Keep == nil || q.Keep(k.name))
	}
	return m.list(q.Kind, q.Prefix, q.Limit, keep, byName)
}

// CheckFence answers whether token is a current grant on the object: what a
// resource guarded by the lock asks before accepting a write.
func (m *Machine) CheckFence(kind Kind, name string, token FencingToken) (bool, error) {
	if !kind.valid() {
		return false, errorf(CodeInvalidArgument, "unknown kind %d", uint8(kind))
	}
	if err := m.validateName(name); err != nil {
		return false, err
	}
	h := m.holds[token]
	return h != nil && h.obj.key == objectKey{kind, name}, nil
}

// GrantInfo is one current grant as an acquire's answer or a release's
// check needs it: the holder entry Status shows, and its session's owner
// and how many holds and waits that session has.
type GrantInfo struct {
	Holder
	SessionOwner               string
	SessionHolds, SessionWaits int
}

// Grant finds the current grant with token on the object (kind, name) by
// one lookup, without copying the object's holders and queue or the
// session's lists: an acquire's answer and a release's check paid for
// those copies on every call, the whole queue on a contended name.
func (m *Machine) Grant(kind Kind, name string, token FencingToken) (GrantInfo, bool) {
	h := m.holds[token]
	if h == nil || h.obj.key != (objectKey{kind: kind, name: name}) {
		return GrantInfo{}, false
	}
	return GrantInfo{Holder: holderOf(h), SessionOwner: h.session.owner,
		SessionHolds: len(h.session.holds), SessionWaits: len(h.session.waits)}, true
}

// SessionInfo returns one live session.
func (m *Machine) SessionInfo(id SessionID) (SessionInfo, error) {
	s := m.sessions[id]
	if s == nil {
		return SessionInfo{}, errorf(CodeNotFound, "session %d does not exist (it expired, was closed, or never was)", id)
	}
	info := SessionInfo{ID: s.id, TTLMs: s.ttlMs, Deadline: s.deadline, CreatedAt: s.createdAt, Owner: s.owner}
	for _, h := range s.holds {
		info.Holds = append(info.Holds, ObjectRef{Kind: h.obj.key.kind, Name: h.obj.key.name, Token: h.token})
	}
	for _, w := range s.waits {
		info.Waits = append(info.Waits, ObjectRef{Kind: w.obj.key.kind, Name: w.obj.key.name, Waiter: w.id})
	}
	return info, nil
}

// SessionSummary is one session as a list of sessions shows it: its lease,
// and how many holds and waits it has (SessionInfo lists them).
type SessionSummary struct {
	ID           SessionID
	TTLMs        int64
	Deadline     LogTime
	CreatedAt    LogTime
	Owner        string
	Holds, Waits int
}

// SessionQuery asks Sessions for one shard's part of a page of sessions.
type SessionQuery struct {
	After SessionID               // only ids above it: a page's cursor (0: from the first)
	Keep  func(owner string) bool // nil: every session; else only those whose owner label it keeps
	Limit int                     // at most this many (0 or more than MaxListResults: MaxListResults)
}

// Sessions answers the live sessions after q.After that q.Keep takes, in id
// order, at most q.Limit of them, and more when sessions past the limit
// were left out. It looks at every session once (at most MaxSessions) and
// keeps at most the limit of them while it looks, so one read costs
// O(sessions · log limit) time and O(limit) memory, whatever the number
// of sessions and whatever the caller asks.
func (m *Machine) Sessions(q SessionQuery) (list []SessionSummary, more bool) {
	limit := q.Limit
	if limit <= 0 || limit > m.limits.MaxListResults {
		limit = m.limits.MaxListResults
	}
	// The lowest limit ids, in a max-heap: a session above the heap's top
	// once it is full is not among them.
	var low idHeap
	for id, s := range m.sessions {
		if id <= q.After || (q.Keep != nil && !q.Keep(s.owner)) {
			continue
		}
		if len(low) < limit {
			low.push(id)
			continue
		}
		more = true
		if id < low[0] {
			low.replaceTop(id)
		}
	}
	slices.Sort(low)
	list = make([]SessionSummary, 0, len(low))
	for _, id := range low {
		s := m.sessions[id]
		list = append(list, SessionSummary{ID: s.id, TTLMs: s.ttlMs, Deadline: s.deadline, CreatedAt: s.createdAt,
			Owner: s.owner, Holds: len(s.holds), Waits: len(s.waits)})
	}
	return list, more
}

// idHeap is a max-heap of session ids: low[0] is the highest.
type idHeap []SessionID

func (h *idHeap) push(id SessionID) {
	*h = append(*h, id)
	a := *h
	for i := len(a) - 1; i > 0; {
		parent := (i - 1) / 2
		if a[parent] >= a[i] {
			break
		}
		a[parent], a[i] = a[i], a[parent]
		i = parent
	}
}

// replaceTop puts id in place of the highest id.
func (h idHeap) replaceTop(id SessionID) {
	h[0] = id
	for i := 0; ; {
		big, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l] > h[big] {
			big = l
		}
		if r < len(h) && h[r] > h[big] {
			big = r
		}
		if big == i {
			return
		}
		h[i], h[big] = h[big], h[i]
		i = big
	}
}

// SessionOwner is a session's owner label, and whether the session exists:
// SessionInfo without the holds and waits, which the API reads before every
// request that names a session (ownership, and a session the server made).
func (m *Machine) SessionOwner(id SessionID) (string, bool) {
	s := m.sessions[id]
	if s == nil {
		return "", false
	}
	return s.owner, true
}

// Counts are gauges for metrics.
type Counts struct {
	Sessions, Objects, Holds, Waiters, Clients int
}

// Counts returns how much the machine holds.
func (m *Machine) Counts() Counts {
	return Counts{Sessions: len(m.sessions), Objects: len(m.objects), Holds: len(m.holds), Waiters: m.nWaiters,
		Clients: m.clients.len()}
}

// Remembered is the result the machine keeps for (clientID, seq): what a
// retry of that request is answered. The API answers a release of a grant
// no longer held from it, since such a release may not be proposed anew:
// named by owner label, it carries no holder core could check.
//
// A seq the machine has forgotten answers ok with the error a retry of it
// gets (failed_precondition: its outcome is unknown).
func (m *Machine) Remembered(clientID string, seq uint64) (Result, bool) {
	_, e, err := m.clients.lookup(clientID, seq, 0)
	switch {
	case err != nil:
		return Result{Err: err}, true
	case e == nil:
		return Result{}, false
	}
	return e.result, true
}
