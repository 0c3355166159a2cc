//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// failoverBound is how soon after a kill -9 of the leader a survivor must
// grant a lock. The election timeout is 300 ms: followers notice the
// silence only after one timeout, then elect and commit, so the grant comes
// after one to two timeouts (380-630 ms measured here); the bound leaves
// room for this shared two-core machine. The benchmark, not this test,
// reports the figure.
const failoverBound = 2 * time.Second

// TestThreeNodes runs a three-node cluster: requests through followers,
// kill -9 of the leader with a new leader serving soon after and fencing
// tokens that keep increasing, the killed node restarted from its disk and
// catching up, leadership transferred to it, and a member removed, wiped,
// added back and catching up.
func TestThreeNodes(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	leader := c.leader()
	var followers []*node
	for _, nd := range c.nodes {
		if nd != leader {
			followers = append(followers, nd)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Writes and linearizable reads through any member.
	a := c.ok("POST", followers[0], "/locks/ha/acquire", `{"owner":"first","ttl_seconds":60}`)
	want(t, "acquired through a follower", a["acquired"], true)
	t1 := u64(t, a, "fencing_token")
	s := c.ok("GET", followers[1], "/locks/ha/status", "")
	want(t, "linearizable status on the other follower", s["held"], true)
	grpcOnFollower := followers[1].clients(connect.WithGRPC())
	sem, err := grpcOnFollower.sems.Acquire(ctx, connect.NewRequest(&pb.AcquireSemaphoreRequest{Name: "ha-sem", Owner: "g", Limit: 5, Permits: 2}))
	if err != nil || !sem.Msg.Acquired {
		t.Fatalf("gRPC semaphore through a follower: %v %v", sem, err)
	}

	// kill -9 the leader: a survivor serves soon after.
	killed := leader
	start := time.Now()
	killed.Kill()
	var served time.Duration
	eventually(t, 2*failoverBound, "a survivor grants a lock after the leader's kill -9", func() error {
		for _, nd := range followers {
			st, b, err := c.do("POST", nd, "/locks/after-failover/acquire", `{"owner":"survivor","ttl_seconds":60}`)
			if err == nil && st == 200 && b["acquired"] == true {
				served = time.Since(start)
				return nil
			}
		}
		return fmt.Errorf("no grant yet")
	})
	t.Logf("kill -9 of the leader to the next grant: %v", served)
	if served > failoverBound {
		t.Errorf("the next grant came %v after the leader's kill -9, want under %v", served, failoverBound)
	}

	// The grant survived the failover (its session too); its token still
	// releases it, and the next grant's token is larger.
	survivor := c.leader(followers...)
	s = c.ok("GET", survivor, "/locks/ha/status", "")
	want(t, "held across the failover", s["held"], true)
	c.ok("POST", survivor, "/locks/ha/release", fmt.Sprintf(`{"owner":"first","fencing_token":"%d"}`, t1))
	b := c.ok("POST", survivor, "/locks/ha/acquire", `{"owner":"second","ttl_seconds":60}`)
	t2 := u64(t, b, "fencing_token")
	if t2 <= t1 {
		t.Fatalf("token after failover %d does not exceed %d", t2, t1)
	}

	// The killed node restarts from its disk and catches up.
	c.start(killed)
	c.waitHealthy(30*time.Second, killed)
	eventually(t, 15*time.Second, "the restarted node catches up", func() error {
		s := c.ok("GET", killed, "/locks/ha/status?stale=true", "")
		if h, _ := s["holder"].(map[string]any); h == nil || h["fencing_token"] != strconv.FormatUint(t2, 10) {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})

	// Leadership moves to it (asked through the restarted node itself, a
	// follower); it grants with a larger token still.
	if _, err := killed.clients(connect.WithGRPC()).cluster.TransferLeadership(ctx, connect.NewRequest(&pb.TransferLeadershipRequest{ShardId: shardID(t, c, survivor), TargetNodeId: killed.ID})); err != nil {
		t.Fatalf("transfer leadership: %v", err)
	}
	eventually(t, 10*time.Second, "leadership moved to "+killed.ID, func() error {
		if l := c.leader(killed); l != killed {
			return fmt.Errorf("leader is %s", l.ID)
		}
		return nil
	})
	c.ok("POST", killed, "/locks/ha/release", fmt.Sprintf(`{"owner":"second","fencing_token":"%d"}`, t2))
	d := c.ok("POST", killed, "/locks/ha/acquire", `{"owner":"third","ttl_seconds":60}`)
	if t3 := u64(t, d, "fencing_token"); t3 <= t2 {
		t.Fatalf("token after a restart from disk %d does not exceed %d", t3, t2)
	}

	// Remove a follower, wipe it, write while it is gone, add it back: it
	// catches up.
	leader = c.leader()
	var gone *node
	for _, nd := range c.nodes {
		if nd != leader {
			gone = nd
			break
		}
	}
	st, body := c.rest("POST", leader, "/lockstep.v1.ClusterService/RemoveNode", `{"node_id":"`+gone.ID+`"}`)
	if st != 200 {
		t.Fatalf("remove %s (Connect JSON): %d %v", gone.ID, st, body)
	}
	gone.Kill()
	if err := os.RemoveAll(gone.DataDir); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, gone.ID+" no longer a member", func() error {
		if m := members(t, c, leader); len(m) != 2 {
			return fmt.Errorf("members %v", m)
		}
		return nil
	})
	for i := range 20 {
		c.ok("POST", leader, fmt.Sprintf("/locks/while-gone-%d/acquire", i), `{"owner":"w","ttl_seconds":60}`)
	}
	// Added back through the other follower: membership calls work on any
	// member.
	var other *node
	for _, nd := range c.nodes {
		if nd != leader && nd != gone {
			other = nd
		}
	}
	add, err := other.clients(connect.WithGRPC()).cluster.AddNode(ctx, connect.NewRequest(&pb.AddNodeRequest{NodeId: gone.ID, RaftAddress: gone.Raft}))
	if err != nil {
		t.Fatalf("add %s back: %v", gone.ID, err)
	}
	incarnation := add.Header().Get(rpc.IncarnationHeader)
	if incarnation == "" {
		t.Fatalf("AddNode did not say the incarnation (%s header)", rpc.IncarnationHeader)
	}
	t.Logf("%s added back with incarnation %s", gone.ID, incarnation)
	c.start(gone, "--join", "--incarnation", incarnation)
	c.waitHealthy(30*time.Second, gone)
	eventually(t, 20*time.Second, gone.ID+" catches up", func() error {
		s := c.ok("GET", gone, "/locks/while-gone-19/status?stale=true", "")
		if s["held"] != true {
			return fmt.Errorf("status %v", s)
		}
		return nil
	})
	if m := members(t, c, gone); len(m) != 3 {
		t.Fatalf("members after the re-add: %v", m)
	}

	// Without a quorum: the last member says so (503), and still answers
	// stale reads from its own state.
	last := c.nodes[0]
	for _, nd := range c.nodes[1:] {
		nd.Kill()
	}
	eventually(t, 10*time.Second, "/health without a quorum", func() error {
		st, body := c.rest("GET", last, "/health", "")
		if st != 503 || body["code"] != "unavailable" {
			return fmt.Errorf("%d %v", st, body)
		}
		return nil
	})
	st, body = c.rest("POST", last, "/locks/no-quorum/acquire", `{"owner":"x"}`)
	wantError(t, "an acquire without a quorum", st, body, 503, "unavailable")
	stale := c.ok("GET", last, "/locks/while-gone-19/status?stale=true", "")
	want(t, "a stale read without a quorum", stale["stale"], true)
	want(t, "a stale read without a quorum", stale["held"], true)
}

func shardID(t *testing.T, c *cluster, nd *node) uint64 {
	t.Helper()
	s := c.ok("GET", nd, "/cluster/status", "")
	return u64(t, s["shards"].([]any)[0].(map[string]any), "shard_id")
}

func members(t *testing.T, c *cluster, nd *node) []any {
	t.Helper()
	s := c.ok("GET", nd, "/cluster/status", "")
	ms, _ := s["shards"].([]any)[0].(map[string]any)["members"].([]any)
	return ms
}
