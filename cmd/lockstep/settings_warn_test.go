package main

import (
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
)

// TestClusterWarnsOfOtherConsensusSettings: cluster status warns of the
// consensus keys its members run with different values, naming each key,
// its values and the members of each; members that agree, or that give
// no settings (a build before them), draw no warning.
func TestClusterWarnsOfOtherConsensusSettings(t *testing.T) {
	good := []string{"b-1=127.0.0.1:7001", "b-2=127.0.0.1:7002", "b-3=127.0.0.1:7003"}
	ours := config.Defaults().Consensus
	odd := ours
	odd.ElectionTimeoutMs, odd.HeartbeatIntervalMs, odd.RideAlongMs = 5000, 1000, 0
	with := func(v client.MemberStatus, c config.Consensus) client.MemberStatus {
		v.Status.Consensus = c.Settings()
		return v
	}
	members := func(third client.MemberStatus) []client.MemberStatus {
		return []client.MemberStatus{with(view("http://a:1", "b-1", "leader", 8, good...), ours),
			with(view("http://a:2", "b-2", "follower", 8, good...), ours), third}
	}
	if w := clusterWarnings(members(with(view("http://a:3", "b-3", "follower", 8, good...), ours))); len(w) != 0 {
		t.Fatalf("members of the same settings: warnings %q", w)
	}
	if w := clusterWarnings(members(view("http://a:3", "b-3", "follower", 8, good...))); len(w) != 0 {
		t.Fatalf("a member of a build before the settings: warnings %q", w)
	}
	w := clusterWarnings(members(with(view("http://a:3", "b-3", "follower", 8, good...), odd)))
	if len(w) != 1 {
		t.Fatalf("warnings %q, want one of the settings", w)
	}
	for _, want := range []string{"the members run with different consensus settings: " +
		"consensus.election_timeout_ms is 300 on b-1, b-2, 5000 on b-3; consensus.heartbeat_interval_ms is 100 on b-1, b-2, 1000 on b-3;",
		"rolling change"} {
		if !strings.Contains(w[0], want) {
			t.Errorf("warning %q, want it to say %q", w[0], want)
		}
	}
	if strings.Contains(w[0], "ride_along") && !strings.Contains(w[0], "all but ride_along_ms") {
		t.Errorf("warned of ride_along_ms, which each member may set: %q", w[0])
	}
}
