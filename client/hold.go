package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
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
	kind   pb.Kind
	name   string
	limits holdLimits

	mu    sync.Mutex
	token uint64
	gate  *gateHold
	// For a grant with a max hold, when it must be taken for ended: the
	// latest of the times that come before the servers end it (deadline).
	// start is when the acquire began (a grant of a session made by
	// NewSession cannot be older), grantedAt the grant's log time and
	// maxHoldUntil its max-hold end in log time, as the servers answered
	// them (0: not said; maxHoldUntil 0 from servers that say it: none).
	start        time.Time
	grantedAt    int64
	maxHoldUntil int64
	answered     time.Time // when the acquire's answer came (set)
	over         uint64    // the token Token answered 0 for, past its max hold
	// lostCh closes when the grant with token lostFor must be taken for
	// ended (lost): made by the first call of lost for that grant, with a
	// watcher of its own (watchLost).
	lostCh  chan struct{}
	lostFor uint64
	// releasing is the token of the last grant this value sent a release
	// of: a pushed release of it is taken for that one, not another
	// caller's. endErr is why the last grant ended, when the servers
	// pushed its end while the session lived and it was not this value's
	// own release (lostErr); set clears it.
	releasing uint64
	endErr    error
}

// closedLost is the channel lost answers when nothing is held.
var closedLost = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// lost answers a channel that closes once the current grant must be taken
// for ended: released (Unlock, Release, Resign, or another caller's
// release naming its token, pushed by the servers), its session lost, or
// its max hold passed, as Token starts answering 0. A closed one when
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
		h.mu.Lock()
		bounded := h.boundedLocked()
		h.mu.Unlock()
		var moved <-chan struct{}
		if bounded {
			moved = h.s.anchorChanged() // before the deadline is read: no move is missed
		}
		over := h.current() != token
		h.mu.Lock()
		if h.lostCh != ch {
			h.mu.Unlock()
			return // closed by a release
		}
		// A resumed session's grant has no deadline until a keepalive
		// answer places its own (hold.deadline): Token answers 0 until
		// then, and Lost waits for that answer rather than close.
		unplaced := false
		if bounded && h.s.resumed && h.grantedAt > 0 && h.token == token && h.over != token {
			_, placed := h.deadline()
			unplaced = !placed && h.s.Err() == nil && h.s.leaseHeld()
		}
		if unplaced {
			over = false
		}
		var wake <-chan time.Time
		var t *time.Timer
		if bounded && !over && !unplaced {
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
				if t != nil {
					t.Stop()
				}
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
// above 24 hours, by the servers. 0 is no bound. A re-acquire answered a
// grant the session held already (a session taken over by
// Client.ResumeSession) is counted by that grant's own max hold, as the
// servers answer it (max_hold_until_ms), with this option or without,
// and only from its log time: Token answers 0 until a keepalive answer
// places it, which Lock waits for (at most an attempt timeout).
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

// set records the grant an acquire that began at start was answered: made
// at log time g.grantedAt, its max hold ending at g.maxHoldUntil (0: not
// said). When the servers pushed the grant's end before its answer came
// (another caller released it at once, naming its token), the grant is
// ended here as the push would have ended it, and set answers why: the
// acquire then fails with it, rather than answer a grant already gone.
func (h *hold) set(g grant, gate *gateHold, start time.Time) error {
	h.mu.Lock()
	if h.lostFor != g.token {
		h.closeLostLocked(h.lostFor) // an earlier grant's, if still open
	}
	h.token, h.gate, h.start, h.grantedAt, h.maxHoldUntil = g.token, gate, start, g.grantedAt, g.maxHoldUntil
	h.answered = time.Now()
	h.endErr = nil
	h.mu.Unlock()
	// After the token is set: a push that finds h listed finds its token.
	if early := h.s.holding(h, g.token); early != nil {
		h.endedOnServers(g.token, early)
		return early.err
	}
	return nil
}

// boundedLocked says whether the grant has a max hold to count: the one
// the servers answered (max_hold_until_ms), whatever this value asked for,
// since a session that held the name already is answered that grant; or,
// from servers that do not say it, the one this value asked for
// (WithMaxHold). Under h.mu.
func (h *hold) boundedLocked() bool { return h.maxHoldUntil > 0 || h.limits.maxHold > 0 }

// deadline is when a grant with a max hold must be taken for ended: the
// latest of the times that each come before the servers end it, placed
// saying whether one other than the acquire's start counts.
//   - The acquire's start plus the max hold this value asked for, less
//     the guard, which after a long wait is early or past. It assumes the
//     grant is no older than its acquire, which holds on a session made
//     by NewSession (the session's gate lets one acquire of a name at a
//     time, and a withdrawn one's grant is released before the next
//     passes), and not on one taken over by ResumeSession: a re-acquire
//     there may be answered a grant the session held before (made by
//     another process, with another max hold), or one a wait left queued
//     by that process was granted meanwhile.
//   - On a session made by NewSession, the grant's log time plus that max
//     hold, placed on this clock by a keepalive answer stamped at or after
//     the grant (Session.onClock).
//   - The grant's own end as the acquire's answer said it
//     (max_hold_until_ms), placed by the answer to a keepalive sent after
//     that answer (Session.onClockAfter); from servers that do not say it,
//     on a resumed session, the grant's log time plus WithMaxHold.
//
// A resumed session counts only the last: until a keepalive answer places
// it, it has no deadline but now, and Token answers 0. Under h.mu.
func (h *hold) deadline() (until time.Time, placed bool) {
	later := func(at time.Time, ok bool) {
		if ok {
			placed = true
			if at.After(until) {
				until = at
			}
		}
	}
	if !h.s.resumed && h.limits.maxHold > 0 {
		// The acquire's start plus the max hold it asked for: never
		// max_hold_until_ms - acquired_at_ms, which grows by the jump of
		// every leader change since the grant (core moves deadlines by the
		// jump, not the grant's time), and a new leader's clock ahead is
		// not time that passed here.
		until = h.start.Add(h.limits.maxHold - h.s.guard())
		if h.grantedAt > 0 {
			later(h.s.onClock(h.grantedAt+h.limits.maxHold.Milliseconds(), h.grantedAt))
		}
	}
	switch {
	case h.maxHoldUntil > 0:
		// As read when the acquire was answered: placed only by an answer
		// to a request sent after that, stamped after every jump it
		// carries (a later jump moves the servers' end later still).
		later(h.s.onClockAfter(h.maxHoldUntil, h.answered))
	case h.s.resumed && h.grantedAt > 0 && h.limits.maxHold > 0:
		// From servers that do not say the grant's own bound: the one
		// this value asked for, from the grant's log time.
		later(h.s.onClock(h.grantedAt+h.limits.maxHold.Milliseconds(), h.grantedAt))
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
	grantedAt, bounded := h.grantedAt, h.boundedLocked()
	h.mu.Unlock()
	if !bounded || grantedAt == 0 {
		return
	}
	placed := func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		_, ok := h.deadline()
		return ok
	}
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
	if h.token != 0 && h.boundedLocked() {
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
	dropped := h.token == token && token != 0
	if dropped {
		h.token, gate, h.gate = 0, h.gate, nil
		h.closeLostLocked(token)
	}
	h.mu.Unlock()
	if dropped {
		h.s.unlistHolding(h, token)
	}
	gate.release()
}

// goneWithSession forgets the grant token, which ended with its session
// (lost, closed, or orphaned: Session.Orphan), not by this value's own
// release: LostErr goes on answering the session's Err (why, a release
// that found the session gone, when the session has none yet). Forgotten
// plainly, as a release's, an Unlock (a deferred one) after Orphan or a
// loss turned LostErr to nil, read as the holder's own clean release.
func (h *hold) goneWithSession(token uint64, why error) {
	if token != 0 {
		if err := h.s.Err(); err != nil {
			why = err
		}
		h.mu.Lock()
		if h.token == token {
			h.endErr = why
		}
		h.mu.Unlock()
	}
	h.forget(token)
}

// end releases the grant with send (one attempt of the release request with
// id), and forgets it when the servers confirm, or when it is gone anyway.
func (h *hold) end(ctx context.Context, what opName, send func(ctx context.Context, e *endpoint, id reqID, token uint64) error) error {
	h.mu.Lock()
	token := h.token
	h.mu.Unlock()
	if lost := h.s.lostErrFor(what); lost != nil {
		h.goneWithSession(token, lost)
		return lost
	}
	if token == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotHeld)
	}
	return h.endToken(ctx, what, send, token)
}

// endToken sends one release of the grant token, and settles what it
// learnt: a release the servers answered (released, not held, the session
// gone) ends the grant here; any other end leaves its outcome unknown and
// is recorded for Orphan to send again, for that token only. The call
// counts as in flight (holdOp) until that is recorded, so that an Orphan
// waiting for the session's requests never wakes between the answer and
// the record.
func (h *hold) endToken(ctx context.Context, what opName, send func(ctx context.Context, e *endpoint, id reqID, token uint64) error, token uint64) error {
	h.s.holdOp()
	defer h.s.endOp()
	h.mu.Lock()
	h.releasing = token // before it is sent: its pushed end may come before its answer
	h.mu.Unlock()
	err := h.s.sendEnding(ctx, what, func(ctx context.Context, e *endpoint, id reqID) error { return send(ctx, e, id, token) })
	switch {
	case errors.Is(err, errOrphaning):
		// Not sent: Orphan began. The grant stays, and so does a release
		// of unknown outcome Orphan is to send again.
	case errors.Is(err, ErrSessionLost):
		h.goneWithSession(token, err)
		h.s.settleRelease(h, token)
	case err == nil || errors.Is(err, ErrNotHeld):
		h.forget(token)
		h.s.settleRelease(h, token)
	default:
		// Its outcome is unknown. Even a refusal says so: it answers the
		// copy that reached the servers, and a copy sent before it (an
		// attempt given up as stuck, sent again under the same seq) may
		// still land, since a refused request leaves no result behind to
		// answer that copy with. Orphan sends it again, until the servers
		// answer whether the grant is held, before it hands the session
		// over.
		h.s.unsettledRelease(h, token, func(ctx context.Context) error { return h.endToken(ctx, what, send, token) })
	}
	return err
}

// pendingRelease names a release of unknown outcome in Session.unsettled:
// the hold and the grant, so that a stale record of an earlier grant of
// the hold never stands in for a later one's.
type pendingRelease struct {
	h     *hold
	token uint64
}

// unsettledRelease records that a release of h's grant token failed with
// its outcome unknown, unless that grant was settled meanwhile (another
// release of it was answered, which forgot it). A record that races such
// an answer costs one more release of a grant no longer held, answered
// ErrNotHeld.
func (s *Session) unsettledRelease(h *hold, token uint64, again func(context.Context) error) {
	h.mu.Lock()
	current := h.token == token
	h.mu.Unlock()
	if !current {
		return
	}
	s.mu.Lock()
	if s.unsettled == nil {
		s.unsettled = map[pendingRelease]func(context.Context) error{}
	}
	s.unsettled[pendingRelease{h, token}] = again
	s.mu.Unlock()
}

// settleRelease records that h's grant token has no release of unknown
// outcome.
func (s *Session) settleRelease(h *hold, token uint64) {
	s.mu.Lock()
	delete(s.unsettled, pendingRelease{h, token})
	s.mu.Unlock()
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
	// Orphan's own releases (settleReleases) pass: beginOp would refuse
	// them, and endToken counts them in flight already.
	if ctx.Value(orphanSettling{}) == nil {
		end, err := s.beginOp(what)
		if err != nil {
			return err
		}
		defer end()
	}
	_, err := do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[struct{}], error) {
		if err := f(ctx, e, id); err != nil {
			return nil, err
		}
		return connect.NewResponse(&struct{}{}), nil
	})
	return apiErr(what, err)
}
