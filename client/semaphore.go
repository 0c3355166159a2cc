package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Semaphore is a named counting semaphore with weighted permits, held by a
// session. The first acquirer fixes its limit; a later acquire with another
// limit fails (failed_precondition). Waiters are served FIFO: a large
// request at the head is not overtaken by smaller ones behind it.
type Semaphore struct {
	s     *Session
	name  string
	limit int64

	mu      sync.Mutex
	token   uint64
	permits int64
}

// NewSemaphore returns the semaphore name with limit permits in all on
// session s.
func NewSemaphore(s *Session, name string, limit int64) *Semaphore {
	return &Semaphore{s: s, name: name, limit: limit}
}

// Acquire waits for n permits until granted, ctx ends (the wait is
// withdrawn) or the session is lost. One Semaphore holds one grant at a
// time: Release before acquiring again.
func (m *Semaphore) Acquire(ctx context.Context, n int64) error { return m.acquire(ctx, n, -1) }

// TryAcquire takes n permits if they are free now; ErrLocked otherwise.
func (m *Semaphore) TryAcquire(ctx context.Context, n int64) error { return m.acquire(ctx, n, 0) }

// AcquireWithin waits at most wait for n permits; ErrTimeout when it passes.
func (m *Semaphore) AcquireWithin(ctx context.Context, n int64, wait time.Duration) error {
	return m.acquire(ctx, n, max(wait.Milliseconds(), 1))
}

func (m *Semaphore) acquire(ctx context.Context, n, waitMs int64) error {
	req := &pb.AcquireSemaphoreRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, Owner: m.s.owner, WaitTimeoutMs: waitMs, Limit: m.limit, Permits: n}
	token, err := m.s.acquire(ctx, "acquire semaphore", pb.Kind_KIND_SEMAPHORE, m.name,
		func(ctx context.Context, e *endpoint) (grant, error) {
			res, err := e.sems.Acquire(ctx, connect.NewRequest(req))
			if err != nil {
				return grant{}, err
			}
			r := res.Msg
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}, m.releaseToken)
	if err != nil {
		return err
	}
	m.s.remember(pb.Kind_KIND_SEMAPHORE, m.name, token, true)
	m.mu.Lock()
	m.token, m.permits = token, n
	m.mu.Unlock()
	return nil
}

// Token is the fencing token of the current grant (0 when none).
func (m *Semaphore) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.token
}

// Release gives the permits back; ErrNotHeld when none are held.
func (m *Semaphore) Release(ctx context.Context) error {
	m.mu.Lock()
	token := m.token
	m.mu.Unlock()
	if token == 0 {
		return fmt.Errorf("release semaphore %q: %w", m.name, ErrNotHeld)
	}
	err := m.releaseToken(ctx, token)
	m.mu.Lock()
	if m.token == token {
		m.token, m.permits = 0, 0
	}
	m.mu.Unlock()
	m.s.remember(pb.Kind_KIND_SEMAPHORE, m.name, token, false)
	return err
}

func (m *Semaphore) releaseToken(ctx context.Context, token uint64) error {
	req := &pb.ReleaseSemaphoreRequest{Name: m.name, ClientId: m.s.c.clientID, RequestSeq: m.s.c.nextSeq(),
		SessionId: m.s.id, FencingToken: token}
	_, err := do(ctx, m.s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ReleaseSemaphoreResponse], error) {
		return e.sems.Release(ctx, connect.NewRequest(req))
	})
	return apiErr(fmt.Sprintf("release semaphore %q", m.name), err)
}
