package chaos

import (
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// Nemeses are the fault kinds a run may draw from, in the order they are
// listed.
var Nemeses = []string{"kill", "pause", "partition", "clock", "disk", "members"}

// OptInNemeses are fault kinds a run makes only when -nemesis names them:
// "versions" restarts a member as a build of other log versions would run;
// "wiped" starts a member again as it was after its data directory was
// wiped. Left out of the default, so that the default's schedules stay as
// they were drawn.
var OptInNemeses = []string{"versions", "wiped"}

// Options of one run. Seed, Binary and Duration are required; the rest is
// drawn from the seed when left zero.
type Options struct {
	Seed     uint64
	Binary   string        // the lockstep executable
	Duration time.Duration // the fault phase
	Nodes    int           // 3 or 5; defaults to 3
	Shards   int           // consensus.shards; defaults to 1
	Nemesis  []string      // fault kinds; defaults to Nemeses
	Bug      string        // a planted bug (bugs.go); "" for none
	Out      string        // where a failing run writes its report; "" for none
	Keep     bool          // keep the cluster's directory (logs, data)
	// Secure runs the cluster with mutual TLS and authentication on
	// (cluster.Options.Secure): no Raft proxies, so no partition.
	Secure bool
	Log    io.Writer // progress lines (-v); nil for none

	// Drawn from the seed unless set.
	Workers int           // client goroutines, each with its own Client and session
	TTL     time.Duration // the workers' session TTL
	Hot     int           // hot names per kind; the cold ones are many
	// SnapshotEntries is consensus.snapshot_entries; drawn small (50-400)
	// for half the seeds, so that members take snapshots within a run and
	// a kill finds one newer than the commit index its log store wrote
	// (runtime/logstore.go), and restarts replay from one; else the
	// default (10,000, which a run does not reach).
	SnapshotEntries int
	// LivenessBound is how long, after the last heal, every member gets to
	// reach one applied index and every worker to be granted again.
	LivenessBound time.Duration
}

// Bounds on a run: members, shards, workers, the length of the fault phase
// and the number of faults in it.
const (
	maxWorkers  = 16
	maxDuration = 30 * time.Minute
	maxFaults   = 200
	coldNames   = 200
)

// stream is an independent random stream of the seed: one per concern, so
// that another draw in one does not move the others.
func stream(seed uint64, concern uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, concern))
}

// Streams by concern.
const (
	streamOptions = 1
	streamFaults  = 2
	streamSleeper = 3
	streamLapser  = 4
	streamBarrier = 5 // + party index
	streamStep    = 6 // which clock jumps on a leader are steps in place
	streamConfig  = 7 // the members' configuration
	streamWatcher = 20
	streamWorker  = 100 // + worker index
)

// draw fills what was left zero from the seed and validates the rest.
func (o *Options) draw() error {
	r := stream(o.Seed, streamOptions)
	workers := 3 + r.IntN(4)
	ttl := time.Duration(1500+r.IntN(2000)) * time.Millisecond
	hot := 1 + r.IntN(3)
	if o.Workers == 0 {
		o.Workers = workers
	}
	if o.TTL == 0 {
		o.TTL = ttl
	}
	if o.Hot == 0 {
		o.Hot = hot
	}
	if o.SnapshotEntries == 0 {
		o.SnapshotEntries = config.DefaultSnapshotEntries
		if c := stream(o.Seed, streamConfig); c.IntN(2) == 0 {
			o.SnapshotEntries = 50 + c.IntN(351)
		}
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Shards == 0 {
		o.Shards = 1
	}
	if o.LivenessBound == 0 {
		o.LivenessBound = 30 * time.Second
	}
	if len(o.Nemesis) == 0 {
		o.Nemesis = Nemeses
		if o.Secure {
			o.Nemesis = slices.DeleteFunc(slices.Clone(Nemeses), func(n string) bool { return n == "partition" })
		}
	}
	switch {
	case o.Binary == "":
		return fmt.Errorf("chaos: no lockstep binary")
	case o.Nodes != 3 && o.Nodes != 5:
		return fmt.Errorf("chaos: -nodes %d: use 3 or 5", o.Nodes)
	case o.Shards < 1 || o.Shards > 16:
		return fmt.Errorf("chaos: -shards %d: use 1..16", o.Shards)
	case o.Duration <= 0 || o.Duration > maxDuration:
		return fmt.Errorf("chaos: -duration %v: use (0, %v]", o.Duration, maxDuration)
	case o.Workers < 1 || o.Workers > maxWorkers:
		return fmt.Errorf("chaos: %d workers: use 1..%d", o.Workers, maxWorkers)
	case o.SnapshotEntries < 10:
		return fmt.Errorf("chaos: snapshot_entries %d: use 10 or more", o.SnapshotEntries)
	}
	for _, n := range o.Nemesis {
		if !slices.Contains(Nemeses, n) && !slices.Contains(OptInNemeses, n) {
			return fmt.Errorf("chaos: -nemesis %s: the kinds are %s, and on request %s", n, strings.Join(Nemeses, ","), strings.Join(OptInNemeses, ","))
		}
		if n == "partition" && o.Secure {
			return fmt.Errorf("chaos: -nemesis partition with -secure: Raft's mutual TLS hides the sender the proxies read; leave partition out")
		}
	}
	if o.Bug != "" && bugByName(o.Bug) == nil {
		return fmt.Errorf("chaos: -bug %s: no such planted bug (-bug list)", o.Bug)
	}
	return nil
}

// banner is the run's first line: every option, drawn or given.
func (o *Options) banner() string {
	bug := o.Bug
	if bug == "" {
		bug = "none"
	}
	return fmt.Sprintf("seed=%d nodes=%d shards=%d duration=%v workers=%d ttl=%v hot=%d snapshot_entries=%d nemesis=%s secure=%v liveness_bound=%v bug=%s",
		o.Seed, o.Nodes, o.Shards, o.Duration, o.Workers, o.TTL, o.Hot, o.SnapshotEntries, strings.Join(o.Nemesis, ","), o.Secure, o.LivenessBound, bug)
}

// Replay is the command line that runs this seed again with these options.
func (o *Options) Replay() string {
	s := fmt.Sprintf("lockstep-chaos -seed %d -duration %v -nodes %d -shards %d -nemesis %s",
		o.Seed, o.Duration, o.Nodes, o.Shards, strings.Join(o.Nemesis, ","))
	if o.Secure {
		s += " -secure"
	}
	if o.Bug != "" {
		s += " -bug " + o.Bug
	}
	return s
}

func (o *Options) logf(format string, args ...any) {
	if o.Log != nil {
		fmt.Fprintf(o.Log, format+"\n", args...)
	}
}
