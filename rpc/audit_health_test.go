package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// probeAuth is package security's rule: every procedure but those that
// need no action (health) needs credentials.
type probeAuth struct{}

func (probeAuth) Authenticate(ctx context.Context, procedure string, h http.Header) (rpc.Principal, error) {
	if rpc.ActionOf(procedure) == "" {
		return rpc.Principal{}, nil
	}
	return keyAuth{}.Authenticate(ctx, procedure, h)
}

// failingAudit is an audit log that cannot be written.
type failingAudit struct{ auditLog }

func (*failingAudit) Healthy() error {
	return errors.New("open audit.jsonl: no such file or directory")
}

// TestHealthIsNotAudited: health checks, which load balancers send every
// second without credentials, write no audit line, whichever way they come
// (GET and HEAD /health, Connect's ClusterService.Health, gRPC health);
// each was a line of ~250 bytes, filling the audit log. A refusal of any
// other procedure is still recorded. While the log cannot be written, the
// health checks fail, as every other request does.
func TestHealthIsNotAudited(t *testing.T) {
	audit := &auditLog{}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Auditor = probeAuth{}, audit })
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, s.url+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		expect(t, method+" /health", resp.StatusCode, 200)
	}
	cl := lockstepv1connect.NewClusterServiceClient(http.DefaultClient, s.url)
	if _, err := cl.Health(context.Background(), connect.NewRequest(&pb.HealthRequest{})); err != nil {
		t.Fatalf("Connect Health: %v", err)
	}
	hc := grpchealth.NewClient(http.DefaultClient, s.url)
	if r, err := hc.Check(context.Background(), &grpchealth.CheckRequest{}); err != nil || r.Status != grpchealth.StatusServing {
		t.Fatalf("gRPC health: %+v, %v", r, err)
	}
	st, e := s.call(t, "GET", "/cluster/status", "")
	expectError(t, st, e, 401, "unauthenticated")

	audit.mu.Lock()
	recs := append([]rpc.AuditRecord(nil), audit.recs...)
	audit.mu.Unlock()
	if len(recs) != 1 || recs[0].Procedure != lockstepv1connect.ClusterServiceStatusProcedure || recs[0].Code != connect.CodeUnauthenticated {
		t.Fatalf("audit records: %+v, want only the refused cluster status", recs)
	}

	failing := &failingAudit{}
	s = startServer(t, func(o *rpc.Options) { o.Authenticator, o.Auditor = probeAuth{}, failing })
	st, e = s.call(t, "GET", "/health", "")
	expectError(t, st, e, 503, "unavailable")
	if msg, _ := e["message"].(string); !strings.Contains(msg, "audit log") {
		t.Errorf("/health while the audit log cannot be written: %v, want it to say so", e)
	}
	hc = grpchealth.NewClient(http.DefaultClient, s.url)
	if r, err := hc.Check(context.Background(), &grpchealth.CheckRequest{}); err != nil || r.Status != grpchealth.StatusNotServing {
		t.Errorf("gRPC health while the audit log cannot be written: %+v, %v, want NOT_SERVING", r, err)
	}
	if len(failing.recs) != 0 {
		t.Errorf("audit records of health checks: %+v", failing.recs)
	}
}

// TestAnswerWithheldWithoutItsRecord: a request served whose audit line
// cannot be written is answered 503, saying it may have taken effect and
// how to retry, not with its answer: no answer goes out without its
// record. Lines were buffered and written after the answer, and dropped
// when the write failed, so requests served as the disk filled left no
// trace. A refusal keeps its own answer.
func TestAnswerWithheldWithoutItsRecord(t *testing.T) {
	audit := &auditLog{fail: errors.New("writing audit.jsonl: no space left on device")}
	s := startServer(t, func(o *rpc.Options) { o.Auditor = audit })
	st, e := s.call(t, "POST", "/locks/a/acquire", `{"owner": "me"}`)
	expectError(t, st, e, 503, "unavailable")
	if msg, _ := e["message"].(string); !strings.Contains(msg, "could not record this request (writing audit.jsonl: no space left on device)") ||
		!strings.Contains(msg, "may have taken effect") || !strings.Contains(msg, "same client_id and request_seq") {
		t.Errorf("the answer of a request whose record failed: %q", msg)
	}
	audit.mu.Lock()
	audit.fail = nil
	audit.mu.Unlock()
	st, e = s.call(t, "GET", "/locks/a/status", "")
	if st != 200 || e["held"] != true {
		t.Fatalf("the acquire whose answer was withheld took effect, and status says %d %v", st, e)
	}
	audit.mu.Lock()
	audit.fail = errors.New("writing audit.jsonl: no space left on device")
	audit.mu.Unlock()
	st, e = s.call(t, "POST", "/locks/a/release", `{"owner": "someone-else"}`)
	expectError(t, st, e, 400, "invalid_argument")
}

// TestStreamAnswerWithheldWithoutItsRecord: the same on a session stream,
// where each request has its own record: its answer is an unavailable
// error, and the request took effect. A stream whose opening cannot be
// recorded ends.
func TestStreamAnswerWithheldWithoutItsRecord(t *testing.T) {
	audit := &auditLog{}
	_, st, sessions, a := auditedStream(t, audit)
	sendAll(t, st, keepAliveOn(9, a)) // opens the stream, and its line
	answers(t, st, 1)
	audit.mu.Lock()
	audit.fail = errors.New("writing audit.jsonl: input/output error")
	audit.mu.Unlock()
	sendAll(t, st, acquireOn(1, a, "x", 0))
	got, _ := answers(t, st, 1)
	if e := got[1].GetError(); e.GetCode() != "unavailable" || !strings.Contains(e.GetMessage(), "its answer is withheld") {
		t.Fatalf("an acquire on a stream whose record failed was answered %v", got[1])
	}
	audit.mu.Lock()
	audit.fail = nil
	audit.mu.Unlock()
	b := newSession(t, sessions, 30_000)
	sendAll(t, st, acquireOn(2, b, "x", 0))
	got, _ = answers(t, st, 1)
	if got[2].GetAcquireLock() == nil || got[2].GetAcquireLock().GetAcquired() {
		t.Fatalf("x was free after the acquire whose answer was withheld: %v", got[2])
	}
}

// TestStreamOpeningIsRecorded: a stream has a line when it opens (its
// first message read, outcome opened), besides the one when it ends: a
// Watch or a session stream held for hours left no trace until it ended.
// One whose opening cannot be recorded ends with unavailable.
func TestStreamOpeningIsRecorded(t *testing.T) {
	audit := &auditLog{}
	s, st, _, a := auditedStream(t, audit)
	sendAll(t, st, keepAliveOn(1, a))
	answers(t, st, 1)
	audit.mu.Lock()
	var opened []rpc.AuditRecord
	for _, r := range audit.recs {
		if r.Opened {
			opened = append(opened, r)
		}
	}
	audit.fail = errors.New("writing audit.jsonl: input/output error")
	audit.mu.Unlock()
	if len(opened) != 1 || opened[0].Procedure != lockstepv1connect.SessionServiceMultiplexProcedure {
		t.Fatalf("the stream's opening records: %+v", opened)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st2, _ := s.multiplex(t, ctx, "")
	sendAll(t, st2, keepAliveOn(1, a))
	if _, err := st2.Receive(); connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "could not record this stream's opening") {
		t.Fatalf("a stream whose opening cannot be recorded: %v", err)
	}
}

// auditedStream starts a server that records into audit, opens a
// Multiplex stream on it, and makes a session on it.
func auditedStream(t *testing.T, audit *auditLog) (*testServer, *multiplexStream, lockstepv1connect.SessionServiceClient, uint64) {
	t.Helper()
	s := startServer(t, func(o *rpc.Options) { o.Auditor = audit })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	st, sessions := s.multiplex(t, ctx, "")
	return s, st, sessions, newSession(t, sessions, 30_000)
}

// TestRefusedObserveIsNotOpened: an Observe its principal may not make is
// recorded as refused, with no line of an opening: the opening was
// recorded at its first message, before its authorization.
func TestRefusedObserveIsNotOpened(t *testing.T) {
	audit := &auditLog{}
	keys := &reloadableKeys{keys: map[string]string{"dan": "dan"}}
	acl := &prefixACL{allows: map[string]string{"dan": "mine/"}}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer, o.Auditor = keys, acl, audit })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	elections := lockstepv1connect.NewElectionServiceClient(h2c(), s.url, connect.WithInterceptors(bearer("dan")))
	obs, err := elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: "theirs/el"}))
	if err == nil {
		if obs.Receive() {
			t.Fatal("dan observes a name he may not read")
		}
		err = obs.Err()
		_ = obs.Close()
	}
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("dan's observe of theirs/el: %v", err)
	}
	s.observe(t, ctx, "dan", "mine/el")
	audit.mu.Lock()
	defer audit.mu.Unlock()
	var opened []string
	for _, r := range audit.recs {
		if r.Opened {
			name, _ := rpc.NameOf(r.Request)
			opened = append(opened, name)
		}
	}
	if len(opened) != 1 || opened[0] != "mine/el" {
		t.Fatalf("openings recorded: %v, want mine/el's alone", opened)
	}
}
