package client

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
