package client

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Session is a lease on the cluster that every hold and wait belongs to. It
// is kept alive in the background until Close, or until the servers say it
// is gone or the client could not renew it within its TTL; then Done closes
// and everything it held is (or must be assumed) released.
type Session struct {
	c     *Client
	id    uint64
	ttl   time.Duration
	owner string

	done      *closeOnce
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	lostErr error
	known   map[holdKey]struct{} // grants handed to callers; withdraw keeps them
}

// SessionOption configures a Session.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	ttl   time.Duration
	owner string
}

// WithTTL sets the session's lease: how long the servers keep it without a
// keepalive. Defaults to 30s.
func WithTTL(d time.Duration) SessionOption { return func(o *sessionOptions) { o.ttl = d } }

// WithOwner sets the label shown in status answers for the session's holds.
// Defaults to "HOSTNAME/pid-PID".
func WithOwner(owner string) SessionOption { return func(o *sessionOptions) { o.owner = owner } }

// NewSession creates a session and starts keeping it alive.
func (c *Client) NewSession(ctx context.Context, opts ...SessionOption) (*Session, error) {
	o := sessionOptions{ttl: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.owner == "" {
		host, _ := os.Hostname()
		o.owner = fmt.Sprintf("%s/pid-%d", host, os.Getpid())
	}
	if o.ttl < time.Millisecond {
		return nil, fmt.Errorf("lockstep: session TTL %v is below 1ms", o.ttl)
	}
	req := &pb.CreateSessionRequest{ClientId: c.clientID, RequestSeq: c.nextSeq(),
		TtlMs: o.ttl.Milliseconds(), Owner: o.owner}
	res, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CreateSessionResponse], error) {
		return e.sessions.Create(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return nil, apiErr("create session", err)
	}
	s := &Session{c: c, id: res.SessionId, ttl: time.Duration(res.TtlMs) * time.Millisecond, owner: o.owner,
		done: newCloseOnce(), stop: make(chan struct{}), loopDone: make(chan struct{})}
	go s.keepAlive()
	return s, nil
}

// ID is the session's id on the servers.
func (s *Session) ID() uint64 { return s.id }

// TTL is the lease the servers granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// Owner is the session's label.
func (s *Session) Owner() string { return s.owner }

// Client is the client the session belongs to.
func (s *Session) Client() *Client { return s.c }

// Done closes when the session is lost (expired, closed elsewhere, or not
// renewed within its TTL) or closed by Close. Stop acting on anything it
// held: another holder may already have it.
func (s *Session) Done() <-chan struct{} { return s.done.ch }

// Err says why Done closed: nil while the session lives, an error wrapping
// ErrSessionLost after a loss, or ErrSessionLost after Close.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

func (s *Session) lose(err error) {
	s.mu.Lock()
	if s.lostErr == nil {
		s.lostErr = err
	}
	s.mu.Unlock()
	s.done.close()
}

// keepAlive renews the lease every third of the TTL. A renewal that fails
// for unavailability is retried until the lease, as the client last knew it,
// has run out: after that the client cannot know whether it still holds
// anything, so it says it does not.
func (s *Session) keepAlive() {
	defer close(s.loopDone)
	interval := max(s.ttl/3, 5*time.Millisecond)
	// Keepalives use their own client id, so that a long run of them never
	// pushes a long-blocked acquire of the same client out of the server's
	// dedupe window (32 requests per client id).
	kaID := s.c.clientID + "/ka"
	var seq uint64
	deadline := time.Now().Add(s.ttl)
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.done.ch:
			return
		case <-t.C:
		}
		seq++
		sent := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		req := &pb.KeepAliveRequest{ClientId: kaID, RequestSeq: seq, SessionId: s.id}
		_, err := do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.KeepAliveResponse], error) {
			return e.sessions.KeepAlive(ctx, connect.NewRequest(req))
		})
		cancel()
		select {
		case <-s.stop:
			return
		default:
		}
		switch {
		case err == nil:
			// Measured from when the request left: the server's lease began
			// no earlier than that.
			deadline = sent.Add(s.ttl)
			t.Reset(interval)
		case connect.CodeOf(err) == connect.CodeNotFound:
			s.lose(fmt.Errorf("%w: session %d expired or was closed on the server: %v", ErrSessionLost, s.id, err))
			return
		case time.Now().After(deadline):
			s.lose(fmt.Errorf("%w: session %d could not be renewed within its TTL %v: %v", ErrSessionLost, s.id, s.ttl, err))
			return
		default:
			t.Reset(min(interval, time.Until(deadline)/2+time.Millisecond))
		}
	}
}

// Close stops the keepalive and closes the session on the servers, which
// releases everything it holds and withdraws everything it waits for. It is
// safe to call more than once.
func (s *Session) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.loopDone
		lost := s.Err() != nil
		s.lose(fmt.Errorf("%w: session %d was closed", ErrSessionLost, s.id))
		if lost {
			return
		}
		req := &pb.CloseSessionRequest{ClientId: s.c.clientID, RequestSeq: s.c.nextSeq(), SessionId: s.id}
		_, err = do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CloseSessionResponse], error) {
			return e.sessions.Close(ctx, connect.NewRequest(req))
		})
		if connect.CodeOf(err) == connect.CodeNotFound {
			err = nil // gone already: what Close wanted
		}
		err = apiErr("close session", err)
	})
	return err
}

// alive returns the loss error if the session is gone.
func (s *Session) alive() error {
	if err := s.Err(); err != nil {
		return err
	}
	return nil
}

// refusal turns a refused wait's reason into an error.
func (s *Session) refusal(op string, reason pb.Reason) error {
	switch reason {
	case pb.Reason_REASON_UNSPECIFIED:
		return fmt.Errorf("%s: %w", op, ErrLocked)
	case pb.Reason_REASON_TIMEOUT:
		return fmt.Errorf("%s: %w", op, ErrTimeout)
	case pb.Reason_REASON_SESSION_CLOSED, pb.Reason_REASON_SESSION_EXPIRED:
		return fmt.Errorf("%s: %w (%s)", op, ErrSessionLost, reason)
	}
	return fmt.Errorf("%s: wait ended: %s", op, reason)
}

// grant is what a wait for a hold came to.
type grant struct {
	token    uint64
	outcome  pb.Outcome
	reason   pb.Reason
	waiterID uint64
}

// acquire runs one acquire-like request (its request_seq fixed by the
// caller) to its end. A QUEUED answer (the server returned before deciding,
// for example on shutdown) is retried with the same seq, which waits again
// in the same place. If ctx ends while waiting, the wait is withdrawn on the
// server and a grant that won the race is released, so nothing is left held.
func (s *Session) acquire(ctx context.Context, op string, kind pb.Kind, name string,
	send func(ctx context.Context, e *endpoint) (grant, error),
	release func(ctx context.Context, token uint64) error) (uint64, error) {
	if err := s.alive(); err != nil {
		return 0, err
	}
	for {
		g, err := doGrant(ctx, s.c, send)
		if err != nil {
			// The call carries ctx's deadline to the server, which may end
			// it a moment before ctx itself says so.
			if ctx.Err() != nil || connect.CodeOf(err) == connect.CodeDeadlineExceeded {
				s.withdraw(kind, name, release)
				cause := ctx.Err()
				if cause == nil {
					cause = context.DeadlineExceeded
				}
				return 0, fmt.Errorf("%s %q: %w", op, name, cause)
			}
			return 0, apiErr(op+" "+fmt.Sprintf("%q", name), err)
		}
		switch g.outcome {
		case pb.Outcome_OUTCOME_GRANTED, pb.Outcome_OUTCOME_RELEASED:
			return g.token, nil
		case pb.Outcome_OUTCOME_QUEUED:
			select {
			case <-ctx.Done():
				s.withdraw(kind, name, release)
				return 0, fmt.Errorf("%s %q: %w", op, name, ctx.Err())
			case <-time.After(s.c.opts.backoffMin):
			}
			continue
		default:
			if g.reason == pb.Reason_REASON_CANCELLED && ctx.Err() != nil {
				s.withdraw(kind, name, release)
				return 0, fmt.Errorf("%s %q: %w", op, name, ctx.Err())
			}
			return 0, s.refusal(fmt.Sprintf("%s %q", op, name), g.reason)
		}
	}
}

func doGrant(ctx context.Context, c *Client, send func(ctx context.Context, e *endpoint) (grant, error)) (grant, error) {
	var g grant
	_, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[struct{}], error) {
		var err error
		g, err = send(ctx, e)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&struct{}{}), nil
	})
	return g, err
}

// withdraw cancels every wait of this session on the object and releases a
// grant that arrived before the cancel did. The server withdraws a wait
// whose caller went away on its own; this covers a call that was lost in a
// failover. Best effort, bounded in time.
func (s *Session) withdraw(kind pb.Kind, name string, release func(ctx context.Context, token uint64) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.GetSessionResponse], error) {
		return e.sessions.Get(ctx, connect.NewRequest(&pb.GetSessionRequest{SessionId: s.id}))
	})
	if err != nil || res.Session == nil {
		return
	}
	for _, w := range res.Session.Waits {
		if w.Kind != kind || w.Name != name {
			continue
		}
		req := &pb.CancelWaitRequest{ClientId: s.c.clientID, RequestSeq: s.c.nextSeq(), SessionId: s.id, WaiterId: w.WaiterId}
		_, _ = do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CancelWaitResponse], error) {
			return e.sessions.CancelWait(ctx, connect.NewRequest(req))
		})
	}
	if release == nil {
		return
	}
	// A grant that won the race with the cancel: the caller was told the
	// acquire failed, so the hold must go. Read again after the cancels.
	res, err = do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.GetSessionResponse], error) {
		return e.sessions.Get(ctx, connect.NewRequest(&pb.GetSessionRequest{SessionId: s.id}))
	})
	if err != nil || res.Session == nil {
		return
	}
	for _, h := range res.Session.Holds {
		if h.Kind == kind && h.Name == name && !s.heldBefore(kind, name, h.FencingToken) {
			_ = release(ctx, h.FencingToken)
		}
	}
}

// heldBefore says whether the caller was already told about this grant (a
// re-acquire answers the existing grant, which must survive a cancel).
func (s *Session) heldBefore(kind pb.Kind, name string, token uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.known[holdKey{kind, name, token}]
	return ok
}

type holdKey struct {
	kind  pb.Kind
	name  string
	token uint64
}

// remember records a grant the caller was told about, so that withdraw never
// releases it.
func (s *Session) remember(kind pb.Kind, name string, token uint64, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil {
		s.known = map[holdKey]struct{}{}
	}
	if keep {
		s.known[holdKey{kind, name, token}] = struct{}{}
	} else {
		delete(s.known, holdKey{kind, name, token})
	}
}
