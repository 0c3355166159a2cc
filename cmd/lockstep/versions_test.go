package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// TestClusterStatusVersions: `cluster status` names the log versions the
// members apply by, and warns, naming who runs which, when they differ:
// such members refuse each other's Raft traffic.
func TestClusterStatusVersions(t *testing.T) {
	const v2, v3 = "rules 2, entries 1, snapshots 3", "rules 3, entries 1, snapshots 3"
	view := func(node, versions string) client.MemberStatus {
		return client.MemberStatus{Endpoint: node, Status: &pb.ClusterStatusResponse{NodeId: node, Versions: versions}}
	}
	down := client.MemberStatus{Endpoint: "node-4", Err: errors.New("unreachable")}

	var out, errOut bytes.Buffer
	printVersions(&common{stdout: &out, stderr: &errOut}, []client.MemberStatus{view("node-1", v2), view("node-2", v2), down})
	if out.String() != "versions: "+v2+"\n" || errOut.Len() != 0 {
		t.Errorf("one build: stdout %q, stderr %q", out.String(), errOut.String())
	}

	out.Reset()
	printVersions(&common{stdout: &out, stderr: &errOut}, []client.MemberStatus{view("node-1", v2), view("node-2", v3), view("node-3", v2)})
	if out.Len() != 0 {
		t.Errorf("mixed builds printed %q on stdout", out.String())
	}
	for _, want := range []string{"different versions", "node-1, node-3: " + v2, "node-2: " + v3, "docs/operations.md"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("the warning lacks %q: %s", want, errOut.String())
		}
	}
}
