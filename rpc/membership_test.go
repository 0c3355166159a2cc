package rpc_test

import (
	"context"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
)

// addingBackend is a backend whose AddMember answers added.
type addingBackend struct {
	rpc.Backend
	added runtime.AddedMember
}

func (b addingBackend) AddMember(context.Context, string, string) (runtime.AddedMember, error) {
	return b.added, nil
}

// TestAddNodeSaysWhenAlreadyAMember: AddNode's answer carries the
// incarnation, and the Lockstep-Already-Member header when the node was a
// member before the call, so that the CLI does not advise starting a
// second process for a member that runs.
func TestAddNodeSaysWhenAlreadyAMember(t *testing.T) {
	for _, tc := range []struct {
		added               runtime.AddedMember
		incarnation, member string
	}{
		{runtime.AddedMember{Incarnation: 2}, "2", ""},
		{runtime.AddedMember{Incarnation: 1, AlreadyMember: true}, "1", "true"},
		{runtime.AddedMember{Incarnation: 2, Deployment: "6c6f636b73746571"}, "2", ""},
	} {
		s := startServer(t, func(o *rpc.Options) { o.Backend = addingBackend{Backend: o.Backend, added: tc.added} })
		cl := lockstepv1connect.NewClusterServiceClient(http.DefaultClient, s.url)
		r, err := cl.AddNode(context.Background(), connect.NewRequest(&pb.AddNodeRequest{NodeId: "node-4", RaftAddress: "127.0.0.1:27004"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Header().Get(rpc.IncarnationHeader); got != tc.incarnation {
			t.Errorf("%+v: %s %q, want %q", tc.added, rpc.IncarnationHeader, got, tc.incarnation)
		}
		if got := r.Header().Get(rpc.AlreadyMemberHeader); got != tc.member {
			t.Errorf("%+v: %s %q, want %q", tc.added, rpc.AlreadyMemberHeader, got, tc.member)
		}
		if got := r.Header().Get(rpc.DeploymentHeader); got != tc.added.Deployment {
			t.Errorf("%+v: %s %q, want %q", tc.added, rpc.DeploymentHeader, got, tc.added.Deployment)
		}
	}
}

// removingBackend is a backend whose RemoveMember answers removed.
type removingBackend struct {
	rpc.Backend
	removed runtime.RemovedMember
}

func (b removingBackend) RemoveMember(context.Context, string) (runtime.RemovedMember, error) {
	return b.removed, nil
}

// TestRemoveNodeSaysWhenNotAMember: RemoveNode's answer carries
// Lockstep-Not-A-Member and the members' names when the node was a member
// of no shard, so that the CLI does not advise wiping a node that may be
// voting under another name.
func TestRemoveNodeSaysWhenNotAMember(t *testing.T) {
	for _, tc := range []struct {
		removed       runtime.RemovedMember
		notA, members string
	}{
		{runtime.RemovedMember{}, "", ""},
		{runtime.RemovedMember{NotAMember: true, Members: []string{"node-1", "replica-6696eec220787d01"}}, "true", "node-1,replica-6696eec220787d01"},
	} {
		s := startServer(t, func(o *rpc.Options) { o.Backend = removingBackend{Backend: o.Backend, removed: tc.removed} })
		cl := lockstepv1connect.NewClusterServiceClient(http.DefaultClient, s.url)
		r, err := cl.RemoveNode(context.Background(), connect.NewRequest(&pb.RemoveNodeRequest{NodeId: "node-3"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Header().Get(rpc.NotAMemberHeader); got != tc.notA {
			t.Errorf("%+v: %s %q, want %q", tc.removed, rpc.NotAMemberHeader, got, tc.notA)
		}
		if got := r.Header().Get(rpc.MembersHeader); got != tc.members {
			t.Errorf("%+v: %s %q, want %q", tc.removed, rpc.MembersHeader, got, tc.members)
		}
	}
}
