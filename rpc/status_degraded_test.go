package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestClusterStatusSaysWhyAMemberIsDegraded: a member restored from a
// backup grants nothing until the backup's sessions are closed and their
// leases have run out, and /health says so ("degraded", with the reason);
// its cluster status looked like any healthy member's, the first thing
// an operator reads when acquires wait. The status answers the same
// reason, over Connect and REST, and none while nothing needs a person.
func TestClusterStatusSaysWhyAMemberIsDegraded(t *testing.T) {
	s := startServer(t)
	const why = "restored from a backup: this member grants nothing for 41s more (until 2026-12-06T04:12:41Z), " +
		"while the old cluster's clients may still count leases of the sessions the restore closed"
	s.b.mu.Lock()
	s.b.degraded = errors.New(why)
	s.b.mu.Unlock()

	_, health := s.call(t, "GET", "/health", "")
	expect(t, "health status", health["status"], "degraded")
	cluster := lockstepv1connect.NewClusterServiceClient(http.DefaultClient, s.url)
	st, err := cluster.Status(context.Background(), connect.NewRequest(&pb.ClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.DegradedReason != why || st.Msg.DegradedReason != health["reason"] {
		t.Errorf("cluster status's degraded_reason %q, want /health's reason %q", st.Msg.DegradedReason, health["reason"])
	}
	_, rest := s.call(t, "GET", "/cluster/status", "")
	expect(t, "REST cluster status degraded_reason", rest["degraded_reason"], why)

	s.b.mu.Lock()
	s.b.degraded = nil
	s.b.mu.Unlock()
	st, err = cluster.Status(context.Background(), connect.NewRequest(&pb.ClusterStatusRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.DegradedReason != "" {
		t.Errorf("a member that needs nothing: degraded_reason %q, want none", st.Msg.DegradedReason)
	}
}
