package core

// Dedupe makes retries safe: a command carries (client_id, request_seq), and
// the machine keeps the client's results so that a retry is answered with
// the first answer and changes nothing (docs/design.md, "Identity").
//
// Which results are kept follows the Raft dissertation's client sessions,
// extended to many outstanding requests. A command may say the lowest seq
// its client still waits for (LowestPending): every result at or above it is
// kept, and the ones below are forgotten, since the client will never retry
// them. So a client may have any number of requests in flight, in any order,
// bounded only by MaxPendingPerClient (a refusal the client can wait out).
// A command that does not say keeps the older rule: the client's last
// DedupeWindow results. Either way a seq that was forgotten (at or below the
// client's floor) is refused rather than applied twice.
//
// Clients are forgotten after DedupeRetentionMs without a command, or, when
// more than MaxClients are known, least recently used first. Both orders come
// from log time and the log, so every replica forgets the same clients.

type dedupeEntry struct {
	seq     uint64
	index   uint64 // the entry that applied it (0: restored from a snapshot older than version 3)
	request uint64 // requestPrint of the command; 0: unknown, any retry matches
	result  Result
}

// requestPrint is a digest of what a command asks, for telling a retry
// from another request sent under the same (client_id, request_seq): a
// client whose seq counter repeated, or one restarted under its old
// client_id, was answered with the first request's result, a grant of
// another name, and took itself for the holder of a lock nobody held.
// It covers the fields that say what is asked of which object (op, kind,
// name, session, token, waiter, the semaphore's limit and permits, the
// mode, parties, participant, value and abandon's target), and leaves out
// the ones a faithful retry may change or that only label or time it:
// the wait (a client resends the time it has left), the TTL, the
// lock-delay, the hold limit and the owner label. Never 0, which marks an
// unknown request.
func requestPrint(c *Command) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	word := func(v uint64) {
		for i := 0; i < 8; i++ {
			h = (h ^ (v & 0xff)) * prime
			v >>= 8
		}
	}
	bytes := func(b string) {
		word(uint64(len(b)))
		for i := 0; i < len(b); i++ {
			h = (h ^ uint64(b[i])) * prime
		}
	}
	word(uint64(c.Op)<<16 | uint64(c.Kind)<<8 | uint64(c.Mode))
	bytes(c.Name)
	word(uint64(c.Session))
	word(uint64(c.Token))
	word(uint64(c.Waiter))
	word(uint64(c.Limit))
	word(uint64(c.Permits))
	word(uint64(c.Parties))
	bytes(c.Participant)
	bytes(string(c.Value))
	word(c.TargetSeq)
	if c.ApplyLockDelay {
		word(1) // only when set: every print of the rules before stays as it was
	}
	return max(h, 1)
}

type clientRecord struct {
	id       string
	lastUsed LogTime
	floor    uint64        // every seq <= floor has been forgotten
	results  []dedupeEntry // ascending seq
	prev     *clientRecord // LRU list, oldest first
	next     *clientRecord
}

type clientTable struct {
	byID       map[string]*clientRecord
	head, tail *clientRecord
	results    int // results kept across all clients, bounded by MaxDedupeResults
}

func newClientTable() clientTable { return clientTable{byID: make(map[string]*clientRecord)} }

func (t *clientTable) len() int { return len(t.byID) }

// lookup finds a stored result for (id, seq), the answer to a retry of
// the request whose requestPrint is asked (0: any request, for abandon
// and reads, which name a request by its seq alone). A stored result of
// another request is refused: the seq was used twice. It returns the
// client's record (nil when unknown) for record to reuse.
func (t *clientTable) lookup(id string, seq, asked uint64) (*clientRecord, *dedupeEntry, *Error) {
	rec := t.byID[id]
	if rec == nil {
		return nil, nil, nil
	}
	if i, ok := rec.find(seq); ok {
		e := &rec.results[i]
		if asked != 0 && e.request != 0 && e.request != asked {
			return rec, nil, errorf(CodeFailedPrecondition,
				"request_seq %d of client %q was already used for another request (another operation, object or argument): "+
					"a retry must repeat its request exactly; give a new request a new request_seq", seq, id)
		}
		return rec, e, nil
	}
	if seq <= rec.floor {
		return rec, nil, errorf(CodeFailedPrecondition,
			"request_seq %d of client %q was forgotten (results at or below %d are no longer kept): its outcome is unknown; read the status instead of retrying",
			seq, id, rec.floor)
	}
	return rec, nil, nil
}

func (r *clientRecord) find(seq uint64) (int, bool) {
	lo, hi := 0, len(r.results)
	for lo < hi {
		mid := (lo + hi) / 2
		if r.results[mid].seq < seq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < len(r.results) && r.results[lo].seq == seq
}

// admit says whether a new result of the client fits the limits, counting
// what the command's LowestPending lets go first. A refused command changes
// nothing, so the client can wait for answers and send it again.
func (t *clientTable) admit(rec *clientRecord, id string, low uint64, n int, l Limits) *Error {
	kept, dropped := 0, 0
	if rec != nil {
		kept = len(rec.results)
		if low > 0 {
			i, _ := rec.find(low)
			kept, dropped = len(rec.results)-i, i
		}
	}
	if low > 0 && kept+n > l.MaxPendingPerClient {
		return errorf(CodeResourceExhausted,
			"client %q has %d requests pending at or above lowest_pending_seq %d; at most %d are kept per client: wait for answers, or raise lowest_pending_seq past the requests no longer awaited",
			id, kept, low, l.MaxPendingPerClient)
	}
	if t.results-dropped+n > l.MaxDedupeResults {
		return errorf(CodeResourceExhausted,
			"the server keeps %d request results across all clients, its limit: wait for pending requests to be answered and retry",
			l.MaxDedupeResults)
	}
	return nil
}

// record stores the result of a newly applied command, applied by entry
// index, with its requestPrint (0 for an abandon's tombstone, which does
// not know the request it stands for), and lets go what the client no
// longer waits for.
func (t *clientTable) record(rec *clientRecord, id string, seq, low, index, asked uint64, r Result, now LogTime, l Limits) {
	if rec == nil {
		rec = &clientRecord{id: id}
		t.byID[id] = rec
		t.pushBack(rec)
		for len(t.byID) > l.MaxClients {
			t.forget(t.head)
		}
	} else {
		t.unlink(rec)
		t.pushBack(rec)
	}
	rec.lastUsed = now
	i, _ := rec.find(seq)
	rec.results = append(rec.results, dedupeEntry{})
	copy(rec.results[i+1:], rec.results[i:])
	rec.results[i] = dedupeEntry{seq: seq, index: index, request: asked, result: r}
	t.results++
	switch {
	case low > 0:
		t.dropBelow(rec, low)
	case len(rec.results) > l.DedupeWindow:
		// The oldest result leaves the window; seqs between it and the next
		// one that never arrived may still be applied, as before.
		rec.floor = rec.results[0].seq
		copy(rec.results, rec.results[1:])
		rec.results[len(rec.results)-1] = dedupeEntry{}
		rec.results = rec.results[:len(rec.results)-1]
		t.results--
	}
}

// dropBelow forgets the client's results below seq; a retry of one of them
// is refused from now on.
func (t *clientTable) dropBelow(rec *clientRecord, seq uint64) {
	i, _ := rec.find(seq)
	rec.floor = max(rec.floor, seq-1)
	if i == 0 {
		return
	}
	n := copy(rec.results, rec.results[i:])
	clear(rec.results[n:])
	rec.results = rec.results[:n]
	t.results -= i
}

// settle replaces a queued request's stored result with its final outcome.
// It touches only the result that still says "queued" for this waiter: if
// the client was forgotten and reused the seq for another request, that
// request's result stays its own.
func (t *clientTable) settle(id string, seq uint64, r Result) {
	if id == "" {
		return
	}
	if rec := t.byID[id]; rec != nil {
		if i, ok := rec.find(seq); ok {
			if old := &rec.results[i].result; old.Outcome == OutcomeQueued && old.Waiter == r.Waiter {
				*old = r
			}
		}
	}
}

// expire forgets clients idle for longer than the retention.
func (t *clientTable) expire(now LogTime, l Limits) {
	for t.head != nil && t.head.lastUsed+LogTime(l.DedupeRetentionMs) <= now {
		t.forget(t.head)
	}
}

func (t *clientTable) forget(rec *clientRecord) {
	t.unlink(rec)
	delete(t.byID, rec.id)
	t.results -= len(rec.results)
}

func (t *clientTable) pushBack(rec *clientRecord) {
	rec.prev, rec.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = rec
	} else {
		t.head = rec
	}
	t.tail = rec
}

func (t *clientTable) unlink(rec *clientRecord) {
	if rec.prev != nil {
		rec.prev.next = rec.next
	} else {
		t.head = rec.next
	}
	if rec.next != nil {
		rec.next.prev = rec.prev
	} else {
		t.tail = rec.prev
	}
	rec.prev, rec.next = nil, nil
}
