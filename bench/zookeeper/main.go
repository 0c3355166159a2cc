// Command zkbench runs lockbench's and etcdbench's lock workloads against a
// three-member ZooKeeper ensemble (Debian's zookeeper package, started here
// on 127.0.0.1) with the Go client's standard lock recipe (zk.NewLock:
// an ephemeral sequential znode under the lock's znode, a watch on the one
// before it), and prints the same table as bench/etcd, so that the figures
// sit side by side in one run (make bench-compare).
//
// With -table it starts nothing: it reads the outputs of lockbench,
// etcdbench and zkbench and prints issue 12's targets with ratios
// (table.go).
//
// It is a module of its own so that the ZooKeeper client stays out of
// Lockstep's go.mod.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
)

const (
	// members of the ensemble: the three nodes of every side of the comparison.
	members = 3
	// maxClientCnxns: ZooKeeper's default of 60 connections per client IP
	// would refuse 256 workers on 127.0.0.1 (about 85 per member).
	maxClientCnxns = 1024
	// drainGrace bounds how long after a point's deadline its workers may
	// take to finish their last cycle (a hand-off waiter can be 64 hand-offs
	// from the front); then their connections are closed, which fails what
	// they wait for.
	drainGrace = 10 * time.Second
	// setupLimit bounds the untimed setup and teardown of one point (a
	// session and a parent znode per worker).
	setupLimit = 60 * time.Second
	// clientBuffer: the Go client allocates 1.5 MiB per connection for each
	// of sending and receiving unless told; the workloads' packets are a
	// few KiB (64 children names at most), and 256 connections should not
	// cost the shared machine 768 MiB.
	clientBuffer = 256 << 10
	// errorPause: after a failed cycle a worker waits this long, so that a
	// failing ensemble is not hammered in a tight loop.
	errorPause = 10 * time.Millisecond
	// pollEvery: how often the start wait asks the members how they are.
	pollEvery = 200 * time.Millisecond
)

var (
	javaBin      = flag.String("java", "java", "the java binary")
	jar          = flag.String("jar", "/usr/share/java/zookeeper.jar", "ZooKeeper's server jar (Debian's zookeeper package; its manifest names its dependencies)")
	confDir      = flag.String("conf-dir", "/etc/zookeeper/conf", "put first on the class path for the package's log4j.properties")
	logCP        = flag.String("log-cp", "/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar", "added to the class path so the members log (INFO, to zkN.log in the temporary folder); without them SLF4J logs nothing")
	heap         = flag.String("heap", "512m", "each member's JVM heap (-Xmx)")
	startWait    = flag.Duration("start-wait", 90*time.Second, "bound on the wait for the ensemble to elect a leader and serve")
	warmup       = flag.Duration("warmup", 10*time.Second, "an unmeasured cycle run first, so the JVMs have compiled their hot paths (0: skip)")
	warmClients  = flag.Int("warmup-clients", 64, "workers of the warm-up run")
	dur          = flag.Duration("dur", 5*time.Second, "measuring time per point")
	clientsF     = flag.String("clients", "1,16,64,256", "client counts for the own-name cycle workload (empty: skip)")
	handoff      = flag.Int("handoff", 64, "clients on one name for the hand-off workload (0: skip)")
	maxOps       = flag.Int64("max-ops", 2_000_000, "bound on the operations of one point, whatever -dur says")
	sessionTTL   = flag.Duration("session-timeout", 10*time.Second, "each worker's ZooKeeper session timeout (the server allows 4 s to 40 s at its 2 s tick)")
	keep         = flag.Bool("keep", false, "keep the temporary folder (configs, data, member logs) and print its path")
	table        = flag.Bool("table", false, "start nothing: print issue 12's targets table from the outputs named by -lockstep, -etcd and -zookeeper")
	etcdOut      = flag.String("etcd", "", "with -table: etcdbench's output (optional)")
	oneNodeOut   = flag.String("onenode", "", "with -table: lockbench's output on one node alone, -nodes 1 (optional): the one-node target")
	zookeeperOut = flag.String("zookeeper", "", "with -table: zkbench's output")
	lockstepOut  []string
)

func main() {
	flag.Func("lockstep", "with -table: lockbench's output, as FILE or LABEL=FILE (repeatable: one column each, e.g. Connect=a.txt client=b.txt)", func(s string) error {
		lockstepOut = append(lockstepOut, s)
		return nil
	})
	flag.Parse()
	var err error
	if *table {
		err = printTable(os.Stdout)
	} else {
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "zkbench:", err)
		os.Exit(1)
	}
}

// printTable reads the named outputs and prints the targets table.
func printTable(w io.Writer) error {
	if len(lockstepOut) == 0 || *zookeeperOut == "" {
		return errors.New("-table needs -lockstep FILE and -zookeeper FILE (and optionally -etcd FILE)")
	}
	var in tableInput
	for _, s := range lockstepOut {
		label, file := "Lockstep", s
		if k, v, ok := strings.Cut(s, "="); ok {
			label, file = "Lockstep "+k, v
		}
		rows, err := parseFile(file)
		if err != nil {
			return err
		}
		in.lockstep = append(in.lockstep, side{label: label, rows: rows})
	}
	var err error
	if in.zookeeper, err = parseFile(*zookeeperOut); err != nil {
		return err
	}
	if *etcdOut != "" {
		if in.etcd, err = parseFile(*etcdOut); err != nil {
			return err
		}
	}
	if *oneNodeOut != "" {
		if in.oneNode, err = parseFile(*oneNodeOut); err != nil {
			return err
		}
	}
	return writeTable(w, in)
}

func parseFile(name string) ([]row, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := parseRows(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no workload rows (cycles, N clients ... / hand-offs, N clients ...)", name)
	}
	return rows, nil
}

type member struct {
	id                     int
	client, peer, election string
	dir, cfg, log          string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

// ensemble: the members and their folder. stop kills every member started
// and removes the folder, once, whoever calls it first (run's defer or the
// signal handler); a member is started under mu, so stop never misses one
// being started, and none starts after stop.
type ensemble struct {
	dir     string
	members []*member
	mu      sync.Mutex
	stopped bool
}

func (e *ensemble) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.stopped = true
	for _, m := range e.members {
		if m.cmd != nil && m.cmd.Process != nil {
			m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
		}
	}
	if *keep {
		fmt.Printf("# kept %s\n", e.dir)
		return
	}
	os.RemoveAll(e.dir)
}

// startMember starts m unless the ensemble was stopped.
func (e *ensemble) startMember(m *member) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return errors.New("stopped")
	}
	e.members = append(e.members, m)
	return m.start()
}

func (e *ensemble) servers() []string {
	var s []string
	for _, m := range e.members {
		s = append(s, m.client)
	}
	return s
}

// freePorts: n distinct loopback ports. A port the kernel just handed out
// and took back can be handed out again at once, so each is checked
// against the ones already named (chaos/cluster.FreePort does the same).
func freePorts(n int) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for tries := 0; len(out) < n; tries++ {
		if tries >= 100*n {
			return nil, fmt.Errorf("no %d distinct free ports in %d tries", n, tries)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		a := ln.Addr().String()
		ln.Close()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out, nil
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// start writes each member's folder, myid and config, and starts it.
func (e *ensemble) start() error {
	ports, err := freePorts(3 * members)
	if err != nil {
		return err
	}
	var ms []*member
	var servers []string
	for i := 1; i <= members; i++ {
		m := &member{id: i, client: ports[3*i-3], peer: ports[3*i-2], election: ports[3*i-1], dir: filepath.Join(e.dir, fmt.Sprintf("zk%d", i))}
		m.cfg, m.log = m.dir+".cfg", m.dir+".log"
		ms = append(ms, m)
		servers = append(servers, fmt.Sprintf("server.%d=127.0.0.1:%s:%s", i, port(m.peer), port(m.election)))
	}
	for _, m := range ms {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(m.dir, "myid"), []byte(strconv.Itoa(m.id)+"\n"), 0o600); err != nil {
			return err
		}
		// forceSync stays at its default (yes): one fsync per write of the
		// transaction log, as Lockstep and etcd do.
		cfg := strings.Join(append([]string{
			"tickTime=2000",
			"initLimit=10",
			"syncLimit=5",
			"dataDir=" + m.dir,
			"clientPort=" + port(m.client),
			"clientPortAddress=127.0.0.1",
			"admin.enableServer=false",
			"4lw.commands.whitelist=srvr",
			fmt.Sprintf("maxClientCnxns=%d", maxClientCnxns),
		}, servers...), "\n") + "\n"
		if err := os.WriteFile(m.cfg, []byte(cfg), 0o600); err != nil {
			return err
		}
		if err := e.startMember(m); err != nil {
			return err
		}
	}
	return nil
}

func (m *member) start() error {
	logf, err := os.OpenFile(m.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	m.cmd = exec.Command(*javaBin, "-Xmx"+*heap,
		"-Dzookeeper.log.dir="+filepath.Dir(m.dir), "-Dzookeeper.root.logger=INFO,CONSOLE",
		"-cp", strings.Trim(*confDir+":"+*jar+":"+*logCP, ":"), "org.apache.zookeeper.server.quorum.QuorumPeerMain", m.cfg)
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	// Killed with zkbench, however zkbench ends.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	m.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); logf.Close(); close(done) }(m.cmd, m.exited)
	return nil
}

// srvr asks a member the four-letter word srvr (whitelisted in its
// config) and returns its lines by key ("Mode", "Zookeeper version").
func srvr(addr string) (map[string]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return nil, err
	}
	out := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(c, 64<<10))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			out[k] = v
		}
	}
	if out["Mode"] == "" {
		return nil, fmt.Errorf("%s: no Mode in srvr's answer (%v)", addr, sc.Err())
	}
	return out, nil
}

// waitServing waits, at most limit, until every member says it leads or
// follows and one client can create the benchmark's root znode. It returns
// the version the members report.
func (e *ensemble) waitServing(limit time.Duration) (string, error) {
	deadline := time.Now().Add(limit)
	var version string
	for _, m := range e.members {
		for {
			select {
			case <-m.exited:
				return "", fmt.Errorf("zk%d exited while starting (see %s; -keep keeps it)", m.id, m.log)
			default:
			}
			st, err := srvr(m.client)
			if err == nil && (st["Mode"] == "leader" || st["Mode"] == "follower") {
				version, _, _ = strings.Cut(st["Zookeeper version"], ",")
				// Debian's build leaves its git placeholder in: 3.8.0-${mvngit.commit.id}.
				version, _, _ = strings.Cut(version, "-$")
				break
			}
			if time.Now().After(deadline) {
				return "", fmt.Errorf("zk%d not serving within %v (last: %v %v; see %s; -keep keeps it)", m.id, limit, st, err, m.log)
			}
			time.Sleep(pollEvery)
		}
	}
	conns, err := connect(e.servers(), 1, time.Until(deadline))
	if err != nil {
		return "", err
	}
	defer closeAll(conns)
	if err := within(time.Until(deadline), conns, func() error { return ensurePath(conns[0], "/bench") }); err != nil {
		return "", fmt.Errorf("creating /bench: %w", err)
	}
	return version, nil
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// connect opens n sessions (one connection each: a ZooKeeper session is a
// connection) to the given members, each picking one at random as the Go
// client does, and waits at most limit for all of them to have a session.
func connect(servers []string, n int, limit time.Duration) ([]*zk.Conn, error) {
	conns := make([]*zk.Conn, 0, n)
	var evs []<-chan zk.Event
	for range n {
		c, ev, err := zk.Connect(servers, *sessionTTL, zk.WithLogger(nopLogger{}), zk.WithLogInfo(false),
			zk.WithMaxBufferSize(clientBuffer), zk.WithMaxConnBufferSize(clientBuffer))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, c)
		evs = append(evs, ev)
	}
	deadline := time.After(limit)
	for i, ev := range evs {
	wait:
		for conns[i].State() != zk.StateHasSession {
			select {
			case _, ok := <-ev:
				if !ok {
					closeAll(conns)
					return nil, errors.New("a ZooKeeper connection closed before it had a session")
				}
			case <-time.After(pollEvery):
			case <-deadline:
				break wait
			}
		}
		if conns[i].State() != zk.StateHasSession {
			closeAll(conns)
			return nil, fmt.Errorf("no ZooKeeper session within %v (state %v)", limit, conns[i].State())
		}
	}
	return conns, nil
}

// closeAll closes the connections at once: each Close waits up to a second
// for the server to end the session.
func closeAll(conns []*zk.Conn) {
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}

// within runs f; if it has not returned after limit, it closes conns, which
// fails every request and watch f waits for, and waits for f.
func within(limit time.Duration, conns []*zk.Conn, f func() error) error {
	t := time.AfterFunc(limit, func() { closeAll(conns) })
	err := f()
	if !t.Stop() && err == nil {
		err = fmt.Errorf("not done within %v", limit)
	}
	return err
}

// ensurePath creates path and its parents as persistent znodes where
// missing.
func ensurePath(c *zk.Conn, path string) error {
	p := ""
	for _, part := range strings.Split(strings.Trim(path, "/"), "/") {
		p += "/" + part
		if _, err := c.Create(p, nil, 0, zk.WorldACL(zk.PermAll)); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}
	return nil
}

func run() error {
	if _, err := os.Stat(*jar); err != nil {
		return fmt.Errorf("no ZooKeeper jar (apt-get install -y zookeeper): %w", err)
	}
	var clients []int
	for _, s := range strings.Split(*clientsF, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return fmt.Errorf("-clients: bad count %q", s)
			}
			clients = append(clients, n)
		}
	}
	dir, err := os.MkdirTemp("", "zkbench-")
	if err != nil {
		return err
	}
	e := &ensemble{dir: dir}
	// Killed on Ctrl-C or SIGTERM as well as on return (and by the kernel,
	// Pdeathsig, if zkbench itself is killed).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		e.stop()
		fmt.Fprintf(os.Stderr, "zkbench: %v: members killed\n", s)
		os.Exit(130)
	}()
	defer e.stop()
	if err := e.start(); err != nil {
		return err
	}
	version, err := e.waitServing(*startWait)
	if err != nil {
		return err
	}
	b := &bench{servers: e.servers()}
	fmt.Printf("# zkbench: 3 ZooKeeper members (%s) on 127.0.0.1 started by zkbench, one session (connection) per client, lock recipe zk.NewLock (go-zookeeper/zk), %v per point\n",
		version, *dur)
	if *warmup > 0 {
		r, err := b.load(*warmClients, *warmup, func(i int) string { return fmt.Sprintf("/bench/warmup/%d", i) })
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		fmt.Printf("# warm-up (not measured): %v of cycles at %d clients, %.0f cycles/s, %d errors\n", *warmup, *warmClients, r.rate(), r.errors)
	}
	fmt.Printf("# load average before: %s\n", loadavg())
	fmt.Printf("%-34s %10s %9s %9s %9s %8s\n", "workload", "ops/s", "p50 ms", "p95 ms", "p99 ms", "errors")
	point := 0
	for _, n := range clients {
		point++
		r, err := b.load(n, *dur, func(i int) string { return fmt.Sprintf("/bench/cycle/%d/%d", point, i) })
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("cycles, %d clients, own names", n))
	}
	if *handoff > 0 {
		point++
		r, err := b.load(*handoff, *dur, func(int) string { return fmt.Sprintf("/bench/handoff/%d", point) })
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("hand-offs, %d clients, one name", *handoff))
	}
	fmt.Printf("# load average after: %s\n", loadavg())
	return nil
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

type bench struct {
	servers []string
}

type result struct {
	ops    int64
	secs   float64
	lat    []time.Duration
	errors int64
	first  error
}

func (r result) rate() float64 {
	if r.secs <= 0 {
		return 0
	}
	return float64(r.ops) / r.secs
}

func (r result) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	return float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds()) / 1000
}

func (r result) print(name string) {
	fmt.Printf("%-34s %10.0f %9.2f %9.2f %9.2f %8d\n", name, r.rate(), r.pct(.50), r.pct(.95), r.pct(.99), r.errors)
	if r.first != nil {
		fmt.Printf("#   first error: %v\n", r.first)
	}
}

// load: n workers, each with its own session and its own zk.Lock on
// name(i), Lock then Unlock in a loop until the point's time or operation
// bound. The latency is the Lock's. The lock znodes (the recipe's parents)
// are created before the clock starts, as a user's would exist already;
// the recipe would otherwise create them in the first Lock.
func (b *bench) load(n int, d time.Duration, name func(i int) string) (result, error) {
	conns, err := connect(b.servers, n, setupLimit)
	if err != nil {
		return result{}, err
	}
	defer closeAll(conns)
	setup := func() error {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = ensurePath(conns[i], name(i)) }()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := within(setupLimit, conns, setup); err != nil {
		return result{}, fmt.Errorf("creating the lock znodes: %w", err)
	}
	var ops, nerr atomic.Int64
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		nerr.Add(1)
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	lats := make([][]time.Duration, n)
	start := time.Now()
	deadline := start.Add(d)
	work := func() error {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := zk.NewLock(conns[i], name(i), zk.WorldACL(zk.PermAll))
				for time.Now().Before(deadline) && ops.Load() < *maxOps {
					t0 := time.Now()
					err := l.Lock()
					took := time.Since(t0)
					if err != nil {
						if time.Now().After(deadline) {
							return
						}
						fail(err)
						time.Sleep(errorPause)
						continue
					}
					if err := l.Unlock(); err != nil {
						// The lock's state is unknown: this worker stops
						// rather than wait behind its own znode.
						if !time.Now().After(deadline) {
							fail(fmt.Errorf("unlock (worker stops): %w", err))
						}
						return
					}
					ops.Add(1)
					lats[i] = append(lats[i], took)
				}
			}()
		}
		wg.Wait()
		return nil
	}
	// The work is bounded by the deadline and drainGrace; after that its
	// connections are closed, which fails whatever a worker still waits for.
	// The rate counts the drain (each worker's last cycle) in its time, as
	// etcdbench and lockbench do.
	if err := within(d+drainGrace, conns, work); err != nil {
		fail(fmt.Errorf("workers: %w", err))
	}
	secs := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return result{ops: ops.Load(), secs: secs, lat: all, errors: nerr.Load(), first: first}, nil
}
