//go:build integration

package integration

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/runtime"
)

// TestShardedCloseReachesEveryShard is issue 18: with several shards, a
// session close answered 200 as soon as one shard had closed, while a shard
// its entry node could not reach kept the session, and its locks, until its
// TTL ran out there. The rule (docs/runtime.md, Shards; core/shards): a
// close answers 200 only when the session is gone from every shard, and
// 503 while a shard cannot be reached, so the client retries with the same
// (client_id, request_seq).
//
// Three processes, four shards, a session holding one name in every shard.
// The Raft link between the close's entry node and the leader of one of
// those shards is cut, so that shard alone cannot be reached from the entry
// node (its leader keeps its quorum with the third node, which refuses the
// entry node's pre-votes), while the entry node's other shards close. The
// close must answer 503 while the link is cut; the link heals; the retried
// close answers 200; and at once another session try-acquires every name,
// and every one must be granted.
func TestShardedCloseReachesEveryShard(t *testing.T) {
	c := newProxiedCluster(t, 3)
	c.shardConfigs(itShards)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)

	// Wait for the balancer to settle (docs/runtime.md, Leader balance):
	// every shard led by the member it prefers (shard i by the i-th node id
	// in order), so every node leads a shard and no leadership moves once
	// the link is cut. (Waiting only for every node to lead some shard let
	// the balancer move the cut shard's leadership to the third node during
	// the cut, and the close then rightly reached it.)
	ids := make([]string, 0, len(c.nodes))
	for _, nd := range c.nodes {
		ids = append(ids, nd.ID)
	}
	slices.Sort(ids)
	var leaders []string
	eventually(t, 40*time.Second, "every shard led by its preferred member", func() error {
		var err error
		if leaders, err = c.shardLeaders(c.nodes[0]); err != nil {
			return err
		}
		for i, l := range leaders {
			if want := ids[i%len(ids)]; l != want {
				return fmt.Errorf("leaders %v: shard %d is led by %q, not its preferred %s", leaders, i, l, want)
			}
		}
		return nil
	})
	byID := map[string]*node{}
	for _, nd := range c.nodes {
		byID[nd.ID] = nd
	}
	// cutShard is led by far; entry is another node, third the one left.
	const cutShard = 1
	far := byID[leaders[cutShard]]
	var entry, third *node
	for _, nd := range c.nodes {
		switch {
		case nd == far:
		case entry == nil:
			entry = nd
		default:
			third = nd
		}
	}
	t.Logf("shard leaders %v: the close enters at %s; its link to %s (leader of shard %d) will be cut", leaders, entry.ID, far.ID, cutShard)

	// One name in each shard.
	names := make([]string, itShards)
	for i := 0; i < 10_000 && slices.Contains(names, ""); i++ {
		n := fmt.Sprintf("close-%d", i)
		if s := runtime.ShardOf(n, itShards); names[s] == "" {
			names[s] = n
		}
	}
	if slices.Contains(names, "") {
		t.Fatalf("no name for every shard: %q", names)
	}

	sess := c.ok("POST", entry, "/sessions", `{"ttl_seconds":60,"owner":"closer"}`)
	sid := u64(t, sess, "session_id")
	for _, name := range names {
		a := c.ok("POST", entry, "/locks/"+name+"/acquire", fmt.Sprintf(`{"session_id":"%d"}`, sid))
		want(t, name+" acquired by the closing session", a["acquired"], true)
	}
	// The other session exists before the close, so that its try-acquires
	// follow the close's 200 at once.
	other := u64(t, c.ok("POST", third, "/sessions", `{"ttl_seconds":60,"owner":"next"}`), "session_id")

	// Cut before the first close: a close that reached every shard before
	// the cut would be right to answer 200, and prove nothing.
	c.net.Cut(entry.Node, far.Node)
	t.Logf("raft link %s <-> %s cut", entry.ID, far.ID)
	cutAt := time.Now()
	// Longer than the runtime's retry budget (1.5 s at the default 300 ms
	// election timeout), so that at least one attempt meets the cut whole.
	const cutFor = 4 * time.Second
	closePath := fmt.Sprintf("/sessions/%d?client_id=it-closer&request_seq=1", sid)
	healed, refusals := false, 0
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if attempt > 60 || time.Since(start) > 90*time.Second {
			t.Fatalf("the close did not answer 200 within %d attempts and %v (503s: %d)", attempt-1, time.Since(start).Round(time.Millisecond), refusals)
		}
		if !healed && refusals > 0 && time.Since(cutAt) > cutFor {
			c.net.Heal()
			t.Logf("raft links healed")
			healed = true
		}
		st, body, err := c.do("DELETE", entry, closePath, "")
		if err != nil {
			t.Logf("close attempt %d: %v", attempt, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if st == 200 {
			if !healed {
				t.Fatalf("the close answered 200 (attempt %d, %v after the cut) while %s could not reach %s, the leader of shard %d, where the session holds %s: %v",
					attempt, time.Since(cutAt).Round(time.Millisecond), entry.ID, far.ID, cutShard, names[cutShard], body)
			}
			t.Logf("close answered 200 at attempt %d, after %d answers of 503", attempt, refusals)
			break
		}
		if st != 503 {
			t.Fatalf("close attempt %d: %d %v, want 503 while a shard cannot be reached, then 200", attempt, st, body)
		}
		refusals++
		time.Sleep(100 * time.Millisecond)
	}

	// Every name at once, none waiting: each must be free now.
	var wg sync.WaitGroup
	got := make([]map[string]any, len(names))
	errs := make([]error, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, body, err := c.do("POST", third, "/locks/"+name+"/acquire", fmt.Sprintf(`{"session_id":"%d","wait_timeout_ms":0}`, other))
			if err == nil && st != 200 {
				err = fmt.Errorf("%d %v", st, body)
			}
			got[i], errs[i] = body, err
		}()
	}
	wg.Wait()
	for i, name := range names {
		if errs[i] != nil {
			t.Errorf("try-acquire of %s (shard %d) after the close: %v", name, i, errs[i])
			continue
		}
		if got[i]["acquired"] != true {
			t.Errorf("%s (shard %d) is still held after the close answered 200: %v", name, i, got[i])
		}
	}
}
