package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
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

func (s *addServer) RemoveNode(context.Context, *connect.Request[pb.RemoveNodeRequest]) (*connect.Response[pb.RemoveNodeResponse], error) {
	r := connect.NewResponse(&pb.RemoveNodeResponse{})
	for k, v := range s.header {
		r.Header()[k] = v
	}
	return r, nil
}

// TestClusterRemoveOfAFormerMember: removing a node id that is a member of
// no shard when the call comes (removed before, or known to the members
// by another name, as a member restored under an id its backed-up cluster
// had removed) says nothing changed and names the members, where it said
// "removed ..., delete its data directory" of a node that may be voting;
// a real removal (or an older server, which does not say) keeps the advice.
func TestClusterRemoveOfAFormerMember(t *testing.T) {
	for _, tc := range []struct {
		header  http.Header
		want    []string
		wantNot string
	}{
		{http.Header{}, []string{"removed node-3; stop its process and delete (or archive) its data directory"}, "nothing changed"},
		{http.Header{rpc.NotAMemberHeader: {"true"}, rpc.MembersHeader: {"node-1,node-2,replica-6696eec220787d01"}},
			[]string{"node-3 is not a member: nothing changed (members: node-1, node-2, replica-6696eec220787d01)", "'lockstep cluster status'"}, "removed node-3"},
	} {
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewClusterServiceHandler(&addServer{header: tc.header}))
		srv := httptest.NewServer(mux)
		var out, errb bytes.Buffer
		code := run([]string{"cluster", "remove", "node-3", "--endpoints", srv.URL}, &out, &errb)
		srv.Close()
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, &errb)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("headers %v: printed\n%s\nwant %q", tc.header, &out, w)
			}
		}
		if strings.Contains(out.String(), tc.wantNot) {
			t.Errorf("headers %v: printed\n%s\nwhich says %q", tc.header, &out, tc.wantNot)
		}
	}
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
		// A cluster restored from a backup: the node must run under its
		// deployment, which only the restored members' directories had.
		{http.Header{rpc.IncarnationHeader: {"0"}, rpc.DeploymentHeader: {"6c6f636b73746571"}},
			"added node-4 at 127.0.0.1:27004; start it with --join --incarnation 0 --deployment 6c6f636b73746571\n"},
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

// TestClusterRemoveOfANonMember: removing a node id that names no member
// (a typo) says so and exits 1, with no hint about sessions. It printed
// "removed node3; stop its process and delete (or archive) its data
// directory", advice that wiped a member still voting.
func TestClusterRemoveOfANonMember(t *testing.T) {
	srv := refusing(t, connect.CodeNotFound, `"node3" is not a member of the cluster, and never was (its members: node-1, node-2, node-3): nothing changed`)
	var out, errb bytes.Buffer
	code := run([]string{"cluster", "remove", "node3", "--endpoints", srv.URL}, &out, &errb)
	if code == exitOK || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q: want a failure and nothing printed as done", code, &out)
	}
	if !strings.Contains(errb.String(), `"node3" is not a member of the cluster`) || strings.Contains(errb.String(), "session") {
		t.Errorf("stderr:\n%s", &errb)
	}
}

// TestClusterStatusOfWhatIsNotAMember: an endpoint that answered, but is
// no Lockstep API (a metrics port: a bare 404), or serves plaintext to an
// https:// endpoint, is not "unreachable" with the advice to start a
// server there: the row and the hint say what answered.
func TestClusterStatusOfWhatIsNotAMember(t *testing.T) {
	notAPI := httptest.NewServer(http.NotFoundHandler())
	defer notAPI.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	secured := httptest.NewUnstartedServer(http.NotFoundHandler())
	secured.StartTLS()
	defer secured.Close()
	for _, tc := range []struct {
		endpoint, row, say string
	}{
		{notAPI.URL, "not-the-api", "does not serve the Lockstep API (the wrong port?"},
		{strings.Replace(plain.URL, "http://", "https://", 1), "tls-failed", "The server serves plaintext, without TLS: use http:// endpoints"},
		// A TLS port asked in plaintext: Go's bare 400.
		{strings.Replace(secured.URL, "https://", "http://", 1), "tls-failed", "The server refused a plaintext request: if the cluster serves TLS, use https://"},
	} {
		var out, errb bytes.Buffer
		if code := run([]string{"cluster", "status", "--endpoints", tc.endpoint}, &out, &errb); code != exitError {
			t.Errorf("%s: exit %d", tc.endpoint, code)
		}
		if !strings.Contains(out.String(), tc.row) || strings.Contains(out.String(), "unreachable") {
			t.Errorf("%s: the row is not %s:\n%s", tc.endpoint, tc.row, &out)
		}
		if !strings.Contains(errb.String(), tc.say) || strings.Contains(errb.String(), "Is 'lockstep serve' running there?") {
			t.Errorf("%s: stderr:\n%s", tc.endpoint, &errb)
		}
	}
}
