package client

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func envelope(msg string) []byte {
	b := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

// A message written as connect-go writes it, prefix then message, is read
// whole; so is a message of no bytes, and the body's end comes after.
func TestWholeEnvelopesReadsAMessageWhole(t *testing.T) {
	pr, pw := io.Pipe()
	msgs := []string{"first message", "", "third"}
	go func() {
		for _, m := range msgs {
			e := envelope(m)
			_, _ = pw.Write(e[:5])
			if len(e) > 5 {
				_, _ = pw.Write(e[5:7])
				_, _ = pw.Write(e[7:])
			}
		}
		_ = pw.Close()
	}()
	w := &wholeEnvelopes{ReadCloser: pr}
	buf := make([]byte, 1024)
	for _, m := range msgs {
		n, err := w.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], envelope(m)) {
			t.Fatalf("Read = %q, %v; want %q", buf[:n], err, envelope(m))
		}
	}
	if n, err := w.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read at the end = %d, %v; want 0, EOF", n, err)
	}
}

// A message longer than the reader's buffer fills it, and the rest comes
// in the next reads; a prefix split across writes is followed too.
func TestWholeEnvelopesSmallBuffer(t *testing.T) {
	var body bytes.Buffer
	body.Write(envelope("0123456789"))
	body.Write(envelope("ab"))
	want := append([]byte(nil), body.Bytes()...)
	w := &wholeEnvelopes{ReadCloser: io.NopCloser(iotestOneByte{&body})}
	var got []byte
	buf := make([]byte, 4)
	for {
		n, err := w.Read(buf)
		got = append(got, buf[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("Read returned nothing and no error")
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if w.nprefix != 0 || w.rest != 0 {
		t.Fatalf("after the body: %d bytes of a prefix, %d of a message pending", w.nprefix, w.rest)
	}
}

// A body that fails in the middle of a message returns what it read with
// the error.
func TestWholeEnvelopesError(t *testing.T) {
	pr, pw := io.Pipe()
	boom := errors.New("boom")
	go func() {
		e := envelope("hello")
		_, _ = pw.Write(e[:7])
		pw.CloseWithError(boom)
	}()
	w := &wholeEnvelopes{ReadCloser: pr}
	buf := make([]byte, 64)
	n, err := w.Read(buf)
	if !errors.Is(err, boom) || !bytes.Equal(buf[:n], envelope("hello")[:7]) {
		t.Fatalf("Read = %q, %v; want the first 7 bytes and boom", buf[:n], err)
	}
}

// iotestOneByte reads one byte at a time.
type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func TestEnveloped(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/connect+proto":  true,
		"application/connect+json":   true,
		"application/grpc":           true,
		"application/grpc+proto":     true,
		"application/grpc-web+proto": true,
		"application/proto":          false,
		"application/json":           false,
		"":                           false,
	} {
		if got := enveloped(ct); got != want {
			t.Errorf("enveloped(%q) = %v, want %v", ct, got, want)
		}
	}
}
