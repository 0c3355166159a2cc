package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// Every session of a Client streams over one HTTP/2 connection per endpoint,
// and Go's HTTP/2 client writes each stream message with a write system
// call of its own, under the connection's write lock. On loopback and on a
// virtual machine that call is dear (it runs the receiver's TCP path and
// wakes its reader): it was a quarter of the Go client's CPU at 64 workers
// (docs/performance.md). batchedConn takes the connection's writes into a
// buffer and one goroutine sends them: a write made while the previous one
// is still in the kernel goes out with the others made meanwhile, in one
// call, and the caller does not wait for the kernel to let go of the write
// lock. A lone write goes out at once, as before.

// maxBatchedBytes bounds what batchedConn holds unsent: past it a write
// waits for the sender, so a peer that stops reading stops the writers as
// TCP's own buffers would.
const maxBatchedBytes = 1 << 20

// batchedConn is a net.Conn whose writes go out through one sender.
type batchedConn struct {
	net.Conn

	mu      sync.Mutex
	room    *sync.Cond // signalled when the sender takes what is held
	pending []byte     // written, not yet handed to the kernel
	spare   []byte     // the sender's last batch, reused for the next
	sending bool       // the sender has work or is in a write
	err     error      // the write that failed, or the close: every later write fails with it

	kick chan struct{} // wakes the sender; buffered 1
	shut chan struct{} // closed by Close: the sender ends
	once sync.Once
}

// errConnClosed is what a write after Close answers: net.ErrClosed, as a
// closed socket's write does, so that net/http tells it apart the same way.
var errConnClosed = fmt.Errorf("lockstep: batched connection: %w", net.ErrClosed)

func newBatchedConn(c net.Conn) *batchedConn {
	b := &batchedConn{Conn: c, kick: make(chan struct{}, 1), shut: make(chan struct{})}
	b.room = sync.NewCond(&b.mu)
	go b.send()
	return b
}

// streamDialer dials the session streams' connections.
var streamDialer = &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

// dialBatched dials a session streams' connection and batches its writes.
func dialBatched(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := streamDialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newBatchedConn(c), nil
}

// Write holds p for the sender. It fails once a write has failed or the
// connection is closed; bytes it took before that may be lost with the
// connection, as bytes in a socket's buffer are.
func (b *batchedConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.pending) >= maxBatchedBytes {
		b.room.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	b.pending = append(b.pending, p...)
	if !b.sending {
		b.sending = true
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// send hands what is held to the kernel, all of it in one write each time,
// until the connection fails or is closed.
func (b *batchedConn) send() {
	for {
		select {
		case <-b.kick:
		case <-b.shut:
			return
		}
		for {
			b.mu.Lock()
			if b.err != nil || len(b.pending) == 0 {
				b.sending = false
				b.mu.Unlock()
				break
			}
			batch := b.pending
			b.pending = b.spare[:0]
			b.room.Broadcast()
			b.mu.Unlock()

			_, err := b.Conn.Write(batch)

			b.mu.Lock()
			b.spare = batch[:0]
			if err != nil && b.err == nil {
				b.err = err
				b.pending = nil
				b.room.Broadcast()
			}
			b.mu.Unlock()
			if err != nil {
				// The reader learns of it from the socket, and the HTTP/2
				// client fails the connection's streams; they are resent.
				_ = b.Conn.Close()
			}
		}
	}
}

// Close closes the connection; what is held and not yet sent is dropped.
func (b *batchedConn) Close() error {
	b.once.Do(func() {
		b.mu.Lock()
		if b.err == nil {
			b.err = errConnClosed
		}
		b.pending = nil
		b.room.Broadcast()
		b.mu.Unlock()
		close(b.shut)
	})
	return b.Conn.Close()
}
