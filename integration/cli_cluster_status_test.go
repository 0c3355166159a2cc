//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/runtime"
)

// TestCLIClusterStatusEveryMember asks every member at once: one row per
// member, exactly one leader, every member within reach of the leader's
// applied index, and an endpoint that does not answer shown as such.
func TestCLIClusterStatusEveryMember(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	urls := []string{}
	for _, nd := range c.nodes {
		urls = append(urls, nd.url())
	}
	dead := "http://" + freePort(t)
	l := cli{t: t, url: strings.Join(append(urls, dead), ","), dir: t.TempDir()}
	code, out, errOut := l.run(30*time.Second, "cluster", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var rows []struct {
		Endpoint  string
		Reachable bool
		Status    struct {
			NodeID   string `json:"node_id"`
			Versions string
			Shards   []struct {
				Role         string
				AppliedIndex string `json:"applied_index"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows for 4 endpoints: %s", len(rows), out)
	}
	leaders, nodes := 0, map[string]bool{}
	for _, r := range rows[:3] {
		if !r.Reachable || len(r.Status.Shards) != 1 {
			t.Fatalf("member %s: %+v", r.Endpoint, r)
		}
		nodes[r.Status.NodeID] = true
		if r.Status.Versions != runtime.Compatibility() {
			t.Errorf("member %s applies by %q, want this build's %q", r.Endpoint, r.Status.Versions, runtime.Compatibility())
		}
		if r.Status.Shards[0].Role == "leader" {
			leaders++
		}
	}
	if leaders != 1 || len(nodes) != 3 {
		t.Fatalf("%d leaders among %v: %s", leaders, nodes, out)
	}
	if rows[3].Reachable || rows[3].Endpoint != dead {
		t.Fatalf("the dead endpoint: %+v", rows[3])
	}
	code, out, _ = l.run(30*time.Second, "cluster", "status")
	if code != 0 || !strings.Contains(out, "ENDPOINT") || strings.Count(out, "leader ") < 1 || !strings.Contains(out, "unreachable") ||
		!strings.Contains(out, "versions: "+runtime.Compatibility()+", shards 1") {
		t.Fatalf("the table: exit %d\n%s", code, out)
	}
}

// TestCLIRemovesTheLeaderThroughAnotherMember: `lockstep cluster remove`
// of the leader, given every endpoint, is refused by the leader itself (a
// member cannot remove itself whole) and done by the next endpoint. With
// only the leader's endpoint it exits non-zero saying to ask another
// member, and nothing changes.
func TestCLIRemovesTheLeaderThroughAnotherMember(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	leader := c.leader()
	alone := cli{t: t, url: leader.url(), dir: t.TempDir()}
	code, out, errOut := alone.run(30*time.Second, "cluster", "remove", leader.ID)
	if code == 0 || !strings.Contains(errOut, "cannot remove itself: send the removal to another member") {
		t.Fatalf("removing the leader through itself: exit %d\n%s\n%s", code, out, errOut)
	}
	if m := members(t, c, leader); len(m) != 3 {
		t.Fatalf("members after the refusal: %v, want three", m)
	}
	urls := []string{leader.url()}
	var other *node
	for _, nd := range c.nodes {
		if nd != leader {
			urls = append(urls, nd.url())
			other = nd
		}
	}
	all := cli{t: t, url: strings.Join(urls, ","), dir: t.TempDir()}
	if code, out, errOut := all.run(30*time.Second, "cluster", "remove", leader.ID); code != 0 {
		t.Fatalf("removing the leader with every endpoint: exit %d\n%s\n%s", code, out, errOut)
	}
	eventually(t, 10*time.Second, leader.ID+" no longer a member", func() error {
		if m := members(t, c, other); len(m) != 2 {
			return fmt.Errorf("members %v", m)
		}
		return nil
	})
}
