package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lni/dragonboat/v4/raftpb"

	"github.com/lockstepd/lockstep/internal/dirstate"
)

// sameState fails the test for each way after differs from before.
func sameState(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for _, c := range dirstate.Changes(before, after) {
		t.Errorf("%s %s", what, c)
	}
}

// writeDragonboatRecord rewrites dir's Dragonboat record with change made.
func writeDragonboatRecord(t *testing.T, dir string, change func(*raftpb.RaftDataStatus)) {
	t.Helper()
	s, found, err := readDragonboatRecord(dir)
	if err != nil || !found {
		t.Fatalf("Dragonboat's record: found %v, %v", found, err)
	}
	change(&s)
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, dragonboatFlagFile), flagFile(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStartRefusesAnotherMembersDataDirectory: a start under another
// cluster.raft_address than the data directory was made with is refused
// before Dragonboat runs, naming the address the directory recorded and
// how a member moves to another address (remove it, add it back, start it
// empty with --join and its new incarnation), and leaving the directory
// as it was. Dragonboat's own refusal named neither address, and the hint
// added to it ("give this member its own data_dir (an empty one makes a
// new member)") led to a member its peers refuse as one that lost its log.
func TestStartRefusesAnotherMembersDataDirectory(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	c.stop(0)
	cfg := c.cfgs[0]
	dir, had := cfg.Cluster.DataDir, cfg.Cluster.RaftAddress
	moved := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	cfg.Cluster.RaftAddress = moved
	cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: moved}
	before := dirstate.Must(t, dir)
	_, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
	for _, want := range []string{
		"cluster.raft_address: not the owner of the data directory: " + dir + " belongs to the member that ran with cluster.raft_address " + had +
			", and this start has " + moved,
		"start with cluster.raft_address: " + had,
		"remove it (lockstep cluster remove node-1), add it back at the new address (lockstep cluster add node-1 " + moved,
		"start it on an empty data directory with --join --incarnation N",
		"docs/operations.md, Membership changes, \"Move a member to another Raft address\"",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a start at %s on %s's data directory: %v\nwant it to say %q", moved, had, err, want)
		}
	}
	sameState(t, "the refused start", before, dirstate.Must(t, dir))
	c.restart(0)
	c.waitLeader(0)
}

// TestStartOnAnotherNodesDataDirectoryNamesItsOwner: node-2 started on
// node-1's data directory, at node-2's own address, is refused naming
// the directory's member and what to do: give node-2 its own. It was
// refused as the owner of the directory with a changed address, with the
// advice to remove node-2 and add it back, which replaces a healthy
// member. A directory from before the node id record is told by the
// peers it bootstrapped with, or by its own replica in the book of
// peers' logs. Nothing in the directory changes, and node-1 starts on it.
func TestStartOnAnotherNodesDataDirectoryNamesItsOwner(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	own := c.cfgs[0]
	dir := own.Cluster.DataDir
	eventually(t, "node-1 books its own log", func() bool {
		self, _, _ := readLogID(dir)
		b, _ := os.ReadFile(filepath.Join(dir, peerLogsFile))
		return strings.Contains(string(b), fmt.Sprintf(" %016x", self))
	})
	c.stop(0)
	if b, err := os.ReadFile(filepath.Join(dir, nodeIDFile)); err != nil || string(b) != "node-1\n" {
		t.Fatalf("the node id record: %q, %v", b, err)
	}
	other := own
	other.Cluster.NodeID = "node-2"
	other.Cluster.RaftAddress = fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	other.Cluster.Peers = map[string]string{"node-1": own.Cluster.RaftAddress, "node-2": other.Cluster.RaftAddress}
	refused := func(what string) {
		t.Helper()
		before := dirstate.Must(t, dir)
		want := "cluster.data_dir: " + dir + " is node-1's data directory (it ran with cluster.raft_address " + own.Cluster.RaftAddress +
			"), not node-2's: give node-2 its own cluster.data_dir (--data-dir)"
		for _, err := range []error{CheckDataDir(other), func() error {
			_, err := Start(context.Background(), Options{Config: other, Logger: testLogger(t)})
			return err
		}()} {
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "cluster remove") {
				t.Errorf("%s: node-2 on node-1's data directory: %v\nwant it to say %q, and not to remove anything", what, err, want)
			}
		}
		sameState(t, what+": the refused start", before, dirstate.Must(t, dir))
	}
	refused("with the record")
	if err := os.Remove(filepath.Join(dir, nodeIDFile)); err != nil {
		t.Fatal(err)
	}
	refused("a directory from before the record")
	if err := os.Remove(filepath.Join(dir, bootPeersFile)); err != nil {
		t.Fatal(err)
	}
	refused("a directory without the record or bootstrap peers (a member that joined)")
	c.restart(0)
	c.waitLeader(0)
}

// TestCheckDataDir: CheckDataDir refuses each data directory Start
// refuses, with Start's error, and writes nothing: a wrong shard count,
// incarnation or Raft address, another host, and each record damaged;
// a directory that does not exist passes and is not made.
func TestCheckDataDir(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1, shards: 2})
	c.stop(0)
	good := c.cfgs[0]
	dir := good.Cluster.DataDir
	if err := CheckDataDir(good); err != nil {
		t.Fatalf("the member's own data directory: %v", err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	damage := func(file, text string) func(*testing.T) {
		return func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*testing.T)
		shards int
		inc    int
		want   string
	}{
		{name: "shards", shards: 1, want: "consensus.shards: the data directory " + dir + " was made with 2 shards, and this start asks for 1"},
		{name: "incarnation", inc: 1, want: "cluster.incarnation: " + dir + " belongs to incarnation 0 of this node, got 1"},
		{name: "host", change: func(t *testing.T) {
			writeDragonboatRecord(t, dir, func(s *raftpb.RaftDataStatus) { s.Hostname = "elsewhere" })
		}, want: "cluster.data_dir " + dir + " was made on the host \"elsewhere\", and this host is \"" + host + "\""},
		{name: "deployment", change: func(t *testing.T) {
			writeDragonboatRecord(t, dir, func(s *raftpb.RaftDataStatus) { s.DeploymentId = 42 })
		}, want: fmt.Sprintf("was made under the Raft deployment %016x, and its member runs under %016x", 42, deploymentID)},
		{name: "Dragonboat's record", change: damage(dragonboatFlagFile, "not a record"), want: "dragonboat.ds is not Dragonboat's record"},
		{name: "log id", change: damage(logIDFile, "zz\n"), want: "lockstep-log-id does not hold a log id"},
		{name: "deployment record", change: damage(deploymentFile, "0\n"), want: "lockstep-deployment does not hold a deployment id"},
		{name: "peer logs", change: damage(peerLogsFile, "what\n"), want: "lockstep-peer-logs, line 1, is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			saved := map[string][]byte{}
			for _, f := range []string{dragonboatFlagFile, logIDFile, deploymentFile, peerLogsFile} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					saved[f] = b
				}
			}
			defer func() {
				// A record the case made where there was none goes (the
				// book of peers' logs is written a while after a start, so
				// a slow run may have none yet).
				for _, f := range []string{dragonboatFlagFile, logIDFile, deploymentFile, peerLogsFile} {
					if _, ok := saved[f]; !ok {
						os.Remove(filepath.Join(dir, f))
					}
				}
				for f, b := range saved {
					if err := os.WriteFile(filepath.Join(dir, f), b, 0o640); err != nil {
						t.Fatal(err)
					}
				}
			}()
			if tc.change != nil {
				tc.change(t)
			}
			cfg := good
			if tc.shards != 0 {
				cfg.Consensus.Shards = tc.shards
			}
			cfg.Cluster.Incarnation = tc.inc
			before := dirstate.Must(t, dir)
			err := CheckDataDir(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CheckDataDir: %v\nwant %q", err, tc.want)
			}
			sameState(t, "CheckDataDir", before, dirstate.Must(t, dir))
			n, startErr := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
			if n != nil {
				n.Close()
			}
			if startErr == nil || err == nil || startErr.Error() != err.Error() {
				t.Errorf("Start: %v\nwant CheckDataDir's: %v", startErr, err)
			}
			sameState(t, "the refused start", before, dirstate.Must(t, dir))
		})
	}
	missing := good
	missing.Cluster.DataDir = filepath.Join(t.TempDir(), "new", "data")
	if err := CheckDataDir(missing); err != nil {
		t.Errorf("a data directory that does not exist: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(missing.Cluster.DataDir))); err == nil {
		t.Errorf("CheckDataDir made %s", filepath.Dir(missing.Cluster.DataDir))
	}
	notDir := good
	notDir.Cluster.DataDir = filepath.Join(dir, logIDFile)
	if err := CheckDataDir(notDir); err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("a data directory that is a file: %v", err)
	}
	c.restart(0)
	c.waitLeader(0)
}
