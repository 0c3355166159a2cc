package rpc

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"connectrpc.com/connect"
)

// errInflatesPastLimit ends the inflation of a message that grows past
// the request size limit.
var errInflatesPastLimit = errors.New("the message inflates past the request size limit: inflation stopped there")

// boundedGunzip is gzip for Connect's and gRPC's request messages that
// stops inflating one past the size limit. connect-go inflates a message
// over its limit to the end, to report its size: a 1 MB gzip bomb cost a
// quarter of a CPU second before its refusal, unauthenticated (a
// reviewer's six clients slowed a status call tenfold). REST bodies are
// bounded the same way by readRESTBody.
type boundedGunzip struct {
	gz    gzip.Reader
	limit int64 // bytes given per message before errInflatesPastLimit
	left  int64
}

func (d *boundedGunzip) Read(p []byte) (int, error) {
	if d.left <= 0 {
		return 0, errInflatesPastLimit
	}
	if int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n, err := d.gz.Read(p)
	d.left -= int64(n)
	return n, err
}

func (d *boundedGunzip) Reset(r io.Reader) error {
	d.left = d.limit
	return d.gz.Reset(r)
}

func (d *boundedGunzip) Close() error { return d.gz.Close() }

// boundedGzip replaces connect-go's gzip with one whose inflation of a
// request message stops one byte past maxBytes (which connect-go reads to
// tell the message is too large).
func boundedGzip(maxBytes int64) connect.HandlerOption {
	if maxBytes <= 0 {
		panic(fmt.Sprintf("rpc: request size limit %d: it must be positive", maxBytes))
	}
	return connect.WithCompression("gzip",
		func() connect.Decompressor { return &boundedGunzip{limit: maxBytes + 1} },
		func() connect.Compressor { return gzip.NewWriter(nil) })
}
