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
	"sync"
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
	c := failsOnACertificate(t, "servers whose certificate the client does not trust", urls, &tls.Config{MinVersion: tls.VersionTLS12})
	if n := handshakes.Load(); n > 4+2 { // and one each for the first call's health asks (contact.go)
		t.Fatalf("%d connections for one call: it retried servers whose certificate will not do", n)
	}
	streamsEndSaying(t, c, "servers whose certificate the client does not trust", "certificate")
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
	c := failsOnACertificate(t, "a server that wants a client certificate", []string{ts.URL, downURL},
		&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	streamsEndSaying(t, c, "a server that wants a client certificate and one down", "certificate")
}

// failsOnACertificate makes one call to urls with cfg and a retry timeout
// of an hour, and wants it to fail on a certificate well before the
// test's own deadline: only the certificate rule can end it that soon.
func failsOnACertificate(t *testing.T, servers string, urls []string, cfg *tls.Config) *client.Client {
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
	return c
}

// streamsEndSaying checks that a Watch and an Observe of c end, before the
// test's deadline, with an error that says want: they reopened on the next
// endpoint for ever when every endpoint refused them in TLS, where a call
// failed at once.
func streamsEndSaying(t *testing.T, c *client.Client, servers, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last client.WatchResponse
	for r := range c.Watch(ctx, "jobs/") {
		last = r
	}
	if last.Err == nil || !strings.Contains(last.Err.Error(), want) {
		t.Fatalf("a watch of %s ended with %v (ctx %v), want an error saying %q before the deadline", servers, last.Err, ctx.Err(), want)
	}
	var leader client.Leader
	for l := range c.Observe(ctx, "scheduler") {
		leader = l
	}
	if leader.Err == nil || !strings.Contains(leader.Err.Error(), want) {
		t.Fatalf("an observation of %s ended with %v (ctx %v), want an error saying %q before the deadline", servers, leader.Err, ctx.Err(), want)
	}
}

// TestHTTPSToPlaintextFailsAtOnce: an https:// endpoint whose server does
// not speak TLS (it answers in plain HTTP, or in whatever else it speaks:
// Go's "tls: first record does not look like a TLS handshake") will not
// start to by retrying, so the call fails at once saying to use http://
// or enable TLS on the server; it was retried as unavailable for the
// whole retry timeout. Here the retry timeout is an hour, and a second
// endpoint is down: each is tried once.
func TestHTTPSToPlaintextFailsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		server string
		start  func(t *testing.T, conns *atomic.Int32) string // its address
	}{
		{"plain HTTP", func(t *testing.T, conns *atomic.Int32) string {
			ts := httptest.NewUnstartedServer(http.NotFoundHandler())
			ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			ts.Start()
			t.Cleanup(ts.Close)
			return ts.Listener.Addr().String()
		}},
		{"another protocol", func(t *testing.T, conns *atomic.Int32) string {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					_, _ = conn.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
					_ = conn.Close()
				}
			}()
			return l.Addr().String()
		}},
	} {
		t.Run(tc.server, func(t *testing.T) {
			var conns atomic.Int32
			plain := "https://" + tc.start(t, &conns)
			down, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			downURL := "https://" + down.Addr().String()
			down.Close()
			c, err := client.New([]string{plain, downURL}, client.WithRetryTimeout(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err = c.ClusterStatus(ctx)
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "use http://") ||
				!strings.Contains(err.Error(), plain) {
				t.Fatalf("a call to an https:// endpoint that does not speak TLS: %v (after %v), want it refused at once naming it and http://",
					err, time.Since(start).Round(time.Millisecond))
			}
			if n := conns.Load(); n > 2+1 { // and one for the first call's health ask (contact.go)
				t.Fatalf("%d connections for one call: it retried a server that does not speak TLS", n)
			}
			streamsEndSaying(t, c, "an https:// endpoint that does not speak TLS", "use http://")
		})
	}
}

// TestAPIKeyNotSentInTheClear: New refuses an API key with an http://
// endpoint on another machine, where it would cross the network in the
// clear (a reviewer's listener received "Authorization: Bearer ..." from
// the CLI); http:// on this machine, https://, and a network that
// encrypts by itself (WithPlaintextAPIKey) are taken.
func TestAPIKeyNotSentInTheClear(t *testing.T) {
	key := client.WithAPIKey("lsk_secret")
	for _, tc := range []struct {
		endpoint string
		opts     []client.Option
		refused  bool
	}{
		{"http://10.0.0.7:8080", []client.Option{key}, true},
		{"lockstep.internal:8080", []client.Option{key}, true},
		{"http://127.0.0.1:8080", []client.Option{key}, false},
		{"http://[::1]:8080", []client.Option{key}, false},
		{"http://localhost:8080", []client.Option{key}, false},
		{"https://10.0.0.7:8080", []client.Option{key}, false},
		{"http://10.0.0.7:8080", []client.Option{key, client.WithPlaintextAPIKey()}, false},
		{"http://10.0.0.7:8080", nil, false},
	} {
		c, err := client.New([]string{tc.endpoint}, tc.opts...)
		if c != nil {
			_ = c.Close(context.Background())
		}
		if refused := err != nil; refused != tc.refused {
			t.Errorf("%s with %d options: %v, want refused %v", tc.endpoint, len(tc.opts), err, tc.refused)
		} else if refused && (!strings.Contains(err.Error(), "would cross the network in the clear") || strings.Contains(err.Error(), "lsk_secret")) {
			t.Errorf("%s: %v", tc.endpoint, err)
		}
	}
}

// TestSilentEndpointIsSaidSo: a call that gives up on endpoints that
// accept connections and never answer says they did not answer within the
// attempt timeout; it said "context canceled" (the attempt's own
// deadline), which the caller had not done.
func TestSilentEndpointIsSaidSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, conn) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	c, err := client.New([]string{"http://" + ln.Addr().String()}, client.WithAttemptTimeout(150*time.Millisecond),
		client.WithRetryTimeout(600*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	_, err = c.NewSession(context.Background())
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "it did not answer within 150ms (WithAttemptTimeout)") ||
		strings.Contains(err.Error(), "context canceled") || strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("a session on a silent endpoint: %v", err)
	}
}

// TestUnknownKindIsInvalid: a kind the API does not have is ErrInvalid, as
// docs/client.md says a malformed request is, and names the kinds there
// are, from Status and CheckFence alike.
func TestUnknownKindIsInvalid(t *testing.T) {
	c, err := client.New([]string{"http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	_, serr := c.Status(context.Background(), "bogus", "x")
	_, ferr := c.CheckFence(context.Background(), "bogus", "x", 5)
	for what, err := range map[string]error{"Status": serr, "CheckFence": ferr} {
		if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), `unknown kind "bogus": use mutex, semaphore, rwlock, barrier or election`) {
			t.Errorf("%s of an unknown kind: %v", what, err)
		}
	}
	if !strings.Contains(ferr.Error(), `check fence of "x"`) {
		t.Errorf("CheckFence's error does not name the operation and the object: %v", ferr)
	}
}

// TestCheckFenceOfTokenZero: token 0 (Token's answer when nothing is held)
// holds nothing: CheckFence answers false, not an error a resource that
// retries on errors would retry a lost holder's write on, and asks no
// server (this client's one endpoint answers nothing).
func TestCheckFenceOfTokenZero(t *testing.T) {
	c, err := client.New([]string{"http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, kind := range []client.Kind{"", client.KindMutex, client.KindSemaphore} {
		if ok, err := c.CheckFence(context.Background(), kind, "x", 0); ok || err != nil {
			t.Errorf("CheckFence(%q, token 0): %v, %v, want false and no error", kind, ok, err)
		}
	}
}

// TestZeroValuesRefuse: a Mutex (or another primitive) declared rather than
// made by its New function answers Token 0 and refuses Lock and Unlock as
// invalid, naming the constructor; it panicked on a nil session.
func TestZeroValuesRefuse(t *testing.T) {
	var m client.Mutex
	if m.Token() != 0 {
		t.Fatal("a zero Mutex has a token")
	}
	for what, err := range map[string]error{"Lock": m.Lock(context.Background()), "Unlock": m.Unlock(context.Background())} {
		if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "make it with NewMutex") {
			t.Errorf("%s of a zero Mutex: %v", what, err)
		}
	}
	var sem client.Semaphore
	if err := sem.Acquire(context.Background(), 1); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Acquire of a zero Semaphore: %v", err)
	}
	var b client.Barrier
	if _, err := b.Wait(context.Background()); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Wait of a zero Barrier: %v", err)
	}
	if err := b.Set(context.Background()); !errors.Is(err, client.ErrInvalid) {
		t.Errorf("Set of a zero Barrier: %v", err)
	}
}

// TestBackupFromWhatIsNotTheAPI: a backup asked of a server that does not
// serve the Lockstep API (a metrics port: a bare 404) says so, as other
// calls do, not "unimplemented: HTTP status 404 Not Found".
func TestBackupFromWhatIsNotTheAPI(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, err := client.New([]string{srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	err = c.Backup(context.Background(), io.Discard, false)
	if err == nil || !strings.Contains(err.Error(), "does not serve the Lockstep API") {
		t.Fatalf("a backup from a bare 404: %v", err)
	}
}
