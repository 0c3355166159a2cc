package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// Options describe a cluster. Only Binary is required.
type Options struct {
	// Binary is the lockstep executable.
	Binary string
	// Nodes is the number of members. Defaults to 3.
	Nodes int
	// Shards is consensus.shards. Defaults to 1.
	Shards int
	// Dir holds configurations, data and logs. Defaults to a new temporary
	// directory, removed by Close unless Keep.
	Dir string
	// Keep leaves Dir in place after Close (to read the logs).
	Keep bool
	// Proxies puts every node's Raft traffic, and its clients' API
	// traffic, behind Net, so that links can be cut and delayed. Defaults
	// to false: nodes and clients dial the nodes themselves.
	Proxies bool
	// Configure, when set, edits each node's configuration before it is
	// written (timeouts, limits).
	Configure func(*config.Config)
	// Flags are extra flags for every `lockstep serve`.
	Flags []string
	// Secure makes a PKI in Dir/pki and turns security on in every
	// member: TLS on the API, metrics and Raft (mutual), clients by
	// certificate or API key (Cluster.PKI; docs/security.md). Not with
	// Proxies: Raft's TLS hides the sender's address the proxies read.
	Secure bool
}

// Cluster is a set of nodes sharing one directory and, with proxies, one
// Raft network.
type Cluster struct {
	Dir   string
	Nodes []*Node
	// Net is the Raft network between the nodes; nil without Options.Proxies.
	Net *Net
	// PKI is the credentials of a secured cluster; nil without Options.Secure.
	PKI *PKI

	opts    Options
	tempDir bool
}

// Bounds of the harness: the largest cluster, and how long a node gets to
// exit after SIGTERM before it is killed.
const (
	maxNodes   = 9
	stopGrace  = 10 * time.Second
	pollPeriod = 50 * time.Millisecond
)

// handedOut remembers every port FreePort returned in this process. The
// kernel may give a just-closed ephemeral port back to the next Listen, so
// two calls in a row could otherwise name one port twice (a node's API and
// Raft address the same, and it cannot start).
var handedOut struct {
	sync.Mutex
	ports map[string]bool
}

// maxFreePortTries bounds the search for a port not handed out before.
const maxFreePortTries = 64

// FreePort returns a 127.0.0.1 address whose port was free a moment ago and
// that no earlier call in this process returned. The port is drawn below
// the kernel's ephemeral range: a port the kernel chose (":0") is one it
// may also give, between this call and the node's own bind, to the source
// of an outgoing connection (a Raft dial, a client, a test in another
// package), and the node's bind then fails (a secured chaos build's node
// failed so once in CI).
func FreePort() (string, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[string]bool)
	}
	hi := ephemeralLow()
	for try := 0; try < maxFreePortTries; try++ {
		addr := fmt.Sprintf("127.0.0.1:%d", minDrawnPort+rand.IntN(hi-minDrawnPort))
		if handedOut.ports[addr] {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken
		}
		ln.Close()
		handedOut.ports[addr] = true
		return addr, nil
	}
	return "", fmt.Errorf("cluster: no free port in %d tries below %d that this process has not handed out already", maxFreePortTries, hi)
}

// minDrawnPort is the lowest port FreePort draws.
const minDrawnPort = 10000

// ephemeralLow is the first port of the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), 32768 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > minDrawnPort+1000 {
				return lo
			}
		}
	}
	return 32768
}

// New prepares a cluster: ports, directories, configuration files and, with
// proxies, the Raft network. It starts no node; Start or StartAll does.
func New(opts Options) (*Cluster, error) {
	if opts.Binary == "" {
		return nil, errors.New("cluster: Options.Binary names no lockstep executable")
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Nodes < 1 || opts.Nodes > maxNodes {
		return nil, fmt.Errorf("cluster: %d nodes: use 1..%d", opts.Nodes, maxNodes)
	}
	if opts.Shards == 0 {
		opts.Shards = 1
	}
	c := &Cluster{opts: opts, Dir: opts.Dir}
	if c.Dir == "" {
		dir, err := os.MkdirTemp("", "lockstep-cluster-")
		if err != nil {
			return nil, err
		}
		c.Dir, c.tempDir = dir, true
	} else if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if opts.Secure && opts.Proxies {
		return nil, errors.New("cluster: Options.Secure with Proxies: Raft's mutual TLS hides the sender's address the proxies read")
	}
	if opts.Proxies {
		c.Net = newNet()
	}
	if opts.Secure {
		pki, err := newPKI(c.Dir)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("cluster: making the PKI: %w", err)
		}
		c.PKI = pki
	}
	if err := c.prepare(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) prepare() error {
	peers := map[string]string{}
	for i := 1; i <= c.opts.Nodes; i++ {
		nd, err := c.NewNode(fmt.Sprintf("node-%d", i))
		if err != nil {
			return err
		}
		peers[nd.ID] = nd.Raft
	}
	for _, nd := range c.Nodes {
		cfg := config.Defaults()
		cfg.Cluster = config.Cluster{NodeID: nd.ID, RaftAddress: nd.Raft, RaftListenAddress: nd.RaftListen,
			APIAddress: nd.ListenAPI(), MetricsAddress: nd.Metrics, DataDir: nd.DataDir, Peers: peers}
		cfg.Consensus.Shards = c.opts.Shards
		c.Secure(nd, &cfg)
		if c.opts.Configure != nil {
			c.opts.Configure(&cfg)
		}
		if err := nd.WriteConfig(cfg); err != nil {
			return err
		}
	}
	return nil
}

// NewNode adds a member to the cluster's files and ports: fresh 127.0.0.1
// ports (behind a proxy with Options.Proxies), a data directory, a log and
// a configuration path, all under Dir. It writes no configuration and
// starts nothing; Close kills it with the others. New uses it for the
// initial members; a test adds a joining or foreign node with it.
func (c *Cluster) NewNode(id string) (*Node, error) {
	if len(c.Nodes) >= maxNodes {
		return nil, fmt.Errorf("cluster: already %d nodes", maxNodes)
	}
	nd := &Node{ID: id, bin: c.opts.Binary, flags: c.opts.Flags}
	for _, p := range []*string{&nd.Raft, &nd.API, &nd.Metrics} {
		a, err := FreePort()
		if err != nil {
			return nil, err
		}
		*p = a
	}
	if c.Net != nil {
		listen, err := FreePort()
		if err != nil {
			return nil, err
		}
		nd.RaftListen = listen
		if err := c.Net.add(nd.ID, nd.Raft, listen); err != nil {
			return nil, fmt.Errorf("cluster: proxy for %s: %w", nd.ID, err)
		}
		if nd.APIListen, err = FreePort(); err != nil {
			return nil, err
		}
		if err := c.Net.addClients(nd.API, nd.APIListen); err != nil {
			return nil, fmt.Errorf("cluster: API proxy for %s: %w", nd.ID, err)
		}
	}
	if c.PKI != nil {
		if err := c.PKI.issueNode(nd); err != nil {
			return nil, fmt.Errorf("cluster: certificate for %s: %w", nd.ID, err)
		}
		nd.tls = c.PKI.TLSConfig()
		nd.tlsClient = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{TLSClientConfig: nd.tls}}
	}
	nd.DataDir = filepath.Join(c.Dir, nd.ID, "data")
	nd.LogPath = filepath.Join(c.Dir, nd.ID+".log")
	nd.ConfigPath = filepath.Join(c.Dir, nd.ID+".yaml")
	c.Nodes = append(c.Nodes, nd)
	return nd, nil
}

// Forget kills a node and drops it from Nodes (a member removed from the
// cluster): Leader, WaitHealthy of every node and Converged no longer
// count it. Its files stay until Close.
func (c *Cluster) Forget(nd *Node) {
	nd.Kill()
	for i, x := range c.Nodes {
		if x == nd {
			c.Nodes = append(c.Nodes[:i:i], c.Nodes[i+1:]...)
			return
		}
	}
}

// Options are the options the cluster was made with.
func (c *Cluster) Options() Options { return c.opts }

// Start prepares a cluster and starts every node, then waits up to limit
// for all of them to answer /health.
func Start(opts Options, limit time.Duration) (*Cluster, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.StartAll(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitHealthy(limit, c.Nodes...); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// StartAll starts every node that is not running.
func (c *Cluster) StartAll() error {
	for _, nd := range c.Nodes {
		if nd.Running() {
			continue
		}
		if err := nd.Start(); err != nil {
			return err
		}
	}
	return nil
}

// Node returns the member with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, nd := range c.Nodes {
		if nd.ID == id {
			return nd
		}
	}
	return nil
}

// Endpoints are every node's API URL, for client.New.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, nd := range c.Nodes {
		out = append(out, nd.URL())
	}
	return out
}

// Close kills every node (continuing stopped ones first), stops the proxies
// and removes a temporary directory unless Keep.
func (c *Cluster) Close() {
	for _, nd := range c.Nodes {
		nd.Kill()
	}
	if c.Net != nil {
		c.Net.Close()
	}
	if c.tempDir && !c.opts.Keep {
		os.RemoveAll(c.Dir)
	}
}

// Logs returns the last n lines of every node's log, for a failure message.
func (c *Cluster) Logs(n int) string {
	var b strings.Builder
	for _, nd := range c.Nodes {
		fmt.Fprintf(&b, "---- last lines of %s's log (%s):\n%s\n", nd.ID, nd.LogPath, nd.Tail(n))
	}
	return b.String()
}
