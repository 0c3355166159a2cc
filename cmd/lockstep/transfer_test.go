package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

type transferServer struct {
	lockstepv1connect.UnimplementedClusterServiceHandler
	target string
	shard  uint64
}

func (s *transferServer) TransferLeadership(_ context.Context, r *connect.Request[pb.TransferLeadershipRequest]) (*connect.Response[pb.TransferLeadershipResponse], error) {
	s.target, s.shard = r.Msg.TargetNodeId, r.Msg.ShardId
	return connect.NewResponse(&pb.TransferLeadershipResponse{}), nil
}

// TestTransferSaysItMoved: the call answers only once the target leads,
// so the command says leadership moved (it said "asked for leadership to
// move ...; check with 'lockstep cluster status'").
func TestTransferSaysItMoved(t *testing.T) {
	s := &transferServer{}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(s))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"cluster", "transfer", "node-2", "--endpoints", srv.URL}, &out, &errb); code != exitOK || s.target != "node-2" {
		t.Fatalf("exit %d, target %q: %s", code, s.target, &errb)
	}
	if got := out.String(); got != "leadership moved: node-2 leads shard 0 now\n" {
		t.Errorf("printed %q", got)
	}
	// Another shard's (only shard 0's could move).
	out.Reset()
	if code := run([]string{"cluster", "transfer", "node-3", "--shard", "2", "--endpoints", srv.URL}, &out, &errb); code != exitOK ||
		s.target != "node-3" || s.shard != 2 || out.String() != "leadership moved: node-3 leads shard 2 now\n" {
		t.Fatalf("--shard 2: exit %d, target %q, shard %d, printed %q: %s", code, s.target, s.shard, &out, &errb)
	}
}
