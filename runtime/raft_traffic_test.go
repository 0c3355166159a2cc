package runtime

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRaftPeerMetrics: each node counts its Raft traffic by peer (its Raft
// address): bytes both ways once the cluster runs, and a peer that
// restarts as a disconnect and then a successful redial.
func TestRaftPeerMetrics(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	lead := c.waitLeader(0)
	s := session(t, c.nodes[lead], time.Minute)
	cycle(t, c.nodes[lead], s, "traffic", 3, 0)
	for i := range 3 {
		if i == lead {
			continue // followers talk to the leader only
		}
		for _, link := range [][2]int{{lead, i}, {i, lead}} {
			from, to := link[0], link[1]
			peer := c.cfgs[to].Cluster.RaftAddress
			eventually(t, "bytes sent counted by peer", func() bool {
				return labeled(t, c.regs[from], "lockstep_raft_peer_sent_bytes_total", "peer", peer) > 0
			})
		}
		if counter(t, c.regs[i], "lockstep_raft_received_bytes_total") == 0 {
			t.Errorf("node-%d counted no bytes received", i+1)
		}
	}
	// Whichever member leads after the restart (a slow run may elect
	// another) dials the restarted peer; any member that had a connection
	// to it sees it ended.
	victim := (lead + 1) % 3
	peer := c.cfgs[victim].Cluster.RaftAddress
	seen := func() (disconnects, dials float64) {
		for i := range 3 {
			if i != victim {
				disconnects += labeled(t, c.regs[i], "lockstep_raft_peer_disconnects_total", "peer", peer)
				dials += labeled(t, c.regs[i], "lockstep_raft_peer_dials_total", "peer", peer, "result", "ok")
			}
		}
		return disconnects, dials
	}
	_, before := seen()
	c.stop(victim)
	c.restart(victim)
	c.waitLeader(0)
	eventually(t, "the others count the restarted peer's disconnect and dial it again", func() bool {
		disconnects, dials := seen()
		return disconnects >= 1 && dials > before
	})
}

// TestRefusalsStartAtZero: lockstep_raft_refused_connections_total has a
// series for every reason from the start, so that the alerts on its
// increase (LockstepIncompatibleMember, LockstepMemberLostItsLog,
// LockstepRemovedMemberRuns) see the first refusal; the series appeared
// only with it.
func TestRefusalsStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, mf := range mfs {
		if mf.GetName() != "lockstep_raft_refused_connections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter().GetValue() != 0 {
				t.Errorf("a fresh counter reads %v", m.GetCounter().GetValue())
			}
			reasons = append(reasons, m.GetLabel()[0].GetValue())
		}
	}
	for _, want := range []string{"versions", "peers", "lost log", "removed", "other replica", "no hello", "tls"} {
		if !slices.Contains(reasons, want) {
			t.Errorf("no series for reason %q at start (has %v)", want, reasons)
		}
	}
}
