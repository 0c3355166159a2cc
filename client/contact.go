package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// A fresh Client has heard from no endpoint, and its first call would go to
// the first one given: when that member is stopped or cut off (its port
// accepts but nothing answers), the call waited the whole attempt timeout
// before it tried the next, and every CLI command, a fresh Client each, paid
// those 2 s. So the first call asks for health the way a keepalive is
// hedged: the current endpoint at once, and the others too when it has not
// answered within firstContactHedge or has failed; the call starts on the
// first endpoint that answers (an error a server sent counts: it is up), the
// configured order preferred while it answers in time. The health answers
// also tell each endpoint's node id, which the search for the leader asks for
// anyway. Calls made while it runs wait for it; once it ended, whatever its
// outcome, it is not run again: later trouble is the failover's.

// firstContactHedge is how long the first endpoint has to answer before the
// others are asked as well: a member on loopback or in one data centre
// answers a health call in well under it.
const firstContactHedge = 150 * time.Millisecond

// contact is the state of the first contact.
type contact struct {
	start chan struct{} // closed by the call that runs it
	done  chan struct{} // closed when it ended
}

func newContact() contact {
	return contact{start: make(chan struct{}, 1), done: make(chan struct{})}
}

// firstContact runs the first contact, or waits for the one running, unless
// it ended or ctx ends first. With one endpoint there is nothing to choose.
func (c *Client) firstContact(ctx context.Context) {
	if len(c.endpoints) < 2 {
		return
	}
	select {
	case <-c.contact.done:
		return
	case c.contact.start <- struct{}{}:
		// This call runs it, to its end even when ctx ends: the calls
		// waiting for it have their own contexts.
		c.contactEndpoints()
		close(c.contact.done)
	case <-ctx.Done():
		return
	}
}

// contactEndpoints asks the endpoints for health, hedged, and moves to the
// first that answers, bounded by the attempt timeout and by the client's
// life.
func (c *Client) contactEndpoints() {
	ctx, cancel := context.WithTimeout(c.life, c.opts.attemptTimeout)
	defer cancel() // the asks still running end with it
	n := len(c.endpoints)
	first := int(c.cur.Load())
	answers := make(chan int, n) // the index of an endpoint that answered, -1 for one that did not
	launched, received := 0, 0
	hedge := time.NewTimer(firstContactHedge)
	defer hedge.Stop()
	launch := func() {
		i := (first + launched) % n
		launched++
		e := c.endpoints[i]
		go func() {
			h, err := e.cluster.Health(ctx, connect.NewRequest(&pb.HealthRequest{}))
			switch {
			case err == nil:
				e.mu.Lock()
				e.lastHeard = time.Now()
				e.nodeID = h.Msg.NodeId
				e.mu.Unlock()
			case connect.IsWireError(err):
				e.heard()
			default:
				i = -1
			}
			answers <- i
		}()
		hedge.Reset(firstContactHedge)
	}
	launch()
	for received < launched || launched < n {
		select {
		case <-ctx.Done():
			return
		case <-hedge.C:
			if launched < n {
				launch()
			}
			continue
		case i := <-answers:
			received++
			if i >= 0 {
				if i != first {
					c.cur.CompareAndSwap(int64(first), int64(i))
				}
				return
			}
			if launched < n {
				launch()
			}
		}
	}
}
