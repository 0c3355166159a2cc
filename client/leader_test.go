package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// member answers Health as node id and Status with leaders by shard.
type member struct {
	lockstepv1connect.UnimplementedClusterServiceHandler
	id      string
	leaders []string
}

func (m member) Health(context.Context, *connect.Request[pb.HealthRequest]) (*connect.Response[pb.HealthResponse], error) {
	return connect.NewResponse(&pb.HealthResponse{Status: "SERVING", NodeId: m.id}), nil
}

func (m member) Status(context.Context, *connect.Request[pb.ClusterStatusRequest]) (*connect.Response[pb.ClusterStatusResponse], error) {
	out := &pb.ClusterStatusResponse{NodeId: m.id}
	for i, l := range m.leaders {
		out.Shards = append(out.Shards, &pb.ShardStatus{ShardId: uint64(i), LeaderId: l})
	}
	return connect.NewResponse(out), nil
}

// The client moves to the endpoint of the member that leads the most
// shards, as the cluster's status and the endpoints' health answers say.
func TestClientGoesToTheLeader(t *testing.T) {
	leaders := []string{"n3", "n2", "n3"}
	var urls []string
	for _, id := range []string{"n1", "n2", "n3"} {
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewClusterServiceHandler(member{id: id, leaders: leaders}))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	c, err := client.New(urls, client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if c.Endpoint() != urls[0] {
		t.Fatalf("starts at %s, want the first endpoint", c.Endpoint())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = c.ClusterStatus(ctx) // any call starts the search
	deadline := time.Now().Add(5 * time.Second)
	for c.Endpoint() != urls[2] {
		if time.Now().After(deadline) {
			t.Fatalf("the client sends to %s, want n3's endpoint %s (it leads two of three shards)", c.Endpoint(), urls[2])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noQuorum answers every status read 503, as a member without a quorum.
type noQuorum struct{ member }

func (noQuorum) Status(context.Context, *connect.Request[pb.ClusterStatusRequest]) (*connect.Response[pb.ClusterStatusResponse], error) {
	return nil, connect.NewError(connect.CodeUnavailable, errors.New("shard 0: this member found no leader within 1.5s: retry later"))
}

// TestUnavailableQuotesTheServerOnce: a call that every endpoint answered
// 503 says that it was answered, in the server's words once. It said "no
// endpoint available (...; last from URL: unavailable: lockstep:
// unavailable: no leader or no quorum: ...)", though the endpoint was
// there and said why.
func TestUnavailableQuotesTheServerOnce(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(noQuorum{member{id: "n1"}}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := client.New([]string{srv.URL}, client.WithRetryTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ClusterStatus(context.Background())
	msg := fmt.Sprint(err)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(msg, "the last, "+srv.URL+", answered: shard 0: this member found no leader") ||
		strings.Count(msg, "unavailable") != 1 || strings.Contains(msg, "no endpoint") {
		t.Fatalf("a call every endpoint answered 503: %q, want ErrUnavailable quoting the server once", msg)
	}
}

// A fresh Client whose first endpoint accepts connections but answers
// nothing (a stopped process, a cut link) makes its first call on the next
// endpoint, as soon as that one answers a health call: before, the call
// waited out the attempt timeout on the first (2 s by default, for every
// CLI command; a minute here, so that waiting fails the test).
func TestFirstCallSkipsASilentFirstEndpoint(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0") // never accepted: the kernel completes the handshake, nobody answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(member{id: "n2", leaders: []string{"n2"}}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := client.New([]string{"http://" + silent.Addr().String(), srv.URL},
		client.WithAttemptTimeout(time.Minute), client.WithRetryTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		t.Fatalf("the first call with the first endpoint silent: %v", err)
	}
	if st.NodeId != "n2" || c.Endpoint() != srv.URL {
		t.Fatalf("answered by %q, endpoint now %s; want n2 at %s", st.NodeId, c.Endpoint(), srv.URL)
	}
}
