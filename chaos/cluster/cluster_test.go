package cluster_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
)

// binary is the lockstep executable the tests run: LOCKSTEP_BIN, or one
// built by TestMain; chaosBinary is the chaos build (-tags chaos),
// LOCKSTEP_CHAOS_BIN or built. -short skips the tests that start processes.
var binary, chaosBinary string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "lockstep-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct {
		path *string
		env  string
		tags []string
	}{{&binary, "LOCKSTEP_BIN", nil}, {&chaosBinary, "LOCKSTEP_CHAOS_BIN", []string{"-tags", "chaos"}}} {
		if *b.path = os.Getenv(b.env); *b.path != "" {
			continue
		}
		*b.path = filepath.Join(dir, "lockstep"+strings.Join(b.tags, "-"))
		args := append(append([]string{"build"}, b.tags...), "-o", *b.path, "../../cmd/lockstep")
		build := exec.Command("go", args...)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building lockstep:", err)
			return 1
		}
	}
	return m.Run()
}

func start(t *testing.T) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts lockstep processes")
	}
	c, err := cluster.Start(cluster.Options{Binary: binary, Proxies: true}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Logs(30))
		}
		c.Close()
	})
	return c
}

func other(c *cluster.Cluster, not ...*cluster.Node) *cluster.Node {
	for _, nd := range c.Nodes {
		skip := false
		for _, x := range not {
			skip = skip || x == nd
		}
		if !skip {
			return nd
		}
	}
	return nil
}

// TestFaults walks every fault the harness makes through one cluster and
// checks the cluster notices each: an isolated leader is replaced, a
// stopped one too, a killed follower comes back on its data, a wiped one
// cannot (it lost its membership), and after each heal all members agree.
func TestFaults(t *testing.T) {
	c := start(t)
	const bound = 20 * time.Second
	leader, err := c.Leader(0, bound)
	if err != nil {
		t.Fatal(err)
	}

	c.Net.Isolate(leader)
	next, err := leaderOther(c, leader, bound)
	if err != nil {
		t.Fatalf("isolated leader %s: %v", leader.ID, err)
	}
	c.Net.Heal()
	if err := c.Converged(bound, c.Nodes...); err != nil {
		t.Fatalf("after heal: %v", err)
	}

	if err := next.Pause(); err != nil {
		t.Fatal(err)
	}
	if !next.Paused() {
		t.Fatal("Paused is false after Pause")
	}
	if _, err := leaderOther(c, next, bound); err != nil {
		t.Fatalf("stopped leader %s: %v", next.ID, err)
	}
	if err := next.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := c.Converged(bound, c.Nodes...); err != nil {
		t.Fatalf("after SIGCONT: %v", err)
	}

	f := other(c, mustLeader(t, c))
	f.Kill()
	if f.Running() {
		t.Fatal("Running after Kill")
	}
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(bound, f); err != nil {
		t.Fatal(err)
	}
	if err := c.Converged(bound, c.Nodes...); err != nil {
		t.Fatalf("after restart: %v", err)
	}

	if err := f.Wipe(); err == nil {
		t.Fatal("Wipe of a running node succeeded")
	}
	f.Kill()
	if err := f.Wipe(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.DataDir); !os.IsNotExist(err) {
		t.Fatalf("data dir after Wipe: %v", err)
	}
}

// TestOneWay cuts the leader's messages to both followers while theirs
// still reach it: the followers hear no heartbeats and elect one of
// themselves.
func TestOneWay(t *testing.T) {
	c := start(t)
	leader := mustLeader(t, c)
	for _, nd := range c.Nodes {
		if nd != leader {
			c.Net.CutOneWay(leader, nd)
		}
	}
	if _, err := leaderOther(c, leader, 20*time.Second); err != nil {
		t.Fatalf("one-way cut of leader %s: %v", leader.ID, err)
	}
	c.Net.Heal()
	if err := c.Converged(20*time.Second, c.Nodes...); err != nil {
		t.Fatal(err)
	}
}

func mustLeader(t *testing.T, c *cluster.Cluster) *cluster.Node {
	t.Helper()
	l, err := c.Leader(0, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// leaderOther waits for a node other than old to say it leads shard 0.
func leaderOther(c *cluster.Cluster, old *cluster.Node, limit time.Duration) (*cluster.Node, error) {
	deadline := time.Now().Add(limit)
	for {
		l, err := c.Leader(0, time.Until(deadline))
		if err != nil {
			return nil, err
		}
		if l != old {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("still %s", old.ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
