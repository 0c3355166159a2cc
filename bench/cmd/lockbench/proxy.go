package main

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// raftNet is the Raft network of a proxied cluster: one TCP proxy per node,
// listening on the node's cluster.raft_address (what its peers dial) and
// forwarding to its cluster.raft_listen_address. It can isolate one node,
// cutting its Raft connections both ways, and heal.
//
// Every peer dials the same address for a node, so a proxy knows the
// destination of a connection but not its source (all of them come from
// 127.0.0.1). Dragonboat names the sender in every message batch
// (MessageBatch.SourceAddress, the sender's raft_address, in plain
// protobuf: a length byte, then the address), so the proxy reads the first
// bytes of a connection until one of the known raft addresses appears. A connection whose sender it cannot
// name within the bound is forwarded as unknown; only the isolated node's
// own connections are at stake, and those do name it.
type raftNet struct {
	mu       sync.Mutex
	addrs    []string // every node's raft_address, the names senders give
	isolated string   // the raft_address cut off; "" when healed
	conns    map[*proxyConn]struct{}
	proxies  []*proxy
	closed   bool // no connection is forwarded any more
}

// Bounds of the proxies: connections held at once, bytes and time spent
// naming a connection's sender, time to dial the node.
const (
	proxyMaxConns     = 256
	proxyPeekBytes    = 64 << 10
	proxyPeekTimeout  = 2 * time.Second
	proxyDialTimeout  = time.Second
	proxyReadChunkLen = 32 << 10
)

type proxy struct {
	net    *raftNet
	addr   string // the node's raft_address: where the proxy listens
	target string // the node's raft_listen_address
	ln     net.Listener
	wg     sync.WaitGroup
}

// proxyConn is one forwarded connection: src is the sender's raft address
// ("" when unknown), dst the destination node's.
type proxyConn struct {
	src, dst string
	in, out  net.Conn
}

func (c *proxyConn) close() {
	c.in.Close()
	if c.out != nil {
		c.out.Close()
	}
}

func newRaftNet() *raftNet { return &raftNet{conns: map[*proxyConn]struct{}{}} }

// add starts a proxy listening on addr (127.0.0.1) forwarding to target.
func (n *raftNet) add(addr, target string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p := &proxy{net: n, addr: addr, target: target, ln: ln}
	n.mu.Lock()
	n.addrs = append(n.addrs, addr)
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	p.wg.Add(1)
	go p.accept()
	return nil
}

// isolate cuts every connection to or from the node at raft address addr,
// now and until heal.
func (n *raftNet) isolate(addr string) {
	n.mu.Lock()
	n.isolated = addr
	var cut []*proxyConn
	for c := range n.conns {
		if n.blockedLocked(c.src, c.dst) {
			cut = append(cut, c)
			delete(n.conns, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

func (n *raftNet) heal() {
	n.mu.Lock()
	n.isolated = ""
	n.mu.Unlock()
}

func (n *raftNet) blockedLocked(src, dst string) bool {
	return n.isolated != "" && (src == n.isolated || dst == n.isolated)
}

// open registers a connection unless it is blocked or too many are open.
func (n *raftNet) open(c *proxyConn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.blockedLocked(c.src, c.dst) || len(n.conns) >= proxyMaxConns {
		return false
	}
	n.conns[c] = struct{}{}
	return true
}

func (n *raftNet) done(c *proxyConn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
	c.close()
}

// close stops every proxy and cuts every connection.
func (n *raftNet) close() {
	n.mu.Lock()
	n.closed = true
	proxies := n.proxies
	conns := n.conns
	n.conns = map[*proxyConn]struct{}{}
	n.mu.Unlock()
	for _, p := range proxies {
		p.ln.Close()
	}
	for c := range conns {
		c.close()
	}
	for _, p := range proxies {
		p.wg.Wait()
	}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(in)
		}()
	}
}

// forward names the sender, refuses a blocked connection by closing it,
// and otherwise copies both ways until either side closes.
func (p *proxy) forward(in net.Conn) {
	c := &proxyConn{dst: p.addr, in: in}
	p.net.mu.Lock()
	blocked := p.net.blockedLocked("", p.addr)
	addrs := append([]string(nil), p.net.addrs...)
	p.net.mu.Unlock()
	if blocked {
		in.Close()
		return
	}
	head, src := peekSender(in, addrs, p.addr)
	c.src = src
	out, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		in.Close()
		return
	}
	c.out = out
	if !p.net.open(c) {
		c.close()
		return
	}
	defer p.net.done(c)
	if _, err := out.Write(head); err != nil {
		return
	}
	copied := make(chan struct{}, 2)
	go func() { io.Copy(out, in); copied <- struct{}{} }()
	go func() { io.Copy(in, out); copied <- struct{}{} }()
	<-copied // either direction ending ends the connection (done closes both)
}

// peekSender reads from in until one of addrs (other than self) appears in
// what was read, or the byte or time bound passes. It returns what it read,
// to be forwarded first, and the sender's address ("" when not found).
func peekSender(in net.Conn, addrs []string, self string) ([]byte, string) {
	var head []byte
	buf := make([]byte, proxyReadChunkLen)
	_ = in.SetReadDeadline(time.Now().Add(proxyPeekTimeout))
	defer in.SetReadDeadline(time.Time{})
	for len(head) < proxyPeekBytes {
		k, err := in.Read(buf)
		head = append(head, buf[:k]...)
		for _, a := range addrs {
			// With its protobuf length byte in front, so that
			// 127.0.0.1:4123 is not found inside 127.0.0.1:41234.
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
