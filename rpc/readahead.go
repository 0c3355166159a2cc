package rpc

import (
	"io"
)

// readAhead reads a session stream's body ahead, through a small buffer of
// the stream's own, when its reader asks for less than that. connect-go
// reads each stream message in two reads, its 5-byte prefix and then its
// bytes, and every read of an HTTP/2 request body that returns data is a
// hand-off to the connection's serve loop (net/http's noteBodyRead, for
// flow control): through readAhead a message that arrived whole, and fits
// the buffer, costs one such read, not two. A larger message costs the two
// it cost before: its prefix's read brings its first bytes, and the rest
// is read straight into connect-go's buffer.
//
// The buffer is the stream's own, not pooled: an idle stream's reader
// waits in a read for the next prefix, and a pooled buffer taken for that
// read would be held for as long as the stream is idle (up to the stream
// idle timeout), 16 KiB per stream with nothing to share. readAheadSize
// bytes per stream is what every stream costs, busy or idle, beside its
// handler goroutine's stack.
type readAhead struct {
	io.ReadCloser
	buf  [readAheadSize]byte
	r, w int   // the bytes read ahead, buf[r:w]
	err  error // the error of the read that filled buf, answered once buf is read
}

// readAheadSize holds a session stream's usual message (a few requests or
// answers, 80–300 bytes each) with its prefix.
const readAheadSize = 2 << 10

func (b *readAhead) Read(p []byte) (int, error) {
	if b.r < b.w {
		n := copy(p, b.buf[b.r:b.w])
		b.r += n
		if b.r < b.w {
			return n, nil
		}
		err := b.err
		b.err = nil
		return n, err
	}
	if len(p) >= readAheadSize {
		return b.ReadCloser.Read(p)
	}
	n, err := b.ReadCloser.Read(b.buf[:])
	c := copy(p, b.buf[:n])
	if c == n {
		return c, err
	}
	b.r, b.w, b.err = c, n, err
	return c, nil
}
