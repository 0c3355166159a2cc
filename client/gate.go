package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The servers know sessions, not the values a program makes on them: two
// Mutex values of one name on one session are one holder to them, and the
// second Lock would be answered the first one's grant (a re-acquire). So
// the client keeps, per session and (kind, name), a local gate that one
// holder passes at a time, as sync.Mutex does: a Lock, semaphore Acquire,
// RLock or Campaign takes the gate before asking the servers, and lets it
// go when the hold ends (release, or loss of the session), or, for a call
// that failed, when its clean-up on the servers has finished.
//
// A try-once acquire (TryLock) that finds the gate held by such a
// clean-up waits for it, as long as one attempt may take: it is normally
// one round trip, and a TryLock right after a Lock that timed out, of a
// name free on the servers by then, must not answer ErrLocked "by another
// holder" that is only the withdrawal of its own session's earlier call.

type gateKey struct {
	kind pb.Kind
	name string
}

// gate is a one-slot semaphore, counted by how many callers hold or wait
// for it, so that the session's map forgets names no one uses.
type gate struct {
	slot chan struct{}
	refs int
	// withdrawal is the pass the background withdrawal of a failed call
	// holds (abandonLater), under the session's mu; nil otherwise.
	withdrawal *gateHold
}

// gateHold is a pass through one gate; release is idempotent.
type gateHold struct {
	s    *Session
	key  gateKey
	g    *gate
	once sync.Once
	// freed is closed when a withdrawal's pass is released (withdrawing),
	// under the session's mu; nil for other passes.
	freed chan struct{}
}

// enter passes the gate of (kind, name): at once, or, when wait, as soon as
// the holder before lets go. It fails with ErrLocked when !wait and the
// gate is taken, with ctx's error when ctx ends, and with ErrSessionLost
// when the session is lost while waiting.
func (s *Session) enter(ctx context.Context, op string, kind pb.Kind, name string, wait bool) (*gateHold, error) {
	key := gateKey{kind, name}
	s.mu.Lock()
	if s.gates == nil {
		s.gates = map[gateKey]*gate{}
	}
	g := s.gates[key]
	if g == nil {
		g = &gate{slot: make(chan struct{}, 1)}
		s.gates[key] = g
	}
	g.refs++
	s.mu.Unlock()
	h := &gateHold{s: s, key: key, g: g}
	select {
	case g.slot <- struct{}{}:
		return h, nil
	default:
	}
	if !wait {
		if err := s.enterOnce(ctx, h, op); err != nil {
			return nil, err
		}
		return h, nil
	}
	select {
	case g.slot <- struct{}{}:
		return h, nil
	case <-ctx.Done():
		s.unref(key, g)
		return nil, fmt.Errorf("%s: %w", opName{op, name}, ctx.Err())
	case <-s.done.Done():
		s.unref(key, g)
		return nil, s.lostErrFor(opName{op, name})
	}
}

// enterOnce is enter without waiting for another holder: the gate is
// taken, and h passes only when what holds it is the withdrawal of a
// failed call, which it waits for, at most an attempt timeout.
func (s *Session) enterOnce(ctx context.Context, h *gateHold, op string) error {
	g := h.g
	s.mu.Lock()
	var freed chan struct{} // nil unless a withdrawal holds the gate
	if w := g.withdrawal; w != nil {
		freed = w.freed
	}
	s.mu.Unlock()
	if freed != nil {
		t := time.NewTimer(s.c.opts.attemptTimeout)
		defer t.Stop()
		var err error
		select {
		case g.slot <- struct{}{}:
			return nil
		case <-freed: // then taken by another holder of the session, or free
		case <-t.C:
			err = fmt.Errorf("%s: %w (this session's earlier acquire of the name is still being withdrawn)", opName{op, h.key.name}, ErrLocked)
		case <-ctx.Done():
			err = fmt.Errorf("%s: %w", opName{op, h.key.name}, ctx.Err())
		case <-s.done.Done():
			err = s.lostErrFor(opName{op, h.key.name})
		}
		if err != nil {
			s.unref(h.key, g)
			return err
		}
	}
	select {
	case g.slot <- struct{}{}: // a withdrawal let go just now (release)
		return nil
	default:
	}
	s.unref(h.key, g)
	return fmt.Errorf("%s: %w (by this session already: this value or another on the same session holds or waits for it, and a session holds a name once)", opName{op, h.key.name}, ErrLocked)
}

// gateWithdrawing says whether the gate of (kind, name) is held by the
// withdrawal of a failed call, for the words of an error.
func (s *Session) gateWithdrawing(kind pb.Kind, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.gates[gateKey{kind, name}]
	return g != nil && g.withdrawal != nil
}

// withdrawing marks h as held by the withdrawal of a failed call
// (abandonLater) until it is released.
func (h *gateHold) withdrawing() {
	if h == nil {
		return
	}
	h.s.mu.Lock()
	h.freed = make(chan struct{})
	h.g.withdrawal = h
	h.s.mu.Unlock()
}

func (s *Session) unref(key gateKey, g *gate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.refs--
	if g.refs == 0 && s.gates[key] == g {
		delete(s.gates, key)
	}
}

// release lets the next holder through. Safe on nil and more than once.
func (h *gateHold) release() {
	if h == nil {
		return
	}
	h.once.Do(func() {
		<-h.g.slot
		// After the slot is free: enterOnce, which reads withdrawal after
		// failing to take the slot, tries the slot again when it is nil.
		h.s.mu.Lock()
		if h.g.withdrawal == h {
			h.g.withdrawal = nil
		}
		if h.freed != nil {
			close(h.freed)
		}
		h.s.mu.Unlock()
		h.s.unref(h.key, h.g)
	})
}
