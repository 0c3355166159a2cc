package rpc

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// countingReader counts the reads that reach it.
type countingReader struct {
	io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.Reader.Read(p)
}

// A prefix's read brings the whole message along: its next read reaches
// nothing below, and what follows (the end) is answered in turn.
func TestReadAheadReadsAMessageOnce(t *testing.T) {
	msg := []byte("\x00\x00\x00\x00\x0bhello world")
	under := &countingReader{Reader: bytes.NewReader(msg)}
	b := &readAhead{ReadCloser: io.NopCloser(under)}
	var prefix [5]byte
	if _, err := io.ReadFull(b, prefix[:]); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, 11)
	if _, err := io.ReadFull(b, rest); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(prefix[:], rest...), msg) {
		t.Fatalf("read %q, want %q", append(prefix[:], rest...), msg)
	}
	if under.reads != 1 {
		t.Fatalf("%d reads reached the body, want 1", under.reads)
	}
	if b.r != b.w {
		t.Fatal("bytes are still buffered after the message was read")
	}
	if n, err := b.Read(rest); n != 0 || err != io.EOF {
		t.Fatalf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
}

// The error of the read that filled the buffer comes after its bytes;
// a read of a buffer's worth or more goes straight to the body.
func TestReadAheadErrorAfterBytes(t *testing.T) {
	boom := errors.New("boom")
	b := &readAhead{ReadCloser: io.NopCloser(&oneShot{data: []byte("abcdef"), err: boom})}
	p := make([]byte, 4)
	if n, err := b.Read(p); n != 4 || err != nil || string(p) != "abcd" {
		t.Fatalf("first Read = %d %q, %v; want 4 \"abcd\", nil", n, p[:n], err)
	}
	if n, err := b.Read(p); n != 2 || !errors.Is(err, boom) || string(p[:2]) != "ef" {
		t.Fatalf("second Read = %d %q, %v; want 2 \"ef\", boom", n, p[:n], err)
	}
	big := make([]byte, readAheadSize)
	under := &countingReader{Reader: bytes.NewReader([]byte("xyz"))}
	b = &readAhead{ReadCloser: io.NopCloser(under)}
	if n, err := b.Read(big); n != 3 || err != nil || b.r != b.w {
		t.Fatalf("a large Read = %d, %v (bytes buffered: %d); want 3, nil, none", n, err, b.w-b.r)
	}
}

// oneShot answers its data and its error in one read.
type oneShot struct {
	data []byte
	err  error
}

func (o *oneShot) Read(p []byte) (int, error) {
	n := copy(p, o.data)
	o.data = o.data[n:]
	return n, o.err
}

// waitingBody answers nothing until released, recording the size of the
// buffer its read waits on: an idle session stream's body.
type waitingBody struct {
	lens    chan int
	release chan struct{}
}

func (b *waitingBody) Read(p []byte) (int, error) {
	b.lens <- len(p)
	<-b.release
	return 0, io.EOF
}
func (b *waitingBody) Close() error { return nil }

// An idle stream's reader waits for the next prefix in the stream's own
// small buffer: no buffer is taken for as long as it waits (a pooled 16 KiB
// one was, for every idle stream), and a message larger than the buffer is
// read straight into the reader's.
func TestReadAheadIdleStreamWaitsInItsOwnBuffer(t *testing.T) {
	body := &waitingBody{lens: make(chan int, 1), release: make(chan struct{})}
	b := &readAhead{ReadCloser: body}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var prefix [5]byte
		_, _ = b.Read(prefix[:])
	}()
	if held := <-body.lens; held > readAheadSize {
		t.Fatalf("an idle stream's read waits on a %d-byte buffer, more than its own %d", held, readAheadSize)
	}
	close(body.release)
	<-done
	large := make([]byte, readAheadSize+1)
	under := &countingReader{Reader: bytes.NewReader(large)}
	b = &readAhead{ReadCloser: io.NopCloser(under)}
	if n, err := b.Read(large); n != len(large) || err != nil || b.w != 0 {
		t.Fatalf("a read larger than the buffer = %d, %v, with %d bytes buffered; want it straight through", n, err, b.w)
	}
}
