package rpc_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/rpc"
)

// lockedBuffer is a log sink that the server's goroutines write to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestHandshakeFailuresLogAtDebug: a client that drops its connection
// mid-handshake (as the CLI does with the endpoints that did not answer
// first) is one client's affair: the API server logs it at DEBUG, not at
// WARN, which the operations guide keeps for what an operator can act on.
func TestHandshakeFailuresLogAtDebug(t *testing.T) {
	certs := httptest.NewUnstartedServer(http.NotFoundHandler())
	certs.StartTLS()
	cfg := certs.TLS.Clone()
	certs.Close()

	var out lockedBuffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewHTTPServer(ln.Addr().String(), http.NotFoundHandler(), log)
	rpc.UseTLS(srv, cfg)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Shutdown(context.Background())

	// A ClientHello's first bytes, then gone.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x40})
	c.Close()

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "TLS handshake error") {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake error logged; the log has %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(line, "TLS handshake error") && !strings.Contains(line, "level=DEBUG") {
			t.Fatalf("a client's failed handshake logged above DEBUG: %s", line)
		}
	}
}

// TestPrefaceDropsLogAtDebug: a client gone after its TLS handshake but
// before its HTTP/2 preface (the CLI dropping the endpoints that did not
// answer first) logs at DEBUG, as a failed handshake does; other HTTP/2
// server errors stay at WARN.
func TestPrefaceDropsLogAtDebug(t *testing.T) {
	var out lockedBuffer
	l := rpc.ServerErrorLog(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Print(`http2: server: error reading preface from client 127.0.0.1:51234: read tcp 127.0.0.1:8080->127.0.0.1:51234: read: connection reset by peer`)
	l.Print(`http2: server: error reading preface from client 127.0.0.1:51235: EOF`)
	l.Print(`http2: server connection error from 127.0.0.1:51236: connection error: PROTOCOL_ERROR`)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "level=DEBUG") || !strings.Contains(lines[1], "level=DEBUG") ||
		!strings.Contains(lines[2], "level=WARN") {
		t.Fatalf("the server's error log:\n%s\nwant the two preface drops at DEBUG, the protocol error at WARN", out.String())
	}
}
