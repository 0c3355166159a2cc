//go:build !chaos

package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/runtime"
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

// TestReleaseIgnoresChaosVersions: only the chaos build lets
// LOCKSTEP_CHAOS_VERSIONS change the versions a node names in its Raft
// hello; the release build leaves its options as they are.
func TestReleaseIgnoresChaosVersions(t *testing.T) {
	t.Setenv("LOCKSTEP_CHAOS_VERSIONS", "rules 0, entries 0, snapshots 0")
	o := runtime.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if got := nodeOptions(o); !reflect.DeepEqual(got, o) {
		t.Fatalf("the release build changed its options: %+v", got)
	}
}
