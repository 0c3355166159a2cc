package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lockstepd/lockstep/client"
)

// faultProxy stands between a client and the test's server and plays the
// faults the client must survive: a node that stops answering (stuck: as
// under SIGSTOP, nothing is forwarded or delivered any more, and the
// server never learns that callers went away), keepalives that never
// arrive, and one request held back and delivered late. It speaks HTTP/1.1
// and h2c, and plays the same faults on each request of a session stream
// (stream_proxy_test.go) as on a unary call: the match functions see a
// stream's request under its unary twin's path, as its message alone.
type faultProxy struct {
	t      *testing.T
	target string
	srv    *httptest.Server
	closed chan struct{}
	up     *http.Client
	upH2   *http.Client // h2c, for session streams

	stuck          atomic.Bool
	dropKeepalives atomic.Bool
	slowCreates    atomic.Int64 // nanoseconds a Create's answer is held after the server gave it
	holding        atomic.Int32 // requests held back now
	streamsOpen    atomic.Int32 // session and Multiplex streams open now, until the proxy's side of each ends
	connsOpen      atomic.Int32 // the client's TCP connections to the proxy open now

	mu      sync.Mutex
	orphans []context.CancelFunc                // upstream requests whose callers left while stuck
	hold    func(path string, body []byte) bool // requests to hold back, until release
	held    chan struct{}                       // closed by release
	seen    []string                            // paths forwarded, in order ("stream " + the twin's path for a stream's request)
	// breakAfter breaks the session stream (the client's side ends without
	// an answer) a moment after forwarding a request it selects.
	breakAfter func(path string, body []byte) bool
	sent       []proto.Message // the stream requests forwarded, in order
	opened     []string        // the streams opened, by path
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	p := &faultProxy{t: t, target: target, closed: make(chan struct{}), held: make(chan struct{}),
		up: &http.Client{Transport: &http.Transport{}}, upH2: &http.Client{Transport: &http.Transport{Protocols: &h2c}}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	var both http.Protocols
	both.SetHTTP1(true)
	both.SetUnencryptedHTTP2(true)
	p.srv.Config.Protocols = &both
	p.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			p.connsOpen.Add(1)
		case http.StateClosed, http.StateHijacked:
			p.connsOpen.Add(-1)
		}
	}
	p.srv.Start()
	t.Cleanup(func() {
		close(p.closed)
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

func (p *faultProxy) URL() string { return p.srv.URL }

// holdBack holds every request that match selects until release.
func (p *faultProxy) holdBack(match func(path string, body []byte) bool) {
	p.mu.Lock()
	p.hold = match
	p.mu.Unlock()
}

// release delivers the held requests, now, with no caller waiting for them.
func (p *faultProxy) release() { close(p.held) }

// holdBackReleases holds every mutex release until release: each one's
// outcome stays unknown to its caller.
func (p *faultProxy) holdBackReleases() {
	p.holdBack(func(path string, _ []byte) bool { return strings.HasSuffix(path, "LockService/Release") })
}

// unaryClient is a Client of unary calls through p, retrying for 5 s,
// closed when the test ends.
func (p *faultProxy) unaryClient() *client.Client {
	p.t.Helper()
	c, err := client.New([]string{p.URL()}, client.WithUnary(), client.WithRetryTimeout(5*time.Second))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// lockThenHoldTheRelease locks m, then unlocks it with every release held
// back by p (a slow link, a slow leader change), so that the Unlock's ctx
// (300 ms) ends with its outcome unknown, the release still on its way.
// It answers the token of the grant that release names.
func (p *faultProxy) lockThenHoldTheRelease(ctx context.Context, m *client.Mutex) uint64 {
	p.t.Helper()
	if err := m.Lock(ctx); err != nil {
		p.t.Fatal(err)
	}
	token := m.Token()
	p.holdBackReleases()
	uctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := m.Unlock(uctx); err == nil || errors.Is(err, client.ErrNotHeld) {
		p.t.Fatalf("Unlock with its release held back answered %v, want an unknown outcome", err)
	}
	waitFor(p.t, "the release to be held back", func() bool { return p.holding.Load() > 0 })
	return token
}

// releaseLimiter is a unary Client (retrying for 5 s, and opts) through a
// reverse proxy to upstream that answers a release 429 resource_exhausted
// with msg, as a limit of the servers does, whenever refuse says so; refuse
// is given how many releases the proxy has seen, this one included.
// Both end when the test does.
func releaseLimiter(t *testing.T, upstream, msg string, refuse func(releases int64) bool, opts ...client.Option) *client.Client {
	t.Helper()
	target, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var releases atomic.Int64
	rp := httputil.NewSingleHostReverseProxy(target)
	body, err := json.Marshal(map[string]string{"code": "resource_exhausted", "message": msg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "LockService/Release") && refuse(releases.Add(1)) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write(body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New([]string{srv.URL}, append([]client.Option{client.WithUnary(), client.WithRetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// saw says whether a request to a path ending in suffix was forwarded.
func (p *faultProxy) saw(suffix string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.seen {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

// resume ends stuck, and the server learns now that the callers who left
// meanwhile are gone, as a node resumed after SIGCONT does.
func (p *faultProxy) resume() {
	p.stuck.Store(false)
	p.mu.Lock()
	orphans := p.orphans
	p.orphans = nil
	p.mu.Unlock()
	for _, cancel := range orphans {
		cancel()
	}
}

// hang blocks until the proxy closes: the answer that never comes.
func (p *faultProxy) hang() { <-p.closed }

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, ".SessionService/Stream") || strings.HasSuffix(r.URL.Path, ".SessionService/Multiplex") {
		p.serveStream(w, r)
		return
	}
	if p.stuck.Load() || (p.dropKeepalives.Load() && strings.HasSuffix(r.URL.Path, "/KeepAlive")) {
		p.hang()
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	p.mu.Lock()
	hold := p.hold != nil && p.hold(r.URL.Path, body)
	p.mu.Unlock()
	// The forwarded request outlives its caller while the proxy is stuck
	// or holding it (a stopped node does not see its clients leave);
	// otherwise the caller's leaving reaches the server, as over a
	// working network.
	upCtx, upCancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer upCancel()
	if hold {
		p.holding.Add(1)
		select {
		case <-p.held:
		case <-p.closed:
			return
		}
	} else {
		go func() {
			select {
			case <-r.Context().Done():
				if !p.stuck.Load() {
					upCancel()
					return
				}
				p.mu.Lock()
				p.orphans = append(p.orphans, upCancel)
				p.mu.Unlock()
			case <-upCtx.Done():
			}
		}()
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.URL.Path)
	p.mu.Unlock()
	req, err := http.NewRequestWithContext(upCtx, r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		return
	}
	req.Header = r.Header.Clone()
	res, err := p.up.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	if d := time.Duration(p.slowCreates.Load()); d > 0 && strings.HasSuffix(r.URL.Path, "SessionService/Create") {
		time.Sleep(d) // the server made the session; its answer reaches the client late
	}
	if p.stuck.Load() {
		p.hang()
		return
	}
	for k, vs := range res.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(res.StatusCode)
	p.relay(w, res.Body, nil)
}

// relay copies an answer's body to the client as it arrives, flushing each
// chunk, and hangs when the proxy goes stuck. afterRead, when set, runs
// after every read of the upstream body (the stream proxy cuts there).
func (p *faultProxy) relay(w http.ResponseWriter, body io.Reader, afterRead func()) {
	f, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if afterRead != nil {
			afterRead()
		}
		if n > 0 {
			if p.stuck.Load() {
				p.hang()
				return
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f != nil {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}
