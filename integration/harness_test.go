//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	procs "github.com/lockstepd/lockstep/chaos/cluster"
	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// binary is the lockstep binary under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	binary = os.Getenv("LOCKSTEP_BIN")
	if binary == "" {
		dir, err := os.MkdirTemp("", "lockstep-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "lockstep")
		build := exec.Command("go", "build", "-o", binary, "../cmd/lockstep")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building lockstep:", err)
			return 1
		}
	} else if abs, err := filepath.Abs(binary); err == nil {
		binary = abs
	}
	return m.Run()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	a, err := procs.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// node is one lockstep process of chaos/cluster, the one harness that
// starts real processes, and whether it serves TLS.
type node struct {
	*procs.Node
	https bool // the node serves TLS (security_harness_test.go)
}

// cluster is a set of nodes started from one temporary directory.
type cluster struct {
	t     *testing.T
	dir   string
	nodes []*node
	http  *http.Client   // HTTP/1.1 and h2c
	procs *procs.Cluster // the processes, files and ports
	net   *procs.Net     // the Raft proxies (newProxiedCluster); nil without
}

// newCluster prepares n members (not started) with fresh ports and
// directories and writes their configuration files.
func newCluster(t *testing.T, n int) *cluster { return prepareCluster(t, n, false) }

// newProxiedCluster is newCluster with every node's Raft traffic behind a
// proxy (c.net), so that a test can cut the link between two nodes.
func newProxiedCluster(t *testing.T, n int) *cluster { return prepareCluster(t, n, true) }

func prepareCluster(t *testing.T, n int, proxies bool) *cluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "lockstep-it-")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := procs.New(procs.Options{Binary: binary, Nodes: n, Dir: dir, Proxies: proxies,
		Configure: func(cfg *config.Config) { cfg.Locks.MaxWaitTimeSeconds = 10 }}) // REST waits in these tests stay short
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	c := &cluster{t: t, dir: dir, http: h2cClient(), procs: pc, net: pc.Net}
	for _, nd := range pc.Nodes {
		c.nodes = append(c.nodes, &node{Node: nd})
	}
	t.Cleanup(func() {
		pc.Close() // kills every process it started, continuing stopped ones first
		if t.Failed() {
			for _, nd := range c.nodes {
				t.Logf("---- last lines of %s's log (%s):\n%s", nd.ID, nd.LogPath, nd.Tail(40))
			}
			if os.Getenv("LOCKSTEP_KEEP") != "" {
				t.Logf("kept %s", dir)
				return
			}
		}
		os.RemoveAll(dir)
	})
	return c
}

// extraNode adds a node that is not an initial member (its configuration
// is the test's to write), killed with the cluster.
func (c *cluster) extraNode(id string) *node {
	c.t.Helper()
	nd, err := c.procs.NewNode(id)
	if err != nil {
		c.t.Fatal(err)
	}
	return &node{Node: nd}
}

// start starts a node's process with its configuration and extra flags.
func (c *cluster) start(nd *node, extra ...string) {
	c.t.Helper()
	if err := nd.Start(extra...); err != nil {
		c.t.Fatal(err)
	}
}

// stop sends SIGTERM and waits up to limit for a clean exit.
func (nd *node) stop(t *testing.T, limit time.Duration) error {
	t.Helper()
	err := nd.Stop(limit)
	if err != nil && strings.Contains(err.Error(), "did not exit within") {
		t.Fatal(err)
	}
	return err
}

func (nd *node) url() string {
	if nd.https {
		return "https://" + nd.API
	}
	return "http://" + nd.API
}

// eventually retries f every 50 ms until it returns nil or the limit passes.
func eventually(t *testing.T, limit time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitHealthy waits until each node answers /health with 200.
func (c *cluster) waitHealthy(limit time.Duration, nodes ...*node) {
	c.t.Helper()
	for _, nd := range nodes {
		eventually(c.t, limit, nd.ID+" healthy", func() error {
			if !nd.Running() {
				return fmt.Errorf("%s exited: %s", nd.ID, nd.Tail(5))
			}
			st, body, err := c.do("GET", nd, "/health", "")
			if err != nil {
				return err
			}
			if st != 200 {
				return fmt.Errorf("%d %v", st, body)
			}
			return nil
		})
	}
}

// leader returns the node that the given node reports as shard leader.
func (c *cluster) leader(from ...*node) *node {
	c.t.Helper()
	var found *node
	if len(from) == 0 {
		from = c.nodes
	}
	eventually(c.t, 10*time.Second, "a leader", func() error {
		for _, nd := range from {
			if !nd.Running() {
				continue
			}
			st, body, err := c.do("GET", nd, "/cluster/status", "")
			if err != nil || st != 200 {
				continue
			}
			shards, _ := body["shards"].([]any)
			if len(shards) == 0 {
				continue
			}
			id, _ := shards[0].(map[string]any)["leader_id"].(string)
			for _, cand := range c.nodes {
				if cand.ID == id && cand.Running() {
					found = cand
					return nil
				}
			}
		}
		return fmt.Errorf("no running node reports a running leader")
	})
	return found
}

// do sends a REST (or any JSON) request and decodes the answer.
func (c *cluster) do(method string, nd *node, path, body string) (int, map[string]any, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, nd.url()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return resp.StatusCode, nil, fmt.Errorf("%s %s: not JSON (%v): %q", method, path, err, raw)
		}
	}
	return resp.StatusCode, out, nil
}

// rest is do that fails the test on a transport error.
func (c *cluster) rest(method string, nd *node, path, body string) (int, map[string]any) {
	c.t.Helper()
	st, out, err := c.do(method, nd, path, body)
	if err != nil {
		c.t.Fatalf("%s %s on %s: %v", method, path, nd.ID, err)
	}
	return st, out
}

// ok is rest that also requires 200.
func (c *cluster) ok(method string, nd *node, path, body string) map[string]any {
	c.t.Helper()
	st, out := c.rest(method, nd, path, body)
	if st != 200 {
		c.t.Fatalf("%s %s %s on %s: %d %v", method, path, body, nd.ID, st, out)
	}
	return out
}

// h2cClient speaks HTTP/1.1 for http:// URLs, and HTTP/2 without TLS when
// asked for it (gRPC clients below).
func h2cClient() *http.Client {
	return &http.Client{Timeout: 60 * time.Second}
}

// grpcClient returns an HTTP client that speaks HTTP/2 without TLS (h2c
// with prior knowledge), as gRPC clients do.
func grpcHTTP() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}}
}

// clients are the gRPC clients of one node.
type clients struct {
	sessions  lockstepv1connect.SessionServiceClient
	locks     lockstepv1connect.LockServiceClient
	sems      lockstepv1connect.SemaphoreServiceClient
	rw        lockstepv1connect.RWLockServiceClient
	barriers  lockstepv1connect.BarrierServiceClient
	elections lockstepv1connect.ElectionServiceClient
	watch     lockstepv1connect.WatchServiceClient
	cluster   lockstepv1connect.ClusterServiceClient
}

// grpc returns gRPC (or, with connect.WithProtoJSON(), Connect JSON)
// clients for a node.
func (nd *node) clients(opts ...connect.ClientOption) clients {
	h := grpcHTTP()
	u := nd.url()
	return clients{
		sessions:  lockstepv1connect.NewSessionServiceClient(h, u, opts...),
		locks:     lockstepv1connect.NewLockServiceClient(h, u, opts...),
		sems:      lockstepv1connect.NewSemaphoreServiceClient(h, u, opts...),
		rw:        lockstepv1connect.NewRWLockServiceClient(h, u, opts...),
		barriers:  lockstepv1connect.NewBarrierServiceClient(h, u, opts...),
		elections: lockstepv1connect.NewElectionServiceClient(h, u, opts...),
		watch:     lockstepv1connect.NewWatchServiceClient(h, u, opts...),
		cluster:   lockstepv1connect.NewClusterServiceClient(h, u, opts...),
	}
}
