package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// metricsPage is a node's /metrics with a commit histogram and request
// histograms for two procedures, of which only Acquire's is to be kept.
func metricsPage(commit [4]int, acquire [4]int) string {
	var b strings.Builder
	les := []string{"0.001", "0.0025", "0.005", "+Inf"}
	for i, le := range les {
		fmt.Fprintf(&b, "consensus_commit_latency_seconds_bucket{shard=\"0\",le=%q} %d\n", le, commit[i])
		fmt.Fprintf(&b, "lockstep_rpc_request_duration_seconds_bucket{procedure=\"/lockstep.v1.LockService/Acquire\",le=%q} %d\n", le, acquire[i])
		fmt.Fprintf(&b, "lockstep_rpc_request_duration_seconds_bucket{procedure=\"/lockstep.v1.LockService/Release\",le=%q} %d\n", le, 1000)
	}
	fmt.Fprintf(&b, "consensus_commit_latency_seconds_count{shard=\"0\"} %d\n", commit[3])
	fmt.Fprintf(&b, "lockstep_apply_latency_seconds_count{shard=\"0\"} %d\n", commit[3])
	return b.String()
}

func scrapeOf(t *testing.T, page string) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, page)
	}))
	defer srv.Close()
	return scrape(&cluster{}, strings.TrimPrefix(srv.URL, "http://"))
}

func TestScrapeKeepsTheAcquireBucketsAndTheApplyCount(t *testing.T) {
	m := scrapeOf(t, metricsPage([4]int{1, 2, 3, 4}, [4]int{5, 6, 7, 8}))
	if got := m[bucketKey(requestHist, "0.0025")]; got != 6 {
		t.Fatalf("acquire bucket le=0.0025 = %v, want 6 (Release's buckets must not be added in)", got)
	}
	if got := m[bucketKey(commitHist, "+Inf")]; got != 4 {
		t.Fatalf("commit bucket le=+Inf = %v, want 4", got)
	}
	if got := m["lockstep_apply_latency_seconds_count"]; got != 4 {
		t.Fatalf("apply count = %v, want 4", got)
	}
}

func TestQuantileInterpolatesBetweenScrapes(t *testing.T) {
	// Before: 100 observations, all under 1 ms. Between the scrapes: 100
	// more, 50 of them in (1, 2.5] ms, 40 in (2.5, 5] and 10 above 5 ms.
	a := scrapeOf(t, metricsPage([4]int{100, 100, 100, 100}, [4]int{}))
	z := scrapeOf(t, metricsPage([4]int{100, 150, 190, 200}, [4]int{}))
	for _, c := range []struct {
		q    float64
		want string
	}{
		{0.3, "≈1.9 ms"}, // rank 30: the 30th of the 50 in (1, 2.5]
		{0.5, "≈2.5 ms"}, // rank 50: the top of (1, 2.5]
		{0.6, "≈3.1 ms"}, // rank 60: the 10th of the 40 in (2.5, 5]
		{0.95, "> 5 ms"}, // in the +Inf bucket: only its floor is known
	} {
		if got := quantileMs(a, z, commitHist, c.q); got != c.want {
			t.Errorf("q=%v: %s, want %s", c.q, got, c.want)
		}
	}
	if got := quantileMs(a, z, requestHist, 0.5); got != "-" {
		t.Errorf("no acquire observed: %s, want -", got)
	}
}
