package cluster

import (
	"bytes"
	"io"
	"net"
	"sync"
	"time"
)

// Net stands between the Raft transports of a cluster's nodes: one TCP
// proxy per node, listening on its cluster.raft_address (what peers dial)
// and forwarding to its cluster.raft_listen_address. A link is directed:
// Dragonboat sends a node's messages to a peer over connections the sender
// dials, so the connection from a to b carries a's messages to b, and
// cutting it (CutOneWay) loses them while b's messages to a still arrive.
//
// Every peer dials the same address for a node, so a proxy knows where a
// connection goes but not where it comes from (all of it comes from
// 127.0.0.1). Dragonboat names the sender in every message batch
// (MessageBatch.SourceAddress, the sender's raft_address, as protobuf: a
// length byte, then the address), so the proxy reads a connection's first
// bytes until a known address appears. A connection whose sender is not
// named within the bounds is forwarded as unknown and never cut.
//
// Net also stands between the clients and each node's API: a proxy on the
// node's API address (what clients dial) forwards to where the node listens
// (Node.APIListen). Every client connection comes from "the clients"
// (clientsSide), so a cut or a delay of a node's API link applies to all of
// its clients at once (CutClients, DelayClients).
type Net struct {
	mu      sync.Mutex
	ids     map[string]string // raft address → node id
	addrs   []string
	cut     map[link]bool
	delay   map[link]time.Duration
	conns   map[*proxyConn]bool
	proxies []*proxy
	closed  bool
}

// link is a direction between two nodes, by raft address.
type link struct{ from, to string }

// Bounds of the proxies: connections held at once, bytes and time spent
// naming a connection's sender, time to dial the node behind the proxy,
// chunks held back by a delayed link.
const (
	netMaxConns     = 256
	netPeekBytes    = 64 << 10
	netPeekTimeout  = 2 * time.Second
	netDialTimeout  = time.Second
	netReadChunk    = 32 << 10
	netDelayedChunk = 1024
	// MaxDelay bounds Delay.
	MaxDelay = 5 * time.Second
)

type proxy struct {
	addr, target string
	clients      bool // an API proxy: every connection comes from clientsSide
	ln           net.Listener
	wg           sync.WaitGroup
}

// clientsSide is the sender of every connection through an API proxy.
const clientsSide = "clients"

type proxyConn struct {
	src, dst string // raft addresses; src "" when the sender was not named
	in, out  net.Conn
}

func (c *proxyConn) close() {
	c.in.Close()
	if c.out != nil {
		c.out.Close()
	}
}

func newNet() *Net {
	return &Net{ids: map[string]string{}, cut: map[link]bool{}, delay: map[link]time.Duration{}, conns: map[*proxyConn]bool{}}
}

// add starts the proxy for node id, listening on addr and forwarding to
// target.
func (n *Net) add(id, addr, target string) error {
	return n.start(&proxy{addr: addr, target: target}, id)
}

// addClients starts the proxy in front of a node's API: clients dial addr,
// the node listens on target.
func (n *Net) addClients(addr, target string) error {
	return n.start(&proxy{addr: addr, target: target, clients: true}, "")
}

func (n *Net) start(p *proxy, id string) error {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	p.ln = ln
	n.mu.Lock()
	if !p.clients {
		n.ids[p.addr] = id
		n.addrs = append(n.addrs, p.addr)
	}
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	p.wg.Add(1)
	go n.accept(p)
	return nil
}

// CutClients drops every client connection to nd's API and refuses new
// ones until Heal: to its clients the node is gone, while Raft goes on.
func (n *Net) CutClients(nd *Node) {
	n.set(func() { n.cut[link{clientsSide, nd.API}] = true })
}

// DelayClients holds every request byte a client sends to nd's API for d
// (at most MaxDelay) until Heal.
func (n *Net) DelayClients(nd *Node, d time.Duration) {
	n.set(func() { n.delay[link{clientsSide, nd.API}] = min(d, MaxDelay) })
}

// Cut loses every message between a and b, both ways, until Heal.
func (n *Net) Cut(a, b *Node) {
	n.set(func() {
		n.cut[link{a.Raft, b.Raft}] = true
		n.cut[link{b.Raft, a.Raft}] = true
	})
}

// CutOneWay loses every message from a to b until Heal; b's messages to a
// still arrive.
func (n *Net) CutOneWay(from, to *Node) {
	n.set(func() { n.cut[link{from.Raft, to.Raft}] = true })
}

// Isolate cuts every link of nd, both ways.
func (n *Net) Isolate(nd *Node) {
	n.set(func() {
		for _, a := range n.addrs {
			if a != nd.Raft {
				n.cut[link{a, nd.Raft}] = true
				n.cut[link{nd.Raft, a}] = true
			}
		}
	})
}

// Delay holds every message from a to b for d (at most MaxDelay) before
// forwarding it, until Heal.
func (n *Net) Delay(from, to *Node, d time.Duration) {
	n.set(func() { n.delay[link{from.Raft, to.Raft}] = min(d, MaxDelay) })
}

// Heal restores every link and removes every delay.
func (n *Net) Heal() {
	n.mu.Lock()
	n.cut = map[link]bool{}
	n.delay = map[link]time.Duration{}
	n.mu.Unlock()
}

// set applies a change of the rules and drops the open connections the
// rules now cut.
func (n *Net) set(change func()) {
	n.mu.Lock()
	change()
	var drop []*proxyConn
	for c := range n.conns {
		if n.cut[link{c.src, c.dst}] {
			drop = append(drop, c)
			delete(n.conns, c)
		}
	}
	n.mu.Unlock()
	for _, c := range drop {
		c.close()
	}
}

func (n *Net) delayOf(src, dst string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.delay[link{src, dst}]
}

// Close stops every proxy and drops every connection.
func (n *Net) Close() {
	n.mu.Lock()
	n.closed = true
	proxies, conns := n.proxies, n.conns
	n.conns = map[*proxyConn]bool{}
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

func (n *Net) accept(p *proxy) {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			n.forward(p, in)
		}()
	}
}

// forward names the sender, drops a cut connection, and otherwise copies
// both ways (the sender's direction through the link's delay) until either
// side closes.
func (n *Net) forward(p *proxy, in net.Conn) {
	n.mu.Lock()
	addrs := append([]string(nil), n.addrs...)
	n.mu.Unlock()
	var head []byte
	src := clientsSide
	if !p.clients {
		head, src = peekSender(in, addrs, p.addr)
	}
	c := &proxyConn{src: src, dst: p.addr, in: in}
	out, err := net.DialTimeout("tcp", p.target, netDialTimeout)
	if err != nil {
		in.Close()
		return
	}
	c.out = out
	n.mu.Lock()
	open := !n.closed && !n.cut[link{c.src, c.dst}] && len(n.conns) < netMaxConns
	if open {
		n.conns[c] = true
	}
	n.mu.Unlock()
	if !open {
		c.close()
		return
	}
	defer func() {
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
		c.close()
	}()
	copied := make(chan struct{}, 2)
	go func() { n.copyDelayed(out, in, head, c.src, c.dst); copied <- struct{}{} }()
	go func() { io.Copy(in, out); copied <- struct{}{} }()
	<-copied // either direction ending ends the connection
}

// copyDelayed forwards head and then everything read from in to out,
// holding each chunk for the link's delay at the time it was read. Order
// is kept: a later, shorter delay waits behind an earlier, longer one.
func (n *Net) copyDelayed(out io.Writer, in io.Reader, head []byte, src, dst string) {
	type chunk struct {
		at time.Time
		b  []byte
	}
	queue := make(chan chunk, netDelayedChunk)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ch := range queue {
			time.Sleep(time.Until(ch.at))
			if _, err := out.Write(ch.b); err != nil {
				for range queue { // drain until the reader stops
				}
				return
			}
		}
	}()
	defer func() { close(queue); <-done }()
	queue <- chunk{at: time.Now().Add(n.delayOf(src, dst)), b: head}
	for {
		buf := make([]byte, netReadChunk)
		k, err := in.Read(buf)
		if k > 0 {
			queue <- chunk{at: time.Now().Add(n.delayOf(src, dst)), b: buf[:k]}
		}
		if err != nil {
			return
		}
	}
}

// peekSender reads from in until one of addrs (other than self) appears, or
// the byte or time bound passes; it returns what it read (to be forwarded
// first) and the sender ("" when not named).
func peekSender(in net.Conn, addrs []string, self string) ([]byte, string) {
	var head []byte
	buf := make([]byte, netReadChunk)
	_ = in.SetReadDeadline(time.Now().Add(netPeekTimeout))
	defer in.SetReadDeadline(time.Time{})
	for len(head) < netPeekBytes {
		k, err := in.Read(buf)
		head = append(head, buf[:k]...)
		for _, a := range addrs {
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
