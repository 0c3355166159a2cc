package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

func view(endpoint, node, role string, term uint64, members ...string) client.MemberStatus {
	sh := &pb.ShardStatus{ShardId: 0, Role: role, Term: term}
	for _, m := range members {
		id, addr, _ := strings.Cut(m, "=")
		sh.Members = append(sh.Members, &pb.Member{NodeId: id, RaftAddress: addr})
	}
	return client.MemberStatus{Endpoint: endpoint, Status: &pb.ClusterStatusResponse{NodeId: node, Shards: []*pb.ShardStatus{sh}}}
}

// TestClusterWarnings: cluster status says what only the members' views
// together show. An SRE walk-through met each as rows to compare: a
// member started with a typo in cluster.peers (it stopped the cluster at
// the next failover), a member on a frozen disk still saying it led, and
// a second process with a running member's node id, whose lost-log advice
// would have removed the member that runs.
func TestClusterWarnings(t *testing.T) {
	good := []string{"b-1=127.0.0.1:7001", "b-2=127.0.0.1:7002", "b-3=127.0.0.1:7003"}
	typo := []string{"b-1=127.0.0.1:7001", "b-2=127.0.0.1:7012", "b-3=127.0.0.1:7003"}
	if w := clusterWarnings([]client.MemberStatus{
		view("http://a:1", "b-1", "leader", 8, good...), view("http://a:2", "b-2", "follower", 8, good...),
		view("http://a:3", "b-3", "follower", 8, good...), {Endpoint: "http://a:4"},
	}); len(w) != 0 {
		t.Fatalf("a healthy cluster with one endpoint down: warnings %q", w)
	}
	// Two members added but never started: only the members line showed
	// them.
	grown := append(good, "b-4=127.0.0.1:7004", "b-5=127.0.0.1:7005")
	if w := clusterWarnings([]client.MemberStatus{
		view("http://a:1", "b-1", "leader", 8, grown...), view("http://a:2", "b-2", "follower", 8, grown...),
		view("http://a:3", "b-3", "follower", 8, grown...),
	}); len(w) != 1 || !strings.Contains(w[0], "members b-4, b-5 did not answer from any endpoint given") {
		t.Fatalf("members that never started: warnings %q", w)
	}
	w := clusterWarnings([]client.MemberStatus{
		view("http://a:1", "b-1", "leader", 8, good...), view("http://a:2", "b-2", "follower", 8, good...),
		view("http://a:3", "b-3", "leader", 7, typo...), view("http://a:5", "b-2", "lost-log", 8, good...),
	})
	want := []string{
		"node id b-2 answered from http://a:2 and http://a:5",
		"shard 0: b-1 (term 8), b-3 (term 7) each say they lead",
		"shard 0: the members see different member lists: b-1, b-2 see b-1=127.0.0.1:7001, b-2=127.0.0.1:7002, b-3=127.0.0.1:7003; b-3 see b-1=127.0.0.1:7001, b-2=127.0.0.1:7012",
	}
	if len(w) != len(want) {
		t.Fatalf("warnings %q, want %d", w, len(want))
	}
	for i := range want {
		if !strings.Contains(w[i], want[i]) {
			t.Errorf("warning %d: %q, want it to say %q", i, w[i], want[i])
		}
	}
	// A quorum lost: one member of three answers, knowing no leader.
	if w := clusterWarnings([]client.MemberStatus{
		view("http://a:1", "b-1", "follower", 9, good...), {Endpoint: "http://a:2"}, {Endpoint: "http://a:3"},
	}); len(w) != 2 || !strings.Contains(w[0], "shard 0 has no leader: 1 of its 3 members answered, and it needs 2 up") ||
		!strings.Contains(w[1], "members b-2, b-3 did not answer") {
		t.Fatalf("a lost quorum: warnings %q", w)
	}
	// A member its peers refuse (removed, lost-log) shows so in its row:
	// the list it sees (none) is no sign of other peers, and was advised
	// on as one ("b-3 see ; ...: replace it").
	if w := clusterWarnings([]client.MemberStatus{
		view("http://a:1", "b-1", "leader", 8, good[:2]...), view("http://a:2", "b-2", "follower", 8, good[:2]...),
		view("http://a:3", "b-3", "removed", 8),
	}); len(w) != 0 {
		t.Fatalf("a removed member beside two healthy ones: warnings %q", w)
	}
}

// TestClusterStatusWarnsOfADegradedMember: a member restored from a
// backup grants nothing until the backup's sessions are closed and their
// leases have run out, and a member whose data directory's file system is
// nearly full stops once a write finds no room; each serves meanwhile,
// and cluster status showed it as any other leader or follower. It now
// says which member is degraded, in its /health's words.
func TestClusterStatusWarnsOfADegradedMember(t *testing.T) {
	good := []string{"b-1=127.0.0.1:7001", "b-2=127.0.0.1:7002", "b-3=127.0.0.1:7003"}
	const hold = "restored from a backup: this member grants nothing for 41s more (until 2026-12-06T04:12:41Z), " +
		"while the old cluster's clients may still count leases of the sessions the restore closed"
	views := []client.MemberStatus{
		view("http://a:1", "b-1", "leader", 8, good...), view("http://a:2", "b-2", "follower", 8, good...),
		view("http://a:3", "b-3", "follower", 8, good...),
	}
	views[0].Status.DegradedReason = hold
	w := clusterWarnings(views)
	if len(w) != 1 || !strings.Contains(w[0], "b-1 is degraded") || !strings.Contains(w[0], hold) {
		t.Fatalf("a member that holds its grants back after a restore: warnings %q, want one naming b-1 with its reason", w)
	}
}

// degradedBy is a backend whose member is degraded for why.
type degradedBy struct {
	rpc.Backend
	why string
}

func (b degradedBy) Degraded() error { return errors.New(b.why) }

// TestClusterStatusShowsWhyAMemberIsDegraded: through a member's API,
// lockstep cluster status warns that it is degraded, with the reason its
// /health gives, and -o json carries the reason in its status.
func TestClusterStatusShowsWhyAMemberIsDegraded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	const why = "restored from a backup: this member grants nothing until the backup's sessions are closed and their leases have run out"
	api := devServerWith(t, func(b rpc.Backend) rpc.Backend { return degradedBy{b, why} })
	var out, errb lockedBuffer
	if code := run([]string{"cluster", "status", "--endpoints", api}, &out, &errb); code != exitOK {
		t.Fatalf("cluster status: exit %d, stderr:\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "is degraded") || !strings.Contains(errb.String(), why) {
		t.Errorf("cluster status does not say the member is degraded and why; stderr:\n%s", errb.String())
	}
	var jout, jerr lockedBuffer
	if code := run([]string{"cluster", "status", "--endpoints", api, "-o", "json"}, &jout, &jerr); code != exitOK {
		t.Fatalf("cluster status -o json: exit %d, stderr:\n%s", code, jerr.String())
	}
	var rows []struct {
		Status struct {
			DegradedReason string `json:"degraded_reason"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(jout.String()), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("cluster status -o json: %v, %d rows:\n%s", err, len(rows), jout.String())
	}
	if rows[0].Status.DegradedReason != why {
		t.Errorf("cluster status -o json: degraded_reason %q, want %q", rows[0].Status.DegradedReason, why)
	}
}
