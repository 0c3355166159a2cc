package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Mutex is a named lock held by a session: one holder at a time, waiters
// served in FIFO order. Holding it is a belief that can become false when
// the session is lost (watch Session.Done); Token is what makes a protected
// write safe.
type Mutex struct {
	s    *Session
	name string

	mu    sync.Mutex
	token uint64
}

// NewMutex returns the mutex name on session s. Nothing is sent until Lock.
func NewMutex(s *Session, name string) *Mutex { return &Mutex{s: s, name: name} }

// Name is the mutex's name.
func (m *Mutex) Name() string { return m.name }

// Lock waits until the mutex is granted, ctx ends (the wait is withdrawn on
// the server), or the session is lost (ErrSessionLost).
func (m *Mutex) Lock(ctx context.Context) error { return m.lock(ctx, -1) }

// TryLock takes the mutex if it is free now; ErrLocked if someone holds it
// (or waiters are queued ahead).
func (m *Mutex) TryLock(ctx context.Context) error { return m.lock(ctx, 0) }

// LockWithin waits at most wait for the mutex; ErrTimeout when it passes.
func (m *Mutex) LockWithin(ctx context.Context, wait time.Duration) error {
	return m.lock(ctx, max(wait.Milliseconds(), 1))
}

func (m *Mutex) lock(ctx context.Context, waitMs int64) error {
	req := &pb.AcquireLockRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, Owner: m.s.owner, WaitTimeoutMs: waitMs}
	token, err := m.s.acquire(ctx, "lock", pb.Kind_KIND_MUTEX, m.name,
		func(ctx context.Context, e *endpoint) (grant, error) {
			res, err := e.locks.Acquire(ctx, connect.NewRequest(req))
			if err != nil {
				return grant{}, err
			}
			r := res.Msg
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}, m.releaseToken)
	if err != nil {
		return err
	}
	m.s.remember(pb.Kind_KIND_MUTEX, m.name, token, true)
	m.mu.Lock()
	m.token = token
	m.mu.Unlock()
	return nil
}

// Token is the fencing token of the current grant (0 when not locked). Send
// it with every write the lock protects; see Fence.
func (m *Mutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

// Unlock releases the grant. ErrNotHeld when this Mutex holds nothing, or
// the server no longer has the grant (it expired: someone else may hold the
// mutex now).
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if token == 0 {
		return fmt.Errorf("unlock %q: %w", m.name, ErrNotHeld)
	}
	err := m.releaseToken(ctx, token)
	m.mu.Lock()
	if m.token == token {
		m.token = 0
	}
	m.mu.Unlock()
	m.s.remember(pb.Kind_KIND_MUTEX, m.name, token, false)
	return err
}

func (m *Mutex) releaseToken(ctx context.Context, token uint64) error {
	req := &pb.ReleaseLockRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, FencingToken: token}
	_, err := do(ctx, m.s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ReleaseLockResponse], error) {
		return e.locks.Release(ctx, connect.NewRequest(req))
	})
	return apiErr(fmt.Sprintf("unlock %q", m.name), err)
}
