package runtime

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
)

// watchHub fans the effects of applied entries out to Watch streams, and
// keeps the most recent ones in a bounded ring so that a stream can resume
// from an index (after a reconnect) without a gap.
//
// The ring holds whole entries: when it drops the oldest event, it drops
// every other event of that entry too, so "every event with Index >= floor
// is in the ring" stays exact. A subscriber receives an entry's matching
// events all at once or not at all: when its channel has no room for them,
// the stream is closed rather than given a gap, and the consumer resumes
// from the last Index it saw plus one.
type watchHub struct {
	mu        sync.Mutex
	ring      []Event // circular
	head, n   int
	floor     uint64 // every event with Index >= floor is in the ring (0: none applied in this process yet)
	lastIndex uint64 // the last entry published
	subs      map[*subscriber]struct{}
	gauge     prometheus.Gauge
	shard     uint64 // stamped on every event
	closed    bool
	// ends are the session-end subscriptions (SessionEnded), by session.
	ends map[core.SessionID]map[*sessionEnd]struct{}
	// grants are the grant-end subscriptions (GrantsEnded), by session.
	grants map[core.SessionID]map[*grantEnds]struct{}
	// dropped counts the grant ends a full subscription missed (nil: not
	// counted).
	dropped prometheus.Counter
}

// sessionEnd is one SessionEnded subscription, registered in every shard's
// hub: the first shard to expire the session closes it (a session lost in
// one shard is lost everywhere, docs/design.md).
type sessionEnd struct {
	once sync.Once
	ch   chan core.Reason // buffered: one reason, then closed
}

func newSessionEnd() *sessionEnd { return &sessionEnd{ch: make(chan core.Reason, 1)} }

func (e *sessionEnd) end(why core.Reason) {
	e.once.Do(func() {
		e.ch <- why
		close(e.ch)
	})
}

// GrantEnd is a grant of a session that ended while the session lives on
// (GrantsEnded): released by a request (its own client's or any other
// caller's that named its token), its max hold passed, an abandoned
// acquire's grant withdrawn, a set barrier removed.
type GrantEnd struct {
	Shard   uint64 // the shard whose entry ended it
	Index   uint64 // that entry
	Kind    core.Kind
	Name    string
	Session core.SessionID
	Token   core.FencingToken
	Reason  core.Reason // core.ReasonReleased, core.ReasonMaxHold
}

// GrantEndOf says whether ef ends a grant while its session lives on, and
// which: a hold that ends with its session (ReasonSessionExpired,
// ReasonSessionClosed) is not one, since the session's end says it.
func GrantEndOf(ef *core.Effect) (GrantEnd, bool) {
	if ef.Kind != core.EffectReleased || ef.Reason == core.ReasonSessionExpired || ef.Reason == core.ReasonSessionClosed {
		return GrantEnd{}, false
	}
	return GrantEnd{Kind: ef.Object, Name: ef.Name, Session: ef.Session, Token: ef.Token, Reason: ef.Reason}, true
}

// grantEndBuffer bounds what one GrantsEnded subscription holds unread:
// more grants of one session ending at once (in one entry, or while its
// reader is held up by a slow stream) than fit are not delivered.
const grantEndBuffer = 16

// grantEnds is one GrantsEnded subscription, registered in every shard's
// hub, each of which sends it the ends of the session's grants there. The
// hubs never wait on it: an end that finds it full is dropped (and
// counted), and the channel is never closed (several hubs send on it).
type grantEnds struct {
	ch chan GrantEnd
}

type subscriber struct {
	prefix string
	from   uint64 // events of earlier entries are not sent
	ch     chan Event
	done   chan struct{} // closed with ch
	marked uint64        // the Index of the last progress marker sent
}

func (s *subscriber) wants(ev *Event) bool {
	return ev.Index >= s.from && strings.HasPrefix(ev.Effect.Name, s.prefix)
}

// Sizes of the ring and of each stream's buffer.
const (
	watchRingEvents   = 8192
	watchStreamBuffer = 1024
)

func newWatchHub(gauge prometheus.Gauge, shard uint64) *watchHub {
	return &watchHub{ring: make([]Event, watchRingEvents), subs: map[*subscriber]struct{}{}, gauge: gauge, shard: shard,
		ends: map[core.SessionID]map[*sessionEnd]struct{}{}, grants: map[core.SessionID]map[*grantEnds]struct{}{}}
}

// publish records the effects of one applied entry. out is reused by the
// machine afterwards, so everything is copied.
func (h *watchHub) publish(out *core.Output) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.floor == 0 {
		// No snapshot was restored in this process (reset sets the floor),
		// so it applied the log from index 1, and the entries before this
		// one, membership changes that core never sees, carried no events:
		// a watch from index 1 misses nothing.
		h.floor = 1
	}
	h.lastIndex = out.Index
	if len(out.Effects) == 0 {
		return
	}
	if len(h.grants) > 0 {
		// Before the session ends below, so that a reader sees a grant
		// released earlier in the entry before the session's end.
		for i := range out.Effects {
			ef := &out.Effects[i]
			subs := h.grants[ef.Session]
			if len(subs) == 0 {
				continue
			}
			g, ok := GrantEndOf(ef)
			if !ok {
				continue
			}
			g.Shard, g.Index = h.shard, out.Index
			for e := range subs {
				select {
				case e.ch <- g:
				default:
					// Its reader is behind (a stream that does not
					// drain): the apply path never waits for it. The
					// client then learns of the end as it did before
					// the push: a release answers not held, a max hold
					// by its own count, a session loss by its push.
					if h.dropped != nil {
						h.dropped.Inc()
					}
				}
			}
		}
	}
	if len(h.ends) > 0 {
		for i := range out.Effects {
			if ef := &out.Effects[i]; ef.Kind == core.EffectSessionExpired || ef.Kind == core.EffectSessionClosed {
				for e := range h.ends[ef.Session] {
					e.end(ef.Reason)
				}
				delete(h.ends, ef.Session)
			}
		}
	}
	events := make([]Event, len(out.Effects))
	for i, ef := range out.Effects {
		ef.Value = bytes.Clone(ef.Value)
		events[i] = Event{Shard: h.shard, Index: out.Index, Time: out.Time, Effect: ef}
	}
	for _, ev := range events {
		h.push(ev)
	}
	for s := range h.subs {
		h.deliver(s, events)
	}
}

func (h *watchHub) push(ev Event) {
	if h.n == len(h.ring) {
		h.dropOldestEntry()
	}
	h.ring[(h.head+h.n)%len(h.ring)] = ev
	h.n++
}

func (h *watchHub) dropOldestEntry() {
	idx := h.ring[h.head].Index
	for h.n > 0 && h.ring[h.head].Index == idx {
		h.ring[h.head] = Event{}
		h.head = (h.head + 1) % len(h.ring)
		h.n--
	}
	h.floor = idx + 1
}

// deliver sends one entry's matching events to s, or closes s when they do
// not fit. The hub is the only sender, under mu, so len(ch) only shrinks
// between the check and the sends.
func (h *watchHub) deliver(s *subscriber, events []Event) {
	k := 0
	for i := range events {
		if s.wants(&events[i]) {
			k++
		}
	}
	if k == 0 {
		return
	}
	if len(s.ch)+k > cap(s.ch) {
		h.drop(s)
		return
	}
	for i := range events {
		if s.wants(&events[i]) {
			k--
			ev := events[i]
			ev.EntryEnd = k == 0
			s.ch <- ev
		}
	}
}

// mark answers a progress request of s: a marker saying that every event
// of the entries up to the last one published that s wants is already in
// its channel (the hub delivers under mu, whole entries at a time, so a
// marker sent under mu never falls inside an entry). Entries before s.from
// count as scanned: s wants none of them. It sends nothing when the marker
// would repeat the last one or when the channel is full (then events are
// on their way, and a marker is only ever a hint to send less often).
func (h *watchHub) mark(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	idx := h.lastIndex
	if s.from > 0 {
		idx = max(idx, s.from-1)
	}
	if idx == 0 || idx <= s.marked || len(s.ch) >= cap(s.ch) {
		return
	}
	s.marked = idx
	s.ch <- Event{Shard: h.shard, Index: idx, EntryEnd: true, Progress: true}
}

func (h *watchHub) drop(s *subscriber) {
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
		close(s.done)
		h.gauge.Dec()
	}
}

// reset follows a snapshot restore: the entries it skipped produced events
// nobody saw, so open streams end (they resume and get ErrCompacted or the
// events after the snapshot) and the ring starts over.
func (h *watchHub) reset(index uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		h.drop(s)
	}
	clear(h.ring)
	h.head, h.n = 0, 0
	h.floor, h.lastIndex = index+1, index
}

// subscribe opens a stream of the events of names under prefix from
// fromIndex on (0: from the next entry). Each receive from progress (nil:
// never) asks for a progress marker (see mark).
func (h *watchHub) subscribe(ctx context.Context, prefix string, fromIndex uint64, progress <-chan struct{}) (<-chan Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrShuttingDown
	}
	var replay []Event
	if fromIndex != 0 && fromIndex <= h.lastIndex {
		if h.floor == 0 || fromIndex < h.floor {
			return nil, fmt.Errorf("%w: asked for %d, this node keeps events from index %d on", ErrCompacted, fromIndex, h.floor)
		}
		for i := range h.n {
			ev := h.ring[(h.head+i)%len(h.ring)]
			if ev.Index >= fromIndex && strings.HasPrefix(ev.Effect.Name, prefix) {
				replay = append(replay, ev)
			}
		}
		// The ring holds whole entries, so the last replayed event of each
		// index ends its entry.
		for i := range replay {
			replay[i].EntryEnd = i+1 == len(replay) || replay[i+1].Index != replay[i].Index
		}
	}
	s := &subscriber{prefix: prefix, from: fromIndex, ch: make(chan Event, watchStreamBuffer+len(replay)),
		done: make(chan struct{})}
	for _, ev := range replay {
		s.ch <- ev
	}
	h.subs[s] = struct{}{}
	h.gauge.Inc()
	go func() {
		for {
			select {
			case <-ctx.Done():
				h.mu.Lock()
				h.drop(s)
				h.mu.Unlock()
				return
			case <-s.done:
				return
			case <-progress:
				h.mark(s)
			}
		}
	}()
	return s.ch, nil
}

func (h *watchHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.drop(s)
	}
}

// watchEnd registers e to be ended when this shard expires session id.
func (h *watchHub) watchEnd(id core.SessionID, e *sessionEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.ends[id]
	if m == nil {
		m = map[*sessionEnd]struct{}{}
		h.ends[id] = m
	}
	m[e] = struct{}{}
}

// unwatchEnd drops e.
func (h *watchHub) unwatchEnd(id core.SessionID, e *sessionEnd) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.ends[id], e)
	if len(h.ends[id]) == 0 {
		delete(h.ends, id)
	}
}

// watchGrants registers e to be sent the ends of session id's grants in
// this shard.
func (h *watchHub) watchGrants(id core.SessionID, e *grantEnds) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.grants[id]
	if m == nil {
		m = map[*grantEnds]struct{}{}
		h.grants[id] = m
	}
	m[e] = struct{}{}
}

// unwatchGrants drops e.
func (h *watchHub) unwatchGrants(id core.SessionID, e *grantEnds) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.grants[id], e)
	if len(h.grants[id]) == 0 {
		delete(h.grants, id)
	}
}
