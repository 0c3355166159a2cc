package runtime

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOtherConsensusSettingsAreWarnedOf: a member restarted with other
// consensus timing than the others (an operator's trial: 5000/1000 beside
// 300/100, taken silently, and a transfer to it undone 0.3 s later) is
// taken, not refused, and said at WARN on both sides of its connections,
// naming the key, both values and the peer, once per peer and value
// however often it reconnects; lockstep_raft_peer_settings_differ counts
// the keys on the side that hears it, and its status gives its settings.
// Restarted with the others' values, it is said to agree again and the
// gauge falls to 0.
func TestOtherConsensusSettingsAreWarnedOf(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, captureLogs: true})
	const odd = 2
	lead := leaderBesides(t, c, odd)
	same := c.cfgs[odd].Consensus
	c.stop(odd)
	c.cfgs[odd].Consensus.ElectionTimeoutMs, c.cfgs[odd].Consensus.HeartbeatIntervalMs = 1000, 50
	c.cfgs[odd].Consensus.TickIntervalMs, c.cfgs[odd].Consensus.MaxBatch, c.cfgs[odd].Consensus.SnapshotEntries = 100, 4, 50
	c.restart(odd)
	oddAddr, leadAddr := c.cfgs[odd].Cluster.RaftAddress, c.cfgs[lead].Cluster.RaftAddress
	oddName, leadName := c.cfgs[odd].Cluster.NodeID, c.cfgs[lead].Cluster.NodeID
	s := session(t, c.nodes[lead], time.Minute)
	cycle(t, c.nodes[lead], s, "timing", 3, 0)
	warned := func(logs, key, ours, theirs, peer string) int {
		n := 0
		for _, l := range strings.Split(logs, "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "another consensus setting") &&
				strings.Contains(l, "key="+key+" ours="+ours+" theirs="+theirs+" ") && strings.Contains(l, "peer=\""+peer) {
				n++
			}
		}
		return n
	}
	eventually(t, "both sides warn of the election timeout", func() bool {
		return warned(c.logs[lead].String(), "consensus.election_timeout_ms", "200", "1000", oddName+" ("+oddAddr+")") == 1 &&
			warned(c.logs[odd].String(), "consensus.election_timeout_ms", "1000", "200", leadName+" ("+leadAddr+")") == 1
	})
	for _, k := range []struct{ key, ours, theirs string }{{"consensus.heartbeat_interval_ms", "40", "50"},
		{"consensus.tick_interval_ms", "20", "100"}, {"consensus.snapshot_entries", "10000", "50"}, {"consensus.max_batch", "256", "4"}} {
		eventually(t, "the leader warns of "+k.key, func() bool {
			return warned(c.logs[lead].String(), k.key, k.ours, k.theirs, oddName) == 1
		})
	}
	if got := labeled(t, c.regs[lead], "lockstep_raft_peer_settings_differ", "peer", oddAddr); got != 5 {
		t.Errorf("lockstep_raft_peer_settings_differ{peer=%s} = %v on the leader, want 5 keys", oddAddr, got)
	}
	if strings.Contains(c.logs[lead].String(), "compaction_overhead") {
		t.Error("warned of compaction_overhead, which is the same on both")
	}
	st, err := c.nodes[odd].Status(tctx(t))
	if err != nil || !strings.Contains(st.Consensus, "election_timeout_ms=1000, heartbeat_interval_ms=50") {
		t.Errorf("the member's status gives its consensus settings as %q (%v)", st.Consensus, err)
	}

	// Its connections anew, with the same values: nothing more is said.
	c.stop(odd)
	c.restart(odd)
	cycle(t, c.nodes[lead], s, "timing again", 3, 0)
	eventually(t, "the member warns again after its restart", func() bool {
		return warned(c.logs[odd].String(), "consensus.election_timeout_ms", "1000", "200", leadName) == 2
	})
	if n := warned(c.logs[lead].String(), "consensus.election_timeout_ms", "200", "1000", oddName); n != 1 {
		t.Errorf("the leader warned %d times of the same peer and value across its reconnections, want once", n)
	}

	// The others' values again: said at INFO, and the gauge falls.
	c.stop(odd)
	c.cfgs[odd].Consensus = same
	c.restart(odd)
	cycle(t, c.nodes[lead], s, "timing agreed", 3, 0)
	eventually(t, "the leader says the peer agrees again", func() bool {
		return strings.Contains(c.logs[lead].String(), fmt.Sprintf("same consensus settings as this member again\" node=%s peer=\"%s (%s)\"",
			leadName, oddName, oddAddr)) && labeled(t, c.regs[lead], "lockstep_raft_peer_settings_differ", "peer", oddAddr) == 0
	})
}
