//go:build chaos

package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSkewClockJumpsAndSlews: a jump moves the clock at once; a slew moves
// it at the given rate and stops at the target; out-of-bound settings are
// refused and change nothing.
func TestSkewClockJumpsAndSlews(t *testing.T) {
	c := &skewClock{}
	near := func(what string, got, want, slack time.Duration) {
		t.Helper()
		if got < want-slack || got > want+slack {
			t.Fatalf("%s: offset %v, want %v ± %v", what, got, want, slack)
		}
	}
	if err := c.set(-3*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	off, _ := c.state()
	near("jump back", off, -3*time.Second, 0)
	if d := time.Until(c.now()); d > -2900*time.Millisecond || d < -3100*time.Millisecond {
		t.Fatalf("now() is %v from the wall clock, want about -3s", d)
	}
	if err := c.set(0, 0.5); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	off, target := c.state()
	if target != 0 || off <= -3*time.Second || off >= -2800*time.Millisecond {
		t.Fatalf("slewing at 0.5 for 200ms from -3s: offset %v target %v", off, target)
	}
	c.anchor = c.anchor.Add(-time.Hour) // as if long past: it stops at the target
	off, _ = c.state()
	near("slew done", off, 0, 0)
	for _, bad := range []struct {
		off  time.Duration
		slew float64
	}{{25 * time.Hour, 0}, {time.Second, 0.6}, {time.Second, -0.1}} {
		if err := c.set(bad.off, bad.slew); err == nil {
			t.Errorf("set(%v, %v) was accepted", bad.off, bad.slew)
		}
	}
	off, _ = c.state()
	near("after refusals", off, 0, 0)
}

// TestSkewClockMonotonicSkipsJumps: the monotonic reading moves with a
// slew but not with a jump: the gap between the clock and its monotonic
// reading is the sum of the jumps.
func TestSkewClockMonotonicSkipsJumps(t *testing.T) {
	c := &skewClock{}
	gap := func() time.Duration { return c.now().Sub(monoOrigin) - c.mono() }
	near := func(what string, got, want time.Duration) {
		t.Helper()
		if d := got - want; d < -5*time.Millisecond || d > 5*time.Millisecond {
			t.Fatalf("%s: the clock stands %v off its monotonic reading, want %v", what, got, want)
		}
	}
	near("at first", gap(), 0)
	before := c.mono()
	if err := c.set(5*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if d := c.mono() - before; d < 0 || d > 100*time.Millisecond {
		t.Fatalf("a 5 s jump moved the monotonic reading by %v", d)
	}
	near("after a 5 s jump", gap(), 5*time.Second)
	if err := c.set(-2*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	near("after jumping to -2 s", gap(), -2*time.Second)
	// A slew from -2 s towards 0 at half the wall clock's rate: the
	// monotonic reading runs 1.5 times as fast, as the clock does.
	if err := c.set(0, 0.5); err != nil {
		t.Fatal(err)
	}
	m0 := c.mono()
	time.Sleep(200 * time.Millisecond)
	if d := c.mono() - m0; d < 290*time.Millisecond {
		t.Fatalf("slewing fast at 0.5 for 200 ms moved the monotonic reading %v, want about 300ms", d)
	}
	near("after a slew", gap(), -2*time.Second)
}

// TestChaosHookEndpoint: the chaos build's metrics listener moves the clock
// the runtime stamps with.
func TestChaosHookEndpoint(t *testing.T) {
	defer chaosClock.set(0, 0)
	srv := httptest.NewServer(newMetricsServer(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), false, nil).Handler)
	defer srv.Close()
	resp, err := http.PostForm(srv.URL+"/debug/chaos/clock", url.Values{"offset_ms": {"1500"}})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int64
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || got["offset_ms"] != 1500 {
		t.Fatalf("POST: %d %v %v", resp.StatusCode, got, err)
	}
	if d := time.Until(nodeClock()()); d < 1400*time.Millisecond || d > 1600*time.Millisecond {
		t.Fatalf("the runtime's clock is %v from the wall clock, want about 1.5s", d)
	}
	resp, err = http.PostForm(srv.URL+"/debug/chaos/clock", url.Values{"offset_ms": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a bad offset: %d, want 400", resp.StatusCode)
	}
}
