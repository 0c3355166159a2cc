// Command lockbench is Lockstep's load generator. It starts (or connects
// to) a three-node cluster of separate `lockstep serve` processes on
// loopback (or, with -nodes 1, one node alone) and measures, through the Connect API over reused HTTP/2
// connections:
//
//   - acquire+release cycles per second and acquire latency p50/p95/p99 at
//     1, 16, 64 and 256 concurrent clients, each on its own name;
//   - hand-offs per second with 64 clients queued on one name;
//   - the time from `kill -9` of the leader to the next successful acquire;
//   - the time from healing a partition that cut the leader off to full
//     service (partition.go);
//   - the resident memory of the leader holding 100,000 locks;
//   - with -tls and/or -api-key, the cycle points again on a secured
//     cluster (TLS, client certificates or API keys, an audit log), next
//     to the plaintext ones (secure.go).
//
// Every load loop is bounded in time (-dur per point) and in count.
//
//	go build -o bin/ ./cmd/lockstep && go run ./bench/cmd/lockbench
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// lockbenchGOGC is lockbench's own GC percent unless GOGC is set.
const lockbenchGOGC = 400

type options struct {
	bin        string
	connect    string
	dur        time.Duration
	clients    []int
	handoff    int
	failovers  int
	partitions int
	memLocks   int
	conns      int
	target     string // leader, follower or spread
	maxOps     int
	rate       float64 // cycles/s over all clients of a cycle point; 0: as fast as they can
	serveExtra string
	idle       time.Duration
	strict     bool
	profileAt  int      // the client count whose cycle point is profiled
	profileOff bool     // profile the hand-off point instead
	profileDir string   // where the profiles go
	tls        bool     // also run the cycle points on a cluster with TLS, client certificates and an audit log
	apiKey     bool     // the same with API keys (with -tls: over TLS)
	via        []string // how the cycle and hand-off points reach the cluster (viaclient.go)
	nodes      int      // members of the cluster it starts: 3, or 1 (issue 12's one-node figure)
}

func main() {
	var o options
	var clients, via string
	flag.StringVar(&via, "via", "connect", "comma-separated: how the cycle and hand-off points reach the cluster: connect (raw Connect unary calls to -target), client (the Go client on all three endpoints, its sessions on one stream per endpoint), client-per-session (the same, client.WithStreamPerSession), client-unary (the same, client.WithUnary)")
	flag.StringVar(&o.bin, "bin", "bin/lockstep", "the lockstep binary to start (-nodes processes)")
	flag.IntVar(&o.nodes, "nodes", 3, "members of the cluster it starts: 3, or 1 for one node alone (what `serve --dev` runs: the defaults, one member); with 1, -failover, -partition, -tls and -api-key must be off and -target is the leader")
	flag.StringVar(&o.connect, "connect", "", "use a running cluster: comma-separated API addresses (host:port) instead of starting one; -failover and -mem need a started one")
	flag.DurationVar(&o.dur, "dur", 5*time.Second, "measuring time per point")
	flag.StringVar(&clients, "clients", "1,16,64,256", "client counts for the own-name cycle workload (empty: skip)")
	flag.IntVar(&o.handoff, "handoff", 64, "clients queued on one name for the hand-off workload (0: skip)")
	flag.IntVar(&o.failovers, "failover", 3, "leader kill -9 trials (0: skip)")
	flag.IntVar(&o.partitions, "partition", 3, "leader partition trials, on a cluster of their own whose Raft traffic goes through proxies (0: skip)")
	flag.IntVar(&o.memLocks, "mem", 100000, "locks held for the memory figure (0: skip)")
	flag.IntVar(&o.conns, "conns", 4, "HTTP/2 connections per node, shared round-robin by the clients")
	flag.StringVar(&o.target, "target", "leader", "where clients send: leader, follower or spread (round-robin over the members)")
	flag.IntVar(&o.maxOps, "max-ops", 2_000_000, "bound on the operations of one point, whatever -dur says")
	flag.Float64Var(&o.rate, "rate", 0, "cycle points: start at most this many cycles/s over all clients (0: as fast as they can); at a fixed rate the CPU per cycle of two builds compares, since batching changes with the rate")
	flag.StringVar(&o.serveExtra, "serve-flags", "", "extra flags for lockstep serve, space-separated")
	flag.BoolVar(&o.strict, "strict", false, "exit 1 when any operation failed or a failover did not recover (make test-performance)")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "first measure the CPU of the idle cluster for this long (0: skip)")
	flag.IntVar(&o.profileAt, "profile-clients", 64, "with -profile: the cycle point to profile")
	flag.BoolVar(&o.profileOff, "profile-handoff", false, "with -profile: profile the hand-off point (through the first of -via) instead of a cycle point")
	flag.StringVar(&o.profileDir, "profile", "", "write CPU profiles of every node (started with --pprof) and of lockbench during one point (a cycle point, or with -profile-handoff the hand-off point) into this folder")
	flag.BoolVar(&o.tls, "tls", false, "then run the cycle points again on a started cluster with TLS (Raft mutual TLS), client certificates and an audit log, and print both")
	flag.BoolVar(&o.apiKey, "api-key", false, "then run the cycle points again on a started cluster whose clients authenticate by API key, with an audit log (with -tls: over TLS), and print both")
	flag.Parse()
	// A load generator's heap is small and its allocation rate high: at the
	// default GOGC, garbage collection was about a tenth of lockbench's CPU
	// at 64 clients, CPU the nodes on the same cores could have had. Any
	// client may tune its GC; GOGC in the environment still wins. (The
	// nodes it starts do not inherit this: it is not in their environment.)
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(lockbenchGOGC)
	}
	for _, s := range strings.Split(clients, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				fatalf("-clients: bad count %q", s)
			}
			o.clients = append(o.clients, n)
		}
	}
	for _, v := range strings.Split(via, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		known := false
		for _, k := range vias {
			known = known || v == k
		}
		if !known {
			fatalf("-via: %q is none of %s", v, strings.Join(vias, ", "))
		}
		o.via = append(o.via, v)
	}
	if err := o.checkNodes(); err != nil {
		fatalf("%v", err)
	}
	if err := run(o); err != nil {
		fatalf("%v", err)
	}
}

// checkNodes refuses what a cluster of -nodes members cannot run: a
// failover or a partition needs a majority left without the leader, and
// the TLS and API-key runs start three members of their own.
func (o options) checkNodes() error {
	switch {
	case o.nodes != 1 && o.nodes != 3:
		return fmt.Errorf("-nodes: 3 (a cluster) or 1 (one node alone), not %d", o.nodes)
	case o.nodes == 1 && o.connect != "":
		return errors.New("-nodes 1 starts one node; with -connect give the running node's address alone instead")
	case o.nodes == 1 && (o.failovers > 0 || o.partitions > 0):
		return errors.New("-nodes 1: a failover or a partition needs three members: add -failover 0 -partition 0")
	case o.nodes == 1 && (o.tls || o.apiKey):
		return errors.New("-nodes 1: -tls and -api-key start three members of their own: leave them off")
	case o.nodes == 1 && o.target != "leader":
		return fmt.Errorf("-nodes 1: one node is the leader, so -target %s has no member to reach", o.target)
	}
	return nil
}

func fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "lockbench: "+f+"\n", a...)
	os.Exit(1)
}

func run(o options) error {
	var c *cluster
	var err error
	if o.connect != "" {
		c, err = connectCluster(strings.Split(o.connect, ","), o.conns)
	} else {
		var extra []string
		if o.serveExtra != "" {
			extra = strings.Fields(o.serveExtra)
		}
		if o.profileDir != "" {
			extra = append(extra, "--pprof")
		}
		c, err = startCluster(o.bin, o.nodes, extra, o.conns, false, nil)
	}
	if err != nil {
		return err
	}
	defer c.stop()
	fmt.Printf("# lockbench: %d lockstep nodes on 127.0.0.1 (%s), clients to the %s, %d HTTP/2 connections per node, %v per point\n",
		len(c.nodes), map[bool]string{true: "given", false: "started by lockbench"}[o.connect != ""], o.target, o.conns, o.dur)
	fmt.Printf("# load average before: %s\n", loadavg())
	b := &bench{c: c, o: o}
	if err := b.prepare(); err != nil {
		return err
	}
	if o.idle > 0 {
		before := b.snap()
		time.Sleep(o.idle)
		fmt.Printf("# idle for %v: %s\n", o.idle, b.describe(before, b.snap(), 0))
	}
	fmt.Printf("%-34s %10s %9s %9s %9s %8s\n", "workload", "ops/s", "p50 ms", "p95 ms", "p99 ms", "errors")
	plain := map[int]result{}
	for _, n := range o.clients {
		for _, via := range o.via {
			var stopProf func()
			if o.profileDir != "" && !o.profileOff && n == o.profileAt && via == o.via[0] {
				stopProf = b.profile(fmt.Sprint(n))
			}
			var r result
			var err error
			if via == "connect" {
				r, err = b.cycles(n)
			} else {
				r, err = b.viaClient(n, via, false)
			}
			if stopProf != nil {
				stopProf()
			}
			if err != nil {
				return err
			}
			r.print(fmt.Sprintf("cycles, %d clients, own names%s", n, viaLabel(via)))
			if via == "connect" {
				plain[n] = r
			}
			b.failures += r.errors
		}
	}
	for _, via := range o.via {
		if o.handoff <= 0 {
			break
		}
		var stopProf func()
		if o.profileDir != "" && o.profileOff && via == o.via[0] {
			stopProf = b.profile(fmt.Sprintf("handoff-%d", o.handoff))
		}
		var r result
		var err error
		if via == "connect" {
			r, err = b.handoffs(o.handoff)
		} else {
			r, err = b.viaClient(o.handoff, via, true)
		}
		if stopProf != nil {
			stopProf()
		}
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("hand-offs, %d clients, one name%s", o.handoff, viaLabel(via)))
		b.failures += r.errors
	}
	if o.memLocks > 0 {
		if err := b.memory(o.memLocks); err != nil {
			return err
		}
	}
	if o.failovers > 0 && c.procs != nil {
		if err := b.failover(o.failovers); err != nil {
			return err
		}
	}
	if o.partitions > 0 && c.procs != nil {
		c.stop() // the partition point starts a cluster of its own
		n, err := partition(o, c.extra, o.partitions)
		b.failures += n
		if err != nil {
			return err
		}
	}
	if (o.tls || o.apiKey) && c.procs != nil {
		c.stop() // one cluster at a time on the machine
		if err := compareSecure(o, plain); err != nil {
			return err
		}
	}
	fmt.Printf("# load average after: %s\n", loadavg())
	if b.failures > 0 && o.strict {
		return fmt.Errorf("%d operations failed (-strict)", b.failures)
	}
	return nil
}

// viaLabel names a way in on a result line; raw Connect, as before -via
// existed, is unnamed.
func viaLabel(via string) string {
	if via == "connect" {
		return ""
	}
	return " (" + via + ")"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

type bench struct {
	c        *cluster
	o        options
	leader   *node
	targets  []*node
	run      int           // distinguishes the names of successive points
	pace     time.Duration // while set, load starts one operation per pace over all clients (-rate)
	failures int64         // failed operations and failovers that did not recover
}

type api struct {
	sessions lockstepv1connect.SessionServiceClient
	locks    lockstepv1connect.LockServiceClient
}

// prepare finds the leader and the nodes the clients talk to.
func (b *bench) prepare() error {
	l, err := b.c.leader(10 * time.Second)
	if err != nil {
		return err
	}
	b.leader = l
	b.targets = nil
	switch b.o.target {
	case "leader":
		b.targets = []*node{l}
	case "follower":
		for _, nd := range b.c.nodes {
			if nd != l {
				b.targets = append(b.targets, nd)
				break
			}
		}
	case "spread":
		b.targets = b.c.nodes
	default:
		return fmt.Errorf("-target: leader, follower or spread, not %q", b.o.target)
	}
	return nil
}

// client i's API stubs: its node and one of that node's HTTP/2 connections.
func (b *bench) api(i int) api {
	nd := b.targets[i%len(b.targets)]
	hc := b.c.http[(i/len(b.targets))%len(b.c.http)]
	return newAPI(hc, b.c.url(nd))
}

// clientOpts: Connect's binary protocol, without offering gzip. connect-go
// clients offer gzip by default and the server then compresses every
// answer, however small: about a tenth of the leader's CPU and of the
// client's went to gzip before this (see docs/performance.md).
var clientOpts = []connect.ClientOption{connect.WithAcceptCompression("gzip", nil, nil)}

func newAPI(hc connect.HTTPClient, u string) api {
	return api{sessions: lockstepv1connect.NewSessionServiceClient(hc, u, clientOpts...), locks: lockstepv1connect.NewLockServiceClient(hc, u, clientOpts...)}
}

func newSession(ctx context.Context, a api, ttl time.Duration) (uint64, error) {
	r, err := a.sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlMs: ttl.Milliseconds(), Owner: "lockbench"}))
	if err != nil {
		return 0, err
	}
	return r.Msg.SessionId, nil
}

func closeSession(a api, id uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = a.sessions.Close(ctx, connect.NewRequest(&pb.CloseSessionRequest{SessionId: id}))
}

type result struct {
	ops    int64
	secs   float64
	lat    []time.Duration
	errors int64
	first  error
	note   string  // what the leader's metrics and the CPU counters said
	cpuUs  float64 // CPU µs per operation, all processes
}

func (r result) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(p * float64(len(r.lat)-1))
	return float64(r.lat[i].Microseconds()) / 1000
}

func (r result) print(name string) {
	rate := 0.0
	if r.secs > 0 {
		rate = float64(r.ops) / r.secs
	}
	fmt.Printf("%-34s %10.0f %9.2f %9.2f %9.2f %8d\n", name, rate, r.pct(.50), r.pct(.95), r.pct(.99), r.errors)
	if r.note != "" {
		fmt.Printf("#   %s\n", r.note)
	}
	if r.first != nil {
		fmt.Printf("#   first error: %v\n", r.first)
	}
}

// load runs n clients: setup once each (untimed), then body in a loop until
// the point's time or operation bound; it merges their latencies.
func (b *bench) load(n int, setup func(i int, a api) (any, error), body func(i int, a api, st any) (time.Duration, bool, error), teardown func(i int, a api, st any)) (result, error) {
	states := make([]any, n)
	apis := make([]api, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		apis[i] = b.api(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			states[i], errs[i] = setup(i, apis[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return result{}, fmt.Errorf("setting up clients: %w", err)
		}
	}
	before := b.snap()
	var ops, nerr atomic.Int64
	var firstMu sync.Mutex
	var first error
	lats := make([][]time.Duration, n)
	start := time.Now()
	deadline := start.Add(b.o.dur)
	// With a pace, each operation takes the next start slot; a client that
	// finds its slot past starts at once (the cluster fell behind).
	var slot atomic.Int64
	slot.Store(start.UnixNano())
	pace := b.pace
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1024)
			for time.Now().Before(deadline) && ops.Load() < int64(b.o.maxOps) {
				if pace > 0 {
					at := time.Unix(0, slot.Add(int64(pace))-int64(pace))
					if !at.Before(deadline) {
						break
					}
					time.Sleep(time.Until(at))
				}
				d, counted, err := body(i, apis[i], states[i])
				if err != nil {
					nerr.Add(1)
					firstMu.Lock()
					if first == nil {
						first = err
					}
					firstMu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if counted {
					ops.Add(1)
					lat = append(lat, d)
				}
			}
			lats[i] = lat
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	after := b.snap()
	note := b.describe(before, after, ops.Load())
	cpuUs := b.cpuPerOp(before, after, ops.Load())
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if teardown != nil {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				teardown(i, apis[i], states[i])
			}()
		}
		wg.Wait()
	}
	return result{ops: ops.Load(), secs: secs, lat: all, errors: nerr.Load(), first: first, note: note, cpuUs: cpuUs}, nil
}

// paced sets the pace of -rate for one cycle point; call what it returns
// when the point is done.
func (b *bench) paced() (done func()) {
	if b.o.rate <= 0 {
		return func() {}
	}
	b.pace = time.Duration(float64(time.Second) / b.o.rate)
	return func() { b.pace = 0 }
}

type cycleState struct {
	session uint64
	name    string
}

// cycles: n clients, each with its own session and name, acquire (try
// once) then release, as fast as they can. The latency is the acquire's.
func (b *bench) cycles(n int) (result, error) {
	b.run++
	run := b.run
	defer b.paced()()
	return b.load(n,
		func(i int, a api) (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := newSession(ctx, a, 60*time.Second)
			return &cycleState{session: s, name: fmt.Sprintf("bench/cycle/%d/%d", run, i)}, err
		},
		func(i int, a api, st any) (time.Duration, bool, error) {
			s := st.(*cycleState)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			t0 := time.Now()
			r, err := a.locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: s.name, SessionId: s.session}))
			d := time.Since(t0)
			if err != nil {
				return 0, false, fmt.Errorf("acquire: %w", err)
			}
			if !r.Msg.Acquired {
				return 0, false, fmt.Errorf("acquire of %s not granted (outcome %v)", s.name, r.Msg.Outcome)
			}
			if _, err := a.locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: s.name, SessionId: s.session, FencingToken: r.Msg.FencingToken})); err != nil {
				return 0, false, fmt.Errorf("release: %w", err)
			}
			return d, true, nil
		},
		func(i int, a api, st any) { closeSession(a, st.(*cycleState).session) })
}

// handoffs: n clients queue on one name (waiting up to 30 s); each grant is
// released at once, which grants the next waiter in the same entry. The
// rate counts grants; the latency is from the acquire call to its grant
// (time spent queued).
func (b *bench) handoffs(n int) (result, error) {
	b.run++
	name := fmt.Sprintf("bench/handoff/%d", b.run)
	return b.load(n,
		func(i int, a api) (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := newSession(ctx, a, 60*time.Second)
			return &cycleState{session: s, name: name}, err
		},
		func(i int, a api, st any) (time.Duration, bool, error) {
			s := st.(*cycleState)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			t0 := time.Now()
			r, err := a.locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: s.name, SessionId: s.session, WaitTimeoutMs: 30_000}))
			d := time.Since(t0)
			if err != nil {
				return 0, false, fmt.Errorf("acquire: %w", err)
			}
			if !r.Msg.Acquired {
				return 0, false, nil // timed out in the queue: the point ended
			}
			if _, err := a.locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: s.name, SessionId: s.session, FencingToken: r.Msg.FencingToken})); err != nil {
				return 0, false, fmt.Errorf("release: %w", err)
			}
			return d, true, nil
		},
		func(i int, a api, st any) { closeSession(a, st.(*cycleState).session) })
}

// memory: acquire count locks (distinct names, 64 sessions, 64 workers),
// read the RSS of every node, then close the sessions (which releases them).
func (b *bench) memory(count int) error {
	b.run++
	const workers = 64
	sessions := make([]uint64, workers)
	apis := make([]api, workers)
	for i := range workers {
		apis[i] = b.api(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := newSession(ctx, apis[i], 10*time.Minute)
		cancel()
		if err != nil {
			return fmt.Errorf("memory: session: %w", err)
		}
		sessions[i] = s
	}
	before := map[string]int64{}
	for _, nd := range b.c.nodes {
		before[nd.ID] = rssKiB(nd.Pid())
	}
	var next, held, failed atomic.Int64
	var first atomic.Value
	start := time.Now()
	limit := start.Add(5 * time.Minute)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(limit) {
				k := next.Add(1)
				if k > int64(count) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := apis[w].locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{
					Name: fmt.Sprintf("bench/mem/%d/%08d", b.run, k), SessionId: sessions[w]}))
				cancel()
				if err == nil && r.Msg.Acquired {
					held.Add(1)
				} else {
					failed.Add(1)
					if err != nil {
						first.CompareAndSwap(nil, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.failures += failed.Load()
	fmt.Printf("# memory: %d locks held (%d failed) in %v (%.0f acquires/s)\n", held.Load(), failed.Load(),
		took.Round(time.Millisecond), float64(held.Load())/took.Seconds())
	if e := first.Load(); e != nil {
		fmt.Printf("#   first error: %v\n", e)
	}
	for _, nd := range b.c.nodes {
		role := "follower"
		if nd == b.leader {
			role = "leader"
		}
		if pid := nd.Pid(); pid != 0 {
			fmt.Printf("%-34s RSS %7.1f MiB (before %6.1f MiB)\n", fmt.Sprintf("memory, %s (%s), %dk locks", nd.ID, role, held.Load()/1000),
				float64(rssKiB(pid))/1024, float64(before[nd.ID])/1024)
		}
	}
	var cwg sync.WaitGroup
	for i := range workers {
		cwg.Add(1)
		go func() { defer cwg.Done(); closeSession(apis[i], sessions[i]) }()
	}
	cwg.Wait()
	return nil
}

// failover: kill -9 the leader while a client is acquiring and releasing
// through a survivor, and time from the kill to the next successful acquire
// on any survivor; then restart the killed node and wait for it.
func (b *bench) failover(trials int) error {
	var took []time.Duration
	for t := range trials {
		if err := b.prepare(); err != nil {
			return err
		}
		leader := b.leader
		var survivors []*node
		for _, nd := range b.c.nodes {
			if nd != leader {
				survivors = append(survivors, nd)
			}
		}
		var apis []api
		var sess []uint64
		for i, nd := range survivors {
			hc := b.c.http[i%len(b.c.http)]
			a := newAPI(hc, b.c.url(nd))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s, err := newSession(ctx, a, 30*time.Second)
			cancel()
			if err != nil {
				return fmt.Errorf("failover: session: %w", err)
			}
			apis, sess = append(apis, a), append(sess, s)
		}
		// Warm: one cycle through each survivor.
		for i := range apis {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := apis[i].locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: fmt.Sprintf("bench/failover/%d/warm/%d", t, i), SessionId: sess[i]}))
			cancel()
			if err != nil || !r.Msg.Acquired {
				return fmt.Errorf("failover: warm acquire: %v", err)
			}
		}
		killed := time.Now()
		leader.Kill()
		done := make(chan time.Duration, 1)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var seq atomic.Int64
		for i := range apis {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(killed) < 10*time.Second {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					r, err := apis[i].locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{
						Name: fmt.Sprintf("bench/failover/%d/%d", t, seq.Add(1)), SessionId: sess[i]}))
					cancel()
					if err == nil && r.Msg.Acquired {
						select {
						case done <- time.Since(killed):
						default:
						}
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}()
		}
		var d time.Duration
		select {
		case d = <-done:
		case <-time.After(11 * time.Second):
			d = -1
		}
		close(stop)
		wg.Wait()
		if d < 0 {
			fmt.Printf("# failover trial %d: no acquire within 10 s of kill -9 of %s\n", t+1, leader.ID)
			b.failures++
		} else {
			fmt.Printf("# failover trial %d: kill -9 %s (leader) -> next acquire %v\n", t+1, leader.ID, d.Round(time.Millisecond))
			took = append(took, d)
		}
		for i := range apis {
			closeSession(apis[i], sess[i])
		}
		if err := leader.Start(); err != nil {
			return err
		}
		if err := b.c.waitHealthy(b.c.nodes, 30*time.Second); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond) // let the restarted node catch up
	}
	printSpread("failover, kill -9 leader", took)
	return b.prepare()
}

var _ = exec.Command

// profile starts a CPU profile of this process and fetches one of each
// node's for the point's duration, into files named after the point; the
// returned func waits for them.
func (b *bench) profile(point string) func() {
	_ = os.MkdirAll(b.o.profileDir, 0o755)
	self, err := os.Create(filepath.Join(b.o.profileDir, fmt.Sprintf("lockbench-%s.pprof", point)))
	if err == nil {
		_ = pprof.StartCPUProfile(self)
	}
	var wg sync.WaitGroup
	for _, nd := range b.c.nodes {
		role := "follower-" + nd.ID
		if nd == b.leader {
			role = "leader"
		}
		// The CPU profile, and what the node allocated over the same span
		// (a delta of the allocs profile: go tool pprof -sample_index
		// alloc_space).
		for kind, suffix := range map[string]string{"profile": "pprof", "allocs": "allocs.pprof"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				secs := max(int(b.o.dur.Seconds())-1, 1)
				resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", nd.Metrics, kind, secs))
				if err != nil {
					fmt.Printf("# profile: %v\n", err)
					return
				}
				defer resp.Body.Close()
				f, err := os.Create(filepath.Join(b.o.profileDir, fmt.Sprintf("%s-%s.%s", role, point, suffix)))
				if err != nil {
					return
				}
				defer f.Close()
				_, _ = io.Copy(f, resp.Body)
			}()
		}
	}
	return func() {
		if self != nil {
			pprof.StopCPUProfile()
			self.Close()
		}
		wg.Wait()
	}
}
