package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Handing a session over (etcd's Session.Orphan and concurrency.WithLease):
// Orphan gives a Session value up without closing the session on the
// servers, and ResumeSession takes a live session over by id, in this
// process or another. What makes it safe:
//
//   - Orphan first lets the session's requests in flight end with their true
//     outcome (an Unlock on its way answers whether it released), ends its
//     blocked calls and lets their withdrawals (abandonLater) finish, sends
//     again every release of unknown outcome until the servers answer it
//     (settleReleases), and only then stops the keepalive: no request of
//     unknown fate, and no late withdrawal, is left to meet the successor's
//     grants.
//   - A resumed session's holds count a grant's max hold from what the
//     servers answer of that grant (max_hold_until_ms), never from the
//     re-acquire's start: the grant may be older than the value
//     (hold.deadline).
//   - Two values of one id in one Client would share its routes on the
//     shared streams, which are keyed by id: ResumeSession refuses an id a
//     live value of the Client has, and a value leaving the streams takes
//     off only its own route (Client.dropSession).

// ResumeSession takes over session id, made by NewSession in this process
// or another and still alive on the servers (etcd's
// concurrency.WithLease): it checks that the servers have it
// (SessionInfo), renews its lease, and answers a Session kept alive from
// then on, with the TTL the session was made with. What the session holds
// stays held: a Lock (TryLock, Acquire, RLock, Campaign) of a name it
// holds answers that grant, with its token, and its max hold as the
// servers count it (whatever WithMaxHold the new Mutex has; without one
// too); a Campaign of an election it leads answers that leadership and
// proclaims the Campaign's value (Election.Campaign); one of a name it
// waits for joins that wait (a Campaign's value replacing the wait's).
// Give a session up with Orphan on the side that hands it over, and
// resume it once Orphan has returned: two values keeping one session
// alive hold its locks together, and the servers cannot tell them apart.
//
// ResumeSession is not exclusive: it succeeds whether or not another
// process still keeps the session, and then both hold everything the
// session holds, at once, under the same tokens (a fence cannot tell
// them apart either). Resume only once the old process is gone: its
// Orphan returned nil, or it exited. Never resume after an Orphan that
// failed or timed out, or after signalling the old process, without
// knowing it stopped; when in doubt, let the session expire or close it
// (Client.CloseSession), and start a new one.
//
// A session the servers do not have answers ErrSessionLost; so does
// another principal's under authentication (the servers answer it as one
// that does not exist, and refuse every request on it). An id that a
// live Session value of this Client has already is refused (ErrInvalid):
// use that value, or Orphan it first. WithOwner labels the session's new
// holds (by default they carry the session's own label, which Owner
// answers); WithTTL does not apply (ErrInvalid).
func (c *Client) ResumeSession(ctx context.Context, id uint64, opts ...SessionOption) (*Session, error) {
	op := fmt.Sprintf("resume session %d", id)
	o := sessionOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if id == 0 {
		return nil, fmt.Errorf("resume session: %w: session id 0 names no session: give the id NewSession answered (Session.ID)", ErrInvalid)
	}
	if o.ttl != 0 {
		return nil, fmt.Errorf("%s: %w: WithTTL does not apply: a session keeps the TTL it was made with; leave it out", op, ErrInvalid)
	}
	if c.live.isClosing() {
		return nil, ErrClientClosed
	}
	if c.live.has(id) {
		return nil, fmt.Errorf("%s: %w: a live Session value of this Client has it already: use that value, or Orphan it first", op, ErrInvalid)
	}
	gone := func(err error) error {
		if errors.Is(err, ErrSessionLost) {
			return fmt.Errorf("%s: %w: the servers do not have it (it expired, was closed, or never was; another principal's is answered the same): create a new session: %v",
				op, ErrSessionLost, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	info, err := c.SessionInfo(ctx, id)
	if err != nil {
		return nil, gone(err)
	}
	label, owner := info.GetOwner(), o.owner
	if owner != "" {
		label = owner
	}
	sent := time.Now()
	res, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.KeepAliveResponse], error) {
		return e.sessions.KeepAlive(ctx, connect.NewRequest(&pb.KeepAliveRequest{SessionId: id}))
	})
	if err != nil {
		return nil, gone(apiErr(op, err))
	}
	return c.startSession(ctx, sent, lease{res.SessionId, res.TtlMs, res.ExpiresAtMs, res.StampLagMs}, owner, label, true)
}

// Orphan gives this Session value up without closing the session on the
// servers (etcd's Session.Orphan): what it holds stays held until its
// lease runs out (its TTL after the last renewal), or until a
// ResumeSession, in this process or another, takes it over.
//
// From its first call the value takes no new request (they answer
// ErrSessionLost, saying the session is being orphaned). Orphan then waits,
// bounded by ctx, for the session's requests in flight to end with their
// true outcome (an Unlock on its way answers whether it released), ends its
// blocked calls (a waiting Lock, Acquire, Campaign or barrier Wait answers
// ErrSessionLost) and waits for their withdrawal from the servers
// ("Cancelled calls" in docs/client.md), so that nothing of unknown fate
// is left for the session's next user. Then it stops the keepalive and
// forgets the session here: Done closes, Err and every call of the value
// and of its Mutex (Semaphore, RWMutex, Election, Barrier) values answer
// ErrSessionLost saying it was orphaned, Token answers 0, Lost closes, and
// Close (and the Client's Close) send nothing.
//
// When ctx ends first, Orphan answers ctx's error, and the session is
// still kept alive here, holding what it holds, taking no new request:
// call Orphan again to finish handing it over, or Close to end it. Until
// Orphan has returned nil (or this process has exited), the session must
// not be resumed elsewhere: ResumeSession would not refuse, and both
// would hold its grants.
//
// Orphan withdraws the session's queued waits: a standby's waiting
// Campaign (or Lock) loses its place, and a Campaign after ResumeSession
// queues again at the back (etcd's campaign key outlives an orphaned
// session, keeping its place). A
// session lost or closed before Orphan finishes has nothing to hand over:
// Orphan answers its loss (ErrSessionLost). Orphan again after it
// succeeded answers nil.
func (s *Session) Orphan(ctx context.Context) error {
	s.mu.Lock()
	first := !s.orphaning
	s.orphaning = true
	s.mu.Unlock()
	if first {
		s.haltNow() // blocked calls end, and withdraw their requests
	}
	for {
		s.mu.Lock()
		n := s.ops
		if n == 0 {
			s.mu.Unlock()
			break
		}
		if s.opsIdle == nil {
			s.opsIdle = make(chan struct{})
		}
		idle := s.opsIdle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-s.done.Done():
		case <-ctx.Done():
			return fmt.Errorf("orphan session %d: %w: %d of its requests (or withdrawals of ended calls) are still in flight; it is still kept alive here, holding what it holds: call Orphan again to finish handing it over, or Close to end it",
				s.id, ctx.Err(), n)
		}
		if s.Err() != nil {
			break
		}
	}
	// A release whose outcome is unknown (an Unlock whose ctx ended) may
	// still land, on the grant the successor is answered: send each again
	// until the servers answer it.
	if err := s.settleReleases(ctx); err != nil {
		return err
	}
	orphaned := false
	s.closeOnce.Do(func() {
		if s.Err() != nil {
			return // lost meanwhile: Close (or the Client's) still closes it on the servers
		}
		orphaned = true
		s.orphaned.Store(true)
		s.closed.Store(true) // Close and the Client's Close send nothing
		close(s.stop)
		<-s.loopDone
		err := fmt.Errorf("%w: session %d was orphaned (Session.Orphan): it lives on the servers, holding what it held, until its lease runs out or a ResumeSession takes it over; this Session value no longer acts on it",
			ErrSessionLost, s.id)
		s.lose(err)
		s.forgotten.Store(true)
		s.leaveStreams(err) // nothing of it is in flight but a keepalive
	})
	if orphaned || s.orphaned.Load() {
		return nil
	}
	return fmt.Errorf("orphan session %d: nothing to hand over: %w", s.id, s.Err())
}

// orphanSettling marks the ctx of Orphan's own releases, which beginOp
// would refuse once Orphan began.
type orphanSettling struct{}

// settleReleases sends again every release of the session whose outcome is
// unknown, until the servers answer each, or ctx ends.
func (s *Session) settleReleases(ctx context.Context) error {
	ctx = context.WithValue(ctx, orphanSettling{}, true)
	pause := s.c.opts.backoffMin
	for {
		s.mu.Lock()
		var key pendingRelease
		var again func(context.Context) error
		for k, f := range s.unsettled {
			key, again = k, f
			break
		}
		s.mu.Unlock()
		if again == nil || s.Err() != nil {
			return nil
		}
		err := again(ctx)
		s.mu.Lock()
		_, left := s.unsettled[key]
		n := len(s.unsettled)
		s.mu.Unlock()
		if !left {
			pause = s.c.opts.backoffMin // settled, whatever it answered
			continue
		}
		// Not settled yet (no endpoint answered, or an answer that settles
		// nothing): again after a pause, until ctx ends.
		if ctx.Err() != nil || s.c.backoff(ctx, &pause) != nil {
			return fmt.Errorf("orphan session %d: %w: %d of its releases (an Unlock, Release or Resign that failed) have an unknown outcome and could not be settled; it is still kept alive here, holding what it holds: call Orphan again to finish handing it over, or Close to end it: %v",
				s.id, context.Cause(ctx), n, err)
		}
	}
}

// beginOp counts a request of the session in flight, for Orphan to wait
// for, and answers the call that ends it; once Orphan began, it refuses.
func (s *Session) beginOp(what opName) (end func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.orphaning {
		return nil, fmt.Errorf("%w (%w)", s.orphaningErr(what), errOrphaning)
	}
	s.ops++
	return s.endOp, nil
}

// holdOp counts one more request in flight, refused or not, for Orphan
// to wait for: the withdrawal of a call that ended (abandonLater), or a
// release until its outcome is recorded (hold.endToken).
func (s *Session) holdOp() {
	s.mu.Lock()
	s.ops++
	s.mu.Unlock()
}

func (s *Session) endOp() {
	s.mu.Lock()
	s.ops--
	if s.ops == 0 && s.opsIdle != nil {
		close(s.opsIdle)
		s.opsIdle = nil
	}
	s.mu.Unlock()
}

// halted says whether Orphan began, which ends the session's blocked
// calls.
func (s *Session) halted() bool { return s.halt.Err() != nil }

// orphaningErr is the refusal of a call once Orphan began.
func (s *Session) orphaningErr(what opName) error {
	return fmt.Errorf("%s: %w: session %d is being orphaned (Session.Orphan): this Session value takes no new requests and ends its blocked calls; resume the session with Client.ResumeSession once Orphan has returned",
		what, ErrSessionLost, s.id)
}

// errOrphaning marks a call beginOp refused because Orphan began: nothing
// of it was sent, so a release refused so settles nothing.
var errOrphaning = errors.New("nothing sent")
