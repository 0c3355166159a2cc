package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	procs "github.com/lockstepd/lockstep/chaos/cluster"
	"github.com/lockstepd/lockstep/config"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// node is one `lockstep serve` process started by the load generator
// (chaos/cluster, the one harness that runs real processes), or an address
// it was given (no process: Running is false).
type node struct {
	*procs.Node
}

type cluster struct {
	sec   *secureSetup   // nil: plaintext (-tls, -api-key)
	procs *procs.Cluster // nil for a cluster lockbench was given (-connect)
	extra []string       // the serve flags of every node
	nodes []*node
	http  []*http.Client // one HTTP/2 connection each
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

// startCluster writes nodes configurations into a temporary folder and
// starts that many processes of bin. With proxies, each node's
// cluster.raft_address (what its peers dial) is a proxy's port (c.procs.Net),
// and the node listens on cluster.raft_listen_address, where its proxy
// forwards.
func startCluster(bin string, nodes int, extra []string, conns int, proxies bool, sec *secureSetup) (*cluster, error) {
	pc, err := procs.New(procs.Options{Binary: bin, Nodes: nodes, Proxies: proxies, Flags: extra,
		Keep: os.Getenv("LOCKBENCH_KEEP") != "", Configure: func(cfg *config.Config) { sec.configure(cfg.Cluster.NodeID, cfg) }})
	if err != nil {
		return nil, err
	}
	c := &cluster{sec: sec, procs: pc, extra: extra, http: newHTTP(conns, sec)}
	for _, nd := range pc.Nodes {
		c.nodes = append(c.nodes, &node{Node: nd})
	}
	if err := pc.StartAll(); err != nil {
		c.stop()
		return nil, err
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
		c.nodes = append(c.nodes, &node{Node: &procs.Node{ID: fmt.Sprintf("node-%d", i+1), API: strings.TrimPrefix(a, "http://")}})
	}
	return c, c.waitHealthy(c.nodes, 30*time.Second)
}

// stop asks every node it started to exit (SIGTERM, all at once), waits up
// to 10 s, then kills what is left and removes the folder.
func (c *cluster) stop() {
	if c.procs == nil {
		return
	}
	for _, nd := range c.nodes {
		_ = nd.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, nd := range c.nodes {
		if nd.Running() {
			nd.Wait(time.Until(deadline))
		}
	}
	c.procs.Close()
}

func (c *cluster) url(nd *node) string { return c.sec.scheme() + "://" + nd.API }

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
				return fmt.Errorf("%s (%s) not healthy within %v: %v", nd.ID, nd.API, limit, err)
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
			if c.procs != nil && !nd.Running() {
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
