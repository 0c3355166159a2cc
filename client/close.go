package client

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Closing a Client ends what it owns: the sessions it made and still has
// open (closed on the servers, so what they hold is released at once, as
// closing a ZooKeeper handle deletes its ephemeral nodes, rather than when
// their leases run out), the watches and observations it runs, its shared
// streams, and the connections of the transports New made.

// liveSessions are the sessions a Client made that are neither closed nor
// lost: the ones Close must close.
type liveSessions struct {
	mu  sync.Mutex
	set map[*Session]struct{}
	// unclosed are the sessions whose Session.Close failed: closed on the
	// client's side, not on the servers' yet. Close tries them again.
	unclosed map[*Session]struct{}
	closing  bool // Close began: no session joins any more
}

// add takes s in, or answers false once Close began, or dup when s is
// resumed and another live session of the set has its id (two values of
// one id would share its routes on the shared streams).
func (l *liveSessions) add(s *Session) (added, dup bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false, false
	}
	if s.resumed && l.hasLocked(s.id) {
		return true, true
	}
	if l.set == nil {
		l.set = map[*Session]struct{}{}
	}
	l.set[s] = struct{}{}
	return true, false
}

// has says whether a live session of the set has id.
func (l *liveSessions) has(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hasLocked(id)
}

func (l *liveSessions) hasLocked(id uint64) bool {
	for s := range l.set {
		if s.id == id {
			return true
		}
	}
	return false
}

func (l *liveSessions) remove(s *Session) {
	l.mu.Lock()
	delete(l.set, s)
	l.mu.Unlock()
}

// closeFailed notes whether s's close on the servers failed (see unclosed).
func (l *liveSessions) closeFailed(s *Session, failed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case !failed:
		delete(l.unclosed, s)
	case l.unclosed == nil:
		l.unclosed = map[*Session]struct{}{s: {}}
	default:
		l.unclosed[s] = struct{}{}
	}
}

func (l *liveSessions) isClosing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closing
}

// shut marks the set closing and answers its sessions; first is false
// when an earlier call did so already.
func (l *liveSessions) shut() (sessions []*Session, first bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return nil, false
	}
	l.closing = true
	for s := range l.set {
		sessions = append(sessions, s)
	}
	for s := range l.unclosed {
		sessions = append(sessions, s)
	}
	return sessions, true
}

// Close closes every session the Client made and still has open, and
// every one whose Session.Close failed, as Session.Close does (their holds are released and their waits withdrawn
// at once; a Lock blocked on one returns ErrSessionLost), all at once and
// bounded by ctx; then it ends the Client's watches and observations (their
// channels close), its shared streams, the idle connections of the
// transports New made and every connection of its stream transport (one
// given by WithHTTPClient is left to its owner).
// Every call on the Client after that, and a NewSession that Close
// overtook, fails with ErrClientClosed. It answers the sessions' close
// errors joined (a session is lost to the Client either way), and nil when
// called again.
func (c *Client) Close(ctx context.Context) error {
	sessions, first := c.live.shut()
	if !first {
		return nil
	}
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() { errs[i] = s.Close(ctx) })
	}
	wg.Wait()
	c.endLife()
	for _, m := range c.muxes.take() {
		m.shut(ErrClientClosed)
	}
	for _, h := range c.own {
		h.CloseIdleConnections()
	}
	// A stream just shut may not have left its connection yet, which is
	// then not idle, and would stay open with its goroutines until the
	// transport's idle timeout (90 s): every session is closed and every
	// stream shut by now, so the stream transport's connections end here.
	c.streamConns.closeAll()
	return errors.Join(errs...)
}

// openConns are the connections a Client's own stream transport dialled
// and has not closed yet.
type openConns struct {
	mu     sync.Mutex
	set    map[*trackedConn]struct{}
	closed bool // by Client.Close: a later dial fails
}

// trackedConn leaves its set when it is closed.
type trackedConn struct {
	net.Conn
	in *openConns
}

func (t *trackedConn) Close() error {
	t.in.mu.Lock()
	delete(t.in.set, t)
	t.in.mu.Unlock()
	return t.Conn.Close()
}

// dial wraps a transport's dialer so that o keeps what it dials.
func (o *openConns) dial(next func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		t := &trackedConn{Conn: c, in: o}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.closed {
			c.Close()
			return nil, ErrClientClosed
		}
		o.set[t] = struct{}{}
		return t, nil
	}
}

// closeAll closes every connection o holds, and every one dialled later.
func (o *openConns) closeAll() {
	o.mu.Lock()
	o.closed = true
	open := make([]*trackedConn, 0, len(o.set))
	for t := range o.set {
		open = append(open, t)
	}
	o.mu.Unlock()
	for _, t := range open {
		_ = t.Close()
	}
}

// isClosed says whether Close has ended the Client: its life is over once
// the sessions are closed (Close closes them through calls that must still
// go out).
func (c *Client) isClosed() bool {
	select {
	case <-c.life.Done():
		return true
	default:
		return false
	}
}

// tie answers a context that ends with ctx or when the Client is closed,
// for the streams a Client runs in the background (Watch, Observe).
func (c *Client) tie(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.life, cancel)
	return ctx, func() { stop(); cancel() }
}
