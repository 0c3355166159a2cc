package client

import (
	"context"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The client sends to the node that leads, when it can tell which: a
// request that lands on a follower is forwarded to the leader, which costs
// a second hop and the follower's CPU. It asks one endpoint for the
// cluster's status (ClusterService.Status: every shard's leader by node
// id), learns each endpoint's node id from its health answer, and moves
// to the leader's endpoint; any endpoint still serves if that fails (no
// read permission, an endpoint it cannot map, an old server). With several
// shards it picks the member that leads the most of them: a session's
// stream goes to one endpoint, and its create and keepalive touch every
// shard. It asks again after a failover (at most every leaderRelearnMin)
// and, while requests are made, every leaderRelearnMax, so that a moved
// leadership is followed. An endpoint that failed within leaderAvoid is
// not moved back to.

const (
	leaderRelearnMin = time.Second
	leaderRelearnMax = 10 * time.Second
	leaderAvoid      = 5 * time.Second
)

// leaderFinder is the state of the search for the leader.
type leaderFinder struct {
	mu       sync.Mutex
	running  bool
	last     time.Time // when the last search started
	stale    bool      // a failover since: search again after leaderRelearnMin
	disabled bool      // one endpoint: nothing to choose
}

// toLeader starts a search for the leader in the background when one is
// due; requests go on to the current endpoint meanwhile.
func (c *Client) toLeader() {
	f := &c.leader
	f.mu.Lock()
	due := !f.running && !f.disabled &&
		(f.last.IsZero() || time.Since(f.last) > leaderRelearnMax || (f.stale && time.Since(f.last) > leaderRelearnMin))
	if due {
		f.running, f.stale, f.last = true, false, time.Now()
	}
	f.mu.Unlock()
	if !due {
		return
	}
	go func() {
		defer func() {
			f.mu.Lock()
			f.running = false
			f.mu.Unlock()
		}()
		c.findLeader()
	}()
}

// findLeader asks which member leads and moves to its endpoint.
func (c *Client) findLeader() {
	from := c.current()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.attemptTimeout)
	defer cancel()
	st, err := from.cluster.Status(ctx, connect.NewRequest(&pb.ClusterStatusRequest{}))
	if err != nil {
		return
	}
	led := map[string]int{}
	best := ""
	for _, sh := range st.Msg.Shards {
		if sh.LeaderId == "" {
			continue
		}
		led[sh.LeaderId]++
		if best == "" || led[sh.LeaderId] > led[best] {
			best = sh.LeaderId
		}
	}
	if best == "" || c.nodeOf(ctx, from) == best {
		return
	}
	for i, e := range c.endpoints {
		if e == from || e.failedWithin(leaderAvoid) || c.nodeOf(ctx, e) != best {
			continue
		}
		for j, cur := range c.endpoints {
			if cur == from {
				c.cur.CompareAndSwap(int64(j), int64(i)) // unless a failover moved on meanwhile
				return
			}
		}
	}
}

// nodeOf is the node id behind e, asked once (Health) and remembered; ""
// when e does not answer.
func (c *Client) nodeOf(ctx context.Context, e *endpoint) string {
	e.mu.Lock()
	id := e.nodeID
	e.mu.Unlock()
	if id != "" {
		return id
	}
	h, err := e.cluster.Health(ctx, connect.NewRequest(&pb.HealthRequest{}))
	if err != nil {
		return ""
	}
	e.mu.Lock()
	e.nodeID = h.Msg.NodeId
	e.mu.Unlock()
	return h.Msg.NodeId
}

// failedWithin says whether a request left e for another endpoint within d.
func (e *endpoint) failedWithin(d time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.failedAt.IsZero() && time.Since(e.failedAt) < d
}
