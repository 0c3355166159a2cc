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
