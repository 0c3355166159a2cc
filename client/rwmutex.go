package client

import (
	"context"
	"fmt"
	"sync"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// RWMutex is a named read-write lock held by a session: many readers or one
// writer. It is FIFO with no writer starvation: a queued writer makes later
// readers wait behind it.
type RWMutex struct {
	s    *Session
	name string

	mu    sync.Mutex
	token uint64
	mode  string
}

// NewRWMutex returns the read-write lock name on session s.
func NewRWMutex(s *Session, name string) *RWMutex { return &RWMutex{s: s, name: name} }

// RLock waits for a read hold.
func (m *RWMutex) RLock(ctx context.Context) error { return m.acquire(ctx, "read", -1) }

// Lock waits for the write hold.
func (m *RWMutex) Lock(ctx context.Context) error { return m.acquire(ctx, "write", -1) }

// TryRLock takes a read hold if it fits now; ErrLocked otherwise.
func (m *RWMutex) TryRLock(ctx context.Context) error { return m.acquire(ctx, "read", 0) }

// TryLock takes the write hold if it is free now; ErrLocked otherwise.
func (m *RWMutex) TryLock(ctx context.Context) error { return m.acquire(ctx, "write", 0) }

func (m *RWMutex) acquire(ctx context.Context, mode string, waitMs int64) error {
	req := &pb.AcquireRWLockRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, Owner: m.s.owner, WaitTimeoutMs: waitMs, Mode: mode}
	token, err := m.s.acquire(ctx, mode+" lock", pb.Kind_KIND_RWLOCK, m.name,
		func(ctx context.Context, e *endpoint) (grant, error) {
			res, err := e.rw.Acquire(ctx, connect.NewRequest(req))
			if err != nil {
				return grant{}, err
			}
			r := res.Msg
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}, m.releaseToken)
	if err != nil {
		return err
	}
	m.s.remember(pb.Kind_KIND_RWLOCK, m.name, token, true)
	m.mu.Lock()
	m.token, m.mode = token, mode
	m.mu.Unlock()
	return nil
}

// Token is the fencing token of the current hold, read or write (0 when
// none).
func (m *RWMutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

// Unlock releases the current hold, read or write.
func (m *RWMutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if token == 0 {
		return fmt.Errorf("unlock rwlock %q: %w", m.name, ErrNotHeld)
	}
	err := m.releaseToken(ctx, token)
	m.mu.Lock()
	if m.token == token {
		m.token, m.mode = 0, ""
	}
	m.mu.Unlock()
	m.s.remember(pb.Kind_KIND_RWLOCK, m.name, token, false)
	return err
}

// RUnlock is Unlock, for symmetry with sync.RWMutex.
func (m *RWMutex) RUnlock(ctx context.Context) error { return m.Unlock(ctx) }

func (m *RWMutex) releaseToken(ctx context.Context, token uint64) error {
	req := &pb.ReleaseRWLockRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, FencingToken: token}
	_, err := do(ctx, m.s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ReleaseRWLockResponse], error) {
		return e.rw.Release(ctx, connect.NewRequest(req))
	})
	return apiErr(fmt.Sprintf("unlock rwlock %q", m.name), err)
}
