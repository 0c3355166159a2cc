package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

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
