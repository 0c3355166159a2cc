package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

// Result is one run, as -json prints it.
type Result struct {
	Seed       uint64         `json:"seed"`
	OK         bool           `json:"ok"`
	Ops        int            `json:"ops"`
	Checked    int            `json:"ops_checked"`
	Events     int            `json:"log_events"`
	Faults     map[string]int `json:"faults"`
	Violations []string       `json:"violations"`
	// Recovery figures in milliseconds, one per fault of the kind.
	Recovery      map[string][]int64 `json:"recovery_ms"`
	Accepted      int                `json:"fenced_writes_accepted"`
	Refused       int                `json:"fenced_writes_refused"`
	SleeperWrites int                `json:"sleeper_writes"`
	Sessions      SessionStats       `json:"sessions"`
	Watcher       WatcherStats       `json:"watcher"`
	Barrier       BarrierStats       `json:"barrier"`
	// StateHashes: per shard, the applied index every member reached and
	// the hash of the state there (the first 12 hex digits).
	StateHashes []string      `json:"state_hashes"`
	Porcupine   string        `json:"porcupine"`
	Wall        float64       `json:"wall_s"`
	Replay      string        `json:"replay"`
	Report      string        `json:"report,omitempty"`
	FaultLog    []FaultRecord `json:"fault_log"`
	// HostClockStepMs is the largest step of this machine's wall clock
	// against its monotonic clock during the run (hostclock.go): not a
	// fault of the run; 0 when none reached hostStepNoted.
	HostClockStepMs int64 `json:"host_clock_step_ms,omitempty"`
}

// run is the state of one run shared by the workload, the nemesis and the
// checks.
type run struct {
	o         *Options
	bug       *bug
	endpoints []string
	pki       *cluster.PKI // nil unless Options.Secure
	clients   atomic.Int64 // clients made, to alternate certificate and API key
	start     time.Time
	h         *history
	res       *resource
	timeline  timeline
	html      []byte // porcupine's visualization of an illegal history

	mu            sync.Mutex
	grants        []time.Time
	sleeperWrites int
	closers       []func() // of the Clients the run made, called when it ends
}

// own keeps fn to be called when the run ends.
func (r *run) own(fn func()) {
	r.mu.Lock()
	r.closers = append(r.closers, fn)
	r.mu.Unlock()
}

// closeClients closes every Client the run made, together and each within
// callSlack, so that a run leaves no stream, watch or connection behind in
// the process that runs the next seed. A Client closed already answers nil.
func (r *run) closeClients() {
	r.mu.Lock()
	closers := r.closers
	r.closers = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, fn := range closers {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	wg.Wait()
}

// closeClient closes c within callSlack, and the idle connections of f's
// transport, which a Client made WithHTTPClient leaves to its caller.
func closeClient(c *client.Client, f *freezer) {
	ctx, cancel := context.WithTimeout(context.Background(), callSlack)
	defer cancel()
	_ = c.Close(ctx)
	if f != nil {
		f.closeIdleConnections()
	}
}

func (r *run) noteGrant(t time.Time) {
	r.mu.Lock()
	r.grants = append(r.grants, t)
	r.mu.Unlock()
}

func (r *run) noteSleeperWrite() {
	r.mu.Lock()
	r.sleeperWrites++
	r.mu.Unlock()
}

func (r *run) firstGrantAfter(t time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := sort.Search(len(r.grants), func(i int) bool { return r.grants[i].After(t) })
	if i == len(r.grants) {
		return time.Time{}, false
	}
	return r.grants[i], true
}

// timeline is what happened when, for the report.
type timeline struct {
	mu      sync.Mutex
	entries []string
}

func (t *timeline) add(at time.Duration, what string) {
	t.mu.Lock()
	t.entries = append(t.entries, fmt.Sprintf("%8.3fs  %s", at.Seconds(), what))
	t.mu.Unlock()
}

// configure is what a run changes in every member's configuration: REST
// waits stay short, and snapshots come as often as the seed drew.
func (o *Options) configure(cfg *config.Config) {
	cfg.Locks.MaxWaitTimeSeconds = 10
	cfg.Consensus.SnapshotEntries = o.SnapshotEntries
}

// Bounds on a run's phases beyond the fault phase.
const (
	startBound   = 30 * time.Second
	drainBound   = 10 * time.Second
	porcupineMax = 60 * time.Second
)

// Run starts a cluster, runs the workload under the planned faults for
// o.Duration, heals, demands liveness, stops and checks. The cluster is
// gone when it returns, on every path.
func Run(o Options) (Result, error) {
	if err := o.draw(); err != nil {
		return Result{}, err
	}
	o.logf("%s", o.banner())
	res := Result{Seed: o.Seed, Faults: map[string]int{}, Recovery: map[string][]int64{}, Replay: o.Replay()}
	began := time.Now()
	c, err := cluster.Start(cluster.Options{Binary: o.Binary, Nodes: o.Nodes, Shards: o.Shards, Proxies: !o.Secure, Keep: o.Keep,
		Secure: o.Secure, Configure: o.configure}, startBound)
	if err != nil {
		return res, fmt.Errorf("starting the cluster: %w", err)
	}
	defer c.Close()
	if o.Keep {
		o.logf("cluster directory: %s", c.Dir)
	}
	// The clock fault and the state hash need the chaos build's hooks.
	ctx, cancel := context.WithTimeout(context.Background(), startBound)
	_, err = c.Nodes[0].ClockOffset(ctx)
	cancel()
	if err != nil {
		return res, fmt.Errorf("%s runs %s: %w", c.Nodes[0].ID, o.Binary, err)
	}
	r := &run{o: &o, bug: bugByName(o.Bug), endpoints: c.Endpoints(), pki: c.PKI}
	violations, checked := r.execute(c, &res)
	res.Violations = append([]string{}, violations...) // [] rather than null in -json
	res.Checked = checked
	res.OK = len(violations) == 0
	res.Wall = time.Since(began).Seconds()
	if !res.OK && o.Out != "" {
		if path, err := r.report(c, &res); err == nil {
			res.Report = path
		}
	}
	return res, nil
}

func (r *run) execute(c *cluster.Cluster, res *Result) (violations []string, checked int) {
	o := r.o
	defer r.closeClients()
	watcher, err := r.toolClient("watch")
	if err != nil {
		return []string{err.Error()}, 0
	}
	checker, err := r.toolClient("resource")
	if err != nil {
		return []string{err.Error()}, 0
	}
	r.start = time.Now()
	r.h = newHistory(r.start)
	r.res = newResource(r.h, checker, r.bug)
	hostCtx, stopHost := context.WithCancel(context.Background())
	hostDone := make(chan time.Duration, 1)
	go func() { hostDone <- r.watchHostClock(hostCtx) }()
	defer func() {
		stopHost()
		if step := <-hostDone; step.Abs() >= hostStepNoted {
			res.HostClockStepMs = step.Milliseconds()
		}
	}()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); r.h.watch(watchCtx, watcher) }()
	// The client's Watch shows events only, so the watch is known to run
	// once it delivers one: the grant of a first mutex.
	if err := r.probe(o.Workers + 1); err != nil {
		return []string{err.Error()}, 0
	}

	ctx, stopWork := context.WithCancel(context.Background())
	defer stopWork()
	var wg sync.WaitGroup
	var workers []*worker
	for i := range o.Workers {
		cl, _, err := r.newClient(fmt.Sprintf("worker-%d", i), false)
		if err != nil {
			return []string{err.Error()}, 0
		}
		w := &worker{idx: i, run: r, r: stream(o.Seed, streamWorker+uint64(i)), c: cl, last: map[string]uint64{}}
		workers = append(workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); w.loop(ctx) }()
	}
	sl := &sleeper{idx: o.Workers, run: r, r: stream(o.Seed, streamSleeper)}
	wg.Add(1)
	go func() { defer wg.Done(); sl.loop(ctx) }()
	lp := &lapser{idx: o.Workers + 2, run: r, r: stream(o.Seed, streamLapser)}
	wg.Add(1)
	go func() { defer wg.Done(); lp.loop(ctx) }()
	wc, err := r.toolClient("watcher")
	if err != nil {
		return []string{err.Error()}, 0
	}
	wt := newWatcher(r, wc)
	wg.Add(1)
	go func() { defer wg.Done(); wt.loop(ctx) }()
	barriers := &barrierLog{}
	for i := range barrierParties {
		cl, _, err := r.newClient(fmt.Sprintf("party-%d", i), false)
		if err != nil {
			return []string{err.Error()}, 0
		}
		p := &barrierParty{idx: i, run: r, r: stream(o.Seed, streamBarrier+uint64(i)), c: cl}
		wg.Add(1)
		go func() { defer wg.Done(); p.loop(ctx, barriers) }()
	}

	faults := plan(o)
	admin, err := r.toolClient("nemesis")
	if err != nil {
		return []string{err.Error()}, 0
	}
	nem := &nemesis{o: o, c: c, r: r, admin: admin}
	nem.runAll(ctx, faults)
	sleepUntil(ctx, r.start.Add(o.Duration))

	// Liveness: every fault has healed. Every member must reach one applied
	// index, and every worker must be granted again.
	healed := time.Now()
	r.timeline.add(healed.Sub(r.start), "liveness phase: every fault healed")
	o.logf("%6.1fs liveness phase (bound %v)", healed.Sub(r.start).Seconds(), o.LivenessBound)
	if err := c.Converged(o.LivenessBound, c.Nodes...); err != nil {
		violations = append(violations, fmt.Sprintf("liveness: %v", err))
	}
	deadline := healed.Add(o.LivenessBound)
	for _, w := range workers {
		for !w.grantedSince(healed) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !w.grantedSince(healed) {
			violations = append(violations, fmt.Sprintf("liveness: worker %d was not granted anything within %v of the last heal", w.idx, o.LivenessBound))
		}
	}
	o.logf("%6.1fs every worker granted again after %v", time.Since(r.start).Seconds(), time.Since(healed).Round(time.Millisecond))
	stopWork()
	wg.Wait() // every call is bounded by its context (callSlack past its wait)

	// Let the watch deliver the releases of the closed sessions.
	r.h.settle(drainBound)
	// Every member must reach the same state: at one applied index, one
	// state hash, per shard.
	if hashes, err := c.SameState(o.LivenessBound, c.Nodes...); err != nil {
		var div *cluster.DivergedError
		if errors.As(err, &div) {
			violations = append(violations, fmt.Sprintf("state: %v", err))
		} else {
			violations = append(violations, fmt.Sprintf("liveness: %v", err))
		}
	} else {
		for _, h := range hashes {
			res.StateHashes = append(res.StateHashes, fmt.Sprintf("shard %d at %d: %.12s", h.ShardID, h.AppliedIndex, h.StateHash))
		}
	}
	stopWatch()
	<-watchDone

	ops, bad := r.h.complete()
	violations = append(violations, bad...)
	if r.h.watchErr != nil {
		violations = append(violations, fmt.Sprintf("the watch of chaos/ failed, so the log is not complete: %v", r.h.watchErr))
	}
	verdict, names, html := checkLinearizable(ops, porcupineMax)
	if verdict == "illegal" {
		violations = append(violations, fmt.Sprintf("linearizability: the history of %s is not linearizable (%d operations checked)", names, len(ops)))
		r.html = html
	}
	violations = append(violations, r.res.check()...)
	bad, sessions := r.h.checkSessions()
	violations = append(violations, bad...)
	res.Sessions = sessions
	bad, res.Watcher = wt.check()
	violations = append(violations, bad...)
	bad, res.Barrier = r.checkBarrier(barriers)
	violations = append(violations, bad...)

	res.Ops = r.h.count()
	res.Events = r.h.events
	res.Porcupine = verdict
	res.Accepted, res.Refused = len(r.res.accepted), r.res.refused
	res.SleeperWrites = r.sleeperWrites
	for _, f := range nem.records {
		if f.Violation != "" {
			violations = append(violations, f.Violation)
		}
		if g, ok := r.firstGrantAfter(r.start.Add(f.Started)); ok {
			f.ToGrant = g.Sub(r.start.Add(f.Started))
		}
		res.Faults[f.Kind]++
		res.FaultLog = append(res.FaultLog, f)
		key := f.Kind + " → grant"
		if f.Leader {
			key = f.Kind + " leader → grant"
		}
		if f.ToGrant >= 0 {
			res.Recovery[key] = append(res.Recovery[key], f.ToGrant.Milliseconds())
		}
		if f.ToService >= 0 {
			res.Recovery["heal → service"] = append(res.Recovery["heal → service"], f.ToService.Milliseconds())
		}
	}
	return violations, len(ops)
}

// probe takes and releases chaos/start as client idx and waits until the
// watch has delivered the grant, so that the workload starts only once
// the log is being read.
func (r *run) probe(idx int) error {
	c, err := r.toolClient("probe")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startBound)
	defer cancel()
	s, err := c.NewSession(ctx, client.WithTTL(10*time.Second))
	if err != nil {
		return fmt.Errorf("probe session: %w", err)
	}
	defer s.Close(context.Background())
	k := model.Key{Kind: core.KindMutex, Name: "chaos/start"}
	m := client.NewMutex(s, k.Name)
	o := op{worker: idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(s.ID())}, call: r.h.now()}
	if err := m.Lock(ctx); err != nil {
		return fmt.Errorf("probe lock: %w", err)
	}
	o.ret, o.answer, o.token = r.h.now(), answerGranted, m.Token()
	r.h.add(o)
	rel := op{worker: idx, in: model.Input{Op: model.Release, Key: k, Session: o.in.Session, Token: core.FencingToken(o.token)}, call: r.h.now()}
	if err := m.Unlock(ctx); err != nil {
		return fmt.Errorf("probe unlock: %w", err)
	}
	rel.ret, rel.answer = r.h.now(), answerOK
	r.h.add(rel)
	for ctx.Err() == nil {
		if r.h.sawGrant(k, o.token) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the watch of chaos/ did not deliver the probe's grant within %v", startBound)
}

// report writes the failing run's HTML: porcupine's visualization, when
// the history was not linearizable, and the timeline of faults, with the
// violations and the replay line.
func (r *run) report(c *cluster.Cluster, res *Result) (string, error) {
	if err := os.MkdirAll(r.o.Out, 0o755); err != nil {
		return "", err
	}
	base := filepath.Join(r.o.Out, fmt.Sprintf("seed-%d", r.o.Seed))
	if r.o.Bug != "" {
		base += "-" + r.o.Bug
	}
	var b strings.Builder
	b.WriteString("<!doctype html><meta charset=utf-8><title>lockstep-chaos seed " + fmt.Sprint(r.o.Seed) + "</title>\n")
	b.WriteString("<h1>lockstep-chaos: seed " + fmt.Sprint(r.o.Seed) + " FAIL</h1>\n<pre>" + htmlEscape(r.o.Replay()) + "\n" + htmlEscape(r.o.banner()) + "</pre>\n")
	b.WriteString("<h2>Violations</h2>\n<ul>\n")
	for _, v := range res.Violations {
		b.WriteString("<li>" + htmlEscape(v) + "\n")
	}
	b.WriteString("</ul>\n<h2>Timeline of faults</h2>\n<pre>\n")
	r.timeline.mu.Lock()
	for _, e := range r.timeline.entries {
		b.WriteString(htmlEscape(e) + "\n")
	}
	r.timeline.mu.Unlock()
	b.WriteString("</pre>\n")
	if r.html != nil {
		vis := base + ".porcupine.html"
		if err := os.WriteFile(vis, r.html, 0o644); err == nil {
			b.WriteString(`<h2>History</h2><p><a href="` + filepath.Base(vis) + `">porcupine's visualization of the history</a></p>` + "\n")
		}
	}
	b.WriteString("<h2>Last lines of the logs</h2>\n<pre>" + htmlEscape(c.Logs(20)) + "</pre>\n")
	path := base + ".html"
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
