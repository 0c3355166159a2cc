package client

import (
	"context"
	"errors"
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
	mu      sync.Mutex
	set     map[*Session]struct{}
	closing bool // Close began: no session joins any more
}

// add takes s in, or answers false once Close began.
func (l *liveSessions) add(s *Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return false
	}
	if l.set == nil {
		l.set = map[*Session]struct{}{}
	}
	l.set[s] = struct{}{}
	return true
}

func (l *liveSessions) remove(s *Session) {
	l.mu.Lock()
	delete(l.set, s)
	l.mu.Unlock()
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
	return sessions, true
}

// Close closes every session the Client made and still has open, as
// Session.Close does (their holds are released and their waits withdrawn
// at once; a Lock blocked on one returns ErrSessionLost), all at once and
// bounded by ctx; then it ends the Client's watches and observations (their
// channels close), its shared streams and the idle connections of the
// transports New made (one given by WithHTTPClient is left to its owner).
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
	return errors.Join(errs...)
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
