//go:build integration

package integration

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// TestJoinedMemberRestartsWithoutJoin: a member added with AddNode and
// started with --join on a file without peers (docs/operations.md's
// node4.yaml) restarts as the docs say, without --join: its data
// directory holds the member, so it needs neither peers nor join (it was
// refused: "cluster.peers: required unless cluster.join is true"). A first
// start with neither, on an empty data directory, is refused, saying so.
func TestJoinedMemberRestartsWithoutJoin(t *testing.T) {
	c := newCluster(t, 1)
	first := c.nodes[0]
	c.start(first)
	c.waitHealthy(30*time.Second, first)

	joined := c.extraNode("node-2")
	cfg := config.Defaults()
	cfg.Consensus.ElectionTimeoutMs, cfg.Consensus.HeartbeatIntervalMs = 300, 100
	cfg.Cluster = config.Cluster{NodeID: joined.ID, RaftAddress: joined.Raft, APIAddress: joined.API,
		MetricsAddress: joined.Metrics, DataDir: joined.DataDir} // no peers, no join: as node4.yaml
	if err := joined.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}

	// A first start with neither peers nor --join is refused before it
	// listens or touches the data directory.
	out, err := exec.Command(binary, "serve", "--config", joined.ConfigPath).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "cluster.peers: required at a member's first start") ||
		!strings.Contains(string(out), "--join") {
		t.Fatalf("a first start without peers or --join: %v\n%s", err, out)
	}
	if entries, err := os.ReadDir(joined.DataDir); len(entries) > 0 || err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused first start left %v in its data directory (%v)", entries, err)
	}

	c.ok("POST", first, "/lockstep.v1.ClusterService/AddNode", `{"node_id":"node-2","raft_address":"`+joined.Raft+`"}`)
	c.start(joined, "--join")
	t.Cleanup(joined.Kill)
	c.waitHealthy(30*time.Second, first, joined)
	c.ok("POST", joined, "/locks/kept/acquire", `{"owner":"me","ttl_seconds":60}`)

	// Restarted without --join, on the same file: it serves again.
	if err := joined.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "serve", "--config", joined.ConfigPath, "--check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration ok: node node-2, a restart on its data directory") {
		t.Fatalf("serve --check of the joined member's file: %v\n%s", err, out)
	}
	c.start(joined)
	c.waitHealthy(30*time.Second, first, joined)
	if s := c.ok("GET", joined, "/locks/kept/status", ""); s["held"] != true {
		t.Fatalf("the lock taken before the restart: %v", s)
	}
	if m := members(t, c, joined); len(m) != 2 {
		t.Fatalf("members after the restart: %v", m)
	}
}
