package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// The tests run real Dragonboat NodeHosts with Pebble on temporary
// directories, talking TCP over 127.0.0.1 on ports chosen here.

// testClock is a clock the test moves by hand; nil Clock options use the
// wall clock.
type testClock struct{ ms atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *testClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *testClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *testClock) since() time.Duration    { return time.Duration(c.ms.Load()) * time.Millisecond }

// testBalance paces the leader balancer faster than production (2 s
// settle, 4 s backoff at these election timeouts), so that sharded
// clusters settle quickly; still several election timeouts, so leaders do
// not flap.
var testBalance = balanceTimes{every: 100 * time.Millisecond, settle: 600 * time.Millisecond, backoff: 1200 * time.Millisecond}

type testCluster struct {
	t     testing.TB
	cfgs  []config.Config
	nodes []*Node
	regs  []*prometheus.Registry
	clock func() time.Time
	mono  func() time.Duration
	// skews, with clusterOpts.skewable: how far each node's wall clock
	// stands ahead of this machine's, in ms (its monotonic clock is the
	// machine's); a test sets them as it goes.
	skews []atomic.Int64

	// Per node, read at each start: a Compatibility other than core's
	// (""), and whether it runs Dragonboat's own transport, which sends
	// no hello. A test sets them to run a member of another build.
	compat     []string
	dragonboat []bool

	// logs, with clusterOpts.captureLogs: each node's log lines (INFO and
	// above), across its restarts.
	logs []*logBuffer

	savingSnapshot func() // clusterOpts.savingSnapshot
	heldCommitLost bool   // clusterOpts.heldCommitLost
}

// logBuffer holds a node's log lines; its writes come from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type clusterOpts struct {
	size            int
	snapshotEntries int
	shards          int // consensus.shards; 0: 1
	clock           func() time.Time
	mono            func() time.Duration // Options.Monotonic
	skewable        bool                 // each node's wall clock may be set off the machine's (testCluster.skews)
	captureLogs     bool                 // keep each node's log lines (testCluster.logs)
	// savingSnapshot is every node's Options.savingSnapshot.
	savingSnapshot func()
	// heldCommitLost is every node's Options.heldCommitLost: stop
	// leaves each log store as a kill -9 does.
	heldCommitLost bool
	// only, when set, lists the nodes started (by index); the others are
	// configured, as peers, but not started, and no leader is waited for.
	only []int
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RUNTIME_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestCluster starts size nodes and waits for a leader.
func newTestCluster(t testing.TB, o clusterOpts) *testCluster {
	t.Helper()
	if o.size == 0 {
		o.size = 1
	}
	ports := freePorts(t, 2*o.size)
	dir := t.TempDir()
	peers := map[string]string{}
	for i := range o.size {
		peers[fmt.Sprintf("node-%d", i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	c := &testCluster{t: t, clock: o.clock, mono: o.mono, compat: make([]string, o.size), dragonboat: make([]bool, o.size),
		savingSnapshot: o.savingSnapshot, heldCommitLost: o.heldCommitLost}
	if o.skewable {
		c.skews = make([]atomic.Int64, o.size)
	}
	if o.captureLogs {
		for range o.size {
			c.logs = append(c.logs, &logBuffer{})
		}
	}
	for i := range o.size {
		cfg := config.Defaults()
		cfg.Cluster = config.Cluster{
			NodeID:      fmt.Sprintf("node-%d", i+1),
			RaftAddress: peers[fmt.Sprintf("node-%d", i+1)],
			APIAddress:  fmt.Sprintf("127.0.0.1:%d", ports[o.size+i]),
			DataDir:     filepath.Join(dir, fmt.Sprintf("node-%d", i+1)),
			Peers:       peers,
		}
		cfg.Consensus.ElectionTimeoutMs = 200
		cfg.Consensus.HeartbeatIntervalMs = 40
		cfg.Consensus.TickIntervalMs = 20
		if o.shards > 0 {
			cfg.Consensus.Shards = o.shards
		}
		if o.snapshotEntries > 0 {
			cfg.Consensus.SnapshotEntries = o.snapshotEntries
			cfg.Consensus.CompactionOverhead = 5
		}
		c.cfgs = append(c.cfgs, cfg)
		c.nodes = append(c.nodes, nil)
		c.regs = append(c.regs, nil)
	}
	t.Cleanup(c.closeAll)
	// Start the members concurrently: each waits for its own replay only.
	started := o.only
	if started == nil {
		for i := range o.size {
			started = append(started, i)
		}
	}
	errs := make(chan error, len(started))
	for _, i := range started {
		go func() { errs <- c.start(i) }()
	}
	for range started {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if o.only != nil {
		return c
	}
	for sh := range c.cfgs[0].Consensus.Shards {
		c.waitLeader(uint64(sh))
	}
	if o.shards > 1 && o.size > 1 {
		// The balancer moves leaders a few seconds after the start; a test
		// that begins then would see its first requests retried.
		c.waitBalanced()
	}
	return c
}

// waitBalanced waits until every shard is led by its preferred member
// (shard i by the (i mod size)-th node id in order), as every node sees it.
func (c *testCluster) waitBalanced() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok := true
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			st, err := n.Status(context.Background())
			if err != nil {
				ok = false
				break
			}
			for _, s := range st.Shards {
				if want := c.cfgs[int(s.ShardID)%len(c.cfgs)].Cluster.NodeID; s.LeaderID != want {
					ok = false
				}
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatal("leaders not balanced within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *testCluster) start(i int) error {
	reg := prometheus.NewRegistry()
	clock, mono := c.clock, c.mono
	if c.skews != nil {
		began := time.Now()
		clock = func() time.Time { return time.Now().Add(time.Duration(c.skews[i].Load()) * time.Millisecond) }
		mono = func() time.Duration { return time.Since(began) }
	}
	log := testLogger(c.t)
	if c.logs != nil {
		log = slog.New(slog.NewTextHandler(c.logs[i], nil))
	}
	n, err := Start(context.Background(), Options{Config: c.cfgs[i], Logger: log, Registerer: reg, Clock: clock, Monotonic: mono,
		balance: testBalance, compatibility: c.compat[i], dragonboatTransport: c.dragonboat[i], savingSnapshot: c.savingSnapshot,
		heldCommitLost: c.heldCommitLost})
	if err != nil {
		return fmt.Errorf("node %d: %w", i+1, err)
	}
	c.nodes[i], c.regs[i] = n, reg
	return nil
}

func (c *testCluster) restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatal(err)
	}
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if c.nodes[i] == nil {
		return
	}
	if err := c.nodes[i].Close(); err != nil {
		c.t.Errorf("close node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

func (c *testCluster) closeAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// waitLeader waits until every running node agrees on one leader of the
// shard, and returns its index.
func (c *testCluster) waitLeader(shard uint64) int {
	c.t.Helper()
	return c.waitLeaderBesides(shard, -1)
}

// waitLeaderBesides is waitLeader among the running nodes but node skip,
// which need not know the leader (a member cut off from the others).
func (c *testCluster) waitLeaderBesides(shard uint64, skip int) int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		leader, agreed := "", true
		for i, n := range c.nodes {
			if n == nil || i == skip {
				continue
			}
			st, err := n.Status(context.Background())
			if err != nil || st.Shards[shard].LeaderID == "" {
				agreed = false
				break
			}
			if leader == "" {
				leader = st.Shards[shard].LeaderID
			} else if leader != st.Shards[shard].LeaderID {
				agreed = false
			}
		}
		if agreed && leader != "" {
			for i, cfg := range c.cfgs {
				if cfg.Cluster.NodeID == leader && c.nodes[i] != nil {
					return i
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10 s")
	return -1
}

// follower returns a running node other than the leader.
func (c *testCluster) follower() int {
	l := c.waitLeader(0)
	for i, n := range c.nodes {
		if i != l && n != nil {
			return i
		}
	}
	c.t.Fatal("no follower")
	return -1
}

// testClients numbers the ClientIDs do gives its commands.
var testClients atomic.Uint64

func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// do runs cmd and fails the test on any error, core's included.
//
// Like a client, it retries a command that found no leader or no quorum,
// under one (ClientID, Seq) so that dedupe applies it once: on a loaded
// machine an election can outlast the node's own retry budget, and the
// tests that use do are about what a command does, not about how soon.
func do(t testing.TB, n *Node, cmd core.Command) core.Result {
	t.Helper()
	if cmd.ClientID == "" {
		cmd.ClientID, cmd.Seq = fmt.Sprintf("runtime-test-%d", testClients.Add(1)), 1
	}
	ctx := tctx(t)
	r, err := n.Do(ctx, cmd)
	for errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
		r, err = n.Do(ctx, cmd)
	}
	if err != nil {
		t.Fatalf("%v: %v", cmd.Op, err)
	}
	if r.Err != nil {
		t.Fatalf("%v: %v", cmd.Op, r.Err)
	}
	return r
}

func session(t testing.TB, n *Node, ttl time.Duration) core.SessionID {
	t.Helper()
	return do(t, n, core.Command{Op: core.OpSessionCreate, TTLMs: ttl.Milliseconds(), Owner: "test"}).Session
}

func mutex(name string, s core.SessionID, wait time.Duration) core.Command {
	c := core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: name, Session: s, WaitMs: wait.Milliseconds()}
	if wait < 0 {
		c.WaitMs = core.WaitForever
	}
	return c
}

func status(t testing.TB, n *Node, kind core.Kind, name string, stale bool) core.Status {
	t.Helper()
	var st core.Status
	_, err := n.Read(tctx(t), name, stale, func(m *core.Machine) error {
		var err error
		st, err = m.Status(kind, name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// eventually retries cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// counter sums every series of name.
func counter(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return labeled(t, reg, name)
}

// labeled sums the series of name whose labels include every given
// name, value pair (none: every series).
func labeled(t testing.TB, reg *prometheus.Registry, name string, pairs ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for k := 0; k+1 < len(pairs); k += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == pairs[k] && l.GetValue() == pairs[k+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

// histogram describes a histogram's mean and count.
func histogram(t testing.TB, reg *prometheus.Registry, name string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() == 0 {
				return "no samples"
			}
			return fmt.Sprintf("%d samples, mean %v", h.GetSampleCount(),
				time.Duration(h.GetSampleSum()/float64(h.GetSampleCount())*float64(time.Second)).Round(time.Microsecond))
		}
	}
	return "absent"
}

func isUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }
