package runtime

import (
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// TestMixedTransports: a member on Dragonboat's own TCP transport and
// members on runtime/transport replicate, forward and stream snapshots to
// each other both ways, as during a rolling upgrade to this transport.
func TestMixedTransports(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, snapshotEntries: 20, dragonboatFirst: true})
	transfer := func(to int) {
		t.Helper()
		from := c.waitLeader(0)
		if from == to {
			return
		}
		if err := c.nodes[from].TransferLeadership(tctx(t), 0, c.cfgs[to].Cluster.NodeID); err != nil {
			t.Fatalf("transfer to node-%d: %v", to+1, err)
		}
		eventually(t, "the transfer", func() bool { return c.waitLeader(0) == to })
	}
	catchUp := func(lead, victim int, last core.FencingToken, s core.SessionID) core.FencingToken {
		t.Helper()
		c.stop(victim)
		last = cycle(t, c.nodes[lead], s, "mixed", 40, last) // several snapshots; the log is compacted past the victim
		c.restart(victim)                                    // with a new metrics registry
		eventually(t, "the restarted member catches up", func() bool {
			return c.nodes[victim].shards[0].sm.appliedIndex.Load() >= last.LogIndex()
		})
		if got := counter(t, c.regs[victim], "lockstep_snapshots_restored_total"); got == 0 {
			t.Errorf("node-%d caught up without a snapshot from node-%d", victim+1, lead+1)
		}
		return last
	}

	// Node-1 (Dragonboat's transport) leads; node-2 forwards to it.
	transfer(0)
	s := session(t, c.nodes[1], time.Minute)
	last := cycle(t, c.nodes[1], s, "mixed", 5, 0)
	// Node-1 streams a snapshot to node-2.
	last = catchUp(0, 1, last, s)

	// Node-2 (this transport) leads; node-1 forwards to it, then gets a snapshot from it.
	transfer(1)
	last = cycle(t, c.nodes[0], s, "mixed", 5, last)
	last = catchUp(1, 0, last, s)
	cycle(t, c.nodes[0], s, "mixed", 3, last)
}
