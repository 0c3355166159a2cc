package client

import (
	"encoding/binary"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
)

// connect-go sends a stream message as two writes into the request's body
// pipe, the envelope's 5-byte prefix and then the message, and Go's HTTP/2
// client reads that pipe a write at a time, sending each read as a DATA
// frame of its own and flushing it: two frames per message, two write
// system calls when the first leaves before the second is written, and a
// wake-up of the server's reader and handler for 5 bytes that say only how
// many follow. wholeMessages hands the HTTP/2 client each stream message
// whole: the body's reads go on past a prefix to the end of its message
// (which its writer is already writing), so a message is one frame, one
// flush and one write.

// wholeMessages is a connect.HTTPClient whose streaming requests' bodies
// are read a whole message at a time.
type wholeMessages struct{ connect.HTTPClient }

func (w wholeMessages) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody && enveloped(req.Header.Get("Content-Type")) {
		req.Body = &wholeEnvelopes{ReadCloser: req.Body}
	}
	return w.HTTPClient.Do(req)
}

// enveloped says whether a body of this content type is a sequence of
// enveloped messages (Connect's streaming protocol, gRPC, gRPC-Web), each a
// flag byte, a 4-byte big-endian length and the message.
func enveloped(contentType string) bool {
	return strings.HasPrefix(contentType, "application/connect+") ||
		strings.HasPrefix(contentType, "application/grpc")
}

// wholeEnvelopes reads a body of enveloped messages so that a read that
// has begun a message returns only once it has the whole of it, or its
// buffer is full, or the body ended or failed.
type wholeEnvelopes struct {
	io.ReadCloser
	prefix  [5]byte // the current envelope's prefix, while read in part
	nprefix int     // how much of prefix is read
	rest    uint64  // bytes of the current message not yet read
}

func (w *wholeEnvelopes) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := w.ReadCloser.Read(p[n:])
		w.track(p[n : n+m])
		n += m
		if err != nil {
			return n, err
		}
		if w.nprefix == 0 && w.rest == 0 && n > 0 {
			return n, nil // at a message's end
		}
	}
	return n, nil
}

// track follows the envelopes through b, the next bytes of the body.
func (w *wholeEnvelopes) track(b []byte) {
	for len(b) > 0 {
		if w.rest > 0 {
			k := uint64(len(b))
			if k > w.rest {
				k = w.rest
			}
			w.rest -= k
			b = b[k:]
			continue
		}
		k := copy(w.prefix[w.nprefix:], b)
		w.nprefix += k
		b = b[k:]
		if w.nprefix == len(w.prefix) {
			w.rest = uint64(binary.BigEndian.Uint32(w.prefix[1:]))
			w.nprefix = 0
		}
	}
}
