package client

import (
	"context"
	"time"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// LiveSessions is how many sessions c would close on Close (close.go),
// for the external tests.
func LiveSessions(c *Client) int {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	return len(c.live.set)
}

// SharedStreams is how many shared streams (Multiplex) c holds open.
func SharedStreams(c *Client) int { return len(c.muxes.list()) }

// PassLease makes s's lease, as the client counts it, pass now, as it
// does for a process stopped past it, without the keepalive loop having
// run yet (its timer still stands).
func PassLease(s *Session) { s.leaseEnd.Store(0) }

// LoseHere loses s on the client's side only, as a lease that ran out
// unrenewed does (the servers may still have it), without Close.
func LoseHere(s *Session) { s.leaseLapsed("; lost by the test") }

// LeaveStreams takes s off c's shared streams as its Close does once the
// servers answered it (shutStreams), without closing it on the servers.
func LeaveStreams(s *Session) { s.shutStreams() }

// Routed says whether a shared stream of s's Client routes the pushed
// loss of s's id to s itself.
func Routed(s *Session) bool {
	for _, m := range s.c.muxes.list() {
		m.mu.Lock()
		mine := m.sessions[s.id] == s
		m.mu.Unlock()
		if mine {
			return true
		}
	}
	return false
}

// Orphaning says whether Orphan has begun on s (it then waits for what is
// in flight).
func Orphaning(s *Session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orphaning
}

// UnlockPushedFirst is m.Unlock with the servers' push of its release's
// end handled before its answer is, as when the push wins the race on the
// stream: the push is handed to the session once the answer has come and
// before Unlock acts on it (the real push may come before or after).
func UnlockPushedFirst(ctx context.Context, m *Mutex) error {
	return m.end(ctx, opName{"unlock", m.name}, func(ctx context.Context, e *endpoint, id reqID, token uint64) error {
		err := m.sendRelease(ctx, e, id, token)
		if err == nil {
			m.s.grantEnded(&pb.StreamGrantEnded{SessionId: m.s.id, FencingToken: token, Kind: pb.Kind_KIND_MUTEX,
				Name: m.name, Reason: pb.Reason_REASON_RELEASED}, e.url)
		}
		return err
	})
}

// Suspend sets the wall clock the client reads d ahead of the monotonic
// one, as a suspend of the machine for d leaves them, until restore.
func Suspend(d time.Duration) (restore func()) {
	wallAhead.Store(int64(d))
	return func() { wallAhead.Store(0) }
}
