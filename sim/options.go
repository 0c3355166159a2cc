package sim

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
)

// Options is everything a run depends on besides its seed. The zero value
// of each field (or -1 for rates, where 0 is a meaningful choice) means
// "draw it from the seed", swarm-style: every run explores a different mix
// of cluster size, clients, faults and workload, and prints what it drew.
type Options struct {
	Seed     uint64
	Replicas int           // 3 or 5; 0: drawn
	Clients  int           // 1..64; 0: drawn (2..16)
	Duration time.Duration // safety phase in virtual time; 0: drawn (15..45 s)

	// Fault rates. Rates are per virtual second, probabilities per message;
	// a negative value means drawn from the seed.
	CrashRate     float64 // replica crashes
	PartitionRate float64 // network partitions (halves, isolated leader, one-way)
	ClockRate     float64 // clock jumps, forward or back
	PauseRate     float64 // client pauses (half of them past the session TTL) and deaths
	// StallRate: a replica process standing still (stopped, its host
	// stalled) while its clocks run on, the leader most often and with a
	// majority half the time, so that the same leader resumes behind its
	// clock. Never drawn: 0 unless given (-stall-rate), so that the seeds
	// of a sweep without it draw as before.
	StallRate float64
	Loss      float64       // message loss probability
	Dup       float64       // message duplication probability
	MaxDelay  time.Duration // message delay upper bound; 0: drawn (2..60 ms)

	// Gate is the driver's proposal gate (replica.Config.MaxUnconfirmed):
	// a replica's driver proposes nothing while Gate of its proposals are
	// unconfirmed, so requests arriving meanwhile pile up in its queue and
	// go out packed together (group commit; the runtime uses the driver's
	// default, 2). 1, 2 or 4; -1 no gate (the driver's widest); 0: drawn.
	Gate int

	// Shards is how many Raft groups every replica hosts, as
	// consensus.shards makes a production node run (docs/runtime.md,
	// Shards): names spread by core/shards, sessions mirrored in every
	// shard, the clients routing through core/shards' fan-out. 0 means 1,
	// the default: seeds keep the trace hashes they had before shards, and
	// the golden corpus stays valid. ShardsDrawn draws 1..4 from the seed
	// (-shards 0). A planted bug that needs shards (Bug.shards) sets its
	// count when Shards is 0.
	Shards int

	Bug string // a planted bug by name, "" for none

	// Mux is how many multiplexed clients run beside the others (mux.go):
	// one client id shared by several sessions and many concurrent callers.
	// 0..4; 0: drawn (one in a quarter of the seeds, none in the rest); MuxNone: none.
	Mux int

	// Upgrade is when the run's replicas, which start as a build of rules
	// 3 (their drivers propose leader-change marks without rules:
	// replica.Config.MarkRules, MarkRulesUnmarked), begin a rolling
	// upgrade to this build: one after another each crashes and restarts
	// proposing marks of core.RulesVersion, so that the first leader of
	// the new build raises the rules in force (core/rules.go) and the run
	// checks entries of both rules and the moment between them. 0: drawn
	// (one in a quarter of the seeds, at 10..60% of Duration; none in the
	// rest); UpgradeNone: none, every replica of this build from the start.
	Upgrade time.Duration

	// Private is the share of the plain clients' acquires and campaigns
	// sent as private requests: a REST caller's without a client_id of
	// its own, to which the node gives an identity nobody else knows
	// (client.go, giveUpPrivate). Such a request is sent once, and when
	// its caller gives up the node can only release a grant it did not
	// hear (replica.GoneEvent), which the machine refuses for a grant
	// another request was answered (rules 5). 0: drawn (half the seeds,
	// 0.1..0.5; none in the rest); PrivateNone: none.
	Private float64

	// Tolerate lists checks (comma-separated) whose violations are noted as
	// warnings instead of failing the run: a known bug being fixed elsewhere
	// should not stop a sweep from finding the next one.
	Tolerate string

	// Drawn only, printed in the banner. Scenario tests may set Workload
	// and TTLMin/TTLMax.
	SnapshotEvery  int           // entries between a replica's snapshots
	MinDelay       time.Duration // message delay lower bound
	DiskLatency    time.Duration // one fsync
	ClockSkew      time.Duration // bound on each replica's offset
	DriftPPM       int64         // bound on each replica's drift
	LivenessBound  time.Duration // how long the healed cluster has to answer everything
	Workload       Mix
	TTLMin, TTLMax time.Duration // session TTLs clients pick from
}

// Mix weighs what clients do.
type Mix struct {
	Mutex, TryLock, Semaphore, RWLock, Barrier, Election, Status int
}

func (m Mix) String() string {
	return fmt.Sprintf("mutex=%d trylock=%d semaphore=%d rwlock=%d barrier=%d election=%d status=%d",
		m.Mutex, m.TryLock, m.Semaphore, m.RWLock, m.Barrier, m.Election, m.Status)
}

// DefaultOptions asks for everything to be drawn from the seed.
func DefaultOptions(seed uint64) Options {
	return Options{Seed: seed, CrashRate: -1, PartitionRate: -1, ClockRate: -1, PauseRate: -1, Loss: -1, Dup: -1}
}

// Resolve returns the options with everything left open drawn from the
// seed, or says which option is unusable.
func (o Options) Resolve() (Options, error) { return o.resolve() }

// resolve draws what the options leave open. Every draw happens whether or
// not a flag overrides it, so that overriding one option never changes the
// others.
func (o Options) resolve() (Options, error) {
	r := stream(o.Seed, "options")
	off := func(p float64) bool { return r.Float64() < p } // swarm: some faults are absent from a run
	rate := func(max float64) float64 {
		v := r.Float64() * max
		if off(0.25) {
			v = 0
		}
		return v
	}
	replicas := 3 + 2*r.IntN(2)
	clients := 2 + r.IntN(15)
	duration := time.Duration(15+r.IntN(31)) * time.Second
	crash, part, clk, pause := rate(0.3), rate(0.3), rate(0.2), rate(0.2)
	loss, dup := rate(0.1), rate(0.05)
	maxDelay := time.Duration(2+r.IntN(59)) * time.Millisecond
	d := Options{
		SnapshotEvery: 10 + r.IntN(191),
		MinDelay:      time.Duration(100+r.IntN(900)) * time.Microsecond,
		DiskLatency:   time.Duration(50+r.IntN(2000)) * time.Microsecond,
		ClockSkew:     time.Duration(r.IntN(5000)) * time.Millisecond,
		DriftPPM:      int64(r.IntN(500)),
		LivenessBound: 40 * time.Second,
		TTLMin:        time.Duration(800+r.IntN(1200)) * time.Millisecond,
	}
	d.TTLMax = d.TTLMin + time.Duration(r.IntN(5000))*time.Millisecond
	w := func() int {
		if off(0.2) {
			return 0
		}
		return 1 + r.IntN(10)
	}
	d.Workload = Mix{Mutex: w(), TryLock: w(), Semaphore: w(), RWLock: w(), Barrier: w(), Election: w(), Status: w()}
	if d.Workload == (Mix{}) {
		d.Workload.Mutex = 1
	}
	// Drawn last, so that adding it left every earlier draw as it was: a
	// seed that draws no gate runs exactly as it did before the gate.
	gate := [...]int{GateNone, 1, 2, 4}[r.IntN(4)]
	// Drawn after the gate for the same reason; used only with -shards 0.
	shardCount := 1 + r.IntN(4)
	// Drawn after the shard count for the same reason.
	mux := MuxNone
	if r.IntN(4) == 0 {
		mux = 1 // one is enough to contend with itself: it has several sessions
	}
	// Drawn after mux for the same reason.
	upgrade, upgradeAt := r.IntN(4) == 0, 0.1+0.5*r.Float64()
	// Drawn after the upgrade for the same reason; both draws happen
	// either way, so that a later draw never depends on this one.
	private, privateShare := r.IntN(2) == 0, 0.1+0.4*r.Float64()

	if o.Replicas == 0 {
		o.Replicas = replicas
	}
	if o.Clients == 0 {
		o.Clients = clients
	}
	if o.Duration == 0 {
		o.Duration = duration
	}
	pick := func(v *float64, drawn float64) {
		if *v < 0 {
			*v = drawn
		}
	}
	pick(&o.CrashRate, crash)
	pick(&o.PartitionRate, part)
	pick(&o.ClockRate, clk)
	pick(&o.PauseRate, pause)
	pick(&o.Loss, loss)
	pick(&o.Dup, dup)
	if o.MaxDelay == 0 {
		o.MaxDelay = maxDelay
	}
	if o.Gate == 0 {
		o.Gate = gate
	}
	if b, ok := bugByName(o.Bug); ok && o.Shards == 0 && b.shards > 0 {
		o.Shards = b.shards
	}
	switch o.Shards {
	case 0:
		o.Shards = 1
	case ShardsDrawn:
		o.Shards = shardCount
	}
	if b, ok := bugByName(o.Bug); ok && o.Mux == 0 && b.muxClients > 0 {
		o.Mux = b.muxClients
	}
	if o.Mux == 0 {
		o.Mux = mux
		if o.Shards > 1 {
			o.Mux = MuxNone // the multiplexed client speaks to one shard (mux.go)
		}
	}
	if b, ok := bugByName(o.Bug); ok && b.upgrade {
		upgrade = true
	}
	if o.Upgrade == 0 {
		o.Upgrade = UpgradeNone
		if upgrade {
			o.Upgrade = time.Duration(upgradeAt * float64(o.Duration)).Round(time.Millisecond)
		}
	}
	if b, ok := bugByName(o.Bug); ok && o.Private == 0 && b.private > 0 {
		o.Private = b.private
	}
	if o.Private == 0 {
		o.Private = PrivateNone
		if private {
			o.Private = privateShare
		}
	}
	o.SnapshotEvery, o.MinDelay, o.DiskLatency = d.SnapshotEvery, d.MinDelay, d.DiskLatency
	o.ClockSkew, o.DriftPPM, o.LivenessBound = d.ClockSkew, d.DriftPPM, d.LivenessBound
	if o.Workload == (Mix{}) {
		o.Workload = d.Workload
	}
	if o.TTLMin == 0 {
		o.TTLMin, o.TTLMax = d.TTLMin, d.TTLMax
	}
	o.TTLMax = max(o.TTLMax, o.TTLMin)
	if o.MinDelay > o.MaxDelay {
		o.MinDelay = o.MaxDelay
	}
	return o, o.validate()
}

func (o Options) validate() error {
	switch {
	case o.Replicas != 3 && o.Replicas != 5:
		return fmt.Errorf("-replicas must be 3 or 5, got %d", o.Replicas)
	case o.Clients < 1 || o.Clients > 64:
		return fmt.Errorf("-clients must be within 1..64, got %d", o.Clients)
	case o.Duration < time.Second || o.Duration > time.Hour:
		return fmt.Errorf("-duration must be within 1s..1h, got %v", o.Duration)
	case o.Loss > 0.5 || o.Dup > 0.5:
		return fmt.Errorf("-loss and -dup must be at most 0.5")
	case o.CrashRate > 10 || o.PartitionRate > 10 || o.ClockRate > 10 || o.PauseRate > 10 || o.StallRate > 10:
		return fmt.Errorf("fault rates must be at most 10 per virtual second")
	case o.MaxDelay > 5*time.Second:
		return fmt.Errorf("-max-delay must be at most 5s")
	case o.Gate != GateNone && (o.Gate < 1 || o.Gate > 64):
		return fmt.Errorf("-gate must be within 1..64, or -1 for none, got %d", o.Gate)
	case o.Shards < 1 || o.Shards > MaxShards:
		return fmt.Errorf("-shards must be within 1..%d, or 0 to draw 1..4 from the seed, got %d", MaxShards, o.Shards)
	case o.Mux != MuxNone && (o.Mux < 1 || o.Mux > 4):
		return fmt.Errorf("-mux must be within 1..4, or -1 for none, got %d", o.Mux)
	case o.Mux != MuxNone && o.Shards > 1:
		return fmt.Errorf("-mux needs one shard: the multiplexed client does not route across shards")
	case o.Private != PrivateNone && (o.Private <= 0 || o.Private > 1):
		return fmt.Errorf("-private must be a share within (0, 1], or none, got %g", o.Private)
	case o.Upgrade != UpgradeNone && (o.Upgrade <= 0 || o.Upgrade >= o.Duration):
		return fmt.Errorf("-upgrade must be within the safety phase (0s..%v), or none, got %v", o.Duration, o.Upgrade)
	}
	if o.Bug != "" {
		if _, ok := bugByName(o.Bug); !ok {
			return fmt.Errorf("unknown bug %q: -bug list names them", o.Bug)
		}
	}
	return nil
}

// Flags renders the options as the command-line flags that reproduce them.
func (o Options) Flags() string {
	var b strings.Builder
	fmt.Fprintf(&b, "-seed %d -replicas %d -clients %d -duration %v", o.Seed, o.Replicas, o.Clients, o.Duration)
	fmt.Fprintf(&b, " -crash-rate %g -partition-rate %g -clock-rate %g -pause-rate %g -loss %g -dup %g -max-delay %v",
		o.CrashRate, o.PartitionRate, o.ClockRate, o.PauseRate, o.Loss, o.Dup, o.MaxDelay)
	fmt.Fprintf(&b, " -gate %d", o.Gate)
	if o.Shards > 1 {
		fmt.Fprintf(&b, " -shards %d", o.Shards)
	}
	fmt.Fprintf(&b, " -mux %d", o.Mux)
	fmt.Fprintf(&b, " -upgrade %s", upgradeFlag{&o})
	fmt.Fprintf(&b, " -private %s", privateFlag{&o})
	if o.StallRate > 0 {
		fmt.Fprintf(&b, " -stall-rate %g", o.StallRate)
	}
	if o.Bug != "" {
		fmt.Fprintf(&b, " -bug %s", o.Bug)
	}
	if o.Tolerate != "" {
		fmt.Fprintf(&b, " -tolerate %s", o.Tolerate)
	}
	return b.String()
}

// Banner describes the run, like the VOPR's: every drawn option.
func (o Options) Banner() string {
	shardsNote := ""
	if o.Shards > 1 {
		shardsNote = fmt.Sprintf(" shards=%d", o.Shards)
	}
	return fmt.Sprintf("seed=%d replicas=%d%s clients=%d duration=%v liveness_bound=%v\n"+
		"  faults: crash=%.3g/s partition=%.3g/s clock=%.3g/s pause=%.3g/s loss=%.3g dup=%.3g delay=%v..%v\n"+
		"  disk_latency=%v snapshot_every=%d clock_skew=±%v drift=±%dppm ttl=%v..%v gate=%s\n"+
		"  workload: %v\n  bug: %s%s",
		o.Seed, o.Replicas, shardsNote, o.Clients, o.Duration, o.LivenessBound,
		o.CrashRate, o.PartitionRate, o.ClockRate, o.PauseRate, o.Loss, o.Dup, o.MinDelay, o.MaxDelay,
		o.DiskLatency, o.SnapshotEvery, o.ClockSkew, o.DriftPPM, o.TTLMin, o.TTLMax, gateString(o.Gate), o.Workload, orNone(o.Bug),
		tolerating(o.Tolerate)) + muxBanner(o.Mux) + upgradeBanner(o.Upgrade) + privateBanner(o.Private)
}

// GateNone is the Gate value for "take Ready after every step".
const GateNone = -1

// maxUnconfirmed is the driver's gate (replica.Config.MaxUnconfirmed) for
// the run's Gate: with none, the driver's widest, which no replica reaches
// (proposals leave it within proposalTimeout, and a replica proposes a few
// entries per step).
func (o Options) maxUnconfirmed() int {
	if o.Gate == GateNone {
		return replica.MaxMaxUnconfirmed
	}
	return o.Gate
}

// MuxNone is the Mux value for "no multiplexed clients".
const MuxNone = -1

func muxBanner(n int) string {
	if n == MuxNone {
		return ""
	}
	return fmt.Sprintf("\n  multiplexed clients: %d", n)
}

// UpgradeNone is the Upgrade value for "no upgrade: every replica of this
// build from the start".
const UpgradeNone = -1

func upgradeBanner(at time.Duration) string {
	if at == UpgradeNone {
		return ""
	}
	return fmt.Sprintf("\n  upgrade: replicas start as a build of rules %d, upgraded one by one to rules %d from %v",
		replica.MarkRulesUnmarked, core.RulesVersion, at)
}

// PrivateNone is the Private value for "no private requests".
const PrivateNone = -1

func privateBanner(share float64) string {
	if share == PrivateNone {
		return ""
	}
	return fmt.Sprintf("\n  private requests: %.2g of acquires and campaigns", share)
}

// ShardsDrawn is the Shards value for "draw 1..4 from the seed" (-shards 0);
// MaxShards bounds -shards.
const (
	ShardsDrawn = -1
	MaxShards   = 8
)

func gateString(g int) string {
	if g == GateNone {
		return "none"
	}
	return fmt.Sprint(g)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// RegisterFlags defines the run's option flags on fs, writing into o. The
// same flags print in Flags, so a printed replay line parses back to the
// same options.
func RegisterFlags(fs *flag.FlagSet, o *Options) {
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "the seed to run")
	fs.IntVar(&o.Replicas, "replicas", o.Replicas, "replicas: 3 or 5 (default: drawn from the seed)")
	fs.IntVar(&o.Clients, "clients", o.Clients, "simulated clients (default: drawn, 2..16)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "virtual time of the safety phase (default: drawn, 15s..45s)")
	fs.Float64Var(&o.CrashRate, "crash-rate", o.CrashRate, "replica crashes per virtual second (default: drawn)")
	fs.Float64Var(&o.PartitionRate, "partition-rate", o.PartitionRate, "partitions per virtual second (default: drawn)")
	fs.Float64Var(&o.ClockRate, "clock-rate", o.ClockRate, "clock jumps per virtual second (default: drawn)")
	fs.Float64Var(&o.PauseRate, "pause-rate", o.PauseRate, "client pauses and deaths per virtual second (default: drawn)")
	fs.Float64Var(&o.StallRate, "stall-rate", o.StallRate, "replica stalls per virtual second: a process standing still while its clocks run on, the leader most often, with a majority half the time (default 0: none; never drawn)")
	fs.Float64Var(&o.Loss, "loss", o.Loss, "message loss probability (default: drawn)")
	fs.Float64Var(&o.Dup, "dup", o.Dup, "message duplication probability (default: drawn)")
	fs.DurationVar(&o.MaxDelay, "max-delay", o.MaxDelay, "message delay upper bound (default: drawn, 2ms..60ms)")
	fs.IntVar(&o.Gate, "gate", o.Gate, "the driver's proposal gate (replica.Config.MaxUnconfirmed; the runtime's is 2): it proposes nothing while this many of its proposals are neither confirmed nor refused, so requests that arrive meanwhile share the next entry; 1..64, -1 none (default: drawn from none, 1, 2, 4)")
	fs.Var(shardsFlag{o}, "shards", "Raft groups per replica, 1..8; 0 draws 1..4 from the seed (default 1)")
	fs.StringVar(&o.Bug, "bug", o.Bug, "plant a bug by name; 'list' names them")
	fs.IntVar(&o.Mux, "mux", o.Mux, "multiplexed clients (one client id, several sessions, many callers): 1..4, -1 none (default: drawn, none in most seeds)")
	fs.Var(upgradeFlag{o}, "upgrade", "start the replicas as a build of rules 3 (marks without rules) and upgrade them one by one to this build from this virtual time; none: no upgrade (default: drawn, in a quarter of the seeds)")
	fs.Var(privateFlag{o}, "private", "the share of acquires and campaigns sent as private requests (no client_id of their own: sent once, given up for good, their unheard grants released by the node), within (0, 1]; none: no private requests (default: drawn, in half the seeds)")
	fs.StringVar(&o.Tolerate, "tolerate", o.Tolerate, "checks (comma-separated) reported as warnings, not failures")
}

// shardsFlag is -shards: 0 on the command line means ShardsDrawn, and
// String gives the flag back as written, so that a sweep passes it on to
// each seed's process.
type shardsFlag struct{ o *Options }

func (f shardsFlag) String() string {
	if f.o == nil || f.o.Shards == ShardsDrawn {
		return "0"
	}
	return strconv.Itoa(f.o.Shards)
}

func (f shardsFlag) Set(v string) error {
	k, err := strconv.Atoi(v)
	if err != nil {
		return err
	}
	if k == 0 {
		k = ShardsDrawn
	}
	f.o.Shards = k
	return nil
}

// upgradeFlag is -upgrade: a time within the safety phase, none
// (UpgradeNone), or 0 to draw it from the seed.
type upgradeFlag struct{ o *Options }

func (f upgradeFlag) String() string {
	if f.o == nil || f.o.Upgrade == 0 {
		return "0"
	}
	if f.o.Upgrade == UpgradeNone {
		return "none"
	}
	return f.o.Upgrade.String()
}

func (f upgradeFlag) Set(v string) error {
	if v == "none" {
		f.o.Upgrade = UpgradeNone
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	f.o.Upgrade = d
	return nil
}

// privateFlag is -private: a share within (0, 1], none (PrivateNone), or
// 0 to draw it from the seed.
type privateFlag struct{ o *Options }

func (f privateFlag) String() string {
	switch {
	case f.o == nil || f.o.Private == 0:
		return "0"
	case f.o.Private == PrivateNone:
		return "none"
	}
	return strconv.FormatFloat(f.o.Private, 'g', -1, 64)
}

func (f privateFlag) Set(v string) error {
	if v == "none" {
		f.o.Private = PrivateNone
		return nil
	}
	p, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return err
	}
	f.o.Private = p
	return nil
}

// ParseFlags reads options from replay flags such as Flags prints.
func ParseFlags(args []string) (Options, error) {
	o := DefaultOptions(1)
	fs := flag.NewFlagSet("lockstep-sim", flag.ContinueOnError)
	fs.SetOutput(discard{})
	RegisterFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func tolerating(s string) string {
	if s == "" {
		return ""
	}
	return "\n  tolerating: " + s
}
