package rpc_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/security"
)

// tlsCluster is the API served over TLS with client certificates checked
// by security.State, as a secured member serves it.
type tlsCluster struct {
	url  string
	ca   *security.Authority
	pool *x509.CertPool
	reg  *prometheus.Registry // security's counters
}

func startTLSServer(t *testing.T) *tlsCluster {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := security.NewAuthority("expiry", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	node, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := node.Write(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := security.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := security.New(config.Security{TLS: &config.TLS{CertFile: certFile, KeyFile: keyFile,
		CAFile: filepath.Join(dir, security.CACertFile), ClientAuth: config.ClientAuthRequest}}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend()
	h, err := rpc.New(rpc.Options{Backend: b, NodeID: "node-1", MaxWait: 30 * time.Second, Authenticator: st, Authorizer: st})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewHTTPServer(ln.Addr().String(), h, nil)
	rpc.UseTLS(srv, st.APITLS())
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		b.Close()
	})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tlsCluster{url: "https://" + ln.Addr().String(), ca: ca, pool: pool, reg: reg}
}

// client is an HTTP/2 client presenting a certificate for principal,
// valid until notAfter: every call made with it shares one connection.
func (c *tlsCluster) client(t *testing.T, principal string, notAfter time.Time) *http.Client {
	t.Helper()
	is, err := c.ca.IssueClient(principal, time.Now().Add(-time.Minute), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP2(true)
	tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: c.pool, Certificates: []tls.Certificate{cert}}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestExpiredCertificateEndsWhatItOpened: what a client certificate
// opened ends when the certificate expires, without a reload: a Multiplex
// stream answers its waiting acquire unauthenticated, then ends so; a
// Watch and a waiting unary acquire end so; each says the certificate
// expired. A unary call on the same HTTP/2 connection (no new handshake)
// is refused too. Before, only new calls were refused: the user trial's
// lock kept renewing on its stream 45 s after the expiry, its watch stayed
// open, and only an unrelated SIGHUP ended them.
func TestExpiredCertificateEndsWhatItOpened(t *testing.T) {
	c := startTLSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ops := c.client(t, "ops", time.Now().Add(time.Hour))
	// Certificates carry whole seconds: this one expires 2 to 3 s from now.
	notAfter := time.Now().Add(3 * time.Second).Truncate(time.Second)
	short := c.client(t, "shortlived", notAfter)

	opsLocks := lockstepv1connect.NewLockServiceClient(ops, c.url)
	if _, err := opsLocks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "jobs/held", Owner: "holder"})); err != nil {
		t.Fatal(err)
	}

	sessions := lockstepv1connect.NewSessionServiceClient(short, c.url)
	session := newSession(t, sessions, 30_000)
	mux := sessions.Multiplex(ctx)
	t.Cleanup(func() { _ = mux.CloseRequest(); _ = mux.CloseResponse() })
	sendAll(t, mux, keepAliveOn(1, session))
	if got, _ := answers(t, mux, 1); got[1].GetError() != nil {
		t.Fatalf("keepalive on the stream before the expiry: %v", got[1])
	}
	sendAll(t, mux, acquireOn(2, session, "jobs/held", -1))
	if m, err := mux.Receive(); err != nil || len(m.Responses) == 0 || m.Responses[0].GetQueued() == nil {
		t.Fatalf("the acquire on the stream: %v %v, want queued", m, err)
	}

	watch, err := lockstepv1connect.NewWatchServiceClient(short, c.url).Watch(ctx,
		connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	watchEnded := make(chan error, 1)
	go func() {
		for watch.Receive() {
		}
		watchEnded <- watch.Err()
	}()

	locks := lockstepv1connect.NewLockServiceClient(short, c.url)
	unaryEnded := make(chan error, 1)
	go func() {
		_, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "jobs/held", Owner: "unary", WaitTimeoutMs: -1}))
		unaryEnded <- err
	}()

	expired := func(what string, err error) {
		t.Helper()
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "the client certificate expired at") {
			t.Errorf("%s after the certificate expired: %v, want unauthenticated saying the client certificate expired", what, err)
		}
		if now := time.Now(); now.Before(notAfter) {
			t.Errorf("%s ended at %v, before the certificate expired at %v", what, now, notAfter)
		}
	}
	m, err := mux.Receive()
	if err != nil {
		t.Fatalf("the stream ended before its waiting acquire answered: %v", err)
	}
	if len(m.Responses) != 1 || m.Responses[0].RequestId != 2 || m.Responses[0].GetError().GetCode() != "unauthenticated" ||
		!strings.Contains(m.Responses[0].GetError().GetMessage(), "the client certificate expired at") {
		t.Fatalf("the waiting acquire on the stream: %v, want its own unauthenticated answer saying the certificate expired", m)
	}
	_, err = mux.Receive()
	expired("the Multiplex stream", err)
	for what, ch := range map[string]chan error{"the watch": watchEnded, "the waiting unary acquire": unaryEnded} {
		select {
		case err := <-ch:
			expired(what, err)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still stands 5 s after the certificate expired", what)
		}
	}

	// A new call on the connection already open: refused, though the
	// handshake that checked the certificate is not repeated.
	var reused atomic.Bool
	traced := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused.Store(i.Reused) }})
	_, err = sessions.KeepAlive(traced, connect.NewRequest(&pb.KeepAliveRequest{SessionId: session}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "the client certificate expired at") {
		t.Fatalf("a keepalive after the expiry: %v", err)
	}
	if !reused.Load() {
		t.Fatal("the keepalive after the expiry came on a new connection: the test proves nothing of a reused one")
	}
	if n := authFailures(t, c.reg, "expired_certificate"); n < 1 {
		t.Errorf("lockstep_auth_failures_total{reason=expired_certificate} = %v", n)
	}
	// The other principal's certificate is good: its calls go on.
	if _, err := opsLocks.Status(ctx, connect.NewRequest(&pb.LockStatusRequest{Name: "jobs/held"})); err != nil {
		t.Fatalf("ops after shortlived's certificate expired: %v", err)
	}
}

// authFailures reads lockstep_auth_failures_total{reason}.
func authFailures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lockstep_auth_failures_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// expiringKeys names the caller by its bearer key, with credentials that
// expire at until, and counts its calls.
type expiringKeys struct {
	until time.Time
	calls atomic.Int64
}

func (k *expiringKeys) Authenticate(_ context.Context, _ string, h http.Header) (rpc.Principal, error) {
	k.calls.Add(1)
	if time.Now().After(k.until) {
		return rpc.Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("the test credentials expired"))
	}
	return rpc.Principal{ID: strings.TrimPrefix(h.Get("Authorization"), "Bearer "), Auth: "api_key", Expires: k.until}, nil
}

func (k *expiringKeys) OnReload(func()) {}

// TestEndedStreamsLeaveNoExpiryTimer: a stream that ends before its
// credentials expire stops its timer: nothing runs for it at the expiry.
func TestEndedStreamsLeaveNoExpiryTimer(t *testing.T) {
	keys := &expiringKeys{until: time.Now().Add(1500 * time.Millisecond)}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keys })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		obs := s.observe(t, ctx, "alice", fmt.Sprintf("el/%d", i))
		_ = obs.Close()
	}
	mux, sessions := s.multiplex(t, ctx, "alice")
	sendAll(t, mux, keepAliveOn(1, newSession(t, sessions, 30_000)))
	answers(t, mux, 1)
	_ = mux.CloseRequest()
	if _, err := mux.Receive(); err == nil {
		t.Fatal("the stream goes on after its client closed it")
	}
	time.Sleep(100 * time.Millisecond) // the handlers return
	before := keys.calls.Load()
	time.Sleep(time.Until(keys.until) + 300*time.Millisecond)
	if n := keys.calls.Load() - before; n != 0 {
		t.Fatalf("%d expiry checks ran for streams that had ended", n)
	}
}

// A client whose certificate expired on an open HTTP/2 connection, and
// that has a renewed one (read at each new connection, as the Go client
// and the CLI read theirs), is served again once it sends: the refusal of
// a unary call or of a stream closes the connection (GOAWAY), so the next
// request opens a new one with the renewed certificate. Before, every
// request on the open connection was refused until the client was
// restarted.
func TestRefusedCertificateClosesItsConnection(t *testing.T) {
	c := startTLSServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	issue := func(notAfter time.Time) *tls.Certificate {
		is, err := c.ca.IssueClient("renewer", time.Now().Add(-time.Minute), notAfter)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return &cert
	}
	// Certificates carry whole seconds: these expire 1 to 2 s from now.
	notAfter := time.Now().Add(2 * time.Second).Truncate(time.Second)
	type renewer struct {
		presented atomic.Pointer[tls.Certificate]
		hc        *http.Client
	}
	newRenewer := func() *renewer {
		r := &renewer{}
		r.presented.Store(issue(notAfter))
		var p http.Protocols
		p.SetHTTP2(true)
		tr := &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: c.pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.presented.Load(), nil }}}
		t.Cleanup(tr.CloseIdleConnections)
		r.hc = &http.Client{Transport: tr}
		return r
	}
	status := func(r *renewer) error {
		_, err := lockstepv1connect.NewLockServiceClient(r.hc, c.url).Status(ctx, connect.NewRequest(&pb.LockStatusRequest{Name: "jobs/renewed"}))
		return err
	}
	unary, stream := newRenewer(), newRenewer()
	for _, r := range []*renewer{unary, stream} {
		if err := status(r); err != nil {
			t.Fatalf("before the expiry: %v", err)
		}
	}
	time.Sleep(time.Until(notAfter) + 200*time.Millisecond)
	for _, r := range []*renewer{unary, stream} {
		r.presented.Store(issue(time.Now().Add(time.Hour)))
	}

	if err := status(unary); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a unary call after the expiry, on the open connection: %v, want unauthenticated", err)
	}
	w, err := lockstepv1connect.NewWatchServiceClient(stream.hc, c.url).Watch(ctx,
		connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}}))
	if err != nil {
		t.Fatal(err)
	}
	for w.Receive() {
	}
	if connect.CodeOf(w.Err()) != connect.CodeUnauthenticated {
		t.Fatalf("a watch after the expiry, on the open connection: %v, want unauthenticated", w.Err())
	}
	w.Close()
	// The GOAWAY follows the refusal's answer by a moment on loopback.
	time.Sleep(300 * time.Millisecond)
	for what, r := range map[string]*renewer{"unary call": unary, "watch": stream} {
		if err := status(r); err != nil {
			t.Errorf("the call after a refused %s, with a renewed certificate to present: %v; want a new connection with it", what, err)
		}
	}
}
