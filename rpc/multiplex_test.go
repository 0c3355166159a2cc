package rpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

type multiplexStream = connect.BidiStreamForClient[pb.MultiplexRequest, pb.MultiplexResponse]

// multiplex opens a Multiplex stream on s as principal who ("" for none).
func (s *testServer) multiplex(t *testing.T, ctx context.Context, who string) (*multiplexStream, lockstepv1connect.SessionServiceClient) {
	t.Helper()
	var opts []connect.ClientOption
	if who != "" {
		opts = append(opts, connect.WithInterceptors(bearer(who)))
	}
	c := lockstepv1connect.NewSessionServiceClient(h2c(), s.url, opts...)
	st := c.Multiplex(ctx)
	t.Cleanup(func() { _ = st.CloseRequest(); _ = st.CloseResponse() })
	return st, c
}

// answers receives until n answers or pushes have arrived, and gives them
// by request id (pushes of session loss under 0), with how many messages
// carried them. Pushes of grant ends, which every release causes besides
// its answer, are left out (grantEnds has them).
func answers(t *testing.T, st *multiplexStream, n int) (map[uint64]*pb.StreamResponse, int) {
	t.Helper()
	return receiveUntil(t, st, n, func(r *pb.StreamResponse) bool { return r.GetQueued() == nil && r.GetGrantEnded() == nil })
}

// grantEnds receives until n pushes of grant ends have arrived, and gives
// them by token.
func grantEnds(t *testing.T, st *multiplexStream, n int) map[uint64]*pb.StreamResponse {
	t.Helper()
	got := map[uint64]*pb.StreamResponse{}
	receiveUntil(t, st, n, func(r *pb.StreamResponse) bool {
		if g := r.GetGrantEnded(); g != nil {
			got[g.FencingToken] = r
			return true
		}
		return false
	})
	return got
}

// receiveUntil receives until keep has taken n responses, and gives those
// by request id, with how many messages came.
func receiveUntil(t *testing.T, st *multiplexStream, n int, keep func(*pb.StreamResponse) bool) (map[uint64]*pb.StreamResponse, int) {
	t.Helper()
	got := map[uint64]*pb.StreamResponse{}
	msgs := 0
	for seen := 0; seen < n; {
		m, err := st.Receive()
		if err != nil {
			t.Fatalf("receive after %d of %d answers: %v", seen, n, err)
		}
		msgs++
		for _, r := range m.Responses {
			if !keep(r) {
				continue
			}
			got[r.RequestId] = r
			seen++
		}
	}
	return got, msgs
}

func sendAll(t *testing.T, st *multiplexStream, reqs ...*pb.StreamRequest) {
	t.Helper()
	if err := st.Send(&pb.MultiplexRequest{Requests: reqs}); err != nil {
		t.Fatalf("send %d requests: %v", len(reqs), err)
	}
}

func keepAliveOn(id, session uint64) *pb.StreamRequest {
	return &pb.StreamRequest{RequestId: id, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: session}}}
}

func acquireOn(id, session uint64, name string, wait int64) *pb.StreamRequest {
	return &pb.StreamRequest{RequestId: id, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: name, SessionId: session, WaitTimeoutMs: wait}}}
}

// TestMultiplexCarriesManySessions: one stream carries the requests of
// several sessions, several in one message, each answered by its request
// id; a wait queued by one session is granted on the stream when another
// session's release (on the same stream) frees the name.
func TestMultiplexCarriesManySessions(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.multiplex(t, ctx, "")
	a, b := newSession(t, sessions, 30_000), newSession(t, sessions, 30_000)
	sendAll(t, st, acquireOn(1, a, "x", 0), acquireOn(2, b, "y", 0), keepAliveOn(3, a))
	got, _ := answers(t, st, 3)
	if !got[1].GetAcquireLock().GetAcquired() || !got[2].GetAcquireLock().GetAcquired() || got[3].GetKeepAlive().GetSessionId() != a {
		t.Fatalf("want x granted to a, y to b and a kept alive, got %v", got)
	}
	token := got[1].GetAcquireLock().FencingToken
	sendAll(t, st, acquireOn(4, b, "x", -1))
	m, err := st.Receive()
	if err != nil || len(m.Responses) != 1 || m.Responses[0].RequestId != 4 || m.Responses[0].GetQueued().GetWaiterId() == 0 {
		t.Fatalf("want b's acquire of x queued with its waiter id: %v %v", m, err)
	}
	sendAll(t, st, &pb.StreamRequest{RequestId: 5, Request: &pb.StreamRequest_ReleaseLock{ReleaseLock: &pb.ReleaseLockRequest{
		Name: "x", SessionId: a, FencingToken: token}}})
	got, _ = answers(t, st, 2)
	if !got[5].GetReleaseLock().GetReleased() {
		t.Fatalf("a's release of x: %v", got[5])
	}
	if g := got[4].GetAcquireLock(); !g.GetAcquired() || g.FencingToken <= token {
		t.Fatalf("want b's wait for x granted on the stream with a later token, got %v", got[4])
	}
}

// TestMultiplexGathersAnswers: the answers that are ready together leave
// in one message, not one message each.
func TestMultiplexGathersAnswers(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.multiplex(t, ctx, "")
	id := newSession(t, sessions, 30_000)
	const n = 200
	var reqs []*pb.StreamRequest
	for i := range n {
		reqs = append(reqs, acquireOn(uint64(i+1), id, "many/"+string(rune('a'+i%26))+strings.Repeat("z", i/26), 0))
	}
	sendAll(t, st, reqs...)
	got, msgs := answers(t, st, n)
	for i := range n {
		if !got[uint64(i+1)].GetAcquireLock().GetAcquired() {
			t.Fatalf("request %d: %v", i+1, got[uint64(i+1)])
		}
	}
	if msgs >= n {
		t.Fatalf("%d answers came in %d messages: none was gathered with another", n, msgs)
	}
	t.Logf("%d answers in %d messages", n, msgs)
}

// TestMultiplexPushesEachSessionsLoss: each session named on the stream
// has its own loss pushed, with its id; the others go on.
func TestMultiplexPushesEachSessionsLoss(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.multiplex(t, ctx, "")
	short, long := newSession(t, sessions, 300), newSession(t, sessions, 30_000)
	sendAll(t, st, keepAliveOn(1, short), keepAliveOn(2, long))
	if got, _ := answers(t, st, 2); got[1].GetKeepAlive() == nil || got[2].GetKeepAlive() == nil {
		t.Fatalf("keepalives: %v", got)
	}
	got, _ := answers(t, st, 1)
	if l := got[0].GetSessionLost(); l.GetSessionId() != short || l.Reason != pb.Reason_REASON_SESSION_EXPIRED {
		t.Fatalf("want the short session's loss pushed, got %v", got)
	}
	sendAll(t, st, keepAliveOn(3, long), keepAliveOn(4, short))
	got, _ = answers(t, st, 2)
	if got[3].GetKeepAlive().GetSessionId() != long || got[4].GetError().GetCode() != "not_found" {
		t.Fatalf("after the short session's loss: want the long one kept alive and the short one not_found, got %v", got)
	}
}

// TestMultiplexChecksEachRequest: a request on a Multiplex stream meets
// its twin's checks, among them session ownership: a session of another
// principal is refused on the stream, while the caller's own goes on.
func TestMultiplexChecksEachRequest(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, bobs := s.multiplex(t, ctx, "bob")
	bob := newSession(t, bobs, 30_000)
	st, alices := s.multiplex(t, ctx, "alice")
	alice := newSession(t, alices, 30_000)
	sendAll(t, st, acquireOn(1, bob, "a", 0), acquireOn(2, alice, "a", 0), acquireOn(3, 0, "b", 0), acquireOn(4, alice, "", 0))
	got, _ := answers(t, st, 4)
	// As one that does not exist: permission_denied told a caller which
	// session ids were live.
	if e := got[1].GetError(); e.GetCode() != "not_found" || !strings.Contains(e.GetMessage(), fmt.Sprintf("session %d does not exist", bob)) {
		t.Fatalf("alice naming bob's session: %v", got[1])
	}
	if !got[2].GetAcquireLock().GetAcquired() {
		t.Fatalf("alice's own acquire: %v", got[2])
	}
	if got[3].GetError().GetCode() != "invalid_argument" || got[4].GetError().GetCode() != "invalid_argument" {
		t.Fatalf("no session, no name: %v, %v", got[3], got[4])
	}
}

// TestMultiplexBounds: a message with more requests than the limit ends
// the stream with an error that says what to do.
func TestMultiplexBounds(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.multiplex(t, ctx, "")
	id := newSession(t, sessions, 30_000)
	var reqs []*pb.StreamRequest
	for i := range rpc.MaxMultiplexBatch + 1 {
		reqs = append(reqs, keepAliveOn(uint64(i+1), id))
	}
	sendAll(t, st, reqs...)
	_, err := st.Receive()
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "send them in several messages") {
		t.Fatalf("a message over the request limit: want the stream ended invalid_argument, got %v", err)
	}
}

// TestDrainingEndsSessionStreams: a member that stops (Options.Draining)
// ends its session and Multiplex streams with unavailable, so that their
// clients move to another member. Before, a stream whose client held a
// session open lasted until the client ended it, and SIGTERM's drain
// waited for it to its timeout (15 s), holding the ports a restart needs.
func TestDrainingEndsSessionStreams(t *testing.T) {
	draining, drain := context.WithCancel(context.Background())
	defer drain()
	s := startServer(t, func(o *rpc.Options) { o.Draining = draining })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	mux, sessions := s.multiplex(t, ctx, "")
	id := newSession(t, sessions, 30_000)
	own := sessions.Stream(ctx)
	t.Cleanup(func() { _ = own.CloseRequest(); _ = own.CloseResponse() })

	sendAll(t, mux, keepAliveOn(1, id))
	answers(t, mux, 1)
	if err := own.Send(keepAliveOn(1, id)); err != nil {
		t.Fatal(err)
	}
	if _, err := own.Receive(); err != nil {
		t.Fatal(err)
	}

	drain()
	if _, err := mux.Receive(); connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("the Multiplex stream of a draining member ended with %v, want unavailable saying it shuts down", err)
	}
	if _, err := own.Receive(); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Fatalf("the session stream of a draining member ended with %v, want unavailable", err)
	}
}

// TestStreamWithAWaitIsNotCutForSilence: a stream whose only request is a
// blocked acquire sends nothing while it waits (the Go client may send its
// keepalives to another endpoint), and the silence bound cut it, which
// withdrew the wait: a CLI lock waiting behind a long holder failed after
// three minutes. While a request is served the bound is lifted; a stream
// silent with nothing in flight is still cut.
func TestStreamWithAWaitIsNotCutForSilence(t *testing.T) {
	const idle = 500 * time.Millisecond
	s := startServer(t, func(o *rpc.Options) { o.StreamIdleTimeout = idle })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mux, sessions := s.multiplex(t, ctx, "")
	holder, waiter := newSession(t, sessions, 60_000), newSession(t, sessions, 60_000)
	_, held := s.call(t, "POST", "/locks/silent/acquire", fmt.Sprintf(`{"session_id": "%d"}`, holder))
	sendAll(t, mux, acquireOn(1, waiter, "silent", -1))
	time.Sleep(4 * idle) // silent, with the wait being served
	s.call(t, "POST", "/locks/silent/release", fmt.Sprintf(`{"session_id": "%d", "fencing_token": "%s"}`, holder, held["fencing_token"]))
	got, _ := answers(t, mux, 1)
	if a := got[1].GetAcquireLock(); a == nil || !a.Acquired {
		t.Fatalf("the wait after %v of silence: %v, want granted", 4*idle, got[1])
	}
	// Nothing in flight now: the bound holds again.
	if _, err := mux.Receive(); err == nil {
		t.Fatal("a stream silent with nothing in flight was not cut")
	}
}
