package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// hold is what one Mutex, Semaphore, RWMutex or Election value holds: the
// token of its grant and its pass through the session's gate of the name.
//
// A release that failed (ctx ended, no endpoint answered) keeps both: the
// grant may well still be held on the servers, and forgetting its token
// would leave it held with no way to release it. They are dropped only
// when the servers confirm the release, say the grant is not held (it
// expired or was released already), or the session is gone.
type hold struct {
	s      *Session
	limits holdLimits

	mu    sync.Mutex
	token uint64
	gate  *gateHold
	// With WithMaxHold, when the grant must be taken for ended: the later
	// of two times that come before the servers end it (deadline). start
	// is when the acquire began (the grant cannot be older), grantedAt the
	// grant's log time (0: not said).
	start     time.Time
	grantedAt int64
	over      uint64 // the token Token answered 0 for, past its max hold
	// lostCh closes when the grant with token lostFor must be taken for
	// ended (lost): made by the first call of lost for that grant, with a
	// watcher of its own (watchLost).
	lostCh  chan struct{}
	lostFor uint64
}

// closedLost is the channel lost answers when nothing is held.
var closedLost = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// lost answers a channel that closes once the current grant must be taken
// for ended: released (Unlock, Release, Resign), its session lost, or its
// max hold passed, as Token starts answering 0. A closed one when
// nothing is held. A release that failed keeps it open: the grant may
// still be held.
func (h *hold) lost() <-chan struct{} {
	if h.s == nil {
		return closedLost
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	token := h.token
	if token == 0 || h.over == token || h.s.Err() != nil {
		return closedLost
	}
	if h.lostFor == token && h.lostCh != nil {
		return h.lostCh
	}
	ch := make(chan struct{})
	h.lostCh, h.lostFor = ch, token
	go h.watchLost(token, ch)
	return ch
}

// closeLostLocked closes the lost channel of token's grant, if one is
// open. Under h.mu.
func (h *hold) closeLostLocked(token uint64) {
	if h.lostFor == token && h.lostCh != nil {
		close(h.lostCh)
		h.lostCh = nil
	}
}

// watchLost closes ch when token's grant ends as the client counts it:
// the session's end, or its max-hold deadline, which each keepalive answer
// may move, later or earlier (Session.anchorChanged), so it is looked at
// again then. A release closes it itself (forget).
func (h *hold) watchLost(token uint64, ch chan struct{}) {
	for {
		var moved <-chan struct{}
		if h.limits.maxHold > 0 {
			moved = h.s.anchorChanged() // before the deadline is read: no move is missed
		}
		over := h.current() != token
		h.mu.Lock()
		if h.lostCh != ch {
			h.mu.Unlock()
			return // closed by a release
		}
		var wake <-chan time.Time
		var t *time.Timer
		if h.limits.maxHold > 0 && !over {
			until, _ := h.deadline()
			t = time.NewTimer(max(0, time.Until(until)))
			wake = t.C
		}
		h.mu.Unlock()
		if !over {
			select {
			case <-ch:
			case <-h.s.done.Done():
			case <-wake:
				if h.current() == token {
					continue // still held: the deadline moved later
				}
			case <-moved:
				t.Stop()
				continue // a keepalive answer moved the deadline: look again
			}
		}
		if t != nil {
			t.Stop()
		}
		h.mu.Lock()
		h.closeLostLocked(token)
		h.mu.Unlock()
		return
	}
}

// HoldOption bounds the grants of a Mutex, RWMutex or Semaphore on the
// servers: NewMutex, NewRWMutex and NewSemaphore take them.
type HoldOption func(*holdLimits)

type holdLimits struct {
	lockDelay time.Duration
	maxHold   time.Duration
	value     []byte
}

// WithValue attaches value to each grant (at most 1,024 bytes, the
// servers' bound): status answers show it beside the holder (Holder.Value),
// as a Consul lock's KV value or a Redis lock's, to say what the holder
// does or where to reach it. A re-acquire that answers a grant the session
// holds already keeps that grant's value.
func WithValue(value []byte) HoldOption {
	return func(l *holdLimits) { l.value = append([]byte(nil), value...) }
}

// WithMaxHold ends each grant d after the servers make it, even while the
// session lives (max_hold_ms): a holder that hangs without losing its
// session cannot keep the name for ever, as a Redis lock's expiry, but
// with a fencing token. From a time before the servers end the grant (the
// later of the acquire's start plus d, and the grant's log time plus d
// placed on this client's clock by a keepalive answer stamped after it,
// each less the lease guard: docs/client.md), Token answers 0: stop
// writing under it. Unlock then releases the grant if the servers
// still have it, or answers ErrNotHeld; call it either way, since the
// value keeps its turn on the name until then. A d under MinTTL is
// refused (ErrInvalid): the grant would be over almost at once; so is one
// above 24 hours, by the servers. 0 is no bound.
func WithMaxHold(d time.Duration) HoldOption { return func(l *holdLimits) { l.maxHold = d } }

// WithLockDelay keeps a mutex blocked for d after a grant of this value
// ends by failure (its session expired, or it outlived WithMaxHold)
// rather than by Unlock, so that a holder that lost its lease without
// knowing it stops before the next holder starts: Chubby's and Consul's
// lock-delay. Mutexes only: an RWMutex or Semaphore given it is refused
// (ErrInvalid). The servers refuse a d above 60 s.
func WithLockDelay(d time.Duration) HoldOption { return func(l *holdLimits) { l.lockDelay = d } }

func limitsOf(opts []HoldOption) holdLimits {
	var l holdLimits
	for _, o := range opts {
		o(&l)
	}
	return l
}

// check refuses limits the client can tell are wrong before any request;
// mutex says the grant is a mutex's, the only kind a lock delay is for.
func (l holdLimits) check(what opName, mutex bool) error {
	if l.lockDelay != 0 && !mutex {
		return fmt.Errorf("%s: %w: WithLockDelay is for a Mutex only (lock_delay_ms applies to mutexes only): leave it out", what, ErrInvalid)
	}
	if l.maxHold > 0 && l.maxHold < MinTTL {
		return fmt.Errorf("%s: %w: WithMaxHold(%v) is under %v: the grant would be over almost at once (the client ends it a lease guard early); give at least %v, or 0 for no bound",
			what, ErrInvalid, l.maxHold, MinTTL, MinTTL)
	}
	return nil
}

// msOf is d in whole milliseconds for the servers, at least 1 when d is
// positive (a sub-millisecond bound is not "none").
func msOf(d time.Duration) int64 {
	if d > 0 {
		return max(d.Milliseconds(), 1)
	}
	return d.Milliseconds()
}

// set records a grant made at log time grantedAtMs (0: not said) for an
// acquire that began at start.
func (h *hold) set(token uint64, gate *gateHold, start time.Time, grantedAtMs int64) {
	h.mu.Lock()
	if h.lostFor != token {
		h.closeLostLocked(h.lostFor) // an earlier grant's, if still open
	}
	h.token, h.gate, h.start, h.grantedAt = token, gate, start, grantedAtMs
	h.mu.Unlock()
}

// deadline is when a grant under WithMaxHold must be taken for ended: the
// later of two times that both come before the servers end it. One is its
// acquire's start plus the max hold, less the guard (the grant is no
// older than its acquire), which after a long wait is early or past. The
// other is its log time plus the max hold placed on this clock by a
// keepalive answer stamped after the grant (Session.onClock); until one
// comes, the first alone. Under h.mu.
func (h *hold) deadline() (until time.Time, placed bool) {
	until = h.start.Add(h.limits.maxHold - h.s.guard())
	if h.grantedAt > 0 {
		if at, ok := h.s.onClock(h.grantedAt+h.limits.maxHold.Milliseconds(), h.grantedAt); ok {
			placed = true
			if at.After(until) {
				until = at
			}
		}
	}
	return until, placed
}

// settleMaxHold, after a grant under WithMaxHold whose log time the
// servers said, asks the keepalive loop for a renewal at once: its answer,
// stamped after the grant, places the grant's own deadline, so that Token
// does not answer 0 by the acquire's start and then come back. When the
// acquire's start alone takes the grant for ended already (it waited
// about as long as the max hold, or longer), it waits for that answer, up
// to wait or ctx's end: Lock should not answer a grant whose Token is 0.
func (h *hold) settleMaxHold(ctx context.Context, wait time.Duration) {
	h.mu.Lock()
	grantedAt := h.grantedAt
	h.mu.Unlock()
	if h.limits.maxHold <= 0 || grantedAt == 0 {
		return
	}
	placed := func() bool { _, ok := h.s.onClock(grantedAt, grantedAt); return ok }
	if placed() {
		return
	}
	h.s.renewNow()
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		moved := h.s.anchorChanged() // before the check: no answer is missed
		if h.current() != 0 || placed() {
			return
		}
		select {
		case <-moved: // a keepalive answer came: look again
		case <-t.C:
			return
		case <-ctx.Done():
			return
		case <-h.s.done.Done():
			return
		}
	}
}

// current is the grant's token: 0 when nothing is held or the session is
// lost or closed (whatever it held is gone, or must be taken for gone), or
// once its max hold has passed.
func (h *hold) current() uint64 {
	if h.s == nil || h.s.Err() != nil || !h.s.leaseHeld() {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.token != 0 && h.limits.maxHold > 0 {
		if h.over == h.token {
			return 0
		}
		if until, placed := h.deadline(); !time.Now().Before(until) {
			if placed {
				h.over = h.token // over by the grant's own deadline: a later keepalive must not bring it back
			}
			return 0
		}
	}
	return h.token
}

// forget drops the grant token (if still the current one) and lets the
// gate go.
func (h *hold) forget(token uint64) {
	h.mu.Lock()
	var gate *gateHold
	if h.token == token {
		h.token, gate, h.gate = 0, h.gate, nil
		h.closeLostLocked(token)
	}
	h.mu.Unlock()
	gate.release()
}

// end releases the grant with send (one attempt of the release request with
// id), and forgets it when the servers confirm, or when it is gone anyway.
func (h *hold) end(ctx context.Context, what opName, send func(ctx context.Context, e *endpoint, id reqID, token uint64) error) error {
	h.mu.Lock()
	token := h.token
	h.mu.Unlock()
	if lost := h.s.lostErrFor(what); lost != nil {
		h.forget(token)
		return lost
	}
	if token == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotHeld)
	}
	err := h.s.sendEnding(ctx, what, func(ctx context.Context, e *endpoint, id reqID) error { return send(ctx, e, id, token) })
	if err == nil || errors.Is(err, ErrNotHeld) || errors.Is(err, ErrSessionLost) {
		h.forget(token)
	}
	return err
}

// send runs one unary mutating request of the session under a fresh id.
func (s *Session) send(ctx context.Context, what opName, f func(ctx context.Context, e *endpoint, id reqID) error) error {
	id, err := s.c.inflight.begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.sendAs(ctx, what, id, f)
}

// sendEnding is send for a request that ends a hold: it takes no in-flight
// slot (see inflight.go).
func (s *Session) sendEnding(ctx context.Context, what opName, f func(ctx context.Context, e *endpoint, id reqID) error) error {
	return s.sendAs(ctx, what, s.c.inflight.beginEnding(), f)
}

func (s *Session) sendAs(ctx context.Context, what opName, id reqID, f func(ctx context.Context, e *endpoint, id reqID) error) error {
	defer id.finish()
	var err error
	_, err = do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[struct{}], error) {
		if err := f(ctx, e, id); err != nil {
			return nil, err
		}
		return connect.NewResponse(&struct{}{}), nil
	})
	return apiErr(what, err)
}
