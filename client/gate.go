package client

import (
	"context"
	"fmt"
	"sync"

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

type gateKey struct {
	kind pb.Kind
	name string
}

// gate is a one-slot semaphore, counted by how many callers hold or wait
// for it, so that the session's map forgets names no one uses.
type gate struct {
	slot chan struct{}
	refs int
}

// gateHold is a pass through one gate; release is idempotent.
type gateHold struct {
	s    *Session
	key  gateKey
	g    *gate
	once sync.Once
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
		s.unref(key, g)
		return nil, fmt.Errorf("%s %q: %w (by another holder on this session)", op, name, ErrLocked)
	}
	select {
	case g.slot <- struct{}{}:
		return h, nil
	case <-ctx.Done():
		s.unref(key, g)
		return nil, fmt.Errorf("%s %q: %w", op, name, ctx.Err())
	case <-s.done.Done():
		s.unref(key, g)
		return nil, s.lostErrFor(opName{op, name})
	}
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
		h.s.unref(h.key, h.g)
	})
}
