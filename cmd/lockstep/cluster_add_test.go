package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// addServer answers AddNode with the headers a server sends.
type addServer struct {
	lockstepv1connect.UnimplementedClusterServiceHandler
	header http.Header
}

func (s *addServer) AddNode(context.Context, *connect.Request[pb.AddNodeRequest]) (*connect.Response[pb.AddNodeResponse], error) {
	r := connect.NewResponse(&pb.AddNodeResponse{})
	for k, v := range s.header {
		r.Header()[k] = v
	}
	return r, nil
}

// TestClusterAddOfAMember: adding a node that is a member already (AddNode
// is idempotent) says so, where it used to advise starting it with --join,
// a second process for a member that may be running; a new member (or an
// older server, which does not say) still gets the advice.
func TestClusterAddOfAMember(t *testing.T) {
	for _, tc := range []struct {
		header http.Header
		want   string
	}{
		{http.Header{rpc.IncarnationHeader: {"1"}},
			"added node-4 at 127.0.0.1:27004; start it with --join --incarnation 1\n"},
		{http.Header{},
			"added node-4 at 127.0.0.1:27004; start it with --join --incarnation 0\n"},
		{http.Header{rpc.IncarnationHeader: {"1"}, rpc.AlreadyMemberHeader: {"true"}},
			"node-4 is already a member at 127.0.0.1:27004, incarnation 1: nothing changed; if it has never run (an empty data directory), start it with --join --incarnation 1\n"},
	} {
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewClusterServiceHandler(&addServer{header: tc.header}))
		srv := httptest.NewServer(mux)
		var out, errb bytes.Buffer
		code := run([]string{"cluster", "add", "node-4", "127.0.0.1:27004", "--endpoints", srv.URL}, &out, &errb)
		srv.Close()
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, &errb)
		}
		if got := out.String(); got != tc.want {
			t.Errorf("headers %v: printed\n%q, want\n%q", tc.header, got, tc.want)
		}
	}
}
