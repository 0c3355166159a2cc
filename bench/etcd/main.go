// Command etcdbench runs lockbench's workloads against a three-member etcd
// cluster (Debian's etcd-server, started here on 127.0.0.1) with the etcd
// client's concurrency.Mutex, and prints the same table, so that the two
// can be compared side by side in one run (make bench-compare).
//
// It is a module of its own so that the etcd client's dependencies (an old
// grpc and protobuf) stay out of Lockstep's go.mod.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

type member struct {
	name, peer, client, dir string
	cmd                     *exec.Cmd
	exited                  chan struct{}
}

var (
	bin       = flag.String("bin", "etcd", "the etcd binary")
	dur       = flag.Duration("dur", 5*time.Second, "measuring time per point")
	clientsF  = flag.String("clients", "1,16,64,256", "client counts for the own-key cycle workload")
	handoff   = flag.Int("handoff", 64, "clients on one key for the hand-off workload (0: skip)")
	failovers = flag.Int("failover", 3, "leader kill -9 trials (0: skip)")
	conns     = flag.Int("conns", 4, "etcd clients (gRPC connections), shared round-robin by the workers")
	maxOps    = flag.Int64("max-ops", 2_000_000, "bound on the operations of one point")
)

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "etcdbench:", err)
		os.Exit(1)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "etcdbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var ms []*member
	var initial []string
	for i := 1; i <= 3; i++ {
		m := &member{name: fmt.Sprintf("e%d", i), peer: freePort(), client: freePort(), dir: filepath.Join(dir, fmt.Sprintf("e%d", i))}
		ms = append(ms, m)
		initial = append(initial, m.name+"=http://"+m.peer)
	}
	start := func(m *member, state string) error {
		logf, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		m.cmd = exec.Command(*bin, "--name", m.name, "--data-dir", m.dir,
			"--listen-peer-urls", "http://"+m.peer, "--initial-advertise-peer-urls", "http://"+m.peer,
			"--listen-client-urls", "http://"+m.client, "--advertise-client-urls", "http://"+m.client,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", state,
			"--initial-cluster-token", "etcdbench", "--logger", "zap", "--log-outputs", "stderr")
		m.cmd.Stdout, m.cmd.Stderr = logf, logf
		m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := m.cmd.Start(); err != nil {
			return err
		}
		m.exited = make(chan struct{})
		go func(c *exec.Cmd, done chan struct{}) { c.Wait(); logf.Close(); close(done) }(m.cmd, m.exited)
		return nil
	}
	for _, m := range ms {
		if err := start(m, "new"); err != nil {
			return err
		}
	}
	defer func() {
		for _, m := range ms {
			if m.cmd != nil {
				m.cmd.Process.Signal(syscall.SIGKILL)
				<-m.exited
			}
		}
	}()
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	newClient := func(eps []string) (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	}
	var cls []*clientv3.Client
	for range max(*conns, 1) {
		c, err := newClient(eps)
		if err != nil {
			return err
		}
		defer c.Close()
		cls = append(cls, c)
	}
	if err := waitReady(cls[0], 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("# etcdbench: 3 etcd members (%s) on 127.0.0.1 started by etcdbench, %d clients (gRPC connections), %v per point\n",
		version(*bin), len(cls), *dur)
	fmt.Printf("# load average before: %s\n", loadavg())
	fmt.Printf("%-34s %10s %9s %9s %9s %8s\n", "workload", "ops/s", "p50 ms", "p95 ms", "p99 ms", "errors")
	run := 0
	for _, s := range strings.Split(*clientsF, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			continue
		}
		run++
		r, err := load(cls, n, func(i int) string { return fmt.Sprintf("/bench/cycle/%d/%d", run, i) })
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("cycles, %d clients, own keys", n))
	}
	if *handoff > 0 {
		run++
		r, err := load(cls, *handoff, func(int) string { return fmt.Sprintf("/bench/handoff/%d", run) })
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("hand-offs, %d clients, one key", *handoff))
	}
	var took []time.Duration
	for t := range *failovers {
		leader, err := findLeader(cls[0], ms)
		if err != nil {
			return err
		}
		var surv []string
		for _, m := range ms {
			if m != leader {
				surv = append(surv, m.client)
			}
		}
		c, err := newClient(surv)
		if err != nil {
			return err
		}
		s, err := concurrency.NewSession(c, concurrency.WithTTL(30))
		if err != nil {
			return err
		}
		killed := time.Now()
		leader.cmd.Process.Signal(syscall.SIGKILL)
		<-leader.exited
		leader.cmd = nil
		// A new attempt every 50 ms, each with its own 3 s bound, so that
		// one attempt stuck on the dead leader does not hide the recovery.
		got := make(chan time.Duration, 1)
		var wg sync.WaitGroup
		var d time.Duration = -1
	attempts:
		for k := 0; k < 200; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				mu := concurrency.NewMutex(s, fmt.Sprintf("/bench/failover/%d/%d", t, k))
				if err := mu.Lock(ctx); err == nil {
					select {
					case got <- time.Since(killed):
					default:
					}
				}
			}()
			select {
			case d = <-got:
				break attempts
			case <-time.After(50 * time.Millisecond):
			}
		}
		wg.Wait()
		if d < 0 {
			select {
			case d = <-got:
			default:
			}
		}
		s.Orphan()
		c.Close()
		if d < 0 {
			fmt.Printf("# failover trial %d: no lock within 10 s of kill -9 of %s\n", t+1, leader.name)
		} else {
			fmt.Printf("# failover trial %d: kill -9 %s (leader) -> next lock %v\n", t+1, leader.name, d.Round(time.Millisecond))
			took = append(took, d)
		}
		if err := start(leader, "existing"); err != nil {
			return err
		}
		if err := waitAll(ms, 30*time.Second); err != nil {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(took) > 0 {
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		fmt.Printf("%-34s median %v, worst %v (%d trials)\n", "failover, kill -9 leader", took[len(took)/2].Round(time.Millisecond),
			took[len(took)-1].Round(time.Millisecond), len(took))
	}
	fmt.Printf("# load average after: %s\n", loadavg())
	return nil
}

func version(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func waitReady(c *clientv3.Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Put(ctx, "/bench/ready", "1")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not ready within %v: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitAll(ms []*member, limit time.Duration) error {
	for _, m := range ms {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		deadline := time.Now().Add(limit)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err = c.Status(ctx, m.client)
			cancel()
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func findLeader(c *clientv3.Client, ms []*member) (*member, error) {
	for range 100 {
		for _, m := range ms {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.Status(ctx, m.client)
			cancel()
			if err == nil && st.Leader == st.Header.MemberId {
				return m, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("no etcd leader found")
}

type result struct {
	ops    int64
	secs   float64
	lat    []time.Duration
	errors int64
	first  error
}

func (r result) pct(p float64) float64 {
	if len(r.lat) == 0 {
		return 0
	}
	return float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds()) / 1000
}

func (r result) print(name string) {
	fmt.Printf("%-34s %10.0f %9.2f %9.2f %9.2f %8d\n", name, float64(r.ops)/r.secs, r.pct(.50), r.pct(.95), r.pct(.99), r.errors)
	if r.first != nil {
		fmt.Printf("#   first error: %v\n", r.first)
	}
}

// load: n workers, each with its own session (lease), Lock then Unlock of
// its key in a loop until the point's time or operation bound. The latency
// is the Lock's.
func load(cls []*clientv3.Client, n int, key func(i int) string) (result, error) {
	sess := make([]*concurrency.Session, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess[i], errs[i] = concurrency.NewSession(cls[i%len(cls)], concurrency.WithTTL(60))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return result{}, err
		}
	}
	defer func() {
		for _, s := range sess {
			s.Close()
		}
	}()
	var ops, nerr atomic.Int64
	var mu sync.Mutex
	var first error
	lats := make([][]time.Duration, n)
	start := time.Now()
	deadline := start.Add(*dur)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := concurrency.NewMutex(sess[i], key(i))
			for time.Now().Before(deadline) && ops.Load() < *maxOps {
				ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(5*time.Second))
				t0 := time.Now()
				err := m.Lock(ctx)
				d := time.Since(t0)
				if err == nil {
					err = m.Unlock(ctx)
				}
				cancel()
				if err != nil {
					if time.Now().After(deadline) {
						break
					}
					nerr.Add(1)
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				ops.Add(1)
				lats[i] = append(lats[i], d)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	return result{ops: ops.Load(), secs: secs, lat: all, errors: nerr.Load(), first: first}, nil
}
