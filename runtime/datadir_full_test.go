package runtime

import (
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDataDirNearlyFullIsSaid is the user trial: a member whose data
// directory's file system filled kept answering /health "serving" with
// lockstep_data_dir_free_bytes 0, logged nothing, and panicked minutes
// later in a snapshot's save (no space left on device). Now a look that
// finds under dataDirFullBelow left makes the member degraded (Degraded,
// lockstep_data_dir_full 1), said once at WARN with what to do, until it
// has dataDirRoomAgainAt again, said at INFO; a room it cannot read
// changes nothing. The free bytes come from an injected reader: no full
// file system is needed.
func TestDataDirNearlyFullIsSaid(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, incarnationFile), []byte("0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	w := newDataDirWatch(dir, 10*time.Millisecond, time.Second)
	var free atomic.Uint64 // math.Float64bits of the room the reader answers
	set := func(b float64) { free.Store(math.Float64bits(b)) }
	set(10 << 30)
	w.free = func() float64 { return math.Float64frombits(free.Load()) }
	if err := w.register(reg); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); w.run(stop, log) }()
	defer func() { close(stop); <-done }()
	looks := func() { time.Sleep(100 * time.Millisecond) } // ten looks
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: degraded %v\n%s", what, w.fullErr(), logs.String())
			}
		}
	}

	looks()
	if err := w.fullErr(); err != nil {
		t.Fatalf("degraded with 10 GiB left: %v", err)
	}
	if g := labeled(t, reg, "lockstep_data_dir_full"); g != 0 {
		t.Fatalf("lockstep_data_dir_full is %v with 10 GiB left", g)
	}

	set(0) // the trial's reading
	waitFor("not degraded with 0 bytes left", func() bool { return w.fullErr() != nil })
	err := w.fullErr()
	if !errors.Is(err, ErrDataDirFull) || errors.Is(err, ErrDataDir) {
		t.Fatalf("degraded: %v, want ErrDataDirFull (and not ErrDataDir, which /health answers 503)", err)
	}
	for _, want := range []string{dir, "has 0.0 MiB left", "under the 64.0 MiB", "it serves meanwhile", "Free space on that file system",
		"move cluster.data_dir to a larger disk", "Disk problems"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the degraded reason lacks %q: %v", want, err)
		}
	}
	if g := labeled(t, reg, "lockstep_data_dir_full"); g != 1 {
		t.Errorf("lockstep_data_dir_full is %v with 0 bytes left", g)
	}
	if g := labeled(t, reg, "lockstep_data_dir_free_bytes"); g != 0 {
		t.Errorf("lockstep_data_dir_free_bytes is %v, want the reader's 0", g)
	}
	set(math.NaN()) // unreadable: what was found stands
	looks()
	set(dataDirFullBelow + 1<<20) // above the threshold, under the room again
	looks()
	if w.fullErr() == nil {
		t.Errorf("not degraded any more at %d bytes, under the %d that end it", int64(dataDirFullBelow+1<<20), dataDirRoomAgainAt)
	}
	if c := strings.Count(logs.String(), `level=WARN msg="the data directory's file system is nearly full"`); c != 1 {
		t.Errorf("the nearly full disk was said %d times, want once:\n%s", c, logs.String())
	}

	set(1 << 30)
	waitFor("still degraded with 1 GiB left", func() bool { return w.fullErr() == nil })
	if g := labeled(t, reg, "lockstep_data_dir_full"); g != 0 {
		t.Errorf("lockstep_data_dir_full is %v with room again", g)
	}
	looks()
	if c := strings.Count(logs.String(), `level=INFO msg="the data directory's file system has room again"`); c != 1 {
		t.Errorf("the room again was said %d times, want once:\n%s", c, logs.String())
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("an ERROR line for a disk nearly full, which stopped nothing:\n%s", logs.String())
	}
}

// A member whose data directory's file system is nearly full keeps
// serving (the others may need its vote): Health stays nil and
// lockstep_healthy 1, while Degraded says why and lockstep_data_dir_full
// is 1.
func TestNodeNearlyFullServesDegraded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	var logs logBuffer
	reg := prometheus.NewRegistry()
	// No look of the watch's own: the test looks, with its own reader.
	n := startAloneWith(t, dir, portsInRange(t, 2), &logs, reg, func(o *Options) { o.dataDirEvery = time.Hour })
	for deadline := time.Now().Add(10 * time.Second); n.Health() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no leader: %v", n.Health())
		}
	}
	if err := n.Degraded(); err != nil {
		t.Fatalf("a member with room degraded: %v", err)
	}
	n.dataDir.free = func() float64 { return 4096 }
	n.dataDir.settle(n.dataDir.look(), slog.New(slog.NewTextHandler(&logs, nil)))
	if err := n.Degraded(); !errors.Is(err, ErrDataDirFull) {
		t.Fatalf("Degraded with 4 KiB left: %v", err)
	}
	if err := n.Health(); err != nil {
		t.Errorf("Health with 4 KiB left: %v; want nil: the member serves", err)
	}
	if h := labeled(t, reg, "lockstep_healthy"); h != 1 {
		t.Errorf("lockstep_healthy is %v: /health answers 200 (degraded)", h)
	}
	if g := labeled(t, reg, "lockstep_data_dir_full"); g != 1 {
		t.Errorf("lockstep_data_dir_full is %v with 4 KiB left", g)
	}
	if g := labeled(t, reg, "lockstep_data_dir_free_bytes"); g != 4096 {
		t.Errorf("lockstep_data_dir_free_bytes is %v, want what the look read, 4096", g)
	}
}

// TestAppliedIndexGauge: each member publishes the index it applied per
// shard, so that one behind the others shows (an operator's 20 s SIGSTOP of
// a member moved no metric at all).
func TestAppliedIndexGauge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	var logs logBuffer
	reg := prometheus.NewRegistry()
	n := startAloneWith(t, dir, portsInRange(t, 2), &logs, reg, func(o *Options) {})
	for deadline := time.Now().Add(10 * time.Second); n.Health() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no leader: %v", n.Health())
		}
	}
	before := labeled(t, reg, "lockstep_raft_applied_index", "shard", "0")
	s := session(t, n, time.Minute)
	do(t, n, mutex("m", s, 0))
	after := labeled(t, reg, "lockstep_raft_applied_index", "shard", "0")
	if after <= before || after != float64(n.shards[0].sm.appliedIndex.Load()) {
		t.Fatalf("lockstep_raft_applied_index went from %v to %v over two applied requests; the shard applied %d",
			before, after, n.shards[0].sm.appliedIndex.Load())
	}
}
