package core

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// A snapshot is the whole machine in canonical bytes: sessions by id,
// objects by (kind, name), queues and holders in their order, clients in
// their forgetting order. Two machines in the same state write the same
// bytes, which is what Hash relies on. Timers are not written: they are
// rebuilt from the deadlines, and fire in an order that depends only on
// those (see timer).

const snapshotMagic = "LSSNAP"

// SnapshotVersion is written after the magic. Restore reads it and the
// versions before it, and refuses others. Version 2 added a counting
// barrier's generation; a version 1 snapshot restores it as the id of the
// barrier's first waiter, the arrival that opened it unless that one left.
// Version 3 added the limits on pending results (MaxPendingPerClient,
// MaxDedupeResults; older snapshots get the defaults) and the entry index of
// each kept result (older ones restore 0: unknown, see abandon). Version 4
// added each kept result's requestPrint (older ones restore 0: unknown,
// and a retry of such a result is not checked against its request).
// Version 5 added the rules in force (Machine.Rules); older snapshots were
// written by builds of rules 3 at most, before marks carried rules, and
// restore as rules 3 (rulesUnmarked). Version 6 added whether a hold was
// answered to another request than its own (hold.shared) and whether a
// waiter was joined by one (waiter.joined, and by which: joiners); older
// ones restore both as
// true, so that a replica's unheard release never ends a grant of theirs
// (they were written before such releases, and nobody knows who heard).
const SnapshotVersion = 6

// snapshotVersionBarrierGeneration is the first version that writes a
// counting barrier's generation.
const snapshotVersionBarrierGeneration = 2

// snapshotVersionPending is the first version that writes the pending-result
// limits and each result's entry index.
const snapshotVersionPending = 3

// snapshotVersionRequestPrint is the first version that writes each kept
// result's requestPrint.
const snapshotVersionRequestPrint = 4

// snapshotVersionRules is the first version that writes the rules in force.
const snapshotVersionRules = 5

// snapshotVersionShared is the first version that writes hold.shared and
// waiter.joined.
const snapshotVersionShared = 6

// Snapshot returns the machine's state as bytes.
func (m *Machine) Snapshot() []byte { return m.AppendSnapshot(nil) }

// AppendSnapshot appends the snapshot to b.
func (m *Machine) AppendSnapshot(b []byte) []byte { return m.appendSnapshotAs(b, SnapshotVersion) }

// appendSnapshotAs appends the snapshot as a build of version wrote it,
// for version SnapshotVersion and the two before it (the tests' upgrades
// write those: the fields they lacked are left out).
func (m *Machine) appendSnapshotAs(b []byte, version byte) []byte {
	if version < snapshotVersionRules-1 || version > SnapshotVersion {
		panic(fmt.Sprintf("core: cannot write a snapshot of version %d", version))
	}
	// Growing a slice of many megabytes by doubling costs more than the
	// encoding itself: reserve roughly what the state needs.
	e := encoder{b: slices.Grow(b, 256+len(m.sessions)*40+len(m.objects)*80+len(m.waiters)*48+m.clients.len()*64)}
	e.b = append(e.b, snapshotMagic...)
	e.byte(version)
	e.limits(&m.limits)
	e.uvarint(m.index)
	e.varint(int64(m.now))
	e.bool(m.started)
	if version >= snapshotVersionRules {
		e.uvarint(m.rules)
	}
	shared := version >= snapshotVersionShared

	sessions := make([]*session, 0, len(m.sessions))
	for _, s := range m.sessions {
		sessions = append(sessions, s)
	}
	slices.SortFunc(sessions, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	e.uvarint(uint64(len(sessions)))
	for _, s := range sessions {
		e.uvarint(uint64(s.id))
		e.varint(s.ttlMs)
		e.varint(int64(s.deadline))
		e.varint(int64(s.createdAt))
		e.string(s.owner)
	}

	objects := make([]*object, 0, len(m.objects))
	for _, o := range m.objects {
		objects = append(objects, o)
	}
	slices.SortFunc(objects, func(a, b *object) int { return compareKeys(a.key, b.key) })
	e.uvarint(uint64(len(objects)))
	for _, o := range objects {
		k := o.key
		e.byte(byte(k.kind))
		e.string(k.name)
		e.varint(o.limit)
		e.varint(o.parties)
		e.uvarint(o.generation)
		e.varint(int64(o.lockDelayUntil))
		e.uvarint(o.lockDelayID)
		e.bool(o.setBy != nil)
		if o.setBy != nil {
			e.hold(o.setBy, shared)
		}
		e.uvarint(uint64(len(o.holders)))
		for _, h := range o.holders {
			e.hold(h, shared)
		}
		e.uvarint(uint64(o.queue.Len()))
		for w := o.queue.front(); w != nil; w = w.next {
			e.waiter(w, shared)
		}
	}

	e.uvarint(uint64(m.clients.len()))
	for c := m.clients.head; c != nil; c = c.next {
		e.string(c.id)
		e.varint(int64(c.lastUsed))
		e.uvarint(c.floor)
		e.uvarint(uint64(len(c.results)))
		for _, r := range c.results {
			e.uvarint(r.seq)
			e.uvarint(r.index)
			e.uvarint(r.request)
			e.result(&r.result)
		}
	}
	return e.b
}

// Hash is a digest of the state: replicas that applied the same entries
// have equal hashes.
func (m *Machine) Hash() [32]byte { return sha256.Sum256(m.Snapshot()) }

func (e *encoder) limits(l *Limits) {
	for _, v := range []int64{int64(l.MaxNameBytes), int64(l.MaxObjects), int64(l.MaxSessions), int64(l.MaxWaitersPerObject),
		int64(l.MaxWaiters), int64(l.MaxHoldsPerSession), int64(l.MaxOwnerBytes), int64(l.MaxValueBytes), int64(l.MaxParties),
		l.MaxSemaphoreLimit, l.MinTTLMs, l.MaxTTLMs, l.MaxWaitMs, l.MaxHoldMs, l.MaxLockDelayMs, l.MaxClockStepMs,
		int64(l.MaxCommandsPerEntry), int64(l.MaxClients), int64(l.DedupeWindow), l.DedupeRetentionMs, int64(l.MaxListResults),
		int64(l.MaxPendingPerClient), int64(l.MaxDedupeResults)} {
		e.varint(v)
	}
}

func (d *decoder) limits(version byte) Limits {
	i := func() int { return int(d.varint()) }
	l := Limits{MaxNameBytes: i(), MaxObjects: i(), MaxSessions: i(), MaxWaitersPerObject: i(), MaxWaiters: i(),
		MaxHoldsPerSession: i(), MaxOwnerBytes: i(), MaxValueBytes: i(), MaxParties: i(), MaxSemaphoreLimit: d.varint(),
		MinTTLMs: d.varint(), MaxTTLMs: d.varint(), MaxWaitMs: d.varint(), MaxHoldMs: d.varint(), MaxLockDelayMs: d.varint(),
		MaxClockStepMs: d.varint(), MaxCommandsPerEntry: i(), MaxClients: i(), DedupeWindow: i(), DedupeRetentionMs: d.varint(),
		MaxListResults: i()}
	if version >= snapshotVersionPending {
		l.MaxPendingPerClient, l.MaxDedupeResults = i(), i()
	} else {
		def := DefaultLimits()
		l.MaxPendingPerClient, l.MaxDedupeResults = def.MaxPendingPerClient, def.MaxDedupeResults
	}
	return l
}

func (e *encoder) hold(h *hold, shared bool) {
	e.uvarint(uint64(h.session.id))
	e.uvarint(uint64(h.token))
	e.varint(int64(h.acquiredAt))
	e.varint(int64(h.maxHoldAt))
	e.varint(h.lockDelayMs)
	e.varint(h.permits)
	e.byte(byte(h.mode))
	e.string(h.owner)
	e.bytes(h.value)
	if shared {
		e.bool(h.shared)
	}
}

func (e *encoder) waiter(w *waiter, shared bool) {
	e.uvarint(uint64(w.id))
	e.uvarint(uint64(w.session.id))
	e.varint(int64(w.enqueuedAt))
	e.varint(int64(w.deadline))
	e.varint(w.permits)
	e.byte(byte(w.mode))
	e.string(w.owner)
	e.bytes(w.value)
	e.string(w.participant)
	e.varint(w.lockDelayMs)
	e.varint(w.maxHoldMs)
	e.string(w.clientID)
	e.uvarint(w.seq)
	if shared {
		e.bool(w.joined)
		e.uvarint(uint64(len(w.joiners)))
		for _, k := range w.joiners {
			e.string(k.clientID)
			e.uvarint(k.seq)
		}
	}
}

func (e *encoder) result(r *Result) {
	e.bool(r.Err != nil)
	if r.Err != nil {
		e.byte(byte(r.Err.Code))
		e.string(r.Err.Msg)
	}
	e.byte(byte(r.Outcome))
	e.uvarint(uint64(r.Token))
	e.uvarint(uint64(r.Session))
	e.uvarint(uint64(r.Waiter))
	e.varint(int64(r.Deadline))
	e.uvarint(r.Generation)
	e.byte(byte(r.Reason))
}

func (d *decoder) result() Result {
	var r Result
	if d.bool() {
		r.Err = &Error{Code: Code(d.byte()), Msg: d.string()}
	}
	r.Outcome = Outcome(d.byte())
	r.Token = FencingToken(d.uvarint())
	r.Session = SessionID(d.uvarint())
	r.Waiter = WaiterID(d.uvarint())
	r.Deadline = LogTime(d.varint())
	r.Generation = d.uvarint()
	r.Reason = Reason(d.byte())
	return r
}

// Restore rebuilds a machine from a snapshot. It checks the bytes as it
// goes and refuses a snapshot that does not describe a consistent machine.
func Restore(b []byte) (*Machine, error) {
	if len(b) < len(snapshotMagic)+1 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return nil, errorf(CodeInvalidArgument, "not a Lockstep snapshot")
	}
	v := b[len(snapshotMagic)]
	if v < 1 || v > SnapshotVersion {
		return nil, errorf(CodeInvalidArgument, "snapshot version %d is not known (this build reads versions 1..%d)", v, SnapshotVersion)
	}
	d := decoder{b: b[len(snapshotMagic)+1:]}
	limits := d.limits(v)
	if d.err != nil {
		return nil, errorf(CodeInvalidArgument, "malformed snapshot: %v", d.err)
	}
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	m := newMachine(limits)
	if err := m.restore(&d, v); err != nil {
		return nil, errorf(CodeInvalidArgument, "malformed snapshot: %v", err)
	}
	if err := m.CheckInvariants(); err != nil {
		return nil, errorf(CodeInvalidArgument, "snapshot describes an inconsistent machine: %v", err)
	}
	return m, nil
}

func (m *Machine) restore(d *decoder, version byte) error {
	m.index = d.uvarint()
	m.now = LogTime(d.varint())
	m.started = d.bool()
	m.rules = rulesUnmarked
	if version >= snapshotVersionRules {
		m.rules = d.uvarint()
		if d.err == nil && (m.rules < rulesUnmarked || m.rules > RulesVersion) {
			if m.rules > RulesVersion {
				return fmt.Errorf("it was written under rules %d, newer than this build's %d: restore it with a build of rules %d", m.rules, RulesVersion, m.rules)
			}
			return fmt.Errorf("its rules in force %d are below %d, the first a snapshot carries", m.rules, rulesUnmarked)
		}
	}

	n := d.count(uint64(m.limits.MaxSessions), 5)
	m.sessions = make(map[SessionID]*session, n)
	// One allocation per kind instead of one per element: restoring a
	// million locks is mostly allocator and collector work otherwise. A slab
	// stays allocated until its last element is dropped.
	slab := make([]session, n)
	var last SessionID
	for i := 0; i < n && d.err == nil; i++ {
		s := &slab[i]
		*s = session{id: SessionID(d.uvarint()), ttlMs: d.varint(), deadline: LogTime(d.varint()),
			createdAt: LogTime(d.varint()), owner: d.string()}
		if s.id <= last {
			return errors.New("sessions out of order")
		}
		if d.err == nil && (s.ttlMs < m.limits.MinTTLMs || s.ttlMs > m.limits.MaxTTLMs) {
			return errors.New("a session's TTL is out of bounds")
		}
		last = s.id
		m.sessions[s.id] = s
		m.timers.items = append(m.timers.items, timer{at: s.deadline, kind: timerSession, id: uint64(s.id)})
	}

	var allHolds []*hold
	var allWaits []*waiter
	n = d.count(uint64(m.limits.MaxObjects), 8)
	m.objects = make(map[objectKey]*object, n)
	objects := make([]object, n)
	holds := make([]hold, 0, n)
	allHolds = make([]*hold, 0, n)
	var prev objectKey
	for i := 0; i < n && d.err == nil; i++ {
		o := &objects[i]
		o.key = objectKey{kind: Kind(d.byte()), name: d.string()}
		if !o.key.kind.valid() || (i > 0 && !keyLess(prev, o.key)) {
			return errors.New("objects out of order or of unknown kind")
		}
		prev = o.key
		o.limit, o.parties = d.varint(), d.varint()
		if version >= snapshotVersionBarrierGeneration {
			o.generation = d.uvarint()
		}
		o.lockDelayUntil, o.lockDelayID = LogTime(d.varint()), d.uvarint()
		m.objects[o.key] = o
		if o.lockDelayUntil != 0 {
			m.lockDelays[o.lockDelayID] = o
			m.timers.items = append(m.timers.items, timer{at: o.lockDelayUntil, kind: timerLockDelay, id: o.lockDelayID})
		}
		// addHold files a barrier's hold as setBy and any other as a holder,
		// so a snapshot that says otherwise would restore as something else.
		if d.bool() {
			if o.key.kind != KindBarrier {
				return errors.New("only a barrier can be set")
			}
			h, err := m.readHold(d, o, &holds, version)
			if err != nil {
				return err
			}
			allHolds = append(allHolds, h)
		}
		nh := d.count(uint64(m.limits.MaxSessions), 8)
		if nh > 0 && o.key.kind == KindBarrier {
			return errors.New("a barrier has holders")
		}
		for j := 0; j < nh && d.err == nil; j++ {
			h, err := m.readHold(d, o, &holds, version)
			if err != nil {
				return err
			}
			// Holders are rebuilt in token order: refuse any other.
			if j > 0 && h.token <= allHolds[len(allHolds)-1].token {
				return errors.New("holders out of grant order")
			}
			allHolds = append(allHolds, h)
		}
		nw := d.count(uint64(m.limits.MaxWaitersPerObject), 8)
		for j := 0; j < nw && d.err == nil; j++ {
			w, err := m.readWaiter(d, o, version)
			if err != nil {
				return err
			}
			allWaits = append(allWaits, w)
		}
		if version < snapshotVersionBarrierGeneration && o.key.kind == KindBarrier && o.parties != 0 {
			if head := o.queue.front(); head != nil {
				o.generation = uint64(head.id)
			}
		}
	}
	if d.err != nil {
		return d.err
	}
	// Sessions list their holds in grant order and their waits in queue
	// order; both are the order of their identifiers.
	slices.SortFunc(allHolds, func(a, b *hold) int { return cmp.Compare(a.token, b.token) })
	m.holds = make(map[FencingToken]*hold, len(allHolds))
	for _, h := range allHolds {
		if m.holds[h.token] != nil {
			return errors.New("a token is held twice")
		}
		m.addHold(h)
		if h.maxHoldAt != 0 {
			m.timers.items = append(m.timers.items, timer{at: h.maxHoldAt, kind: timerMaxHold, id: uint64(h.token)})
		}
	}
	slices.SortFunc(allWaits, func(a, b *waiter) int { return cmp.Compare(a.id, b.id) })
	for _, w := range allWaits {
		if m.waiters[w.id] != nil {
			return errors.New("a waiter is queued twice")
		}
		m.waiters[w.id] = w
		w.session.waits = append(w.session.waits, w)
		m.nWaiters++
		if w.deadline != 0 {
			m.timers.items = append(m.timers.items, timer{at: w.deadline, kind: timerWaiter, id: uint64(w.id)})
		}
	}

	n = d.count(uint64(m.limits.MaxClients), 4)
	for i := 0; i < n && d.err == nil; i++ {
		c := &clientRecord{id: d.string(), lastUsed: LogTime(d.varint()), floor: d.uvarint()}
		nr := d.count(uint64(max(m.limits.DedupeWindow, m.limits.MaxPendingPerClient)), 4)
		for j := 0; j < nr && d.err == nil; j++ {
			r := dedupeEntry{seq: d.uvarint()}
			if version >= snapshotVersionPending {
				r.index = d.uvarint()
			}
			if version >= snapshotVersionRequestPrint {
				r.request = d.uvarint()
			}
			r.result = d.result()
			c.results = append(c.results, r)
		}
		if c.id == "" || m.clients.byID[c.id] != nil {
			return errors.New("client recorded twice or without an id")
		}
		m.clients.results += len(c.results)
		m.clients.byID[c.id] = c
		m.clients.pushBack(c)
	}
	if d.err == nil && len(d.b) != 0 {
		return errors.New("trailing bytes")
	}
	m.timers.init()
	return d.err
}

func keyLess(a, b objectKey) bool { return compareKeys(a, b) < 0 }

func compareKeys(a, b objectKey) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

func (m *Machine) readHold(d *decoder, o *object, slab *[]hold, version byte) (*hold, error) {
	sid := SessionID(d.uvarint())
	var h *hold
	if len(*slab) < cap(*slab) { // never grow the slab: earlier pointers into it must stay valid
		*slab = append(*slab, hold{})
		h = &(*slab)[len(*slab)-1]
	} else {
		h = new(hold)
	}
	*h = hold{obj: o, token: FencingToken(d.uvarint()), acquiredAt: LogTime(d.varint()), maxHoldAt: LogTime(d.varint()),
		lockDelayMs: d.varint(), permits: d.varint(), mode: Mode(d.byte()), owner: d.string(), value: d.bytes(), shared: true}
	if version >= snapshotVersionShared {
		h.shared = d.bool()
	}
	if d.err != nil {
		return nil, d.err
	}
	if h.session = m.sessions[sid]; h.session == nil {
		return nil, errors.New("a hold names a session that does not exist")
	}
	return h, nil
}

// readWaiter reads a waiter and links it into its object's queue; the
// session and index links are made once all waiters are read.
func (m *Machine) readWaiter(d *decoder, o *object, version byte) (*waiter, error) {
	w := &waiter{obj: o, id: WaiterID(d.uvarint())}
	sid := SessionID(d.uvarint())
	w.enqueuedAt, w.deadline = LogTime(d.varint()), LogTime(d.varint())
	w.permits, w.mode = d.varint(), Mode(d.byte())
	w.owner, w.value, w.participant = d.string(), d.bytes(), d.string()
	w.lockDelayMs, w.maxHoldMs = d.varint(), d.varint()
	w.clientID, w.seq = d.string(), d.uvarint()
	w.joined = true
	if version >= snapshotVersionShared {
		w.joined = d.bool()
		n := d.count(maxDecodedCommands, 2)
		for range n {
			w.joiners = append(w.joiners, requestKey{d.string(), d.uvarint()})
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if w.session = m.sessions[sid]; w.session == nil {
		return nil, errors.New("a waiter names a session that does not exist")
	}
	o.queue.pushBack(w)
	return w, nil
}
