package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
	s *Session

	mu    sync.Mutex
	token uint64
	gate  *gateHold
}

func (h *hold) set(token uint64, gate *gateHold) {
	h.mu.Lock()
	h.token, h.gate = token, gate
	h.mu.Unlock()
}

// current is the grant's token: 0 when nothing is held or the session is
// lost or closed (whatever it held is gone, or must be taken for gone).
func (h *hold) current() uint64 {
	if h.s == nil || h.s.Err() != nil || !h.s.leaseHeld() {
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.token
}

// forget drops the grant token (if still the current one) and lets the
// gate go.
func (h *hold) forget(token uint64) {
	h.mu.Lock()
	var gate *gateHold
	if h.token == token {
		h.token, gate, h.gate = 0, h.gate, nil
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
