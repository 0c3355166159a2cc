package transport

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// loopback returns both ends of a TCP connection on 127.0.0.1, closed when
// the test ends.
func loopback(t *testing.T) (ours, theirs net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ours, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	theirs = <-accepted
	if theirs == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ours.Close(); theirs.Close() })
	return ours, theirs
}

// TestSendMarksThePeersReset: a send on a connection the peer reset (a
// restarted peer's socket closes with our unread frames in it) fails, and
// marks the connection as ended by the peer, so that the close Dragonboat
// makes of it next is counted as the peer's end (TestCloseAfterAResetIsThe
// PeersEnd).
func TestSendMarksThePeersReset(t *testing.T) {
	ours, theirs := loopback(t)
	_ = theirs.(*net.TCPConn).SetLinger(0)
	theirs.Close() // a reset
	// Wait for the reset to arrive; the read takes its error, so the send
	// below finds the socket closed (EPIPE), as a sender does whose
	// watcher read first.
	_ = ours.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := ours.Read(make([]byte, 1)); err == nil {
		t.Fatal("read a byte from a connection the peer reset")
	}
	obs := newRecorder()
	c := &Connection{t: &TCP{obs: obs}, target: "peer", ended: new(atomic.Bool), reset: new(atomic.Bool),
		w: frameWriter{conn: ours, peer: "peer", obs: obs}}
	err := c.SendMessageBatch(sampleBatch(1, 10))
	if err == nil {
		t.Fatal("a send to a peer that reset the connection succeeded")
	}
	if !c.reset.Load() {
		t.Fatalf("the send failed with %v but did not mark the connection as ended by the peer", err)
	}

	// A send that fails for another reason (here, the connection closed
	// by its owner) is not the peer's doing.
	mine, _ := loopback(t)
	mine.Close()
	c = &Connection{t: &TCP{obs: obs}, target: "peer", ended: new(atomic.Bool), reset: new(atomic.Bool),
		w: frameWriter{conn: mine, peer: "peer", obs: obs}}
	if err := c.SendMessageBatch(sampleBatch(1, 10)); err == nil || c.reset.Load() {
		t.Fatalf("a send on a connection closed here: %v, marked as the peer's end: %v", err, c.reset.Load())
	}
}

// TestCloseAfterAResetIsThePeersEnd: the watcher counts a connection its
// owner closed as ended by the peer when a send had found the peer's
// reset, and an owner's close alone not at all. Under load, the failed
// send's close reached the watcher's read before the reset did, and a
// restarted peer was not counted (TestRaftPeerMetrics, "the others count
// the restarted peer's disconnect": a send failure, no disconnect).
func TestCloseAfterAResetIsThePeersEnd(t *testing.T) {
	for _, reset := range []bool{true, false} {
		ours, _ := loopback(t) // the peer stays: only the owner's close ends the read
		ended, marked := new(atomic.Bool), new(atomic.Bool)
		marked.Store(reset)
		var ends atomic.Int32
		done := make(chan struct{})
		go func() {
			watch(ours, ended, marked, func() { ends.Add(1) }, func(*bufio.Reader) {})
			close(done)
		}()
		ours.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher did not end when its connection was closed")
		}
		want := int32(0)
		if reset {
			want = 1
		}
		if got := ends.Load(); got != want || !ended.Load() {
			t.Errorf("a send had found a reset: %v; the peer's end counted %d times (want %d), ended %v", reset, got, want, ended.Load())
		}
	}
}
