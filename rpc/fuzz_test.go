package rpc_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/rpc"
)

// FuzzREST feeds the REST decoding path (method, path, query and body
// together) and holds it to the API's promise: whatever arrives, the answer
// is never a 5xx but 503 (the backend's own), and an error is the JSON body
// {"code", "message"} with a message. Run it with make fuzz.
func FuzzREST(f *testing.F) {
	for _, seed := range []struct{ method, target, body string }{
		{"POST", "/locks/a/acquire", `{"owner":"o","ttl_seconds":5}`},
		{"POST", "/locks/a/acquire?name=b", `{}`},
		{"GET", "/locks/jobs%2Fnightly/status?stale=true", ""},
		{"DELETE", "/sessions/7?session_id=8", ""},
		{"POST", "/semaphores/s/acquire", `{"limit":2,"permits":3}`},
		{"POST", "/rwlocks/r/acquire", `{"mode":"exclusive"}`},
		{"POST", "/barriers/b/wait", `{"parties":"two"}`},
		{"POST", "/election/e/campaign", `{"candidate":"x\u0000"}`},
		{"POST", "/sessions", `{"ttl_ms":1e99}`},
		{"GET", "/locks/%ff/status", ""},
		{"POST", "/locks/a/release", `{"fencing_token":"-1","owner":"o"}`},
		{"HEAD", "/health", ""},
	} {
		f.Add(seed.method, seed.target, seed.body)
	}
	b := newFakeBackend()
	f.Cleanup(b.Close)
	h, err := rpc.New(rpc.Options{Backend: b, NodeID: "node-1", Registerer: prometheus.NewRegistry(), MaxWait: rpc.NoWait,
		BodyReadTimeout: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, body string) {
		switch method {
		case "GET", "POST", "DELETE", "HEAD", "PUT":
		default:
			return
		}
		if !strings.HasPrefix(target, "/") || strings.ContainsAny(target, " \r\n\t#") {
			return
		}
		if first, _, _ := strings.Cut(target[1:], "/"); strings.Contains(first, ".") {
			return // a Connect procedure: its waits are not capped, and it is not REST decoding
		}
		// Bounded, so that an input the handler would hold (a keepalive of a
		// session that lives) cannot stall the fuzzer.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, "http://node"+target, strings.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s %s %q: %d %s", method, target, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && method != "HEAD" {
			var e map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || len(e) != 2 || e["code"] == "" || e["message"] == "" {
				t.Fatalf("%s %s %q: %d with a body that is not {code, message}: %s", method, target, body, rec.Code, rec.Body)
			}
		}
	})
}
