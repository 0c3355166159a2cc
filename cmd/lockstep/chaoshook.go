//go:build chaos

package main

// The chaos build's hooks (go build -tags chaos; make builds it as
// bin/lockstep-chaos-node for lockstep-chaos, docs/chaos.md). The release
// binary is built without the tag and has none of this: chaoshook_release.go
// stands in, and TestReleaseHasNoChaosHook proves the endpoints answer 404.
//
// On the metrics listener:
//
//	POST /debug/chaos/clock?offset_ms=N&slew=F  move this node's clock to N ms
//	     off the wall clock: at once (F = 0, a jump), or by running F faster
//	     or slower than the wall clock until it is there (0 < F <= 0.5, a skew)
//	GET  /debug/chaos/clock                     the offset now and its target
//	GET  /debug/chaos/state                     every shard's applied index and
//	     state hash (runtime.Node.StateHashes)
//
// The clock is the one runtime.Options.Clock takes, and its monotonic
// reading (without the jumps) runtime.Options.Monotonic: a leader starts
// its term's log time at the clock and carries it forward by the monotonic
// reading, so a jump moves log time only when this node next takes the
// lead, and a slew while it leads (docs/design.md, Time).

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/runtime"
)

// Bounds of the chaos clock: how far from the wall clock it may be set, and
// the fastest skew (the clock runs at most 1.5x or 0.5x the wall clock's
// rate while it moves to its target).
const (
	maxChaosOffset = 24 * time.Hour
	maxChaosSlew   = 0.5
)

// skewClock is the wall clock plus an offset that either jumps to its
// target or moves to it at slew times the wall clock's rate. Its monotonic
// reading (mono) sees the slews but not the jumps, as a kernel's monotonic
// clock sees NTP's slewing but not a step of the wall clock: the runtime
// carries a leader's log time forward by it (docs/design.md, Time).
type skewClock struct {
	mu      sync.Mutex
	offset  time.Duration // at anchor
	anchor  time.Time
	target  time.Duration
	slew    float64
	stepped time.Duration // the jumps' sum: the part of the offset mono never saw
}

// monoOrigin is where the chaos clock's monotonic reading counts from.
var monoOrigin = time.Now()

var chaosClock = &skewClock{}

func (c *skewClock) offsetAt(t time.Time) time.Duration {
	if c.slew == 0 || c.offset == c.target {
		return c.target
	}
	moved := time.Duration(float64(t.Sub(c.anchor)) * c.slew)
	if c.target > c.offset {
		return min(c.offset+moved, c.target)
	}
	return max(c.offset-moved, c.target)
}

func (c *skewClock) now() time.Time {
	t := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return t.Add(c.offsetAt(t))
}

// mono is the monotonic reading: time since monoOrigin, plus the offset
// less its jumps.
func (c *skewClock) mono() time.Duration {
	t := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return t.Sub(monoOrigin) + c.offsetAt(t) - c.stepped
}

// set starts moving the offset to target: at once with slew 0.
func (c *skewClock) set(target time.Duration, slew float64) error {
	if target < -maxChaosOffset || target > maxChaosOffset {
		return fmt.Errorf("offset %v: at most %v either way", target, maxChaosOffset)
	}
	if !(slew >= 0 && slew <= maxChaosSlew) {
		return fmt.Errorf("slew %v: use 0 (a jump) up to %v", slew, maxChaosSlew)
	}
	t := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset, c.anchor = c.offsetAt(t), t
	c.target, c.slew = target, slew
	if slew == 0 {
		c.stepped += target - c.offset
		c.offset = target
	}
	return nil
}

func (c *skewClock) state() (offset, target time.Duration) {
	t := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offsetAt(t), c.target
}

// nodeClock and nodeMonotonic are the clocks the runtime stamps with.
// nodeOptions lets LOCKSTEP_CHAOS_VERSIONS stand in for the log versions
// the node names in its Raft hello: the chaos suite's "versions" fault
// restarts a member so, as if it ran a build of other versions.
func nodeOptions(o runtime.Options) runtime.Options {
	if v := os.Getenv(chaosVersionsEnv); v != "" {
		if o.Logger != nil {
			o.Logger.Warn("chaos: this node names other log versions in its Raft hello, as a build of other versions would", "versions", v)
		}
		return o.WithCompatibility(v)
	}
	return o
}

// chaosVersionsEnv names the log versions a chaos node claims.
const chaosVersionsEnv = "LOCKSTEP_CHAOS_VERSIONS"

func nodeClock() func() time.Time { return chaosClock.now }

func nodeMonotonic() func() time.Duration { return chaosClock.mono }

// chaosHooks adds the endpoints above to the metrics listener's mux.
func chaosHooks(mux *http.ServeMux, node *runtime.Node, log *slog.Logger) {
	log.Warn("this is a chaos build: its clock can be moved through the metrics listener (/debug/chaos/clock); never run it in production")
	clockState := func(w http.ResponseWriter) {
		offset, target := chaosClock.state()
		writeJSON(w, map[string]int64{"offset_ms": offset.Milliseconds(), "target_ms": target.Milliseconds()})
	}
	mux.HandleFunc("GET /debug/chaos/clock", func(w http.ResponseWriter, r *http.Request) { clockState(w) })
	mux.HandleFunc("POST /debug/chaos/clock", func(w http.ResponseWriter, r *http.Request) {
		ms, err := strconv.ParseInt(r.FormValue("offset_ms"), 10, 64)
		if err != nil {
			http.Error(w, "offset_ms: "+err.Error(), http.StatusBadRequest)
			return
		}
		slew := 0.0
		if s := r.FormValue("slew"); s != "" {
			if slew, err = strconv.ParseFloat(s, 64); err != nil {
				http.Error(w, "slew: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		if err := chaosClock.set(time.Duration(ms)*time.Millisecond, slew); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Warn("chaos: clock moved", "target_offset_ms", ms, "slew", slew)
		clockState(w)
	})
	mux.HandleFunc("GET /debug/chaos/state", func(w http.ResponseWriter, r *http.Request) {
		hs, err := node.StateHashes()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		type shard struct {
			ShardID      uint64 `json:"shard_id"`
			AppliedIndex uint64 `json:"applied_index"`
			StateHash    string `json:"state_hash"`
		}
		var out struct {
			Shards []shard `json:"shards"`
		}
		for _, h := range hs {
			out.Shards = append(out.Shards, shard{h.Shard, h.AppliedIndex, hex.EncodeToString(h.Hash[:])})
		}
		writeJSON(w, out)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
