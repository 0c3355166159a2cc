package runtime

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
)

// startAlone starts node-1, the one member of its cluster, on dir.
func startAlone(t *testing.T, dir string, ports []int, logs *logBuffer, reg *prometheus.Registry) *Node {
	t.Helper()
	return startAloneWith(t, dir, ports, logs, reg, nil)
}

// startAloneWith is startAlone with the options more set by more (nil: none).
func startAloneWith(t *testing.T, dir string, ports []int, logs *logBuffer, reg *prometheus.Registry, more func(*Options)) *Node {
	t.Helper()
	cfg := config.Defaults()
	cfg.Cluster = config.Cluster{NodeID: "node-1", RaftAddress: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		APIAddress: fmt.Sprintf("127.0.0.1:%d", ports[1]), DataDir: dir,
		Peers: map[string]string{"node-1": fmt.Sprintf("127.0.0.1:%d", ports[0])}}
	cfg.Consensus.ElectionTimeoutMs, cfg.Consensus.HeartbeatIntervalMs, cfg.Consensus.TickIntervalMs = 200, 40, 20
	opts := Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg,
		balance: testBalance, dataDirEvery: 50 * time.Millisecond}
	if more != nil {
		more(&opts)
	}
	n, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestDataDirGoneIsNoticed: a data directory deleted under a running
// member (or unmounted, or on a disk that failed) makes the member
// unhealthy and say why at ERROR, within its check interval. It looked
// healthy and said nothing until its next snapshot failed and a panic
// stopped it, which in a quiet cluster may be days later. The room left on
// the directory's file system is a gauge.
func TestDataDirGoneIsNoticed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	var logs logBuffer
	reg := prometheus.NewRegistry()
	n := startAlone(t, dir, portsInRange(t, 2), &logs, reg)
	deadline := time.Now().Add(10 * time.Second)
	for n.Health() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no leader: %v", n.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		// The watch's synced write (writeProbe).
		if _, err := os.Stat(filepath.Join(dir, probeFile)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch wrote no probe into the data directory")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if free := labeled(t, reg, "lockstep_data_dir_free_bytes"); !(free > 0) {
		t.Fatalf("lockstep_data_dir_free_bytes is %v, want the room on the data directory's file system", free)
	}
	// Moved away in one step: a RemoveAll raced the member's own writes
	// ("directory not empty"). To the member it is as gone.
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	for n.Health() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the member stayed healthy with its data directory gone")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.Health(); !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "data directory: "+dir+" is gone") {
		t.Fatalf("health with the data directory gone: %v", err)
	}
	for !strings.Contains(logs.String(), `level=ERROR msg="the data directory is gone"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no ERROR line for the data directory:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c := strings.Count(logs.String(), "the data directory is gone"); c != 1 {
		t.Errorf("the ERROR line was logged %d times, want once", c)
	}
	// And it stops: it ran on the files it had open until Pebble, wanting
	// a new one, panicked with a goroutine dump, or its next snapshot
	// failed. Its line says so, and what to do.
	select {
	case err := <-n.Fatal():
		if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "this member stops now") ||
			!strings.Contains(err.Error(), "replace it (remove it with lockstep cluster remove") {
			t.Errorf("Fatal: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the member with its data directory gone was not told to stop")
	}
	if !strings.Contains(logs.String(), "this member stops now") {
		t.Errorf("the ERROR line does not say the member stops:\n%s", logs.String())
	}
}

// TestLogStoreLastWordsWhenTheDataDirIsGone: a line Pebble writes to the
// standard logger just before it panics (Fatalf), or one Dragonboat
// panics with, holds its goroutine when the node's data directory is
// gone, and stops the member as the watch would: one ERROR line, Fatal
// told, the raw panic and its goroutine dump never come. An operator's
// trial deleted a follower's directory under traffic: 0.2 s after the
// watch's line, "panic: 000004.log: ... no such file or directory" and
// 180 lines of goroutines. A line with the directory there passes.
func TestLogStoreLastWordsWhenTheDataDirIsGone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	var logs logBuffer
	// A watch that looks rarely: the line finds the directory gone first.
	n := startAloneWith(t, dir, portsInRange(t, 2), &logs, prometheus.NewRegistry(), func(o *Options) { o.dataDirEvery = time.Hour })
	// Held for ever, as parkForever holds it: the goroutine ends there.
	var parked atomic.Int32
	was := parkForever
	parkForever = func() { parked.Add(1); goruntime.Goexit() }
	t.Cleanup(func() { parkForever = was })
	// say runs f on a goroutine of its own, as Pebble and Dragonboat
	// would, and waits for it to return or be held.
	say := func(f func()) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
	}

	// With the directory there, a line passes at ERROR, and a panic panics.
	stdlog.Print("some line of the standard logger")
	if parked.Load() != 0 || !strings.Contains(logs.String(), `level=ERROR msg="some line of the standard logger" node=node-1 component=stdlog`) {
		t.Fatalf("a line with the directory there: parked %d\n%s", parked.Load(), logs.String())
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Dragonboat's Panicf did not panic with the directory there")
			}
		}()
		slogAdapter{pkg: "logdb"}.Panicf("some failure")
	}()

	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	const last = "000004.log:\norig err: open " + "logdb-0/000004.log: no such file or directory"
	say(func() { stdlog.Print(last); panic("Pebble's panic") })           // Pebble's Fatalf
	say(func() { slogAdapter{pkg: "logdb"}.Panicf("%s", "save failed") }) // Dragonboat's
	if got := parked.Load(); got != 2 {
		t.Fatalf("%d goroutines held, want both that were about to panic", got)
	}
	select {
	case err := <-n.Fatal():
		if !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), dir+" is gone") {
			t.Errorf("Fatal: %v", err)
		}
	default:
		t.Fatal("the member was not told to stop")
	}
	out := logs.String()
	if c := strings.Count(out, `level=ERROR msg="the data directory is gone"`); c != 1 {
		t.Errorf("%d ERROR lines for the directory, want one:\n%s", c, out)
	}
	if strings.Contains(out, "000004.log") || strings.Contains(out, "save failed") {
		t.Errorf("the raw last words came out beside the one ERROR line:\n%s", out)
	}
	// The watch finds it gone too, later: nothing more is said.
	if err := n.dataDir.gone(n.log); err == nil {
		t.Fatal("the watch finds the directory there")
	}
	if c := strings.Count(logs.String(), "the data directory is gone"); c != 1 {
		t.Errorf("said %d times, want once", c)
	}
}

// TestDataDirStallIsNoticed: a data directory whose synced writes hang (a
// frozen file system, a hung mount, a dying disk) makes the member
// unhealthy, says so at ERROR once, and shows in lockstep_healthy and
// lockstep_data_dir_write_seconds; a write that fails does too; the member
// is healthy again, and says so at WARN, once a write goes through. A
// frozen disk left /health at 200, and a stalled leader saying it led.
func TestDataDirStallIsNoticed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	var logs logBuffer
	reg := prometheus.NewRegistry()
	var disk struct {
		sync.Mutex
		hang chan struct{} // non-nil: writes wait for it to close
		fail error
	}
	n := startAloneWith(t, dir, portsInRange(t, 2), &logs, reg, func(o *Options) {
		o.dataDirStall = 300 * time.Millisecond
		o.dataDirWrite = func() error {
			disk.Lock()
			hang, fail := disk.hang, disk.fail
			disk.Unlock()
			if hang != nil {
				<-hang
			}
			if fail != nil {
				return fail
			}
			// The watch's own write (writeProbe) does this; n is not
			// set yet when the first look runs.
			return os.WriteFile(filepath.Join(dir, probeFile), []byte("probe\n"), 0o600)
		}
	})
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: health %v\n%s", what, n.Health(), logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("no leader", func() bool { return n.Health() == nil })
	waitFor("no probe written", func() bool { _, err := os.Stat(filepath.Join(dir, probeFile)); return err == nil })
	if h := labeled(t, reg, "lockstep_healthy"); h != 1 {
		t.Fatalf("lockstep_healthy is %v on a healthy member", h)
	}

	release := make(chan struct{})
	disk.Lock()
	disk.hang = release
	disk.Unlock()
	waitFor("the member stayed healthy with its disk hung", func() bool { return n.Health() != nil })
	if err := n.Health(); !errors.Is(err, ErrDataDir) || !strings.Contains(err.Error(), "has not finished a synced write") {
		t.Fatalf("health with the disk hung: %v", err)
	}
	if h := labeled(t, reg, "lockstep_healthy"); h != 0 {
		t.Errorf("lockstep_healthy is %v with the disk hung", h)
	}
	if s := labeled(t, reg, "lockstep_data_dir_write_seconds"); s < 0.3 {
		t.Errorf("lockstep_data_dir_write_seconds is %v with a write hung for longer than 0.3 s", s)
	}
	time.Sleep(200 * time.Millisecond) // more ticks while the write hangs: said once
	if c := strings.Count(logs.String(), `level=ERROR msg="the data directory's disk stalled"`); c != 1 {
		t.Errorf("the stall was logged %d times, want once:\n%s", c, logs.String())
	}

	disk.Lock()
	disk.hang = nil
	disk.Unlock()
	close(release)
	waitFor("the member stayed unhealthy with its disk back", func() bool { return n.Health() == nil })
	waitFor("no WARN line for the disk back", func() bool {
		return strings.Contains(logs.String(), `level=WARN msg="the data directory takes writes again"`)
	})

	disk.Lock()
	disk.fail = errors.New("input/output error")
	disk.Unlock()
	waitFor("the member stayed healthy with its writes failing", func() bool { return n.Health() != nil })
	if err := n.Health(); !strings.Contains(err.Error(), "takes no writes (input/output error)") {
		t.Fatalf("health with writes failing: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	if c := strings.Count(logs.String(), "the data directory takes no writes"); c != 1 {
		t.Errorf("the failing writes were logged %d times, want once", c)
	}
	disk.Lock()
	disk.fail = nil
	disk.Unlock()
	waitFor("the member stayed unhealthy with its writes going through", func() bool { return n.Health() == nil })
}

// TestLogStoreFailureIsAnErrorLine: the line Pebble writes through Go's
// standard logger as it dies of a full disk is an ERROR line of the
// member's own log (JSON when it logs JSON) that says what to do; it came
// out as "2026-12-06 04:18:51.789684 I | write ...: no space left on
// device", in the format Dragonboat's logging library gave that logger.
func TestLogStoreFailureIsAnErrorLine(t *testing.T) {
	var logs logBuffer
	giveBack := lendDragonboatLogs(newLogTarget(slog.New(slog.NewJSONHandler(&logs, nil)), nil, nil))
	defer giveBack()
	stdlog.Printf("write /var/lib/lockstep/vm/1/logdb-0/000004.log: no space left on device")
	line := logs.String()
	for _, want := range []string{`"level":"ERROR"`, `"msg":"the log store failed: write /var/lib/lockstep/vm/1/logdb-0/000004.log: no space left on device`, "Disk problems"} {
		if !strings.Contains(line, want) {
			t.Errorf("the standard logger's line of a full disk came out as %q, want %s", line, want)
		}
	}
}

// TestUncleanStopIsSaid: a member that comes back after it was killed or
// crashed says so at WARN (an operator saw only an ordinary start); one
// that stopped cleanly does not.
func TestUncleanStopIsSaid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node-1")
	ports := portsInRange(t, 2)
	const said = "the last run of this member did not stop cleanly"
	var first logBuffer
	n := startAlone(t, dir, ports, &first, prometheus.NewRegistry())
	if strings.Contains(first.String(), said) {
		t.Fatalf("a first start says the last run did not stop cleanly:\n%s", first.String())
	}
	n.crash()
	var second logBuffer
	n = startAlone(t, dir, ports, &second, prometheus.NewRegistry())
	if !strings.Contains(second.String(), said) || !strings.Contains(second.String(), "level=WARN") {
		t.Fatalf("a start after a crash does not say so:\n%s", second.String())
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	var third logBuffer
	startAlone(t, dir, ports, &third, prometheus.NewRegistry())
	if strings.Contains(third.String(), said) {
		t.Fatalf("a start after a clean stop says the last run did not stop cleanly:\n%s", third.String())
	}
}

// TestStdLogThroughSlogsDefaultDoesNotHang: a node started without a
// Logger logs through slog's default handler, which writes through Go's
// standard logger; a line of the standard logger routed back to it waited
// for its own lock for ever (the deploy test's node hung at its first
// Dragonboat warning). Every line of that handler comes through the
// standard logger with its own level, and goes out at it: each came out
// as "level=ERROR msg=\"INFO node started ...\" component=stdlog".
func TestStdLogThroughSlogsDefaultDoesNotHang(t *testing.T) {
	giveBack := lendDragonboatLogs(newLogTarget(slog.Default(), nil, nil))
	defer giveBack()
	var out logBuffer
	stdOut = &out
	defer func() { stdOut = os.Stderr }()
	done := make(chan struct{})
	go func() {
		stdlog.Printf("write x: input/output error")
		slog.Default().Info("node started", "node", "node-1")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a line of the standard logger, routed to slog's default handler, did not return")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "ERROR the log store failed: write x: input/output error") ||
		!strings.HasSuffix(lines[1], "INFO node started node=node-1") || strings.Contains(lines[1], "ERROR") {
		t.Fatalf("through slog's default handler, a disk's failure and an INFO line came out as:\n%s", out.String())
	}
}

// TestRestartRunsAsTheRecordedIncarnation: a member added back runs as
// its new incarnation; a restart that does not give it (0) runs as the one
// its data directory records, and says so, where it was refused ("belongs
// to incarnation 1 of this node, got 0"): a rolling restart that did not
// repeat --incarnation lost two of five members and the quorum. One that
// gives another incarnation is still refused.
func TestRestartRunsAsTheRecordedIncarnation(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	x := (l + 1) % 3
	name := c.cfgs[x].Cluster.NodeID
	c.stop(x)
	if err := c.nodes[l].RemoveNode(tctx(t), name); err != nil {
		t.Fatal(err)
	}
	inc, err := c.nodes[l].AddNodeIncarnation(tctx(t), name, c.cfgs[x].Cluster.RaftAddress)
	if err != nil || inc != 1 {
		t.Fatalf("AddNodeIncarnation: %d, %v", inc, err)
	}
	if err := os.RemoveAll(c.cfgs[x].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.cfgs[x].Cluster.Join, c.cfgs[x].Cluster.Incarnation = true, 1
	c.restart(x)
	eventually(t, "the member added back serves", func() bool { return c.nodes[x].Health() == nil })
	c.stop(x)

	c.cfgs[x].Cluster.Incarnation = 0 // the restart forgets --incarnation
	var logs logBuffer
	c.logs = make([]*logBuffer, 3)
	c.logs[x] = &logs
	c.restart(x)
	if got := c.nodes[x].cfg.Cluster.Incarnation; got != 1 || c.nodes[x].replicaID != config.ReplicaID(name, 1) {
		t.Fatalf("a restart without an incarnation runs as %d", got)
	}
	if !strings.Contains(logs.String(), `msg="running as the incarnation the data directory records" node=`+name+` incarnation=1`) {
		t.Errorf("the restart does not say which incarnation it took:\n%s", logs.String())
	}
	eventually(t, "the member restarted as its recorded incarnation serves", func() bool { return c.nodes[x].Health() == nil })

	other := c.cfgs[x]
	other.Cluster.Incarnation = 2
	if err := CheckDataDir(other); err == nil || !strings.Contains(err.Error(), "belongs to incarnation 1 of this node, got 2") {
		t.Fatalf("a start under another incarnation than the recorded one: %v", err)
	}
}
