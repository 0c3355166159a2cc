// Package client is the Go client of Lockstep: sessions with a background
// keepalive, and on them mutexes, weighted semaphores, read-write locks,
// barriers and leader elections, plus Watch and a fencing helper for the
// resource side.
//
// Start with New (the endpoints of the cluster), then NewSession, then a
// primitive on the session:
//
//	c, err := client.New([]string{"http://127.0.0.1:8080"})
//	s, err := c.NewSession(ctx, client.WithTTL(15*time.Second))
//	defer s.Close(context.Background())
//	m := client.NewMutex(s, "jobs/nightly")
//	if err := m.Lock(ctx); err != nil { ... }
//	write(db, m.Token())   // the resource checks the token, see Fence
//	m.Unlock(ctx)
//
// # Holding a lock is a belief
//
// A lock is held as long as its session's lease lives on the servers. The
// client renews the lease in the background, but a process can pause (GC,
// a stopped VM, a slow disk) for longer than the TTL, and when it resumes it
// still believes it holds the lock while someone else does. Session.Done
// closes when the client learns the session is gone, which may be late.
// What makes a protected write safe is the fencing token: every grant gets a
// token larger than every earlier grant of the same name, and a resource
// that remembers the largest token it has seen (Fence) refuses the writes of
// a former holder. Pass Token() along with every write.
//
// # Retries and failover
//
// Every mutating request carries the client's id and a sequence number.
// When an endpoint is unavailable, or does not answer within its bound (an
// attempt timeout for calls that answer at once, a health probe for calls
// that wait), the request is retried, with backoff, on the next endpoint
// with the same id and number, so the server applies it once and a retried
// acquire keeps its place in the queue. Keepalives are hedged to the next
// endpoint when one is slow; Watch and Observe reopen elsewhere when their
// node goes silent. docs/client.md states the bounds.
//
// A Lock (or any acquire) that ends without its grant returns by its
// caller's deadline and leaves nothing held or queued: the request is
// withdrawn in the background by its own id (SessionService.Abandon),
// whether it is still on its way, queued or granted. The withdrawal is
// retried, with backoff, for as long as the session lives (through an
// outage of any length); it stops only when the session ends (lost, closed,
// or its Client closed), which releases everything the session had. Should
// the servers refuse the withdrawal itself (an ACL reloaded meanwhile), the
// client gives the session up: Done closes saying so, and the session is
// closed on the servers.
//
// # Sharing
//
// A Client is safe for any number of goroutines and sessions (up to
// WithMaxInFlight requests in flight; past it, calls wait). Within one
// session, a name has one holder at a time: a second Mutex value of the
// name on the same session waits, like sync.Mutex.
package client
