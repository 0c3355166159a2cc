package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// RWMutex is a named read-write lock held by a session: many readers or one
// writer. It is FIFO with no writer starvation: a queued writer makes later
// readers wait behind it.
//
// Readers share the lock across sessions. Within one session, a name has
// one holder at a time (the servers see one session and would answer a
// second RLock with the first one's hold, which the first RUnlock would
// end): a second RWMutex value of the name on the same session waits until
// the first unlocks. Give each concurrent reader its own session.
type RWMutex struct {
	name string
	hold
}

// NewRWMutex returns the read-write lock name on session s, its holds
// bounded by opts (WithMaxHold; WithLockDelay is for mutexes only).
func NewRWMutex(s *Session, name string, opts ...HoldOption) *RWMutex {
	return &RWMutex{name: name, hold: hold{s: s, kind: pb.Kind_KIND_RWLOCK, name: name, limits: limitsOf(opts)}}
}

// RLock waits for a read hold.
func (m *RWMutex) RLock(ctx context.Context) error { return m.acquire(ctx, "read", -1) }

// Lock waits for the write hold.
func (m *RWMutex) Lock(ctx context.Context) error { return m.acquire(ctx, "write", -1) }

// TryRLock takes a read hold if it fits now; ErrLocked otherwise.
func (m *RWMutex) TryRLock(ctx context.Context) error { return m.acquire(ctx, "read", 0) }

// TryLock takes the write hold if it is free now; ErrLocked otherwise.
func (m *RWMutex) TryLock(ctx context.Context) error { return m.acquire(ctx, "write", 0) }

func (m *RWMutex) acquire(ctx context.Context, mode string, waitMs int64) error {
	s, start := m.s, time.Now()
	if err := m.limits.check(opName{mode + " lock", m.name}, false); err != nil {
		return err
	}
	g, gate, err := s.acquire(ctx, acquireSpec{op: mode + " lock", kind: pb.Kind_KIND_RWLOCK, name: m.name, waitMs: waitMs, gated: true,
		send: func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.AcquireRWLockRequest{Name: m.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, Owner: s.owner, WaitTimeoutMs: waitMs, Mode: mode,
				MaxHoldMs: msOf(m.limits.maxHold), LockDelayMs: msOf(m.limits.lockDelay), Value: m.limits.value}
			r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_AcquireRwlock{AcquireRwlock: req}},
				(*pb.StreamResponse).GetAcquireRwlock, func(ctx context.Context) (*connect.Response[pb.AcquireRWLockResponse], error) {
					return e.rw.Acquire(ctx, connect.NewRequest(req))
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

// Token is the fencing token of the current hold, read or write (0 when
// none, and after the session is lost or closed). Readers hold at once,
// an older reader's token still valid: fence a reader's token with
// Client.CheckFence, not Fence (see there).
func (m *RWMutex) Token() uint64 { return m.current() }

// Unlock releases the current hold, read or write. A failed Unlock keeps
// the hold, as Mutex.Unlock does.
func (m *RWMutex) Unlock(ctx context.Context) error {
	s := m.s
	return m.end(ctx, opName{"unlock rwlock", m.name}, func(ctx context.Context, e *endpoint, id reqID, token uint64) error {
		req := &pb.ReleaseRWLockRequest{Name: m.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, FencingToken: token}
		_, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_ReleaseRwlock{ReleaseRwlock: req}},
			(*pb.StreamResponse).GetReleaseRwlock, func(ctx context.Context) (*connect.Response[pb.ReleaseRWLockResponse], error) {
				return e.rw.Release(ctx, connect.NewRequest(req))
			})
		return err
	})
}

// RUnlock is Unlock, for symmetry with sync.RWMutex.
func (m *RWMutex) RUnlock(ctx context.Context) error { return m.Unlock(ctx) }

// Lost returns a channel that closes once the read or write hold taken by the last
// successful call must be taken for lost: released (Unlock or RUnlock), its session
// lost, or its WithMaxHold passed, as Token starts answering 0 (a
// goroutine closes it, so a read of Token may see 0 a moment before).
// Session.Done alone misses a max hold, which ends a grant while the
// session lives. Another caller's release of the grant by its token
// (a release by owner label over REST, say), which the servers push on
// the session's stream, closes it too: LostErr says which. A closed
// channel when nothing is held. Consul's lock
// answers such a channel from Lock.
func (m *RWMutex) Lost() <-chan struct{} { return m.lost() }

// LostErr says why Lost closed: nil while the grant of the last
// successful call is held, after this value's own Unlock, and when nothing
// was granted; the session's Err once the session is lost, closed or
// orphaned (Session.Orphan), a Unlock after that too (it released
// nothing: the session's end did); an
// error wrapping ErrNotHeld when the servers ended the grant while the
// session lived (another caller released it by its token, or its max
// hold passed; its message says which, with the token), or when its
// WithMaxHold passed as this client counts it.
func (m *RWMutex) LostErr() error { return m.lostErr() }
