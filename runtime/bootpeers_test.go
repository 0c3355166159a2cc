package runtime

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMemberBootstrappedWithOtherPeers: three members, one of which
// (node-3) bootstraps with a wrong Raft address for another (a typo in its
// cluster.peers). Before, the cluster formed and looked healthy; once the
// leader stopped, the member whose address node-3 had wrong campaigned,
// and node-3's Dragonboat panicked on its message ("inconsistent target",
// its registry holding the bootstrap's address), leaving no quorum, and
// did so at every restart. Now the members compare the peers they
// bootstrapped with at the Raft hello: node-3 is refused from its first
// connection, every member says at ERROR which entries differ, the
// refusals are counted, and nothing panics.
//
// Dragonboat's panic is in a goroutine of its own, which kills the
// process: the cluster runs in a child process of the test binary.
func TestMemberBootstrappedWithOtherPeers(t *testing.T) {
	if os.Getenv("LOCKSTEP_OTHER_PEERS_CHILD") != "" {
		otherPeersScenario(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMemberBootstrappedWithOtherPeers$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "LOCKSTEP_OTHER_PEERS_CHILD=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	if strings.Contains(text, "panic:") || err != nil {
		t.Fatalf("the cluster's process failed (%v):\n%s", err, tail(text, 60))
	}
	t.Logf("child:\n%s", tail(text, 20))
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

func otherPeersScenario(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, only: []int{0, 1}, captureLogs: true})
	l := c.waitLeaderBesides(0, 2)
	// node-3 has the address of the member that does not lead wrong: that
	// member campaigns once the leader stops.
	other := 1 - l
	wrong := fmt.Sprintf("127.0.0.1:%d", portsInRange(t, 1)[0])
	right := c.cfgs[other].Cluster.RaftAddress
	peers := maps.Clone(c.cfgs[2].Cluster.Peers)
	name := c.cfgs[other].Cluster.NodeID
	peers[name] = wrong
	c.cfgs[2].Cluster.Peers = peers
	c.restart(2)
	// Long enough for node-3 to take part, as it did before: its peers
	// send it the log at every heartbeat.
	time.Sleep(time.Second)
	t.Logf("node-%d leads; node-3 has %s at %s, it is at %s", l+1, name, wrong, right)
	c.nodes[l].crash()
	c.nodes[l] = nil
	// Several election timeouts: the other member campaigns, and sends
	// node-3 its pre-vote.
	time.Sleep(2 * time.Second)

	// Every member says which entries differ: node-3, which refuses the
	// others' connections, and they, from its answer.
	say := fmt.Sprintf("with cluster.peers %s=%s, this member with %s=%s", name, wrong, name, right)
	for i, want := range map[int]string{l: say, other: say, 2: fmt.Sprintf("with cluster.peers %s=%s, this member with %s=%s", name, right, name, wrong)} {
		eventually(t, fmt.Sprintf("node-%d says which peers differ", i+1), func() bool {
			return strings.Contains(c.logs[i].String(), want)
		})
		for _, line := range strings.Split(c.logs[i].String(), "\n") {
			if strings.Contains(line, want) && !strings.Contains(line, "level=ERROR") {
				t.Errorf("node-%d said it below ERROR: %s", i+1, line)
			}
		}
	}
	// And counted by node-3, which refused them.
	if n := labeled(t, c.regs[2], "lockstep_raft_refused_connections_total", "reason", "peers"); n == 0 {
		t.Errorf("node-3 counted no refusal for peers")
	}
	// node-3 never took part: it knows no leader.
	if st, err := c.nodes[2].Status(context.Background()); err == nil && st.Shards[0].LeaderID != "" {
		t.Errorf("node-3 knows leader %s: it took part", st.Shards[0].LeaderID)
	}
	// Its file corrected, node-3 restarts on the member it made: still
	// refused (it panicked at every restart before), since its log holds
	// the peers of its first start.
	c.stop(2)
	c.cfgs[2].Cluster.Peers = c.cfgs[other].Cluster.Peers
	c.restart(2)
	n := labeled(t, c.regs[2], "lockstep_raft_refused_connections_total", "reason", "peers")
	eventually(t, "node-3 restarted is refused again", func() bool {
		return labeled(t, c.regs[2], "lockstep_raft_refused_connections_total", "reason", "peers") > n
	})
	time.Sleep(time.Second)
	if st, err := c.nodes[2].Status(context.Background()); err == nil && st.Shards[0].LeaderID != "" {
		t.Errorf("node-3 restarted knows leader %s: it took part", st.Shards[0].LeaderID)
	}
}
