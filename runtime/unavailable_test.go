package runtime

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// portsInRange finds n ports of 32500-34999 free on loopback now.
func portsInRange(t *testing.T, n int) []int {
	t.Helper()
	const lo, size = 32500, 2500
	var ports []int
	start := rand.IntN(size)
	for i := 0; i < size && len(ports) < n; i++ {
		p := lo + (start+i)%size
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("only %d free ports in %d-%d", len(ports), lo, lo+size-1)
	}
	return ports
}

// loneMember starts node-1 of a three-member cluster whose other members
// never start: it knows no leader, as the last member up of three does.
func loneMember(t *testing.T) *Node {
	t.Helper()
	ports := portsInRange(t, 4)
	peers := map[string]string{}
	for i := range 3 {
		peers[fmt.Sprintf("node-%d", i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	cfg := config.Defaults()
	cfg.Cluster = config.Cluster{
		NodeID:      "node-1",
		RaftAddress: peers["node-1"],
		APIAddress:  fmt.Sprintf("127.0.0.1:%d", ports[3]),
		DataDir:     filepath.Join(t.TempDir(), "node-1"),
		Peers:       peers,
	}
	cfg.Consensus.ElectionTimeoutMs = 200
	cfg.Consensus.HeartbeatIntervalMs = 40
	cfg.Consensus.TickIntervalMs = 20
	n, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t), Registerer: prometheus.NewRegistry(), balance: testBalance})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// TestNoQuorumSaysSo: a member that reaches no quorum (two members of
// three down) answers a linearizable read, whatever its deadline, and a
// command with ErrUnavailable saying that it knows no leader and that no
// quorum is reachable from it. Before, a read whose time ran out answered
// Dragonboat's words for a deadline within a tick ("specified timeout
// value is too small"; "invalid deadline") or ctx's own error ("context
// deadline exceeded"), which users saw through the API and the CLI.
func TestNoQuorumSaysSo(t *testing.T) {
	n := loneMember(t)
	check := func(what string, err error, want ...string) {
		t.Helper()
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s without a quorum: %v, want ErrUnavailable", what, err)
			return
		}
		msg := err.Error()
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s without a quorum: %q, want it to say %q", what, msg, w)
			}
		}
		for _, bad := range []string{"timeout value", "invalid deadline", "deadline exceeded"} {
			if strings.Contains(msg, bad) {
				t.Errorf("%s without a quorum: %q says %q", what, msg, bad)
			}
		}
	}
	read := func(*core.Machine) error { return nil }
	// Deadlines shorter than a Raft tick (Dragonboat refuses them at once),
	// a few ticks, more than an attempt, and none (the retry budget).
	for _, d := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 150 * time.Millisecond, 1500 * time.Millisecond, 0} {
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if d > 0 {
			ctx, cancel = context.WithTimeout(ctx, d)
		}
		_, err := n.Read(ctx, "jobs/a", false, read)
		cancel()
		check(fmt.Sprintf("a read with a deadline of %v", d), err, "no leader", "is reachable from it")
	}
	// A read whose deadline is far off gives up at the retry budget, as a
	// command does: it waited for its caller's whole deadline (15 s over
	// REST) before it said there was no quorum.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, err := n.Read(ctx, "jobs/a", false, read)
	check("a read with a deadline of a minute", err, "this member found no leader", "is reachable from it")
	if ctx.Err() != nil {
		t.Errorf("a read without a leader waited for its caller's whole deadline")
	}
	cancel()
	create := core.Command{Op: core.OpSessionCreate, TTLMs: 10_000, Owner: "test"}
	_, err = n.Do(context.Background(), create)
	check("a command", err, "this member found no leader", "is reachable from it")
	// A command whose deadline comes before the retry budget's end (the Go
	// client's attempts last 2 s, the budget five election timeouts) ends
	// for the same reason, and says it.
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = n.Do(ctx, create)
	cancel()
	check("a command with a deadline of 100ms", err, "this member found no leader", "is reachable from it")
	// So does a command whose deadline DoBy enforces, not its ctx, and one
	// whose deadline has passed already.
	_, err = n.DoBy(context.Background(), create, time.Now().Add(100*time.Millisecond))
	check("DoBy with a deadline of 100ms", err, "this member found no leader", "is reachable from it")
	_, err = n.DoBy(context.Background(), create, time.Now().Add(-time.Millisecond))
	check("DoBy with a deadline passed", err, "this member found no leader", "is reachable from it")
	// A caller that gives up is told so, not that there is no quorum.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := n.Read(ctx, "jobs/a", false, read); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled read: %v, want context.Canceled", err)
	}
	if _, err := n.Do(ctx, create); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled command: %v, want context.Canceled", err)
	}
	if _, err := n.DoBy(ctx, create, time.Now().Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled command with a deadline of its own: %v, want context.Canceled", err)
	}
}

// TestHealthNamesThePeersItCannotReach: a member that cannot reach its
// peers (here two of three not started: to it, as a mistyped address in
// cluster.peers looks) says on /health which, by id and address. It said
// only "no leader known", and the cause was in the log alone.
func TestHealthNamesThePeersItCannotReach(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, only: []int{0}})
	want := fmt.Sprintf("cannot reach node-2 at %s, node-3 at %s", c.cfgs[1].Cluster.RaftAddress, c.cfgs[2].Cluster.RaftAddress)
	var last error
	eventually(t, "health names both peers", func() bool {
		last = c.nodes[0].Health()
		return last != nil && strings.Contains(last.Error(), want)
	})
	if !errors.Is(last, ErrUnavailable) {
		t.Fatalf("%v: want ErrUnavailable", last)
	}
}
