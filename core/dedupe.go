package core

// Dedupe makes retries safe: a command carries (client_id, request_seq), and
// the machine keeps each client's most recent results. A client may have up
// to DedupeWindow requests in flight, applied in any order; a seq older than
// the window is refused rather than applied twice.
//
// Clients are forgotten after DedupeRetentionMs without a command, or, when
// more than MaxClients are known, least recently used first. Both orders come
// from log time and the log, so every replica forgets the same clients.

type dedupeEntry struct {
	seq    uint64
	result Result
}

type clientRecord struct {
	id       string
	lastUsed LogTime
	floor    uint64        // every seq <= floor has left the window
	results  []dedupeEntry // ascending seq, at most DedupeWindow
	prev     *clientRecord // LRU list, oldest first
	next     *clientRecord
}

type clientTable struct {
	byID       map[string]*clientRecord
	head, tail *clientRecord
}

func newClientTable() clientTable { return clientTable{byID: make(map[string]*clientRecord)} }

func (t *clientTable) len() int { return len(t.byID) }

// lookup finds a stored result for (id, seq). It returns the client's record
// (nil when unknown) for record to reuse.
func (t *clientTable) lookup(id string, seq uint64) (*clientRecord, *Result, *Error) {
	rec := t.byID[id]
	if rec == nil {
		return nil, nil, nil
	}
	if i, ok := rec.find(seq); ok {
		return rec, &rec.results[i].result, nil
	}
	if seq <= rec.floor {
		return rec, nil, errorf(CodeFailedPrecondition,
			"request_seq %d of client %q is older than the %d results kept for it: its outcome is unknown; read the status instead of retrying",
			seq, id, len(rec.results))
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

// record stores the result of a newly applied command.
func (t *clientTable) record(rec *clientRecord, id string, seq uint64, r Result, now LogTime, l Limits) {
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
	rec.results[i] = dedupeEntry{seq: seq, result: r}
	if len(rec.results) > l.DedupeWindow {
		rec.floor = rec.results[0].seq
		copy(rec.results, rec.results[1:])
		rec.results[len(rec.results)-1] = dedupeEntry{}
		rec.results = rec.results[:len(rec.results)-1]
	}
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
