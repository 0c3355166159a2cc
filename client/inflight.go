package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

// The server deduplicates a mutating request by (client_id, request_seq)
// and keeps, per client id, every result at or above the lowest seq the
// client says it still waits for (lowest_pending_seq), up to 16,384 of them
// (docs/api.md). Two consequences shape this file:
//
//   - The client must say, on every request, the lowest seq of its id it
//     still waits for. A lane tracks the seqs handed out and not yet
//     finished, so that lowest is exact.
//   - The server counts the results kept from that lowest seq upwards, not
//     the requests in flight: one Campaign blocked for an hour pins the
//     lowest seq, and every later request of the same id adds a result. So
//     when a lane's span (next seq − lowest pending) reaches laneSpan, new
//     requests go to a fresh lane: a new dedupe identity (the client id
//     with ".N" appended), numbered from 1. The old lane lives on for the
//     requests still pending in it (and their Abandon), and is dropped when
//     the last one finishes.
//
// Independently of lanes, the requests in flight on one Client are bounded
// by WithMaxInFlight (default 10,000): past it, a new request waits (ctx
// aware) for a slot instead of failing. Requests that end something (a
// release, resign, session close, and the Abandon of a cancelled call) take
// no slot: blocked acquires may hold every slot, and the release that
// would unblock them must not wait behind them.

// laneSpan is how far a lane's seqs may run ahead of its lowest pending one
// before new requests move to a fresh lane. Half the server's limit per
// client id (16,384), leaving room for the Abandons of the requests still
// pending in a lane that no longer takes new ones.
const laneSpan = 8192

// defaultMaxInFlight is the default bound of requests in flight per Client.
const defaultMaxInFlight = 10_000

// lane is one dedupe identity of a Client.
type lane struct {
	id      string
	next    uint64              // the next seq to hand out (from 1)
	low     uint64              // no seq below low is pending
	pending map[uint64]struct{} // handed out, not finished
}

// lowest is the lowest pending seq, or the next one when none is pending.
// Called with inflight.mu held.
func (l *lane) lowest() uint64 {
	for l.low < l.next {
		if _, ok := l.pending[l.low]; ok {
			break
		}
		l.low++
	}
	return l.low
}

// inflight hands out request ids and bounds the requests in flight.
type inflight struct {
	base  string        // the Client's id; lane n > 0 is base + "." + n
	slots chan struct{} // one token per request in flight

	mu     sync.Mutex
	cur    *lane
	lanes  int // lanes opened so far
	active map[*lane]struct{}
}

func newInflight(base string, max int) *inflight {
	f := &inflight{base: base, slots: make(chan struct{}, max), active: map[*lane]struct{}{}}
	f.cur = f.newLane()
	return f
}

func (f *inflight) newLane() *lane {
	id := f.base
	if f.lanes > 0 {
		id += "." + strconv.Itoa(f.lanes)
	}
	f.lanes++
	l := &lane{id: id, next: 1, low: 1, pending: map[uint64]struct{}{}}
	f.active[l] = struct{}{}
	return l
}

// reqID is the dedupe identity of one mutating request: retries of the
// request reuse it.
type reqID struct {
	f    *inflight
	lane *lane
	seq  uint64
	slot bool // holds one of f.slots
}

// ClientID is the id the request carries.
func (r reqID) ClientID() string { return r.lane.id }

// Low is the lane's lowest pending seq now: at most r.seq while r is
// pending. Sent as lowest_pending_seq on every attempt.
func (r reqID) Low() uint64 {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	return r.lane.lowest()
}

// begin hands out the id of a new request, waiting for a slot while
// WithMaxInFlight requests are in flight. The id stays pending (and holds
// the slot) until finish.
func (f *inflight) begin(ctx context.Context) (reqID, error) {
	return f.start(ctx, true)
}

// beginEnding hands out the id of a request that ends a hold or a session:
// it takes no slot (see the top of this file).
func (f *inflight) beginEnding() reqID {
	id, _ := f.start(context.Background(), false)
	return id
}

// errNoSlot begins the error of a request whose ctx ended while it waited
// for a slot.
var errNoSlot = errors.New("waiting for a request slot")

func (f *inflight) start(ctx context.Context, slot bool) (reqID, error) {
	if !slot {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.take(f.laneForNew(), false), nil
	}
	select {
	case f.slots <- struct{}{}:
	default:
		select {
		case f.slots <- struct{}{}:
		case <-ctx.Done():
			// Said: a bare "context deadline exceeded" read as the
			// servers' slowness, where the client's own bound held it.
			return reqID{}, fmt.Errorf("%w: all %d (WithMaxInFlight) are taken by this client's other requests: %w",
				errNoSlot, cap(f.slots), ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.take(f.laneForNew(), true), nil
}

// laneForNew is the lane a new request goes to: the current one, or a
// fresh one when the current one's span is used up. Called with mu held.
func (f *inflight) laneForNew() *lane {
	if f.cur.next-f.cur.lowest() >= laneSpan {
		f.cur = f.newLane()
	}
	return f.cur
}

// follow hands out the id of a request that settles an earlier one in the
// same lane (an Abandon): it must share that request's client id, and it
// uses the slot that request still holds, so it never waits for one.
func (f *inflight) follow(of reqID) reqID {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.take(of.lane, false)
}

func (f *inflight) take(l *lane, slot bool) reqID {
	seq := l.next
	l.next++
	l.pending[seq] = struct{}{}
	return reqID{f: f, lane: l, seq: seq, slot: slot}
}

// finish marks the request as no longer awaited: the server may forget its
// result, and a late copy of it is refused. Each id is finished once, by
// the call that began it.
func (r reqID) finish() {
	f := r.f
	f.mu.Lock()
	delete(r.lane.pending, r.seq)
	if len(r.lane.pending) == 0 && r.lane != f.cur {
		delete(f.active, r.lane) // a retired lane with nothing pending
	}
	f.mu.Unlock()
	if r.slot {
		<-f.slots
	}
}

// pendingCount is the number of requests pending across lanes (tests).
func (f *inflight) pendingCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for l := range f.active {
		n += len(l.pending)
	}
	return n
}
