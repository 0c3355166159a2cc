package rpc

import (
	"io"
	"sync"
)

// readAhead reads a session stream's body ahead, through a pooled buffer,
// when its reader asks for less than a buffer's worth. connect-go reads
// each stream message in two reads, its 5-byte prefix and then its bytes,
// and every read of an HTTP/2 request body that returns data is a
// hand-off to the connection's serve loop (net/http's noteBodyRead, for
// flow control): through readAhead a message that arrived whole costs one
// such read, not two. The buffer is held only while it has bytes not yet
// read, from a prefix's read to its message's, so an idle stream holds
// none.
type readAhead struct {
	io.ReadCloser
	buf  *[]byte // the bytes read ahead, buf[r:w]; nil when there are none
	r, w int
	err  error // the error of the read that filled buf, answered once buf is read
}

// readAheadSize is the buffer's size: HTTP/2's default largest frame, so
// that a message of a frame is read whole.
const readAheadSize = 16 << 10

var readAheadBufs = sync.Pool{New: func() any { b := make([]byte, readAheadSize); return &b }}

func (b *readAhead) Read(p []byte) (int, error) {
	if b.buf != nil {
		n := copy(p, (*b.buf)[b.r:b.w])
		b.r += n
		if b.r < b.w {
			return n, nil
		}
		readAheadBufs.Put(b.buf)
		b.buf = nil
		err := b.err
		b.err = nil
		return n, err
	}
	if len(p) >= readAheadSize {
		return b.ReadCloser.Read(p)
	}
	buf := readAheadBufs.Get().(*[]byte)
	n, err := b.ReadCloser.Read(*buf)
	c := copy(p, (*buf)[:n])
	if c == n {
		readAheadBufs.Put(buf)
		return c, err
	}
	b.buf, b.r, b.w, b.err = buf, c, n, err
	return c, nil
}
