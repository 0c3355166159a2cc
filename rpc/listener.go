package rpc

import (
	"bufio"
	"net"
)

// Go's HTTP/2 server reads frames straight from the connection it is given:
// each frame costs two read system calls (its 9-byte header, then its
// payload), and a Connect call is at least a HEADERS and a DATA frame. Over
// TLS the tls.Conn buffers whole records; over h2c, as Lockstep serves, it
// was the raw TCP connection, and reads were ~11% of the leader's CPU at 64
// clients (docs/performance.md). BufferedListener puts a read buffer under
// each connection, so that one read system call takes every frame that has
// arrived.

// connReadBufferBytes is each connection's read buffer: a burst of a few
// dozen small calls' frames.
const connReadBufferBytes = 8 << 10

// BufferedListener returns ln with a read buffer on every connection it
// accepts. Serve the API server (NewHTTPServer) on it.
func BufferedListener(ln net.Listener) net.Listener { return bufferedListener{ln} }

type bufferedListener struct{ net.Listener }

func (l bufferedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, connReadBufferBytes)}, nil
}

// bufferedConn reads through r; everything else (writes, deadlines, close)
// goes to the connection.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes a TCP connection, as net/http does before it
// closes an HTTP/1.1 connection (so that the client reads the last reply
// rather than a reset); without it the wrapper would hide the TCP
// connection's.
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
