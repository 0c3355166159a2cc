package main

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

// dialAs connects to a node's proxy as the node at src and checks that its
// first message comes back through the proxy.
func dialAs(t *testing.T, src, dst string) (net.Conn, bool) {
	t.Helper()
	c, err := net.Dial("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	msg := batchFrom(src)
	if _, err := c.Write(msg); err != nil {
		return c, false
	}
	return c, echoes(c, msg)
}

// echoes reports whether msg comes back on c (false on EOF or reset).
func echoes(c net.Conn, msg []byte) bool {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return false
	}
	return bytes.Equal(got, msg)
}

func TestRaftNetIsolatesOneNodeBothWaysAndHeals(t *testing.T) {
	n := newRaftNet()
	defer n.close()
	var addrs []string
	for range 3 {
		a := freePort()
		if err := n.add(a, echoServer(t)); err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, a)
	}
	a1, a2, a3 := addrs[0], addrs[1], addrs[2]

	c12, ok := dialAs(t, a1, a2)
	if !ok {
		t.Fatal("node 1 → node 2 not forwarded before any partition")
	}
	c23, ok := dialAs(t, a2, a3)
	if !ok {
		t.Fatal("node 2 → node 3 not forwarded before any partition")
	}

	n.isolate(a1)
	_, _ = c12.Write([]byte("more")) // may fail: the proxy closed it
	if echoes(c12, []byte("more")) {
		t.Error("node 1's open connection to node 2 still forwards after node 1 was isolated")
	}
	if _, err := c23.Write([]byte("more")); err != nil || !echoes(c23, []byte("more")) {
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

	n.heal()
	if _, ok := dialAs(t, a1, a2); !ok {
		t.Error("node 1 → node 2 still refused after heal")
	}
	if _, ok := dialAs(t, a3, a1); !ok {
		t.Error("node 3 → node 1 still refused after heal")
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
