package client

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Semaphore is a named counting semaphore with weighted permits, held by a
// session. The first acquirer fixes its limit; a later acquire with another
// limit fails (failed_precondition). Waiters are served FIFO: a large
// request at the head is not overtaken by smaller ones behind it.
//
// A session holds at most one grant of a semaphore (the servers answer a
// second acquire of the same session with the first grant), so two
// Semaphore values of one name on one session take turns like a
// sync.Mutex: the second Acquire waits until the first releases. Take
// permits for several holders at once with one session each.
type Semaphore struct {
	name  string
	limit int64
	hold
}

// NewSemaphore returns the semaphore name with limit permits in all on
// session s. The first acquirer of a name fixes its limit; a later
// acquirer gives the same limit (ErrPrecondition otherwise, naming it), or
// 0 to take whatever limit the name has (on a name nobody holds, 0 is
// refused: "limit is required"). opts bound its grants (WithMaxHold;
// WithLockDelay is for mutexes only).
func NewSemaphore(s *Session, name string, limit int64, opts ...HoldOption) *Semaphore {
	return &Semaphore{name: name, limit: limit, hold: hold{s: s, kind: pb.Kind_KIND_SEMAPHORE, name: name, limits: limitsOf(opts)}}
}

// Acquire waits for n permits until granted, ctx ends (the request is
// withdrawn, see Mutex.Lock) or the session is lost. One Semaphore holds
// one grant at a time: Release before acquiring again. n is at least 1
// (and at most the limit): Acquire, TryAcquire and AcquireWithin refuse a
// smaller n without asking the servers.
func (m *Semaphore) Acquire(ctx context.Context, n int64) error { return m.acquire(ctx, n, -1) }

// TryAcquire takes n permits if they are free now; ErrLocked otherwise.
func (m *Semaphore) TryAcquire(ctx context.Context, n int64) error { return m.acquire(ctx, n, 0) }

// AcquireWithin waits at most wait for n permits; ErrTimeout when it
// passes. A wait of 0 or less tries once. The servers cap a wait at
// locks.max_wait_time_seconds (60 s by default): a longer wait answers
// ErrTimeout at the cap; to wait longer, call Acquire with a ctx deadline,
// as Mutex.LockWithin says.
func (m *Semaphore) AcquireWithin(ctx context.Context, n int64, wait time.Duration) error {
	return m.acquire(ctx, n, waitMsOf(wait))
}

func (m *Semaphore) acquire(ctx context.Context, n, waitMs int64) error {
	if n < 1 {
		// The servers read 0 as 1: a TryAcquire(ctx, 0) took a permit.
		return fmt.Errorf("%s: %w: %d permits: ask for at least 1 (and at most the limit)", opName{"acquire semaphore", m.name}, ErrInvalid, n)
	}
	s, start := m.s, time.Now()
	if err := m.limits.check(opName{"acquire semaphore", m.name}, false); err != nil {
		return err
	}
	g, gate, err := s.acquire(ctx, acquireSpec{op: "acquire semaphore", kind: pb.Kind_KIND_SEMAPHORE, name: m.name, waitMs: waitMs, gated: true,
		send: func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.AcquireSemaphoreRequest{Name: m.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, Owner: s.owner, WaitTimeoutMs: waitMs,
				Limit: m.limit, Permits: n, MaxHoldMs: msOf(m.limits.maxHold), LockDelayMs: msOf(m.limits.lockDelay), Value: m.limits.value}
			r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_AcquireSemaphore{AcquireSemaphore: req}},
				(*pb.StreamResponse).GetAcquireSemaphore, func(ctx context.Context) (*connect.Response[pb.AcquireSemaphoreResponse], error) {
					return e.sems.Acquire(ctx, connect.NewRequest(req))
				})
			if err != nil {
				return grant{}, err
			}
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId, grantedAt: r.AcquiredAtMs, maxHoldUntil: r.MaxHoldUntilMs}, nil
		}})
	if err != nil {
		return err
	}
	if err := m.set(g, gate, start); err != nil {
		return err
	}
	m.settleMaxHold(ctx, s.c.opts.attemptTimeout)
	return nil
}

// Token is the fencing token of the current grant (0 when none, and after
// the session is lost or closed). Holders of a semaphore hold at once, an
// older holder's token still valid: fence it with Client.CheckFence, not
// Fence (see there).
func (m *Semaphore) Token() uint64 { return m.current() }

// Release gives the permits back; ErrNotHeld when none are held. A failed
// Release keeps the grant, as Mutex.Unlock does.
func (m *Semaphore) Release(ctx context.Context) error {
	s := m.s
	return m.end(ctx, opName{"release semaphore", m.name}, func(ctx context.Context, e *endpoint, id reqID, token uint64) error {
		req := &pb.ReleaseSemaphoreRequest{Name: m.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, FencingToken: token}
		_, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_ReleaseSemaphore{ReleaseSemaphore: req}},
			(*pb.StreamResponse).GetReleaseSemaphore, func(ctx context.Context) (*connect.Response[pb.ReleaseSemaphoreResponse], error) {
				return e.sems.Release(ctx, connect.NewRequest(req))
			})
		return err
	})
}

// Lost returns a channel that closes once the permits taken by the last
// successful call must be taken for lost: released (Release), its session
// lost, or its WithMaxHold passed, as Token starts answering 0 (a
// goroutine closes it, so a read of Token may see 0 a moment before).
// Session.Done alone misses a max hold, which ends a grant while the
// session lives. Another caller's release of the grant by its token
// (a release by owner label over REST, say), which the servers push on
// the session's stream, closes it too: LostErr says which. A closed
// channel when nothing is held. Consul's lock
// answers such a channel from Lock.
func (m *Semaphore) Lost() <-chan struct{} { return m.lost() }

// LostErr says why Lost closed: nil while the grant of the last
// successful call is held, after this value's own Release, and when nothing
// was granted; the session's Err once the session is lost, closed or
// orphaned (Session.Orphan), a Release after that too (it released
// nothing: the session's end did); an
// error wrapping ErrNotHeld when the servers ended the grant while the
// session lived (another caller released it by its token, or its max
// hold passed; its message says which, with the token), or when its
// WithMaxHold passed as this client counts it.
func (m *Semaphore) LostErr() error { return m.lostErr() }
