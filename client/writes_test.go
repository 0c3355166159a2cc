package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// slowConn is a connection whose writes wait to be let through one by one,
// recording what each carried.
type slowConn struct {
	net.Conn // nil: only Write and Close are used
	entered  chan []byte
	release  chan error // what the write in progress answers
	mu       sync.Mutex
	closed   bool
}

func newSlowConn() *slowConn {
	return &slowConn{entered: make(chan []byte, 16), release: make(chan error)}
}

func (c *slowConn) Write(p []byte) (int, error) {
	c.entered <- bytes.Clone(p)
	if err := <-c.release; err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *slowConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *slowConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// next waits for the sender to start a write and answers what it carries.
func (c *slowConn) next(t *testing.T) []byte {
	t.Helper()
	select {
	case p := <-c.entered:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("the sender did not write within 5 s")
		return nil
	}
}

func write(t *testing.T, b *batchedConn, s string) {
	t.Helper()
	if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestBatchedConnSendsWritesMadeDuringAWriteTogether(t *testing.T) {
	slow := newSlowConn()
	b := newBatchedConn(slow)
	defer b.Close()
	write(t, b, "a")
	if got := slow.next(t); string(got) != "a" {
		t.Fatalf("first write carried %q, want %q", got, "a")
	}
	// The sender is in the kernel with "a": these return at once and wait.
	write(t, b, "b")
	write(t, b, "c")
	write(t, b, "d")
	slow.release <- nil
	if got := slow.next(t); string(got) != "bcd" {
		t.Fatalf("the writes made during the first went out as %q, want one write of %q", got, "bcd")
	}
	slow.release <- nil
	write(t, b, "e")
	if got := slow.next(t); string(got) != "e" {
		t.Fatalf("a lone write carried %q, want %q", got, "e")
	}
	slow.release <- nil
}

func TestBatchedConnFailsWritesAfterAFailedOne(t *testing.T) {
	slow := newSlowConn()
	b := newBatchedConn(slow)
	defer b.Close()
	write(t, b, "a")
	slow.next(t)
	broken := errors.New("connection reset")
	slow.release <- broken
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.Write([]byte("b"))
		if errors.Is(err, broken) {
			break
		}
		if err != nil {
			t.Fatalf("Write after a failed write = %v, want %v", err, broken)
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed 5 s after the connection's write failed")
		}
		time.Sleep(time.Millisecond)
	}
	if !slow.isClosed() {
		t.Fatal("the connection was not closed after its write failed, so its reader would not learn of it")
	}
}

func TestBatchedConnBoundsWhatItHolds(t *testing.T) {
	slow := newSlowConn()
	b := newBatchedConn(slow)
	defer b.Close()
	write(t, b, "a")
	slow.next(t) // the sender is stuck in the kernel from here on
	write(t, b, string(make([]byte, maxBatchedBytes)))
	returned := make(chan error, 1)
	go func() {
		_, err := b.Write([]byte("over"))
		returned <- err
	}()
	select {
	case err := <-returned:
		t.Fatalf("a write past maxBatchedBytes returned (%v) while the sender was stuck: nothing bounds what is held", err)
	case <-time.After(50 * time.Millisecond):
	}
	slow.release <- nil // the sender takes the held megabyte: room again
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("the held write failed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held write did not return 5 s after the sender took what was held")
	}
	if got := slow.next(t); len(got) != maxBatchedBytes {
		t.Fatalf("the second write carried %d bytes, want the held %d", len(got), maxBatchedBytes)
	}
	slow.release <- nil
	if got := slow.next(t); string(got) != "over" {
		t.Fatalf("the third write carried %q, want %q", got, "over")
	}
	slow.release <- nil
}

func TestBatchedConnRefusesWritesAfterClose(t *testing.T) {
	slow := newSlowConn()
	b := newBatchedConn(slow)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write([]byte("a")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close = %v, want %v", err, errConnClosed)
	}
	if !slow.isClosed() {
		t.Fatal("Close did not close the connection")
	}
}

// Over real TCP, writers at once: every record arrives whole, in each
// writer's order.
func TestBatchedConnKeepsEveryWriteWholeAndInOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const writers, records, size = 16, 300, 64
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		all, _ := io.ReadAll(io.LimitReader(c, writers*records*size))
		got <- all
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchedConn(raw)
	defer b.Close()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := make([]byte, size)
			for i := range records {
				binary.BigEndian.PutUint32(rec[0:], uint32(w))
				binary.BigEndian.PutUint32(rec[4:], uint32(i))
				for j := 8; j < size; j++ {
					rec[j] = byte(w + i + j)
				}
				if _, err := b.Write(rec); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var all []byte
	select {
	case all = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader did not get every byte within 10 s")
	}
	if len(all) != writers*records*size {
		t.Fatalf("read %d bytes, want %d", len(all), writers*records*size)
	}
	next := make([]int, writers)
	for off := 0; off < len(all); off += size {
		rec := all[off : off+size]
		w, i := int(binary.BigEndian.Uint32(rec[0:])), int(binary.BigEndian.Uint32(rec[4:]))
		if w >= writers || i != next[w] {
			t.Fatalf("record at byte %d is writer %d's #%d, want its #%d: writes were split or reordered", off, w, i, next[min(w, writers-1)])
		}
		for j := 8; j < size; j++ {
			if rec[j] != byte(w+i+j) {
				t.Fatalf("writer %d's record #%d is torn at byte %d", w, i, j)
			}
		}
		next[w]++
	}
}
