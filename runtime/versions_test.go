package runtime

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/runtime/transport"
)

// TestMembersOfOtherVersionsAreCutOff: a member whose build applies the log
// by other rules (another core.Compatibility), or that sends no hello (a
// build before it; Dragonboat's own transport here), gets no Raft traffic
// from the others and none of its own through: it applies nothing while
// the other two serve, and the others count it refused. Run as the others
// do, it catches up. Without the hello it would have applied the same log
// by other rules and diverged silently (docs/operations.md, Upgrading).
func TestMembersOfOtherVersionsAreCutOff(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	const odd = 2
	lead := leaderBesides(t, c, odd)
	s := session(t, c.nodes[lead], time.Minute)
	last := cycle(t, c.nodes[lead], s, "versions", 2, 0)

	refused := func(reason string) float64 {
		var n float64
		for i := range 3 {
			if i != odd {
				n += labeled(t, c.regs[i], "lockstep_raft_refused_connections_total", "reason", reason)
			}
		}
		return n
	}
	for _, run := range []struct {
		name, reason string
		set          func()
	}{
		{"other rules", "versions", func() { c.compat[odd] = "rules 999, entries 1, snapshots 3" }},
		{"no hello", "no hello", func() { c.compat[odd], c.dragonboat[odd] = "", true }},
	} {
		c.stop(odd)
		run.set()
		c.restart(odd)
		lead = c.waitLeaderBesides(0, odd) // the cut-off member knows none
		if lead == odd {
			t.Fatalf("%s: the cut-off member leads", run.name)
		}
		// Every entry from this first grant on was written after the
		// member stopped: it can have them only from its peers. (What it
		// replays from its own disk may end a little past what it had
		// applied when it stopped.)
		first := cycle(t, c.nodes[lead], s, "versions", 1, last)
		last = cycle(t, c.nodes[lead], s, "versions", 4, first)
		eventually(t, run.name+": the others refuse the member", func() bool { return refused(run.reason) > 0 })
		time.Sleep(500 * time.Millisecond) // heartbeats and replication had their chance
		if got := c.nodes[odd].shards[0].sm.appliedIndex.Load(); got >= first.LogIndex() {
			t.Fatalf("%s: the member applied entries %d..%d, written after it stopped, from peers it should not hear",
				run.name, first.LogIndex(), got)
		}
		if st, err := c.nodes[odd].Status(context.Background()); err != nil || st.Shards[0].LeaderID != "" {
			t.Fatalf("%s: the cut-off member sees a leader: %+v, %v", run.name, st.Shards[0], err)
		}
		// What it says it applies by (the serving log line, status) is
		// what its hello claims.
		if want := cmp.Or(c.compat[odd], Compatibility()); c.nodes[odd].Versions() != want {
			t.Fatalf("%s: the member says it applies by %q, want %q", run.name, c.nodes[odd].Versions(), want)
		}
	}

	c.stop(odd)
	c.compat[odd], c.dragonboat[odd] = "", false
	c.restart(odd)
	last = cycle(t, c.nodes[c.waitLeader(0)], s, "versions", 2, last)
	eventually(t, "the member of the same versions catches up", func() bool {
		return c.nodes[odd].shards[0].sm.appliedIndex.Load() >= last.LogIndex()
	})
}

// TestIncompatibleLogOncePerMinute: a refused peer redials at every
// message, so its refusal is logged once a minute per peer, naming the
// member by its id and both versions.
func TestIncompatibleLogOncePerMinute(t *testing.T) {
	var buf bytes.Buffer
	l := newCutOffLog(slog.New(slog.NewTextHandler(&buf, nil)), "rules 2, entries 1, snapshots 3",
		map[string]string{"10.0.0.3:7001": "node-3"})
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	for range 20 {
		l.incompatible("10.0.0.3:7001", "rules 3, entries 1, snapshots 3")
		l.incompatible("10.0.0.9:5555", "")
	}
	now = now.Add(cutOffEvery)
	l.incompatible("10.0.0.3:7001", "rules 3, entries 1, snapshots 3")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines logged, want 3 (each peer once, then node-3 again a minute later):\n%s", len(lines), buf.String())
	}
	for _, want := range []string{`peer="node-3 (10.0.0.3:7001)"`, `theirs="rules 3, entries 1, snapshots 3"`, `ours="rules 2, entries 1, snapshots 3"`, "docs/operations.md"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the first line lacks %s:\n%s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], "sent no hello") || !strings.Contains(lines[1], "10.0.0.9:5555") {
		t.Errorf("the line for a peer without a hello does not say so:\n%s", lines[1])
	}

	// The peers it remembers are bounded: past maxCutOffKept, those
	// not heard of within a minute are forgotten.
	for i := range maxCutOffKept {
		l.incompatible(fmt.Sprintf("10.1.%d.%d:7001", i/256, i%256), "rules 3, entries 1, snapshots 3")
	}
	now = now.Add(2 * cutOffEvery)
	l.incompatible("10.2.0.1:7001", "rules 3, entries 1, snapshots 3")
	if n := len(l.last); n != 1 {
		t.Errorf("%d peers remembered after the others went quiet for two minutes, want 1", n)
	}
}

// TestMemberOfAnotherShardCountIsCutOff: a member started with another
// consensus.shards than the others (a fresh data directory, so its own
// record does not stop it) would look for a name in another shard than
// they do, and could grant it a second time there. Its hello names its
// count, and the others refuse it: it applies nothing of theirs.
func TestMemberOfAnotherShardCountIsCutOff(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	const odd = 2
	lead := leaderBesides(t, c, odd)
	s := session(t, c.nodes[lead], time.Minute)
	c.stop(odd)
	if err := os.RemoveAll(c.cfgs[odd].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.cfgs[odd].Consensus.Shards = 2
	c.restart(odd)
	last := cycle(t, c.nodes[lead], s, "shards", 3, 0)
	eventually(t, "the others refuse the member", func() bool {
		return labeled(t, c.regs[lead], "lockstep_raft_refused_connections_total", "reason", "versions") > 0
	})
	time.Sleep(500 * time.Millisecond)
	for sh := range 2 {
		if got := c.nodes[odd].shards[sh].sm.appliedIndex.Load(); got >= last.LogIndex() {
			t.Fatalf("the member of 2 shards applied up to %d in its shard %d: it heard the others", got, sh)
		}
	}
	if !strings.HasSuffix(c.nodes[odd].raftCompat, ", shards 2") || !strings.HasSuffix(c.nodes[lead].raftCompat, ", shards 1") {
		t.Fatalf("the hellos carry %q and %q, want their shard counts", c.nodes[odd].raftCompat, c.nodes[lead].raftCompat)
	}
	c.stop(odd) // with its wiped directory it must not rejoin as it is
}

// leaderBesides answers shard 0's leader, first moving the lead to node-1
// when member odd has it: the tests restart odd as a member the others
// must refuse.
func leaderBesides(t *testing.T, c *testCluster, odd int) int {
	t.Helper()
	lead := c.waitLeader(0)
	if lead != odd {
		return lead
	}
	if err := c.nodes[lead].TransferLeadership(tctx(t), 0, c.cfgs[0].Cluster.NodeID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the transfer", func() bool { return c.waitLeader(0) == 0 })
	return 0
}

// TestOtherIncarnationIsNamed: a member started under another incarnation
// than the one the cluster added is told both numbers, and to empty its
// data directory, which recorded the wrong one.
func TestOtherIncarnationIsNamed(t *testing.T) {
	var buf bytes.Buffer
	self := config.ReplicaID("node-2", 2)
	r := raftTraffic{m: &metrics{}, self: self, cutOff: newCutOffLog(slog.New(slog.NewTextHandler(&buf, nil)), "v", nil)}
	r.CutOff("10.0.0.1:7001", config.ReplicaID("node-2", 1), transport.CutOtherReplica, true)
	r.CutOff("10.0.0.3:7001", config.ReplicaID("node-3", 0), transport.CutOtherReplica, true)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"--join --incarnation added_as_incarnation", "empty cluster.data_dir", "runs_as_incarnation=2", "added_as_incarnation=1"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("the line for another incarnation lacks %s:\n%s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], "another member") || strings.Contains(lines[1], "incarnation") {
		t.Errorf("the line for another member's address:\n%s", lines[1])
	}
}

// TestCutOffSaysWhyOncePerMinute: a member cut off for a lost log, a
// removal or another replica at its address is told why at ERROR, with
// what to do; a peer's is said at its level; each once a minute per peer
// and reason.
func TestCutOffSaysWhyOncePerMinute(t *testing.T) {
	var buf bytes.Buffer
	l := newCutOffLog(slog.New(slog.NewTextHandler(&buf, nil)), "v", map[string]string{"10.0.0.3:7001": "node-3"})
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	for range 5 {
		l.say("lost log", "10.0.0.3:7001", 0xab, true)
		l.say("removed", "10.0.0.3:7001", 0xab, false)
		l.say("other replica", "10.0.0.4:7001", 0xcd, true)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want one per peer and reason:\n%s", len(lines), buf.String())
	}
	for i, want := range [][]string{
		{"level=ERROR", "lost its log", "lockstep cluster remove", `peer="node-3 (10.0.0.3:7001)"`, "replica_id=ab"},
		{"level=WARN", "removed from the cluster", "replica_id=ab"},
		{"level=ERROR", "another member", "expected_replica_id=cd"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d lacks %s:\n%s", i+1, w, lines[i])
			}
		}
	}
}

// TestOtherDeploymentIsNamed: a member of the same build but another
// deployment (a cluster restored from a backup beside the one it was
// restored from) is refused at the hello, and the line says so rather
// than that it applies the log differently.
func TestOtherDeploymentIsNamed(t *testing.T) {
	var buf bytes.Buffer
	const ours = "rules 3, entries 1, snapshots 4, shards 1"
	l := newCutOffLog(slog.New(slog.NewTextHandler(&buf, nil)), ours, map[string]string{"10.0.0.3:7001": "node-3"})
	l.incompatible("10.0.0.3:7001", ours+", deployment 00000000075bcd15")
	l.incompatible("10.0.0.4:7001", "rules 4, entries 1, snapshots 4, shards 1, deployment 00000000075bcd15")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "another deployment") || !strings.Contains(lines[0], "snapshot restore") {
		t.Fatalf("a member of another deployment:\n%s", buf.String())
	}
	if strings.Contains(lines[1], "another deployment") || !strings.Contains(lines[1], "applies the log differently") {
		t.Fatalf("a member of other versions and another deployment is one of other versions:\n%s", lines[1])
	}
}
