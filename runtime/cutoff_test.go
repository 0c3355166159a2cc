package runtime

import (
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lockstepd/lockstep/runtime/transport"
)

// wantCutOff fails the test unless n says it is cut off as role: Health
// fails with ErrCutOff saying say, Healthy is false, and Status gives
// every shard that role and no leader (it showed the last leader
// Dragonboat remembered, which sends a member cut off nothing).
func wantCutOff(t *testing.T, n *Node, role, say string) {
	t.Helper()
	if err := n.Health(); !errors.Is(err, ErrCutOff) || !strings.Contains(err.Error(), say) {
		t.Errorf("%s's Health: %v, want %v saying %q", n.NodeID(), err, ErrCutOff, say)
	}
	if n.Healthy() {
		t.Errorf("%s is healthy, cut off as %s", n.NodeID(), role)
	}
	st, err := n.Status(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Shards {
		if s.Role != role {
			t.Errorf("%s's role in shard %d: %q, want %q", n.NodeID(), s.ShardID, s.Role, role)
		}
		if s.LeaderID != "" {
			t.Errorf("%s's leader in shard %d, cut off as %s: %q, want none", n.NodeID(), s.ShardID, role, s.LeaderID)
		}
	}
	for _, sh := range n.shards {
		if v := gaugeOf(sh.m.hasLeader); v != 0 {
			t.Errorf("%s's lockstep_raft_has_leader for shard %d: %v, want 0 cut off as %s", n.NodeID(), sh.index, v, role)
		}
	}
}

// TestCutOffMemberIsNotHealthy: a member whose peers refuse it fails its
// health check and says what it is in its status, though Dragonboat still
// knows a leader for it (as a member removed while it runs keeps its old
// leader); a peer refused by this member changes nothing of its own
// health. The transport's report is made by hand: the tests of recovery
// make the members it reports for real.
func TestCutOffMemberIsNotHealthy(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, shards: 2})
	l, f := c.waitLeader(0), c.follower()
	n := c.nodes[f]
	if err := n.Health(); err != nil {
		t.Fatalf("a follower of a healthy cluster: %v", err)
	}
	if v := gaugeOf(n.shards[0].m.hasLeader); v != 1 {
		t.Fatalf("lockstep_raft_has_leader of a follower of a healthy cluster: %v", v)
	}
	// Another member refused, as this member or a peer reports it: not
	// this member's standing.
	traffic := raftTraffic{m: n.metrics, self: n.replicaID, cut: &n.cut}
	traffic.CutOff(c.cfgs[l].Cluster.RaftAddress, c.nodes[l].replicaID, transport.CutRemoved, false)
	traffic.CutOff(c.cfgs[l].Cluster.RaftAddress, c.nodes[l].replicaID, transport.CutLostLog, false)
	if err := n.Health(); err != nil {
		t.Fatalf("a member that refused a peer: %v", err)
	}
	traffic.CutOff(c.cfgs[l].Cluster.RaftAddress, n.replicaID, transport.CutRemoved, true)
	if id, _, ok, err := n.nh.GetLeaderID(n.shards[0].dbID); err != nil || !ok || id == 0 {
		t.Fatalf("the test wants Dragonboat to know a leader still: %x, %v, %v", id, ok, err)
	}
	wantCutOff(t, n, RoleRemoved, "it was removed from the cluster")
	for i, m := range c.nodes {
		if i != f && !m.Healthy() {
			t.Errorf("node %d is not healthy: %v", i+1, m.Health())
		}
	}
}

// TestCutOffIsForLife: lost log and removed are for the process's life,
// whatever is reported after; other replica gives way to either, and
// clears once the member finds itself in the membership (a peer's stale
// view while it joined).
func TestCutOffIsForLife(t *testing.T) {
	var c cutOff
	if c.err() != nil || c.role() != "" {
		t.Fatalf("a member nobody refused: %v, %q", c.err(), c.role())
	}
	c.set(transport.CutOtherReplica)
	if c.role() != RoleOtherReplica {
		t.Fatalf("other replica: %q", c.role())
	}
	c.member()
	if c.err() != nil {
		t.Fatalf("other replica, then a member after all: %v", c.err())
	}
	c.set(transport.CutOtherReplica)
	c.set(transport.CutLostLog)
	c.set(transport.CutRemoved)
	c.set(transport.CutOtherReplica)
	c.member()
	if c.role() != RoleLostLog || !errors.Is(c.err(), ErrCutOff) || !strings.Contains(c.err().Error(), "lost its log") {
		t.Fatalf("lost log, then anything: %q, %v", c.role(), c.err())
	}
	var r cutOff
	r.set(transport.CutRemoved)
	r.set(transport.CutLostLog)
	r.member()
	if r.role() != RoleRemoved {
		t.Fatalf("removed, then anything: %q", r.role())
	}
	r.set("versions") // not a reason this member is cut off for
	if r.role() != RoleRemoved {
		t.Fatalf("removed, then an unknown reason: %q", r.role())
	}
}

// gaugeOf is g's value.
func gaugeOf(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		panic(err)
	}
	return value(&m)
}
