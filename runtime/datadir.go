package runtime

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	// dataDirCheckEvery is how often a member looks at its data directory.
	dataDirCheckEvery = 10 * time.Second
	// dataDirStallAfter is how long a look may take before the member
	// calls its disk stalled. A synced write of a few bytes takes under a
	// millisecond here and tens at worst ("Where an acquire's time goes"
	// in docs/performance.md); seconds is a frozen file system (fsfreeze,
	// a snapshot tool), a hung network mount or a dying disk, under which
	// the member's Raft log cannot be written either.
	dataDirStallAfter = 5 * time.Second
	// probeFile is the file each look writes and syncs.
	probeFile = "lockstep-probe"
	// dataDirFullBelow is the room left on the data directory's file
	// system under which a member says its disk is nearly full (Degraded,
	// WARN, lockstep_data_dir_full): 64 MiB, what the member may have to
	// write at once in the next minutes and cannot do without. Its log
	// store (Pebble, configured as Dragonboat's tiny LogDB) keeps up to
	// four 4 MiB write buffers, each of which goes to the write-ahead log
	// and then to a table of its own, and a compaction writes its outputs
	// (16 MiB files at the first level) before it deletes its inputs; a
	// snapshot is written whole beside the last before that one is
	// deleted. A member that gets here is minutes from the panic a failed
	// write ends in, not hours: the alert LockstepDataDirFilling (1 GiB)
	// is the early word, this the last.
	dataDirFullBelow = 64 << 20
	// dataDirRoomAgainAt is the room at which a member nearly full says it
	// has room again: twice the threshold, so that a disk hovering at it
	// is not said full and free every look.
	dataDirRoomAgainAt = 2 * dataDirFullBelow
)

// dataDirWatch notices a data directory that went away under a running
// member (deleted, unmounted, on a disk that failed) or stopped taking
// writes (frozen, hung, failing). Dragonboat keeps writing into the files
// it opened before, and a member whose directory went looked healthy until
// its next snapshot failed and stopped it, which in a quiet cluster may be
// days later; a member whose disk froze kept answering /health 200, and a
// leader kept saying it led, while everything it had to write waited.
//
// Every dataDirCheckEvery a look, on a goroutine of its own, reads the
// incarnation record (which every start writes) and writes and syncs
// probeFile. A read that fails makes the member unhealthy for good (what
// was written while it was gone is lost, so a directory that comes back is
// not trusted again) and stops it (onGone: Node.Fatal, on which lockstep
// serve exits): run on, it kept taking part on files that no longer
// existed until Pebble, wanting a new one, panicked with a goroutine dump
// (within a second under traffic), or until its next snapshot failed. A
// write that fails, or a look that has not finished after stallAfter,
// makes it unhealthy until a look succeeds. Each is said once, at ERROR;
// the recovery at WARN.
//
// Each look also reads the room left on the directory's file system. Under
// dataDirFullBelow the member is degraded until it has dataDirRoomAgainAt
// again: said once at WARN, the recovery at INFO. It still serves: a
// member whose disk filled kept answering /health "serving", said
// nothing, and panicked minutes later in a snapshot's write.
type dataDirWatch struct {
	dir        string
	marker     string
	every      time.Duration
	stallAfter time.Duration
	// write writes and syncs the probe; a test stands in a disk that hangs.
	write func() error
	// free reads the room left on the directory's file system, in bytes
	// (NaN: unknown); a test stands in a disk that fills.
	free func() float64

	lost    atomic.Pointer[error] // the directory is gone: for good
	stalled atomic.Pointer[error] // it takes no writes: until a look succeeds
	full    atomic.Pointer[error] // its file system is nearly full: until there is room again
	// lookStarted is when the look under way started (UnixNano; 0: none),
	// and lastLook how long the last finished one took.
	lookStarted atomic.Int64
	lastLook    atomic.Int64
	// failing says stalled is a failed write, not a slow one (run's own).
	failing bool
	// onGone is told, once, that the directory is gone (nil: nothing is).
	onGone func(error)
}

func newDataDirWatch(dir string, every, stallAfter time.Duration) *dataDirWatch {
	if every <= 0 {
		every = dataDirCheckEvery
	}
	if stallAfter <= 0 {
		stallAfter = dataDirStallAfter
	}
	w := &dataDirWatch{dir: dir, marker: filepath.Join(dir, incarnationFile), every: every, stallAfter: stallAfter}
	w.write = w.writeProbe
	w.free = func() float64 { return freeBytes(dir) }
	return w
}

// errGone is what a failed read of the marker makes of err.
func (w *dataDirWatch) errGone(err error) error {
	return fmt.Errorf("%w: %s is gone or cannot be read (%v): this member stops now, since what it would "+
		"write from here on is lost and it cannot keep what it acknowledged; do not start it again on this "+
		"directory: replace it (remove it with lockstep cluster remove, then start it with an empty data "+
		"directory, --join and the incarnation cluster add gives: docs/operations.md, A member whose disk is "+
		"lost or suspect)", ErrDataDir, w.dir, errors.Unwrap(err))
}

// gone says whether the directory is gone: the marker cannot be read.
// Its first finding is said at ERROR and told to onGone; later ones
// return the same error and say nothing.
func (w *dataDirWatch) gone(log *slog.Logger) error {
	if w == nil {
		return nil
	}
	if p := w.lost.Load(); p != nil {
		return *p
	}
	_, err := os.Stat(w.marker)
	if err == nil {
		return nil
	}
	return w.markGone(w.errGone(err), log)
}

// markGone records that the directory is gone, with err, and says so
// once; it returns the error recorded first.
func (w *dataDirWatch) markGone(err error, log *slog.Logger) error {
	if !w.lost.CompareAndSwap(nil, &err) {
		return *w.lost.Load()
	}
	log.Error("the data directory is gone", "err", err)
	if w.onGone != nil {
		w.onGone(err)
	}
	return err
}

// writeProbe writes the time into probeFile and syncs it, as the log
// store's writes must be.
func (w *dataDirWatch) writeProbe() error {
	f, err := os.OpenFile(filepath.Join(w.dir, probeFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// lookResult is what one look found: gone for a failed read, else the
// write's error (nil: the directory takes writes), and how long it took;
// and the room left on the file system after it (NaN: unknown).
type lookResult struct {
	gone  error
	write error
	took  time.Duration
	free  float64
}

// look reads the marker, then writes the probe.
func (w *dataDirWatch) look() lookResult {
	start := time.Now()
	if _, err := os.ReadFile(w.marker); err != nil {
		return lookResult{gone: w.errGone(err), took: time.Since(start), free: nan()}
	}
	err := w.write()
	took := time.Since(start)
	return lookResult{write: err, took: took, free: w.free()}
}

// run looks until stop closes. A look that hangs is left to finish (or
// not) on its own goroutine; the next starts only once it has.
func (w *dataDirWatch) run(stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	done := make(chan lookResult, 1)
	var stall <-chan time.Time
	var stallTimer *time.Timer
	for {
		select {
		case <-stop:
			if stallTimer != nil {
				stallTimer.Stop()
			}
			return
		case <-t.C:
			if w.lost.Load() != nil || w.lookStarted.Load() != 0 {
				continue
			}
			start := time.Now()
			w.lookStarted.Store(start.UnixNano())
			stallTimer = time.NewTimer(w.stallAfter)
			stall = stallTimer.C
			go func() { done <- w.look() }()
		case <-stall:
			stall = nil
			if w.stalled.Load() != nil {
				continue
			}
			err := fmt.Errorf("%w: %s has not finished a synced write of a few bytes in %s: its disk "+
				"is frozen, hung or failing, and this member's Raft log cannot be written either; mend or thaw the disk, "+
				"or stop this member and replace it (docs/operations.md, Disk problems)", ErrDataDir, w.dir, w.stallAfter)
			w.stalled.Store(&err)
			log.Error("the data directory's disk stalled", "err", err)
		case r := <-done:
			stallTimer.Stop()
			stall = nil
			w.lookStarted.Store(0)
			w.lastLook.Store(int64(r.took))
			w.settle(r, log)
		}
	}
}

// settle records what a finished look found.
func (w *dataDirWatch) settle(r lookResult, log *slog.Logger) {
	if r.gone != nil {
		w.markGone(r.gone, log)
		return
	}
	w.settleRoom(r.free, log)
	was := w.stalled.Load()
	if r.write != nil {
		if w.failing {
			return
		}
		w.failing = true
		err := fmt.Errorf("%w: %s takes no writes (%v): this member's Raft log cannot be written "+
			"either; mend the disk (docs/operations.md, Disk problems)", ErrDataDir, w.dir, r.write)
		w.stalled.Store(&err)
		log.Error("the data directory takes no writes", "err", err)
		return
	}
	w.failing = false
	if was != nil {
		w.stalled.Store(nil)
		log.Warn("the data directory takes writes again", "took", r.took.Round(time.Millisecond), "was", *was)
	}
}

// settleRoom records the room left on the file system (NaN: unknown,
// which changes nothing): nearly full under dataDirFullBelow, said once
// at WARN; room again from dataDirRoomAgainAt, said at INFO.
func (w *dataDirWatch) settleRoom(free float64, log *slog.Logger) {
	if math.IsNaN(free) {
		return
	}
	was := w.full.Load()
	switch {
	case was == nil && free < dataDirFullBelow:
		err := fmt.Errorf("%w: the file system of %s has %s left, under the %s this member may have to write at once "+
			"(its log store's next files, a snapshot): once a write finds no room it stops (a panic: no space left on device); "+
			"it serves meanwhile. Free space on that file system (not by deleting anything inside %s: the member needs all of it), "+
			"or grow it, or stop the member and move cluster.data_dir to a larger disk (docs/operations.md, Disk problems)",
			ErrDataDirFull, w.dir, mib(free), mib(dataDirFullBelow), w.dir)
		w.full.Store(&err)
		log.Warn("the data directory's file system is nearly full", "err", err, "free_bytes", int64(free))
	case was != nil && free >= dataDirRoomAgainAt:
		w.full.Store(nil)
		log.Info("the data directory's file system has room again", "free_bytes", int64(free), "was", *was)
	}
}

// mib is a byte count in MiB, as the room-left messages give it.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// fullErr is why the data directory's file system is nearly full
// (ErrDataDirFull); nil while it has room.
func (w *dataDirWatch) fullErr() error {
	if w == nil {
		return nil
	}
	if p := w.full.Load(); p != nil {
		return *p
	}
	return nil
}

// err is why the data directory cannot be trusted; nil while it can.
func (w *dataDirWatch) err() error {
	if w == nil {
		return nil
	}
	if p := w.lost.Load(); p != nil {
		return *p
	}
	if p := w.stalled.Load(); p != nil {
		return *p
	}
	return nil
}

// lookSeconds is how long the look under way has taken so far, or, with
// none under way, how long the last one took.
func (w *dataDirWatch) lookSeconds() float64 {
	if started := w.lookStarted.Load(); started != 0 {
		return time.Since(time.Unix(0, started)).Seconds()
	}
	return time.Duration(w.lastLook.Load()).Seconds()
}

func nan() float64 { return math.NaN() }

// register adds the watch's gauges to reg (nil: none).
func (w *dataDirWatch) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_data_dir_free_bytes",
		Help: "Bytes left on the file system of cluster.data_dir (for an unprivileged writer): a member whose disk fills stops (docs/operations.md, Disk problems)."},
		func() float64 { return w.free() })); err != nil {
		return err
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_data_dir_full",
		Help: "1 while the file system of cluster.data_dir has under 64 MiB left (until it has 128 MiB again), as the last look (one every 10 s) found it: the member serves, but stops once a write finds no room; its /health says degraded (docs/operations.md, Disk problems)."},
		func() float64 {
			if w.fullErr() != nil {
				return 1
			}
			return 0
		})); err != nil {
		return err
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_data_dir_write_seconds",
		Help: "Seconds the last synced write of a few bytes into cluster.data_dir took (one every 10 s), or the one under way has taken so far: seconds is a frozen, hung or failing disk (docs/operations.md, Disk problems)."},
		w.lookSeconds))
}

// runningFile marks a data directory whose member runs: a start finds it
// only when the run before did not stop cleanly.
const runningFile = "lockstep-running"

// runningMark is the data directory's mark of a running member.
type runningMark struct{ path string }

// markRunning says at WARN when the last run of the member in dir did not
// stop cleanly (killed, crashed, its machine stopped), which a restart
// recovers from by replaying its log, and nothing else said: an operator
// looking at a member that came back after a crash saw only an ordinary
// start. Then it marks dir as running. It is called once Dragonboat holds
// dir's lock, so no other member runs there. A mark that cannot be written
// is only said: the member runs without it.
func markRunning(dir string, log *slog.Logger) runningMark {
	path := filepath.Join(dir, runningFile)
	if last, err := os.ReadFile(path); err == nil {
		log.Warn("the last run of this member did not stop cleanly (it was killed, crashed, or its machine stopped; its own last "+
			"log lines say why): it replays its log and catches up, as after any crash", "last_run", strings.TrimSpace(string(last)))
	}
	mark := fmt.Sprintf("pid %d, started %s", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := os.WriteFile(path, []byte(mark+"\n"), 0o600); err != nil {
		log.Warn("could not mark the data directory as in use: the next start cannot tell whether this run stopped cleanly", "err", err)
		return runningMark{}
	}
	return runningMark{path: path}
}

// stopped removes the mark once the member stopped cleanly.
func (m runningMark) stopped() {
	if m.path != "" {
		_ = os.Remove(m.path)
	}
}
