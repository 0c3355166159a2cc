//go:build !chaos

package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReleaseHasNoChaosHook: the binary built without -tags chaos stamps
// with the wall clock and its metrics listener has no /debug/chaos/
// endpoint, so nothing can move a production node's clock.
func TestReleaseHasNoChaosHook(t *testing.T) {
	if nodeClock() != nil {
		t.Fatal("the release build hands the runtime a clock of its own; it must use the wall clock")
	}
	srv := httptest.NewServer(newMetricsServer(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), true, nil).Handler)
	defer srv.Close()
	for _, req := range []struct{ method, path string }{
		{http.MethodPost, "/debug/chaos/clock?offset_ms=5000"},
		{http.MethodGet, "/debug/chaos/clock"},
		{http.MethodGet, "/debug/chaos/state"},
	} {
		r, _ := http.NewRequest(req.method, srv.URL+req.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d, want 404 in a release build", req.method, req.path, resp.StatusCode)
		}
	}
}
