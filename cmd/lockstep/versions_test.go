package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// TestClusterStatusVersions: `cluster status` names the log versions the
// members apply by, and warns, naming who runs which, when they differ:
// such members refuse each other's Raft traffic.
func TestClusterStatusVersions(t *testing.T) {
	const v2, v3 = "rules 2, entries 1, snapshots 3", "rules 3, entries 1, snapshots 3"
	view := func(node, versions string, shards ...uint64) client.MemberStatus {
		if len(shards) == 0 {
			shards = []uint64{0}
		}
		st := &pb.ClusterStatusResponse{NodeId: node, Versions: versions}
		for _, id := range shards {
			st.Shards = append(st.Shards, &pb.ShardStatus{ShardId: id})
		}
		return client.MemberStatus{Endpoint: node, Status: st}
	}
	down := client.MemberStatus{Endpoint: "node-4", Err: errors.New("unreachable")}

	var out, errOut bytes.Buffer
	printVersions(&common{stdout: &out, stderr: &errOut}, []client.MemberStatus{view("node-1", v2), view("node-2", v2), down})
	if out.String() != "versions: "+v2+", shards 1\n" || errOut.Len() != 0 {
		t.Errorf("one build: stdout %q, stderr %q", out.String(), errOut.String())
	}

	out.Reset()
	printVersions(&common{stdout: &out, stderr: &errOut}, []client.MemberStatus{view("node-1", v2), view("node-2", v3), view("node-3", v2)})
	if out.Len() != 0 {
		t.Errorf("mixed builds printed %q on stdout", out.String())
	}
	for _, want := range []string{"different versions", "node-1, node-3: " + v2 + ", shards 1", "node-2: " + v3 + ", shards 1", "docs/operations.md"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("the warning lacks %q: %s", want, errOut.String())
		}
	}

	// One build, another shard count: a member the others refuse too.
	out.Reset()
	errOut.Reset()
	printVersions(&common{stdout: &out, stderr: &errOut}, []client.MemberStatus{view("node-1", v2), view("node-2", v2), view("node-3", v2, 0, 1)})
	if out.Len() != 0 || !strings.Contains(errOut.String(), "node-3: "+v2+", shards 2") {
		t.Errorf("another shard count: stdout %q, stderr %q", out.String(), errOut.String())
	}
}

// TestVersionCommand: `lockstep version` prints the binary's version and
// the log versions it applies by, as text and as JSON, offline; a stray
// argument is a usage error.
func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
		for _, want := range []string{"lockstep " + rpc.Version(), "log versions: " + runtime.Compatibility(), "go1."} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v printed %q, want it to contain %q", args, out.String(), want)
			}
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"version", "-o", "json"}, &out, &errOut); code != exitOK {
		t.Fatalf("-o json: exit %d: %s", code, errOut.String())
	}
	var got map[string]string
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || got["versions"] != runtime.Compatibility() || got["version"] != rpc.Version() {
		t.Fatalf("-o json printed %q (%v)", out.String(), err)
	}
	for _, args := range [][]string{{"version", "--endpoints", "x"}, {"version", "extra"}, {"version", "-o", "yaml"}} {
		errOut.Reset()
		if code := run(args, &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), "lockstep version") {
			t.Errorf("%q: exit %d, %q; want a usage error naming the command", args, code, errOut.String())
		}
	}
	errOut.Reset()
	out.Reset()
	if code := run([]string{"version", "-h"}, &out, &errOut); code != exitOK || !strings.Contains(errOut.String(), "Usage: lockstep version") {
		t.Errorf("-h: exit %d, %q", code, errOut.String())
	}
}
