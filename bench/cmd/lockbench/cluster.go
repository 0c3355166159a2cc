package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/config"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// node is one `lockstep serve` process started by the load generator, or an
// address it was given.
type node struct {
	id, raft, api, metrics string
	config, logPath, data  string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

type cluster struct {
	sec   *secureSetup // nil: plaintext (-tls, -api-key)
	dir   string
	bin   string
	extra []string
	nodes []*node
	http  []*http.Client // one HTTP/2 connection each
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// h2c returns a client that speaks HTTP/2 without TLS (prior knowledge) and
// reuses its connection for every call.
func h2c() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{},
		MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}}
}

func newHTTP(conns int, sec *secureSetup) []*http.Client {
	var out []*http.Client
	for range max(conns, 1) {
		out = append(out, sec.httpClient())
	}
	return out
}

// startCluster writes three configurations into a temporary folder and
// starts three processes of bin. With proxies, each node's
// cluster.raft_address (what its peers dial) is a proxy's port, and the node
// listens on cluster.raft_listen_address, where its proxy forwards.
func startCluster(bin string, extra []string, conns int, proxies *raftNet, sec *secureSetup) (*cluster, error) {
	dir, err := os.MkdirTemp("", "lockbench-")
	if err != nil {
		return nil, err
	}
	c := &cluster{sec: sec, dir: dir, bin: bin, extra: extra, http: newHTTP(conns, sec)}
	peers := map[string]string{}
	listen := map[string]string{}
	for i := 1; i <= 3; i++ {
		nd := &node{id: fmt.Sprintf("node-%d", i), raft: freePort(), api: freePort(), metrics: freePort()}
		nd.data = filepath.Join(dir, nd.id, "data")
		nd.logPath = filepath.Join(dir, nd.id+".log")
		nd.config = filepath.Join(dir, nd.id+".yaml")
		if proxies != nil {
			listen[nd.id] = freePort()
			if err := proxies.add(nd.raft, listen[nd.id]); err != nil {
				return nil, fmt.Errorf("proxy for %s: %w", nd.id, err)
			}
		}
		peers[nd.id] = nd.raft
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		cfg := config.Defaults()
		cfg.Cluster = config.Cluster{NodeID: nd.id, RaftAddress: nd.raft, RaftListenAddress: listen[nd.id],
			APIAddress: nd.api, MetricsAddress: nd.metrics, DataDir: nd.data, Peers: peers}
		sec.configure(nd, &cfg)
		b, err := cfg.Marshal()
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(nd.config, b, 0o600); err != nil {
			return nil, err
		}
	}
	for _, nd := range c.nodes {
		if err := c.start(nd); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitHealthy(c.nodes, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// connectCluster uses running nodes at the given API addresses.
func connectCluster(addrs []string, conns int) (*cluster, error) {
	c := &cluster{http: newHTTP(conns, nil)}
	for i, a := range addrs {
		c.nodes = append(c.nodes, &node{id: fmt.Sprintf("node-%d", i+1), api: strings.TrimPrefix(a, "http://")})
	}
	return c, c.waitHealthy(c.nodes, 30*time.Second)
}

func (c *cluster) start(nd *node) error {
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--config", nd.config}, c.extra...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		logf.Close()
		close(done)
	}(nd.exited)
	return nil
}

func (nd *node) kill() {
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.exited
	nd.cmd = nil
}

func (nd *node) pid() int {
	if nd.cmd == nil {
		return 0
	}
	return nd.cmd.Process.Pid
}

func (c *cluster) stop() {
	for _, nd := range c.nodes {
		if nd.cmd != nil {
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range c.nodes {
		if nd.cmd == nil {
			continue
		}
		select {
		case <-nd.exited:
		case <-time.After(10 * time.Second):
		}
		nd.kill()
	}
	if c.dir != "" && os.Getenv("LOCKBENCH_KEEP") == "" {
		os.RemoveAll(c.dir)
	}
}

func (c *cluster) url(nd *node) string { return c.sec.scheme() + "://" + nd.api }

func (c *cluster) clusterClient(nd *node) lockstepv1connect.ClusterServiceClient {
	return lockstepv1connect.NewClusterServiceClient(c.http[0], c.url(nd))
}

func (c *cluster) waitHealthy(nodes []*node, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, nd := range nodes {
		for {
			err := c.health(nd)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s (%s) not healthy within %v: %v", nd.id, nd.api, limit, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// leader returns the node that leads shard 0, asking each in turn.
func (c *cluster) leader(limit time.Duration) (*node, error) {
	deadline := time.Now().Add(limit)
	for {
		for _, nd := range c.nodes {
			if nd.cmd == nil && c.dir != "" {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := c.clusterClient(nd).Status(ctx, connect.NewRequest(&pb.ClusterStatusRequest{}))
			cancel()
			if err == nil && len(st.Msg.Shards) > 0 && st.Msg.Shards[0].Role == "leader" {
				return nd, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no leader within %v", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				v, _ := strconv.ParseInt(f[1], 10, 64)
				return v
			}
		}
	}
	return -1
}

// health is nil when a node's /health (Connect Health) answers OK.
func (c *cluster) health(nd *node) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := c.clusterClient(nd).Health(ctx, connect.NewRequest(&pb.HealthRequest{}))
	return err
}
