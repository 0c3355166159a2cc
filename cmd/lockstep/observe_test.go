package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// flakyElection serves an Observe stream that ends after its first
// message, as a member failing over or restarting ends it: the client
// reopens it and gets the current leader again. leaders[i] is what the
// i-th stream sends; after the last, Observe refuses, which ends the
// observation.
type flakyElection struct {
	lockstepv1connect.UnimplementedElectionServiceHandler
	lockstepv1connect.UnimplementedClusterServiceHandler
	leaders []*pb.ElectionLeader
	streams atomic.Int32
}

func (f *flakyElection) Status(context.Context, *connect.Request[pb.ClusterStatusRequest]) (*connect.Response[pb.ClusterStatusResponse], error) {
	return connect.NewResponse(&pb.ClusterStatusResponse{NodeId: "node-1"}), nil
}

func (f *flakyElection) Observe(_ context.Context, r *connect.Request[pb.ObserveRequest], s *connect.ServerStream[pb.ObserveResponse]) error {
	i := int(f.streams.Add(1)) - 1
	if i >= len(f.leaders) {
		return connect.NewError(connect.CodePermissionDenied, errors.New("the test is over"))
	}
	l := f.leaders[i]
	return s.Send(&pb.ObserveResponse{Name: r.Msg.Name, HasLeader: l != nil, Leader: l})
}

// TestObservePrintsOnlyChanges: `elect --observe` prints the leader once
// and then each change, not the same leader again after every reconnect;
// a refusal ends it with exit 1 and the server's reason.
func TestObservePrintsOnlyChanges(t *testing.T) {
	a := &pb.ElectionLeader{Candidate: "a", Value: []byte("10.0.0.1"), SessionId: 7, FencingToken: 3}
	proclaimed := &pb.ElectionLeader{Candidate: "a", Value: []byte("10.0.0.2"), SessionId: 7, FencingToken: 3}
	b := &pb.ElectionLeader{Candidate: "b", Value: []byte("10.0.0.2"), SessionId: 9, FencingToken: 4}
	f := &flakyElection{leaders: []*pb.ElectionLeader{a, a, a, proclaimed, proclaimed, b, b, nil, nil, b}}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewElectionServiceHandler(f))
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(f))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var out, errb bytes.Buffer
	code := run([]string{"elect", "jobs", "--observe", "--endpoints", srv.URL}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "the test is over") {
		t.Errorf("exit %d, want %d with the refusal; stderr:\n%s", code, exitError, &errb)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		_, rest, _ := strings.Cut(line, "  ") // after the time
		got = append(got, rest)
	}
	want := []string{
		`jobs: a value="10.0.0.1" session=7 token=3`,
		`jobs: a value="10.0.0.2" session=7 token=3`,
		`jobs: b value="10.0.0.2" session=9 token=4`,
		`jobs: no leader`,
		`jobs: b value="10.0.0.2" session=9 token=4`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("printed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
