//go:build integration

package integration

import (
	"encoding/json"
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
