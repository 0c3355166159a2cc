package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestUntrustedCertificateFailsAtOnce: a server certificate the client
// does not trust will not become trusted by retrying, so a call tries each
// endpoint once and fails saying why, instead of retrying as if the nodes
// were down until its retry timeout (the CLI took its full 10 s before it
// said anything). The retry timeout here is an hour: only the certificate
// rule can end the call before the test's own deadline.
func TestUntrustedCertificateFailsAtOnce(t *testing.T) {
	var handshakes atomic.Int32
	var urls []string
	for range 2 {
		ts := httptest.NewUnstartedServer(http.NotFoundHandler())
		ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				handshakes.Add(1)
			}
		}
		ts.StartTLS()
		t.Cleanup(ts.Close)
		urls = append(urls, ts.URL)
	}
	failsOnACertificate(t, "servers whose certificate the client does not trust", urls, &tls.Config{MinVersion: tls.VersionTLS12})
	if n := handshakes.Load(); n > 4 {
		t.Fatalf("%d connections for one call: it retried servers whose certificate will not do", n)
	}
}

// TestRefusedClientCertificateFailsAtOnce: a server that wants a client
// certificate the client does not have answers with a TLS alert, which
// arrives over TCP as a "remote error": not a node that is down either, so
// the call fails once every endpoint was tried, here one refusing and one
// down, instead of retrying until its retry timeout.
func TestRefusedClientCertificateFailsAtOnce(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: x509.NewCertPool()}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "https://" + down.Addr().String()
	down.Close()
	failsOnACertificate(t, "a server that wants a client certificate", []string{ts.URL, downURL},
		&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
}

// failsOnACertificate makes one call to urls with cfg and a retry timeout
// of an hour, and wants it to fail on a certificate well before the
// test's own deadline: only the certificate rule can end it that soon.
func failsOnACertificate(t *testing.T, servers string, urls []string, cfg *tls.Config) {
	t.Helper()
	c, err := client.New(urls, client.WithTLS(cfg), client.WithRetryTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.ClusterStatus(ctx)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a call to %s answered %v, want a certificate error before the deadline", servers, err)
	}
}
