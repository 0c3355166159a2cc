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

// dataDirCheckEvery is how often a member looks at its data directory.
const dataDirCheckEvery = 10 * time.Second

// dataDirWatch notices a data directory that went away under a running
// member: deleted, unmounted, or on a disk that failed. Dragonboat keeps
// writing into the files it opened before and the member looks healthy
// until its next snapshot fails and stops it, which in a quiet cluster may
// be days later. The watch reads the incarnation record, which every start
// writes, every dataDirCheckEvery; from the first read that fails the
// member reports itself unhealthy (Health), and says why once, at ERROR.
type dataDirWatch struct {
	dir    string
	marker string
	every  time.Duration
	lost   atomic.Pointer[error]
}

func newDataDirWatch(dir string, every time.Duration) *dataDirWatch {
	if every <= 0 {
		every = dataDirCheckEvery
	}
	return &dataDirWatch{dir: dir, marker: filepath.Join(dir, incarnationFile), every: every}
}

// check reads the marker, and answers the error a failed read makes.
func (w *dataDirWatch) check() error {
	if _, err := os.ReadFile(w.marker); err != nil {
		return fmt.Errorf("%w: the data directory %s is gone or cannot be read (%v): this member runs on the files it "+
			"opened before, until its next snapshot fails and stops it; stop it, and replace it "+
			"(docs/operations.md, Disk problems)", ErrUnavailable, w.dir, errors.Unwrap(err))
	}
	return nil
}

// run checks until stop closes. A directory that comes back (remounted)
// is not trusted again: what was written while it was gone is lost.
func (w *dataDirWatch) run(stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if w.lost.Load() != nil {
			continue
		}
		if err := w.check(); err != nil {
			w.lost.Store(&err)
			log.Error("the data directory is gone", "err", err)
		}
	}
}

// err is why the data directory cannot be trusted; nil while it can.
func (w *dataDirWatch) err() error {
	if w == nil {
		return nil
	}
	if p := w.lost.Load(); p != nil {
		return *p
	}
	return nil
}

func nan() float64 { return math.NaN() }

// register adds the free-space gauge to reg (nil: none).
func (w *dataDirWatch) register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_data_dir_free_bytes",
		Help: "Bytes left on the file system of cluster.data_dir (for an unprivileged writer): a member whose disk fills stops (docs/operations.md, Disk problems)."},
		func() float64 { return freeBytes(w.dir) }))
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
