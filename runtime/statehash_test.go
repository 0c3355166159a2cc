package runtime

import (
	"testing"
	"time"
)

// TestStateHashesAgree: members that applied the same log to the same index
// report the same hash, and a change of state changes it.
func TestStateHashesAgree(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, clock: newTestClock().now})
	leader := c.nodes[c.waitLeader(0)]
	s := session(t, leader, 5*time.Second)
	before := agreedHash(t, c)
	do(t, leader, mutex("hash/a", s, 0))
	after := agreedHash(t, c)
	if after.AppliedIndex <= before.AppliedIndex {
		t.Fatalf("applied index did not move: %d then %d", before.AppliedIndex, after.AppliedIndex)
	}
	if after.Hash == before.Hash {
		t.Fatalf("a grant left the state hash unchanged at %x", after.Hash)
	}
}

// agreedHash polls every member until all report shard 0 at one applied
// index, checking that members at the same index never differ.
func agreedHash(t *testing.T, c *testCluster) StateHash {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var seen []StateHash
		for _, n := range c.nodes {
			hs, err := n.StateHashes()
			if err != nil || len(hs) != 1 {
				t.Fatalf("StateHashes: %v %v", hs, err)
			}
			seen = append(seen, hs[0])
		}
		same := true
		for _, h := range seen[1:] {
			if h.AppliedIndex != seen[0].AppliedIndex {
				same = false
			} else if h.Hash != seen[0].Hash {
				t.Fatalf("two members at index %d differ: %x and %x", h.AppliedIndex, seen[0].Hash, h.Hash)
			}
		}
		if same {
			return seen[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the members never reported one applied index")
	return StateHash{}
}
