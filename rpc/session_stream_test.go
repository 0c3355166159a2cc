package rpc_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// h2c speaks HTTP/2 without TLS, as a bidirectional stream needs.
func h2c() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// sessionStream opens a session stream on s as principal who ("" for none).
func (s *testServer) sessionStream(t *testing.T, ctx context.Context, who string) (*connect.BidiStreamForClient[pb.StreamRequest, pb.StreamResponse], lockstepv1connect.SessionServiceClient) {
	t.Helper()
	var opts []connect.ClientOption
	if who != "" {
		opts = append(opts, connect.WithInterceptors(bearer(who)))
	}
	c := lockstepv1connect.NewSessionServiceClient(h2c(), s.url, opts...)
	st := c.Stream(ctx)
	t.Cleanup(func() { _ = st.CloseRequest(); _ = st.CloseResponse() })
	return st, c
}

// bearer sends "Authorization: Bearer WHO" on every call and stream.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}
func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}
func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func send(t *testing.T, st *connect.BidiStreamForClient[pb.StreamRequest, pb.StreamResponse], req *pb.StreamRequest) {
	t.Helper()
	if err := st.Send(req); err != nil {
		t.Fatalf("send request %d: %v", req.RequestId, err)
	}
}

// receive answers the next message but the pushes of grant ends, which
// every release causes besides its answer (receiveAny has them).
func receive(t *testing.T, st *connect.BidiStreamForClient[pb.StreamRequest, pb.StreamResponse]) *pb.StreamResponse {
	t.Helper()
	for {
		if m := receiveAny(t, st); m.GetGrantEnded() == nil {
			return m
		}
	}
}

func receiveAny(t *testing.T, st *connect.BidiStreamForClient[pb.StreamRequest, pb.StreamResponse]) *pb.StreamResponse {
	t.Helper()
	m, err := st.Receive()
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

func newSession(t *testing.T, c lockstepv1connect.SessionServiceClient, ttlMs int64) uint64 {
	t.Helper()
	r, err := c.Create(context.Background(), connect.NewRequest(&pb.CreateSessionRequest{TtlMs: ttlMs, Owner: "w"}))
	if err != nil {
		t.Fatal(err)
	}
	return r.Msg.SessionId
}

// TestSessionStreamPipelines: requests on one stream are answered as they
// complete, by request id: an acquire queued behind another session's hold
// is told its waiter id at once and does not delay a later acquire and
// release of another name; its grant arrives on the stream when the other
// session releases.
func TestSessionStreamPipelines(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	locks := lockstepv1connect.NewLockServiceClient(h2c(), s.url)
	other := newSession(t, sessions, 30_000)
	held, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "x", SessionId: other}))
	if err != nil || !held.Msg.Acquired {
		t.Fatalf("the other session's acquire: %v %v", held, err)
	}
	me := newSession(t, sessions, 30_000)
	send(t, st, &pb.StreamRequest{RequestId: 1, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "x", SessionId: me, WaitTimeoutMs: -1, ClientId: "c", RequestSeq: 1}}})
	q := receive(t, st)
	if q.RequestId != 1 || q.GetQueued().GetWaiterId() == 0 {
		t.Fatalf("want request 1 queued with its waiter id first, got %v", q)
	}
	send(t, st, &pb.StreamRequest{RequestId: 2, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "y", SessionId: me, ClientId: "c", RequestSeq: 2}}})
	a := receive(t, st)
	if a.RequestId != 2 || !a.GetAcquireLock().GetAcquired() {
		t.Fatalf("want request 2 granted while request 1 waits, got %v", a)
	}
	send(t, st, &pb.StreamRequest{RequestId: 3, Request: &pb.StreamRequest_ReleaseLock{ReleaseLock: &pb.ReleaseLockRequest{
		Name: "y", SessionId: me, FencingToken: a.GetAcquireLock().FencingToken, ClientId: "c", RequestSeq: 3}}})
	if r := receive(t, st); r.RequestId != 3 || !r.GetReleaseLock().GetReleased() {
		t.Fatalf("want request 3 released while request 1 waits, got %v", r)
	}
	if _, err := locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "x", SessionId: other, FencingToken: held.Msg.FencingToken})); err != nil {
		t.Fatal(err)
	}
	g := receive(t, st)
	if g.RequestId != 1 || !g.GetAcquireLock().GetAcquired() || g.GetAcquireLock().FencingToken <= held.Msg.FencingToken {
		t.Fatalf("want request 1's grant pushed once x was released, got %v", g)
	}
}

// TestSessionStreamPushesLoss: the session's expiry reaches its stream as
// it applies, without a keepalive failing first; and a stream bound to one
// session refuses a request for another.
func TestSessionStreamPushesLoss(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	id := newSession(t, sessions, 300)
	another := newSession(t, sessions, 30_000)
	send(t, st, &pb.StreamRequest{RequestId: 1, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: id}}})
	if r := receive(t, st); r.RequestId != 1 || r.GetKeepAlive().GetSessionId() != id {
		t.Fatalf("keepalive on the stream: %v", r)
	}
	send(t, st, &pb.StreamRequest{RequestId: 2, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: another}}})
	if r := receive(t, st); r.RequestId != 2 || r.GetError().GetCode() != "invalid_argument" || !strings.Contains(r.GetError().GetMessage(), "bound to session") {
		t.Fatalf("a request for another session: %v", r)
	}
	start := time.Now()
	r := receive(t, st)
	if r.RequestId != 0 || r.GetSessionLost().GetSessionId() != id || r.GetSessionLost().Reason != pb.Reason_REASON_SESSION_EXPIRED {
		t.Fatalf("want the session's loss pushed, got %v", r)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the loss of a 300 ms session came after %v", d)
	}
	send(t, st, &pb.StreamRequest{RequestId: 3, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: id}}})
	if r := receive(t, st); r.RequestId != 3 || r.GetError().GetCode() != "not_found" {
		t.Fatalf("a keepalive after the loss: %v", r)
	}
}

// namesOnly refuses acquires of names under "secret/".
type namesOnly struct{}

func (namesOnly) Authorize(_ context.Context, _ rpc.Principal, procedure string, msg any) error {
	if n, ok := rpc.NameOf(msg); ok && strings.HasPrefix(n, "secret/") {
		return errors.New("no access to secret/")
	}
	return nil
}

// TestSessionStreamChecksEachRequest: a request on the stream meets its
// unary twin's ACL, audit, metrics and validation, under the twin's
// procedure.
func TestSessionStreamChecksEachRequest(t *testing.T) {
	audit := &auditLog{}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer, o.Auditor = keyAuth{}, namesOnly{}, audit })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "alice")
	id := newSession(t, sessions, 30_000) // alice's: the stream's client sends her key
	send(t, st, &pb.StreamRequest{RequestId: 7, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "secret/a", SessionId: id}}})
	if r := receive(t, st); r.RequestId != 7 || r.GetError().GetCode() != "permission_denied" {
		t.Fatalf("an acquire the ACL refuses: %v", r)
	}
	send(t, st, &pb.StreamRequest{RequestId: 8, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "", SessionId: id}}})
	if r := receive(t, st); r.RequestId != 8 || r.GetError().GetCode() != "invalid_argument" {
		t.Fatalf("an acquire without a name: %v", r)
	}
	send(t, st, &pb.StreamRequest{RequestId: 9, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "open/a", SessionId: id}}})
	if r := receive(t, st); r.RequestId != 9 || !r.GetAcquireLock().GetAcquired() {
		t.Fatalf("an allowed acquire: %v", r)
	}
	audit.mu.Lock()
	var denied, granted *rpc.AuditRecord
	for i, rec := range audit.recs {
		if rec.Procedure != lockstepv1connect.LockServiceAcquireProcedure {
			continue
		}
		switch rec.Code {
		case connect.CodePermissionDenied:
			denied = &audit.recs[i]
		case 0:
			granted = &audit.recs[i]
		}
	}
	audit.mu.Unlock()
	if denied == nil || denied.Principal.ID != "alice" || denied.Request.(*pb.AcquireLockRequest).Name != "secret/a" {
		t.Fatalf("no audit record of the refused acquire as LockService/Acquire by alice: %+v", audit.recs)
	}
	if granted == nil || granted.Response.(*pb.AcquireLockResponse).FencingToken == 0 {
		t.Fatalf("no audit record of the granted acquire with its answer: %+v", audit.recs)
	}
	if got := counter(t, s, "lockstep_rpc_requests_total", lockstepv1connect.LockServiceAcquireProcedure, "permission_denied"); got != 1 {
		t.Fatalf("lockstep_rpc_requests_total{LockService/Acquire, permission_denied} = %v, want 1", got)
	}
}

// counter reads the series of a counter vector with the given procedure
// and code labels.
func counter(t *testing.T, s *testServer, name, procedure, code string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["procedure"] == procedure && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestSessionStreamBounds: the requests in flight on one stream, a request
// without an id or without a request, and a message over the size limit
// are refused with errors that say what to do.
func TestSessionStreamBounds(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.MaxStreamRequests = 2; o.MaxRequestBytes = 4096 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	locks := lockstepv1connect.NewLockServiceClient(h2c(), s.url)
	other := newSession(t, sessions, 30_000)
	me := newSession(t, sessions, 30_000)
	for _, name := range []string{"a", "b"} {
		if _, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: name, SessionId: other})); err != nil {
			t.Fatal(err)
		}
		send(t, st, &pb.StreamRequest{RequestId: uint64(name[0]), Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
			Name: name, SessionId: me, WaitTimeoutMs: -1}}})
		if r := receive(t, st); r.GetQueued() == nil {
			t.Fatalf("want %s queued: %v", name, r)
		}
	}
	send(t, st, &pb.StreamRequest{RequestId: 3, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: me}}})
	if r := receive(t, st); r.RequestId != 3 || r.GetError().GetCode() != "resource_exhausted" || !strings.Contains(r.GetError().GetMessage(), "2 requests are in flight") {
		t.Fatalf("a third request with two in flight: %v", r)
	}
	send(t, st, &pb.StreamRequest{RequestId: 0, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: me}}})
	if r := receive(t, st); r.GetError().GetCode() != "invalid_argument" || !strings.Contains(r.GetError().GetMessage(), "request_id is missing") {
		t.Fatalf("a request without an id: %v", r)
	}
	send(t, st, &pb.StreamRequest{RequestId: 5, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "c", SessionId: me, Value: make([]byte, 8000)}}})
	// The stream ends; the two queued acquires are withdrawn and answered
	// on the way out.
	var err error
	for range 3 {
		if _, err = st.Receive(); err != nil {
			break
		}
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a message over the size limit: want the stream ended resource_exhausted, got %v", err)
	}
}

// TestEveryProcedureNeedsAnAction: a procedure missing from the actions
// map is served without authentication or ACL (security.State skips both
// for it), so every procedure but the health probe must have one.
func TestEveryProcedureNeedsAnAction(t *testing.T) {
	for _, svc := range []string{lockstepv1connect.SessionServiceName, lockstepv1connect.LockServiceName,
		lockstepv1connect.SemaphoreServiceName, lockstepv1connect.RWLockServiceName, lockstepv1connect.BarrierServiceName,
		lockstepv1connect.ElectionServiceName, lockstepv1connect.WatchServiceName, lockstepv1connect.ClusterServiceName} {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatal(err)
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			proc := "/" + svc + "/" + string(methods.Get(i).Name())
			if rpc.ActionOf(proc) == "" && proc != lockstepv1connect.ClusterServiceHealthProcedure {
				t.Errorf("%s has no action: it would be served unauthenticated", proc)
			}
		}
	}
}

// TestSessionStreamEndsWhenTheClientDoes: a client that ends its side of
// the stream is answered what it sent, and then the stream ends.
func TestSessionStreamEndsWhenTheClientDoes(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	id := newSession(t, sessions, 30_000)
	send(t, st, &pb.StreamRequest{RequestId: 1, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: id}}})
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, st); r.RequestId != 1 || r.GetKeepAlive() == nil {
		t.Fatalf("the answer to the last request: %v", r)
	}
	if _, err := st.Receive(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the client ended its side: %v, want the stream to end (EOF)", err)
	}
}
