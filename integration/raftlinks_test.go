//go:build integration

package integration

import (
	"bytes"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// raftLinks stands between the Raft transports of a cluster's nodes: one
// TCP proxy per node, listening on its cluster.raft_address (what peers
// dial) and forwarding to its cluster.raft_listen_address, so that a test
// can cut the link between two nodes, both ways, and heal it.
//
// Every peer dials the same address for a node, so a proxy knows where a
// connection goes but not where it comes from (all of it comes from
// 127.0.0.1). Dragonboat names the sender in every message batch
// (MessageBatch.SourceAddress, the sender's raft_address, as protobuf: a
// length byte, then the address), so the proxy reads a connection's first
// bytes until a known address appears. This is how lockbench's raftNet
// (bench/cmd/lockbench/proxy.go) names senders; that one lives in package
// main and isolates whole nodes, this one cuts single links, which is what
// makes one shard unreachable from a node while the others stay reachable.
type raftLinks struct {
	t     *testing.T
	mu    sync.Mutex
	addrs []string           // every node's raft_address
	cut   map[[2]string]bool // pairs of raft addresses, smaller first
	conns map[*linkConn]bool // open forwarded connections
	lns   []net.Listener
	wg    sync.WaitGroup
	done  bool
}

// Bounds: connections held at once, bytes and time spent naming a
// connection's sender, time to dial the node behind the proxy.
const (
	linksMaxConns    = 256
	linksPeekBytes   = 64 << 10
	linksPeekTimeout = 2 * time.Second
	linksDialTimeout = time.Second
)

type linkConn struct {
	src, dst string // raft addresses; src "" when the sender was not named
	in, out  net.Conn
}

func (c *linkConn) close() {
	c.in.Close()
	if c.out != nil {
		c.out.Close()
	}
}

// proxyRaft puts every node of c (not started yet) behind a proxy: the node
// listens for Raft on a fresh port, and its raft_address, which peers dial,
// becomes the proxy's. The proxies stop when the test ends.
func proxyRaft(t *testing.T, c *cluster) *raftLinks {
	t.Helper()
	l := &raftLinks{t: t, cut: map[[2]string]bool{}, conns: map[*linkConn]bool{}}
	for _, nd := range c.nodes {
		l.addrs = append(l.addrs, nd.raft)
	}
	for _, nd := range c.nodes {
		listen := freePort(t)
		cfg, err := config.Load(nd.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Cluster.RaftListenAddress = listen
		b, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(nd.config, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", nd.raft)
		if err != nil {
			t.Fatalf("proxy for %s on %s: %v", nd.id, nd.raft, err)
		}
		l.lns = append(l.lns, ln)
		l.wg.Add(1)
		go l.accept(ln, nd.raft, listen)
	}
	t.Cleanup(l.close)
	return l
}

func pair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// cutLink cuts the Raft link between a and b both ways: their open
// connections now, and every new one until heal.
func (l *raftLinks) cutLink(a, b *node) {
	l.mu.Lock()
	l.cut[pair(a.raft, b.raft)] = true
	var drop []*linkConn
	for c := range l.conns {
		if l.blockedLocked(c.src, c.dst) {
			drop = append(drop, c)
			delete(l.conns, c)
		}
	}
	l.mu.Unlock()
	for _, c := range drop {
		c.close()
	}
	l.t.Logf("raft link %s <-> %s cut (%d connections dropped)", a.id, b.id, len(drop))
}

// heal restores every link.
func (l *raftLinks) heal() {
	l.mu.Lock()
	l.cut = map[[2]string]bool{}
	l.mu.Unlock()
	l.t.Logf("raft links healed")
}

func (l *raftLinks) blockedLocked(src, dst string) bool {
	return src != "" && l.cut[pair(src, dst)]
}

func (l *raftLinks) close() {
	l.mu.Lock()
	l.done = true
	conns := l.conns
	l.conns = map[*linkConn]bool{}
	l.mu.Unlock()
	for _, ln := range l.lns {
		ln.Close()
	}
	for c := range conns {
		c.close()
	}
	l.wg.Wait()
}

func (l *raftLinks) accept(ln net.Listener, addr, target string) {
	defer l.wg.Done()
	for {
		in, err := ln.Accept()
		if err != nil {
			return // closed
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.forward(in, addr, target)
		}()
	}
}

// forward names the sender, drops a cut connection, and otherwise copies
// both ways until either side closes.
func (l *raftLinks) forward(in net.Conn, addr, target string) {
	head, src := l.peekSender(in, addr)
	c := &linkConn{src: src, dst: addr, in: in}
	out, err := net.DialTimeout("tcp", target, linksDialTimeout)
	if err != nil {
		in.Close()
		return
	}
	c.out = out
	l.mu.Lock()
	open := !l.done && !l.blockedLocked(c.src, c.dst) && len(l.conns) < linksMaxConns
	if open {
		l.conns[c] = true
	}
	l.mu.Unlock()
	if !open {
		c.close()
		return
	}
	defer func() {
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
		c.close()
	}()
	if _, err := out.Write(head); err != nil {
		return
	}
	copied := make(chan struct{}, 2)
	go func() { io.Copy(out, in); copied <- struct{}{} }()
	go func() { io.Copy(in, out); copied <- struct{}{} }()
	<-copied // either direction ending ends the connection
}

// peekSender reads from in until another node's raft address appears, or
// the byte or time bound passes; it returns what it read (to be forwarded
// first) and the sender ("" when not named).
func (l *raftLinks) peekSender(in net.Conn, self string) ([]byte, string) {
	var head []byte
	buf := make([]byte, 32<<10)
	_ = in.SetReadDeadline(time.Now().Add(linksPeekTimeout))
	defer in.SetReadDeadline(time.Time{})
	for len(head) < linksPeekBytes {
		k, err := in.Read(buf)
		head = append(head, buf[:k]...)
		for _, a := range l.addrs {
			// With its length byte in front, so that 127.0.0.1:4123 is
			// not found inside 127.0.0.1:41234.
			if a != self && len(a) < 128 && bytes.Contains(head, append([]byte{byte(len(a))}, a...)) {
				return head, a
			}
		}
		if err != nil {
			break
		}
	}
	return head, ""
}
