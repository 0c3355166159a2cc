package cluster

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer stands in for a node's Raft listener: it sends back what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// batchFrom is what a Dragonboat sender writes first, reduced to what the
// proxy looks at: the sender's raft address with its protobuf length byte.
func batchFrom(src string) []byte {
	return append(append([]byte{0x0a, byte(len(src))}, src...), []byte("payload")...)
}

// dialAs connects to a node's proxy as the node at src and reports whether
// its first message comes back through the proxy.
func dialAs(t *testing.T, src, dst string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msg := batchFrom(src)
	if _, err := c.Write(msg); err != nil {
		return c, false
	}
	return c, echoes(c, msg, 10*time.Second)
}

// echoes reports whether msg comes back on c within limit (false on EOF,
// reset or the limit).
func echoes(c net.Conn, msg []byte, limit time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return false
	}
	return bytes.Equal(got, msg)
}

// threeProxies returns a Net with three proxies in front of echo servers,
// and nodes naming their raft addresses.
func threeProxies(t *testing.T) (*Net, []*Node) {
	t.Helper()
	n := newNet()
	t.Cleanup(n.Close)
	var nodes []*Node
	for i := range 3 {
		a, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.add(string(rune('1'+i)), a, echoServer(t)); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &Node{Raft: a})
	}
	return n, nodes
}

func TestNetIsolatesOneNodeBothWaysAndHeals(t *testing.T) {
	n, nd := threeProxies(t)
	a1, a2, a3 := nd[0].Raft, nd[1].Raft, nd[2].Raft
	c12, ok := dialAs(t, a1, a2)
	if !ok {
		t.Fatal("node 1 → node 2 not forwarded before any partition")
	}
	c23, ok := dialAs(t, a2, a3)
	if !ok {
		t.Fatal("node 2 → node 3 not forwarded before any partition")
	}
	n.Isolate(nd[0])
	_, _ = c12.Write([]byte("more")) // may fail: the proxy closed it
	if echoes(c12, []byte("more"), 2*time.Second) {
		t.Error("node 1's open connection to node 2 still forwards after node 1 was isolated")
	}
	if _, err := c23.Write([]byte("more")); err != nil || !echoes(c23, []byte("more"), 10*time.Second) {
		t.Error("node 2 → node 3 was cut, but only node 1 is isolated")
	}
	if _, ok := dialAs(t, a2, a1); ok {
		t.Error("a new connection to the isolated node was forwarded")
	}
	if _, ok := dialAs(t, a1, a3); ok {
		t.Error("a new connection from the isolated node was forwarded")
	}
	if _, ok := dialAs(t, a3, a2); !ok {
		t.Error("node 3 → node 2 refused, but only node 1 is isolated")
	}
	n.Heal()
	if _, ok := dialAs(t, a1, a2); !ok {
		t.Error("node 1 → node 2 still refused after heal")
	}
	if _, ok := dialAs(t, a3, a1); !ok {
		t.Error("node 3 → node 1 still refused after heal")
	}
}

func TestNetCutsOneWay(t *testing.T) {
	n, nd := threeProxies(t)
	n.CutOneWay(nd[0], nd[1])
	if _, ok := dialAs(t, nd[0].Raft, nd[1].Raft); ok {
		t.Error("node 1 → node 2 forwarded after a one-way cut of it")
	}
	if _, ok := dialAs(t, nd[1].Raft, nd[0].Raft); !ok {
		t.Error("node 2 → node 1 refused, but only node 1 → node 2 was cut")
	}
	if _, ok := dialAs(t, nd[0].Raft, nd[2].Raft); !ok {
		t.Error("node 1 → node 3 refused, but only node 1 → node 2 was cut")
	}
}

func TestNetDelays(t *testing.T) {
	n, nd := threeProxies(t)
	const d = 300 * time.Millisecond
	n.Delay(nd[0], nd[1], d)
	start := time.Now()
	if _, ok := dialAs(t, nd[0].Raft, nd[1].Raft); !ok {
		t.Fatal("a delayed link lost the message")
	}
	if took := time.Since(start); took < d {
		t.Errorf("a link delayed by %v answered in %v", d, took)
	}
}

func TestPeekSenderNamesTheExactAddress(t *testing.T) {
	short, long := "127.0.0.1:4123", "127.0.0.1:41234"
	for _, tc := range []struct{ sender, want string }{{long, long}, {short, short}, {"127.0.0.1:9999", ""}} {
		a, b := net.Pipe()
		go func() { b.Write(batchFrom(tc.sender)); b.Close() }()
		head, got := peekSender(a, []string{short, long}, "127.0.0.1:1")
		if got != tc.want {
			t.Errorf("sender %s: named %q, want %q", tc.sender, got, tc.want)
		}
		if !bytes.Equal(head, batchFrom(tc.sender)) {
			t.Errorf("sender %s: kept %q, want every byte read", tc.sender, head)
		}
		a.Close()
	}
}

// FreePort must never name one address twice in a process, even when the
// kernel hands a just-closed port back at once.
func TestFreePortNeverRepeatsAnAddress(t *testing.T) {
	seen := make(map[string]bool)
	for range 200 {
		a, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("FreePort handed out %s twice", a)
		}
		seen[a] = true
	}
}

// A node's API proxy: CutClients drops its open client connections and
// refuses new ones while another node's clients go on; DelayClients holds
// each request for the delay; Heal restores both.
func TestNetCutsAndDelaysClients(t *testing.T) {
	n := newNet()
	t.Cleanup(n.Close)
	var nodes []*Node
	for range 2 {
		a, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if err := n.addClients(a, echoServer(t)); err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &Node{API: a})
	}
	msg := []byte("GET /health")
	dial := func(nd *Node) net.Conn {
		c, err := net.Dial("tcp", nd.API)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c0, c1 := dial(nodes[0]), dial(nodes[1])
	for i, c := range []net.Conn{c0, c1} {
		if _, err := c.Write(msg); err != nil || !echoes(c, msg, 5*time.Second) {
			t.Fatalf("node %d's client not forwarded before any cut", i)
		}
	}
	n.CutClients(nodes[0])
	_, _ = c0.Write(msg) // may fail: the proxy closed it
	if echoes(c0, msg, 2*time.Second) {
		t.Error("a client's open connection still forwards after CutClients")
	}
	if c := dial(nodes[0]); func() bool { _, _ = c.Write(msg); return echoes(c, msg, 2*time.Second) }() {
		t.Error("a new client connection forwards while its node's clients are cut")
	}
	if _, err := c1.Write(msg); err != nil || !echoes(c1, msg, 5*time.Second) {
		t.Error("the other node's client was cut too")
	}
	n.Heal()
	n.DelayClients(nodes[1], 300*time.Millisecond)
	start := time.Now()
	if _, err := c1.Write(msg); err != nil || !echoes(c1, msg, 5*time.Second) {
		t.Fatal("a delayed client's request was lost")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a request through a 300 ms client delay echoed after %v", d)
	}
	n.Heal()
	if c := dial(nodes[0]); !func() bool { _, _ = c.Write(msg); return echoes(c, msg, 5*time.Second) }() {
		t.Error("a new client connection does not forward after Heal")
	}
}
