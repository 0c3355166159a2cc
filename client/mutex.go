package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Mutex is a named lock held by a session: one holder at a time, waiters
// served in FIFO order. Holding it is a belief that can become false when
// the session is lost (watch Session.Done); Token is what makes a protected
// write safe.
//
// Two Mutex values of one name on one session (or one value shared by
// several goroutines) behave like a sync.Mutex between them: a second Lock
// waits until the first holder unlocks, TryLock answers ErrLocked. Locking
// a Mutex that the same goroutine already holds waits, like sync.Mutex,
// until ctx ends.
type Mutex struct {
	name string
	hold
}

// NewMutex returns the mutex name on session s, its grants bounded by
// opts (WithMaxHold, WithLockDelay). Nothing is sent until Lock.
func NewMutex(s *Session, name string, opts ...HoldOption) *Mutex {
	return &Mutex{name: name, hold: hold{s: s, kind: pb.Kind_KIND_MUTEX, name: name, limits: limitsOf(opts)}}
}

// Name is the mutex's name.
func (m *Mutex) Name() string { return m.name }

// Lock waits until the mutex is granted, ctx ends, or the session is lost
// (ErrSessionLost). A Lock that ends without the grant leaves nothing held
// or queued: it returns by ctx's deadline, and withdraws its request from
// the servers in the background (see docs/client.md, "Cancelled calls").
// While no endpoint serves (every member down, or no quorum), it gives up
// with ErrUnavailable after WithRetryTimeout (15 s), even when ctx allows
// longer: the servers cannot have granted it meanwhile, and a caller that
// wants to wait for the cluster to come back calls Lock again.
func (m *Mutex) Lock(ctx context.Context) error { return m.lock(ctx, -1) }

// TryLock takes the mutex if it is free now; ErrLocked if someone holds it
// (or waiters are queued ahead), whose message names the holder (owner
// label, session, token) when there is one. Right after a Lock on the same session
// that ended without the grant, whose request is still being withdrawn in
// the background, TryLock waits for that withdrawal (at most an attempt
// timeout, see WithAttemptTimeout) before it asks.
func (m *Mutex) TryLock(ctx context.Context) error { return m.lock(ctx, 0) }

// LockWithin waits at most wait for the mutex; ErrTimeout when it passes.
// A wait of 0 or less tries once, as TryLock. The servers cap a wait at
// locks.max_wait_time_seconds (60 s by default): a longer wait answers
// ErrTimeout at the cap. To wait longer, call Lock with a ctx deadline
// (context.WithTimeout): it waits until granted, and withdraws its request
// when the deadline passes.
func (m *Mutex) LockWithin(ctx context.Context, wait time.Duration) error {
	return m.lock(ctx, waitMsOf(wait))
}

// waitMsOf turns a bounded wait into the servers' wait_timeout_ms: 0 tries
// once, anything positive waits at least 1 ms.
func waitMsOf(wait time.Duration) int64 {
	if wait <= 0 {
		return 0
	}
	return max(wait.Milliseconds(), 1)
}

func (m *Mutex) lock(ctx context.Context, waitMs int64) error {
	s, start := m.s, time.Now()
	if err := m.limits.check(opName{"lock", m.name}, true); err != nil {
		return err
	}
	g, gate, err := s.acquire(ctx, acquireSpec{op: "lock", kind: pb.Kind_KIND_MUTEX, name: m.name, waitMs: waitMs, gated: true,
		send: func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.AcquireLockRequest{Name: m.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, Owner: s.owner, WaitTimeoutMs: waitMs,
				MaxHoldMs: msOf(m.limits.maxHold), LockDelayMs: msOf(m.limits.lockDelay), Value: m.limits.value}
			r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_AcquireLock{AcquireLock: req}},
				(*pb.StreamResponse).GetAcquireLock, func(ctx context.Context) (*connect.Response[pb.AcquireLockResponse], error) {
					return e.locks.Acquire(ctx, connect.NewRequest(req))
				})
			if err != nil {
				return grant{}, err
			}
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId, holder: r.Holder, grantedAt: r.AcquiredAtMs, maxHoldUntil: r.MaxHoldUntilMs,
				blockedUntil: r.BlockedUntilMs}, nil
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

// Token is the fencing token of the current grant: 0 when not locked, and
// after the session is lost or closed. Send it with every write the lock
// protects; see Fence.
func (m *Mutex) Token() uint64 { return m.current() }

// Unlock releases the grant. ErrNotHeld when this Mutex holds nothing, or
// the servers no longer have the grant (it expired: someone else may hold
// the mutex now); ErrSessionLost after the session was lost or closed. When
// Unlock fails otherwise (ctx ended, no endpoint answered), the Mutex
// still holds the token: call Unlock again.
func (m *Mutex) Unlock(ctx context.Context) error {
	return m.end(ctx, opName{"unlock", m.name}, m.sendRelease)
}

// sendRelease sends one attempt of the release of grant token, as request
// id, to e.
func (m *Mutex) sendRelease(ctx context.Context, e *endpoint, id reqID, token uint64) error {
	s := m.s
	req := &pb.ReleaseLockRequest{Name: m.name, ClientId: id.ClientID(),
		RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, FencingToken: token}
	_, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_ReleaseLock{ReleaseLock: req}},
		(*pb.StreamResponse).GetReleaseLock, func(ctx context.Context) (*connect.Response[pb.ReleaseLockResponse], error) {
			return e.locks.Release(ctx, connect.NewRequest(req))
		})
	return err
}

// Lost returns a channel that closes once the mutex taken by the last
// successful call must be taken for lost: released (Unlock), its session
// lost, or its WithMaxHold passed, as Token starts answering 0 (a
// goroutine closes it, so a read of Token may see 0 a moment before).
// Session.Done alone misses a max hold, which ends a grant while the
// session lives. Another caller's release of the grant by its token
// (a release by owner label over REST, say), which the servers push on
// the session's stream, closes it too: LostErr says which. A closed
// channel when nothing is held. Consul's lock
// answers such a channel from Lock.
func (m *Mutex) Lost() <-chan struct{} { return m.lost() }

// LostErr says why Lost closed: nil while the grant of the last
// successful call is held, after this value's own Unlock, and when nothing
// was granted; the session's Err once the session is lost, closed or
// orphaned (Session.Orphan), a Unlock after that too (it released
// nothing: the session's end did); an
// error wrapping ErrNotHeld when the servers ended the grant while the
// session lived (another caller released it by its token, or its max
// hold passed; its message says which, with the token), or when its
// WithMaxHold passed as this client counts it.
func (m *Mutex) LostErr() error { return m.lostErr() }
