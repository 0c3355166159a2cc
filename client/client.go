package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// Client talks to a Lockstep cluster through one of its endpoints at a time,
// moving to the next when one is unavailable. It is safe for concurrent use.
type Client struct {
	opts      options
	endpoints []*endpoint
	cur       atomic.Int64 // index of the endpoint in use
	clientID  string
	inflight  *inflight
	leader    leaderFinder // leader.go
	contact   contact      // the first call's search for an endpoint that answers (contact.go)

	// The sessions' shared streams (multiplex.go), one per endpoint at most.
	muxes streamSet[*muxStream]

	// Close (close.go): the sessions to close, the transports New made
	// (closed with it; one given by WithHTTPClient is the caller's), and
	// the life that running watches and observations end with; once it
	// ended, every call fails with ErrClientClosed.
	live    liveSessions
	own     []*http.Client
	life    context.Context
	endLife context.CancelFunc
	// streamConns are the connections of the stream transport New made,
	// which Close ends whether or not the transport deems them idle yet.
	streamConns *openConns
}

// endpoint is the generated clients of one server address.
type endpoint struct {
	url       string
	sessions  lockstepv1connect.SessionServiceClient
	locks     lockstepv1connect.LockServiceClient
	sems      lockstepv1connect.SemaphoreServiceClient
	rw        lockstepv1connect.RWLockServiceClient
	barriers  lockstepv1connect.BarrierServiceClient
	elections lockstepv1connect.ElectionServiceClient
	watch     lockstepv1connect.WatchServiceClient
	cluster   lockstepv1connect.ClusterServiceClient
	// stream is SessionService on an HTTP/2 transport, for session
	// streams (a bidirectional stream needs HTTP/2).
	stream lockstepv1connect.SessionServiceClient

	mu        sync.Mutex
	lastHeard time.Time // the last answer of any kind
	probe     *probeRun // the health probe running now, if any
	streamOff time.Time // no session streams to this endpoint until then (stream.go)
	muxOff    time.Time // no Multiplex to this endpoint until then (multiplex.go)
	nodeID    string    // the node behind it, once known (leader.go)
	failedAt  time.Time // when a request last left it for another endpoint
}

// Option configures a Client.
type Option func(*options)

type options struct {
	tls            *tls.Config
	apiKey         string
	plaintextKey   bool
	clientID       string
	retryTimeout   time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	httpClient     *http.Client
	attemptTimeout time.Duration
	probeInterval  time.Duration
	streamSilence  time.Duration
	maxInFlight    int
	unary          bool
	noMultiplex    bool
}

// WithTLS sets the TLS configuration for https:// endpoints (for example a
// client certificate for mTLS). Defaults to the system roots.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithAPIKey sends key as "Authorization: Bearer KEY" on every request.
// Defaults to none. New refuses it with an http:// endpoint on another
// machine, where the key would cross the network in the clear, unless
// WithPlaintextAPIKey says the network encrypts by itself.
func WithAPIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// WithPlaintextAPIKey lets WithAPIKey's key go to http:// endpoints on
// other machines: only where the network encrypts by itself (a service
// mesh's sidecar), as the servers' security.insecure does for theirs.
// http:// to this machine (loopback) needs no such leave.
func WithPlaintextAPIKey() Option { return func(o *options) { o.plaintextKey = true } }

// WithClientID sets the prefix of the id the server deduplicates this
// client's requests by (at most 80 bytes of printable ASCII, without
// spaces); New appends
// "-" and 16 random hex digits, so the id is unique per Client and per
// process incarnation even when every process of a fleet passes the same
// prefix. Defaults to "go". The prefix is what shows in the audit log.
func WithClientID(prefix string) Option { return func(o *options) { o.clientID = prefix } }

// WithAttemptTimeout bounds one attempt of a call that does not wait by
// design (create, keepalive, release, status, close...) and the health
// probe of an endpoint: an endpoint that does not answer within it is
// taken for stopped, and the call is sent again, with the same request id,
// to the next. Defaults to 2s.
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.attemptTimeout = d } }

// WithProbeInterval sets how often the endpoint of a blocked call (a
// waiting Lock, Campaign, barrier Wait) or of an Observe stream is probed
// for health while the call is silent; an endpoint that does not answer a
// probe within the attempt timeout is left, and the call resumes on the
// next: within two probe intervals and an attempt timeout of the node
// stopping. Defaults to 1s.
func WithProbeInterval(d time.Duration) Option { return func(o *options) { o.probeInterval = d } }

// WithStreamSilence bounds how long a Watch stream may deliver nothing
// (the servers send a progress message at least every 2 s on a live
// cluster) before it is taken for stuck and resumed on the next endpoint.
// Defaults to 5s.
func WithStreamSilence(d time.Duration) Option { return func(o *options) { o.streamSilence = d } }

// WithMaxInFlight bounds the mutating requests in flight on this Client
// (across all its sessions and goroutines); past it, a new request waits
// for one to finish (or for its ctx) instead of failing. Releases, resigns
// and session closes take no slot, so they can always end what blocked
// acquires wait for; reads take none either. Defaults to 10,000, at most
// 16,000 (the servers keep 16,384 results per client id).
func WithMaxInFlight(n int) Option { return func(o *options) { o.maxInFlight = n } }

// WithUnary sends every request as its own unary call instead of carrying
// the sessions' operations on a stream (SessionService.Multiplex), the
// default: for a proxy that cannot pass bidirectional HTTP/2 streams, or
// to compare the two.
func WithUnary() Option { return func(o *options) { o.unary = true } }

// WithStreamPerSession carries each session's operations on a stream of
// its own (SessionService.Stream) instead of the one stream per endpoint
// that all the Client's sessions share (SessionService.Multiplex), the
// default: to compare the two, as a server without Multiplex is met.
func WithStreamPerSession() Option { return func(o *options) { o.noMultiplex = true } }

// WithRetryTimeout bounds how long a request keeps retrying unavailable
// endpoints before it fails with ErrUnavailable. Defaults to 15s. It
// counts only the time while no member serves the request: a waiting call
// (Lock, Campaign, a barrier Wait) whose wait a member had queued, and
// that then broke (the member restarted, was killed, or drained and left
// the wait queued), has the whole timeout again from the end of that
// attempt, however short its wait was; a rolling restart, each member
// serving the wait in turn, does not add up to it. An attempt under way
// when it passes is let finish, so a call against
// endpoints that do not answer fails up to one attempt timeout
// (WithAttemptTimeout) later. A TLS handshake refused on a certificate,
// or with a server that does not speak TLS at an https:// endpoint, is
// not retried: once every endpoint was tried, the call fails saying so.
func WithRetryTimeout(d time.Duration) Option { return func(o *options) { o.retryTimeout = d } }

// WithBackoff sets the first and the largest pause between retries (doubling,
// with jitter). Defaults to 50ms and 1s.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// WithHTTPClient replaces the HTTP client, for every request: unary calls
// and session streams. By default unary calls go over HTTP/1.1 for http://
// and HTTP/2 when negotiated for https://, and session streams over
// StreamTransport. A session stream needs HTTP/2 (h2c over http://): with
// a client that speaks only HTTP/1.1 there, every request goes unary.
// To wrap the client's own (tracing, metrics), start from StreamTransport.
func WithHTTPClient(h *http.Client) Option { return func(o *options) { o.httpClient = h } }

// StreamTransport is the transport a Client carries its session streams on
// by default: HTTP/2, negotiated for https:// and spoken without TLS (h2c)
// for http://, one connection per endpoint for the sessions' shared stream
// (and for each session's own, WithStreamPerSession), whose writes are
// batched (what the sessions write while the previous
// write is still in the kernel goes out with it, in one system call).
// tlsConfig is for https:// (nil: the system's roots).
func StreamTransport(tlsConfig *tls.Config) *http.Transport {
	var protocols http.Protocols
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{
		DialContext:     dialBatched,
		TLSClientConfig: tlsConfig,
		Protocols:       &protocols,
		IdleConnTimeout: 90 * time.Second,
	}
}

// New returns a client for the cluster whose API endpoints are given
// ("http://127.0.0.1:8080", "https://lockstep-2:8080"). It does not connect
// until the first request. An endpoint is scheme://host:port (http or
// https) or host:port (http): New refuses another scheme, and a path, a
// query or a fragment, since the API is served at the root. Its refusals
// are ErrInvalid (errors.Is): a configuration to correct.
func New(endpoints []string, opts ...Option) (*Client, error) {
	c, err := newClient(endpoints, opts)
	if err != nil {
		return nil, invalidConfig{err}
	}
	return c, nil
}

// invalidConfig is New's refusal: its own words, and ErrInvalid to
// errors.Is, so that a program tells a configuration to correct from a
// cluster that did not answer.
type invalidConfig struct{ error }

func (e invalidConfig) Is(target error) bool { return target == ErrInvalid }
func (e invalidConfig) Unwrap() error        { return e.error }

func newClient(endpoints []string, opts []Option) (*Client, error) {
	o := options{retryTimeout: 15 * time.Second, backoffMin: 50 * time.Millisecond, backoffMax: time.Second,
		attemptTimeout: 2 * time.Second, probeInterval: time.Second, streamSilence: 5 * time.Second,
		maxInFlight: defaultMaxInFlight, clientID: "go"}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("lockstep: no endpoints: give at least one, like http://127.0.0.1:8080")
	}
	if o.clientID == "" {
		o.clientID = "go" // WithClientID(""): the default, as before
	}
	if err := checkClientIDPrefix(o.clientID); err != nil {
		return nil, err
	}
	// Two processes (or two Clients) numbering requests from 1 under one id
	// would be answered each other's stored results: the random suffix
	// makes every Client its own identity, whatever prefix it was given.
	var b [8]byte
	_, _ = rand.Read(b[:])
	o.clientID += "-" + hex.EncodeToString(b[:])
	switch {
	case o.attemptTimeout <= 0 || o.probeInterval <= 0 || o.streamSilence <= 0 || o.retryTimeout <= 0:
		return nil, errors.New("lockstep: WithAttemptTimeout, WithProbeInterval, WithStreamSilence and WithRetryTimeout take positive durations")
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return nil, fmt.Errorf("lockstep: WithBackoff(%v, %v): give a positive minimum and a maximum at least as large", o.backoffMin, o.backoffMax)
	case o.maxInFlight < 1 || o.maxInFlight > maxInFlightLimit:
		return nil, fmt.Errorf("lockstep: WithMaxInFlight(%d): use 1..%d (the servers keep at most 16,384 results per client)", o.maxInFlight, maxInFlightLimit)
	}
	h := o.httpClient
	if h == nil {
		// The Connect protocol (the default here) works on HTTP/1.1, streams
		// included, so http:// endpoints use plain HTTP/1.1 (one connection
		// per blocked call, friendly to proxies) and https:// negotiates
		// HTTP/2.
		h = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   o.tls,
			ForceAttemptHTTP2: true,
			IdleConnTimeout:   90 * time.Second,
		}}
	}
	hs := o.httpClient
	conns := &openConns{set: map[*trackedConn]struct{}{}}
	if hs == nil {
		t := StreamTransport(o.tls)
		t.DialContext = conns.dial(t.DialContext)
		hs = &http.Client{Transport: t}
	}
	var own []*http.Client
	if o.httpClient == nil {
		own = []*http.Client{h, hs}
	}
	copts := []connect.ClientOption{connect.WithInterceptors(connect.UnaryInterceptorFunc(boundAttempt))}
	if o.apiKey != "" {
		copts = append(copts, connect.WithInterceptors(apiKeyInterceptor(o.apiKey)))
	}
	c := &Client{opts: o, clientID: o.clientID, inflight: newInflight(o.clientID, o.maxInFlight), own: own, streamConns: conns}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.contact = newContact()
	c.leader.disabled = len(endpoints) == 1
	for _, raw := range endpoints {
		u := strings.TrimRight(strings.TrimSpace(raw), "/")
		if u == "" {
			return nil, errors.New("lockstep: an empty endpoint")
		}
		if scheme, rest, ok := strings.Cut(u, "://"); !ok {
			u = "http://" + u
		} else if s := strings.ToLower(scheme); s == "http" || s == "https" {
			// Schemes are case-insensitive (RFC 3986, 3.1): HTTP:// is
			// http://, kept in the lower case the RFC calls canonical,
			// as Endpoint and error messages show it.
			u = s + "://" + rest
		} else {
			return nil, fmt.Errorf("lockstep: endpoint %q: the scheme %q is not one the API serves: use http:// or https:// (host:port alone means http://)", raw, scheme)
		}
		// The API is served at the root: the procedures' paths are added
		// to the endpoint as given, so a path (or a query, a fragment) in
		// it makes every call miss them, and the first call failed with
		// `Content-Type "application/proto" is not accepted`.
		pu, err := url.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("lockstep: endpoint %q: %v: give scheme://host:port, like http://127.0.0.1:8080", raw, err)
		}
		if pu.Path != "" || pu.RawQuery != "" || pu.ForceQuery || strings.Contains(u, "#") {
			return nil, fmt.Errorf("lockstep: endpoint %q: give scheme://host:port only, like http://127.0.0.1:8080, "+
				"without a path, query or fragment (the API is served at the root)", raw)
		}
		if o.apiKey != "" && !o.plaintextKey && pu.Scheme == "http" && !loopback(pu.Hostname()) {
			// The key went out in the clear, to whatever listened there.
			return nil, fmt.Errorf("lockstep: endpoint %q is plaintext (http://) and not on this machine: the API key would "+
				"cross the network in the clear; use https:// with the cluster's CA (docs/security.md), or, where the network "+
				"encrypts by itself, WithPlaintextAPIKey (the CLI's --insecure)", raw)
		}
		c.endpoints = append(c.endpoints, &endpoint{
			url:       u,
			sessions:  lockstepv1connect.NewSessionServiceClient(h, u, copts...),
			locks:     lockstepv1connect.NewLockServiceClient(h, u, copts...),
			sems:      lockstepv1connect.NewSemaphoreServiceClient(h, u, copts...),
			rw:        lockstepv1connect.NewRWLockServiceClient(h, u, copts...),
			barriers:  lockstepv1connect.NewBarrierServiceClient(h, u, copts...),
			elections: lockstepv1connect.NewElectionServiceClient(h, u, copts...),
			watch:     lockstepv1connect.NewWatchServiceClient(h, u, copts...),
			cluster:   lockstepv1connect.NewClusterServiceClient(h, u, copts...),
			stream:    lockstepv1connect.NewSessionServiceClient(wholeMessages{hs}, u, copts...),
		})
	}
	return c, nil
}

// ClientID is the id the server deduplicates this client's requests by:
// the WithClientID prefix and a random suffix, unique to this Client. A
// Client with many long-pending requests also uses ClientID()+".N" (see
// docs/client.md, "Requests in flight").
func (c *Client) ClientID() string { return c.clientID }

// Endpoint is the endpoint requests go to now.
func (c *Client) Endpoint() string { return c.current().url }

func (c *Client) current() *endpoint {
	return c.endpoints[int(c.cur.Load())%len(c.endpoints)]
}

// failover moves to the endpoint after from, unless another request has
// already moved on.
func (c *Client) failover(from *endpoint) {
	from.mu.Lock()
	from.failedAt = time.Now()
	from.mu.Unlock()
	c.leader.mu.Lock()
	c.leader.stale = true // the leader may have moved too: ask again
	c.leader.mu.Unlock()
	for i, e := range c.endpoints {
		if e == from {
			c.cur.CompareAndSwap(int64(i), int64((i+1)%len(c.endpoints)))
			return
		}
	}
}

// maxInFlightLimit keeps WithMaxInFlight below the servers' limit per
// client id, with room for the Abandons of pending requests.
const maxInFlightLimit = 16_000

// maxClientIDPrefix leaves room, within the servers' 120 bytes, for the
// random suffix (17 bytes) and a lane suffix (".N").
const maxClientIDPrefix = 80

func checkClientIDPrefix(p string) error {
	if len(p) > maxClientIDPrefix {
		return fmt.Errorf("lockstep: WithClientID(%s): give a prefix of at most %d bytes", quote.Bounded(p), maxClientIDPrefix)
	}
	for _, r := range p {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("lockstep: WithClientID(%s): use printable ASCII without spaces", quote.Bounded(p))
		}
	}
	return nil
}

// retryable says whether err means "this endpoint cannot serve now" (no
// quorum, shutting down, unreachable), so the same request may go to the next.
// Every caller checks its own ctx first, so Canceled here is not the
// caller's: connect-go reports a write on a connection the server closed
// (broken pipe, reset: a node killed mid-request) as Canceled, the same
// code it gives a stream the server cancelled. Retrying is safe because a
// retry carries the same request id.
func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeCanceled:
		return true
	}
	return false
}

// certificateRefused says whether err is a TLS handshake that failed on a
// certificate: the server's, that this client does not trust (an unknown
// CA, a name it does not cover, expired), or this client's, that the
// server refused (its alert). connect-go reports them as unavailable.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	var op *net.OpError
	switch {
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid):
		return true
	case errors.As(err, &alert):
		// bad_certificate .. unknown_ca (42-48), certificate_required (116)
		return (alert >= 42 && alert <= 48) || alert == 116
	case errors.As(err, &op) && op.Op == "remote error":
		// Over TCP the server's alert arrives as this, its text the
		// alert's ("tls: certificate required").
		for _, a := range []string{"bad certificate", "unsupported certificate", "certificate revoked", "certificate expired",
			"certificate unknown", "unknown certificate authority", "certificate required"} {
			if strings.Contains(op.Err.Error(), a) {
				return true
			}
		}
	}
	return false
}

// notTLS says whether err is a TLS handshake with a server that does not
// speak TLS: it answered in plain HTTP (net/http's ErrSchemeMismatch), or
// its first bytes are not a TLS record at all (crypto/tls's "first record
// does not look like a TLS handshake": another protocol). connect-go
// reports them as unavailable, but the server will not speak TLS for
// being asked again.
func notTLS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.Is(err, http.ErrSchemeMismatch) ||
		(errors.As(err, &rh) && strings.Contains(rh.Msg, "first record does not look like a TLS handshake"))
}

// tlsRefusal is the error a call ends with when e refused it in TLS, on a
// certificate or by not speaking TLS at an https:// endpoint, which no
// retry mends; nil for any other error.
func tlsRefusal(e *endpoint, err error) error {
	switch {
	case certificateRefused(err):
		return fmt.Errorf("lockstep: TLS with %s failed on a certificate: "+
			"check the CA the client trusts (WithTLS's RootCAs), its client certificate, and the servers' certificates: %w", e.url, err)
	case notTLS(err):
		return fmt.Errorf("lockstep: %s does not speak TLS (it answered in plain HTTP or another protocol): "+
			"use http:// for it, or enable TLS on the server (security.tls, docs/security.md): %w", e.url, err)
	}
	return nil
}

// tlsRefusals ends a stream (a watch, an observation) that endpoints
// refuse in TLS, as a call ends (Client.do): once every endpoint was tried
// since the last that answered, and one of them refused in TLS, the
// stream ends with that refusal instead of reopening for ever. An endpoint
// answers when its stream ends without an error or with the server's own.
type tlsRefusals struct {
	c     *Client
	tried map[*endpoint]bool
	first error
}

// note records how e ended a stream, and answers the error to end the
// stream with; nil to reopen it.
func (r *tlsRefusals) note(e *endpoint, err error) error {
	if err == nil || connect.IsWireError(err) {
		r.tried, r.first = nil, nil
		return nil
	}
	if r.tried == nil {
		r.tried = map[*endpoint]bool{}
	}
	r.tried[e] = true
	if r.first == nil {
		r.first = tlsRefusal(e, err)
	}
	if r.first == nil || len(r.tried) < len(r.c.endpoints) {
		return nil
	}
	return r.first
}

// notTheAPI says whether err is an HTTP 404 that is not a Connect error:
// the Lockstep API answers a path it does not serve with a JSON error
// (not_found), so a bare 404 comes from a server that does not serve the
// API at all: a node's metrics port, another service, a path a proxy
// does not pass.
func notTheAPI(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeUnimplemented || connect.IsWireError(err) {
		return false
	}
	// connect-go's words for a unary call's and a stream's bare 404.
	msg := ce.Message()
	return strings.HasPrefix(msg, "404 ") || strings.HasPrefix(msg, "HTTP status 404 ")
}

// explain is err, a refusal at e that ends a call, with what it means
// when its own words do not say it: a bare 404 (notTheAPI) read
// "unimplemented: 404 Not Found". The connect error stays wrapped.
func (e *endpoint) explain(err error) error {
	if notTheAPI(err) {
		return fmt.Errorf("lockstep: %s answered HTTP 404 without a Lockstep error: it does not serve the Lockstep API "+
			"(the wrong port? the API's is the servers' cluster.api_address, 8080 by default): %w", e.url, err)
	}
	return err
}

// callMode says what bounds one attempt of a call.
type callMode int

const (
	// unary: the call answers at once by design; an attempt that has not
	// answered within the attempt timeout is taken for stuck.
	unary callMode = iota
	// blocking: the call waits by design (a queued acquire, a campaign, a
	// barrier wait), so silence says nothing; instead its endpoint is
	// probed for health while it waits, and an endpoint that does not
	// answer a probe is taken for stuck.
	blocking
)

// do runs a unary call; see call.
func do[T any](ctx context.Context, c *Client, f func(ctx context.Context, e *endpoint) (*connect.Response[T], error)) (*T, error) {
	return call(ctx, c, unary, f)
}

// call runs f against the current endpoint, and when that endpoint is
// unavailable or stuck (see callMode) against the next one, with backoff,
// until it succeeds, fails otherwise, ctx ends or the retry timeout passes.
// Callers build the request (with its client_id and request_seq) once,
// outside f, so every attempt carries the same id: a resent request that
// the stuck endpoint applied after all is answered from the servers'
// dedupe, and a resent wait rejoins the same place in the queue.
func call[T any](ctx context.Context, c *Client, mode callMode, f func(ctx context.Context, e *endpoint) (*connect.Response[T], error)) (*T, error) {
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	start := time.Now()
	pause := c.opts.backoffMin
	// Endpoints tried, and the first TLS refusal (a certificate, or a
	// server that does not speak TLS): once every endpoint was tried and
	// none answered (a server's own error) while one refused so, the call
	// fails with that.
	tried := map[*endpoint]bool{}
	var tlsErr error
	answered := false
	var track *callTrack
	if mode == blocking {
		ctx, track = trackCall(ctx)
	}
	c.firstContact(ctx)
	c.toLeader()
	for {
		e := c.current()
		began := time.Now()
		if track != nil {
			track.served.Store(false)
		}
		res, stuck, err := attempt(ctx, c, mode, e, f)
		if err == nil {
			return res.Msg, nil
		}
		if track != nil && (track.served.Load() || waitKept(err) || time.Since(began) > c.opts.retryTimeout) {
			// A wait that a member served (it queued the request, or said
			// it left it queued when it drained; or, where nothing says
			// so, as a unary call's wait, one that went on for longer
			// than the whole budget with its endpoint answering the
			// probes) and then broke starts the budget afresh: the budget
			// counts the time no member serves the call, and the failure
			// is new, not the end of a streak of them. Counted from the
			// call's start, a Lock that had waited three minutes gave up
			// at its first failure; counted until a single wait outlasted
			// the budget, a Lock gave up in a rolling restart after two
			// members had each served it for 9 s.
			start = time.Now()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !stuck && !retryable(err) {
			return nil, e.explain(err)
		}
		// A certificate refusal is not a node that is down: a CA or
		// certificate that will not do better for waiting; nor is a server
		// that does not speak TLS at an https:// endpoint. Each endpoint
		// is tried once (one member's certificate or scheme may be wrong,
		// another may be down), then the call fails with why, instead of
		// retrying until the retry timeout.
		tried[e] = true
		if refused := tlsRefusal(e, err); refused != nil {
			if tlsErr == nil {
				tlsErr = refused
			}
		} else if connect.IsWireError(err) {
			answered = true
		}
		if tlsErr != nil && !answered && len(tried) == len(c.endpoints) {
			return nil, tlsErr
		}
		c.failover(e)
		if time.Since(start) > c.opts.retryTimeout {
			if connect.IsWireError(err) && connect.CodeOf(err) == connect.CodeUnavailable {
				// A server answered that it cannot serve: its words, once.
				var ce *connect.Error
				errors.As(err, &ce)
				return nil, fmt.Errorf("%w (tried %d endpoint(s) for %v; the last, %s, answered: %s)",
					ErrUnavailable, len(c.endpoints), c.opts.retryTimeout, e.url, ce.Message())
			}
			return nil, fmt.Errorf("%w (tried %d endpoint(s) for %v; last from %s: %v)",
				ErrUnavailable, len(c.endpoints), c.opts.retryTimeout, e.url, c.silence(mode, stuck, err))
		}
		if err := c.backoff(ctx, &pause); err != nil {
			return nil, err
		}
	}
}

// callTrack is what the attempts of one blocking call (and the calls of
// one acquire, sendUntilDecided) tell it besides their answers: how many
// times the request was, or may have been, put on the wire (refusedByState's
// rule), and whether the attempt under way was served: the servers queued
// it, as a session stream's push of its waiter id says.
type callTrack struct {
	sends  atomic.Int32
	served atomic.Bool
}

// trackKey carries a call's callTrack in its ctx.
type trackKey struct{}

// trackCall answers ctx's callTrack, adding one to ctx if it has none.
func trackCall(ctx context.Context) (context.Context, *callTrack) {
	if t := trackOf(ctx); t != nil {
		return ctx, t
	}
	t := new(callTrack)
	return context.WithValue(ctx, trackKey{}, t), t
}

// trackOf answers ctx's callTrack, nil if it has none.
func trackOf(ctx context.Context) *callTrack {
	t, _ := ctx.Value(trackKey{}).(*callTrack)
	return t
}

// queuedNow notes that t's attempt under way was queued by the servers.
func (t *callTrack) queuedNow() {
	if t != nil {
		t.served.Store(true)
	}
}

// keptWaitWords are the servers' words for a queued wait that a draining
// member left queued for the client's resend elsewhere (runtime's
// ErrWaitKept, answered unavailable): the member had served the wait.
const keptWaitWords = "the queued wait keeps its place"

// waitKept says whether err is a member's answer that it stopped serving a
// wait it had queued, and left it queued (keptWaitWords).
func waitKept(err error) bool {
	return connect.CodeOf(err) == connect.CodeUnavailable && strings.Contains(err.Error(), keptWaitWords)
}

// backoff sleeps about *pause (with jitter, so that clients that lost the
// same node do not retry in step) and doubles it, up to the largest.
func (c *Client) backoff(ctx context.Context, pause *time.Duration) error {
	d := *pause/2 + time.Duration(mrand.Int64N(int64(*pause)/2+1))
	t := time.NewTimer(d)
	defer t.Stop()
	*pause = min(*pause*2, c.opts.backoffMax)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// silence is what an attempt given up as stuck failed with, in words
// that say so: the probe's cancel (or the deadline) of an endpoint that
// did not answer read "context canceled", which the caller had not done.
func (c *Client) silence(mode callMode, stuck bool, err error) error {
	if !stuck || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		connect.CodeOf(err) == connect.CodeCanceled || connect.CodeOf(err) == connect.CodeDeadlineExceeded) {
		return err
	}
	if mode == blocking {
		return fmt.Errorf("it did not answer a health probe within %v (WithAttemptTimeout) while the call waited", c.opts.attemptTimeout)
	}
	return fmt.Errorf("it did not answer within %v (WithAttemptTimeout)", c.opts.attemptTimeout)
}

// attempt runs f once against e. stuck says the attempt was given up
// because e did not answer in time, not because e refused.
func attempt[T any](ctx context.Context, c *Client, mode callMode, e *endpoint,
	f func(ctx context.Context, e *endpoint) (*connect.Response[T], error)) (res *connect.Response[T], stuck bool, err error) {
	// One context per attempt, not a cancel around a timeout: a context
	// nested in a fresh one makes its parent allocate a set of children,
	// and an attempt is made for every operation.
	var actx context.Context
	var cancel context.CancelFunc
	var gaveUp atomic.Bool
	var deadline time.Time
	switch mode {
	case unary:
		deadline = time.Now().Add(c.opts.attemptTimeout)
		actx = &attemptCtx{Context: ctx, deadline: deadline}
	case blocking:
		actx, cancel = context.WithCancel(ctx)
		defer cancel()
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(c.opts.probeInterval)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				if !c.answers(actx, e) && actx.Err() == nil {
					gaveUp.Store(true)
					cancel()
					return
				}
			}
		}()
	default:
		panic(fmt.Sprintf("lockstep: unknown call mode %d", mode))
	}
	res, err = f(actx, e)
	if err == nil || connect.IsWireError(err) {
		e.heard()
	}
	if err != nil && ctx.Err() == nil {
		// The attempt's own deadline (unary), or the probe (blocking):
		// either way the endpoint, not the caller, ran out of time. The
		// server may answer deadline_exceeded itself a moment before the
		// attempt's deadline passes here, since the deadline travels with
		// the request.
		stuck = gaveUp.Load() || (mode == unary && (!time.Now().Before(deadline) || connect.CodeOf(err) == connect.CodeDeadlineExceeded))
	}
	return res, stuck, err
}

// attemptCtx is a unary attempt's context: the caller's, with the
// attempt's deadline, which it does not enforce by itself (Done and Err
// are the caller's). Where an attempt waits, the wait enforces it: an
// answer on a shared stream by a timer of its wait (streamWait), a unary
// call by a real deadline its interceptor gives it (boundAttempt). A
// context.WithTimeout for each attempt cost every operation a timer, a
// child registered with its parent and a Done channel: a fifth of the
// allocations of a lock and unlock cycle.
type attemptCtx struct {
	context.Context
	deadline time.Time
}

// attemptKey finds an attemptCtx among a context's values.
type attemptKey struct{}

func (a *attemptCtx) Deadline() (time.Time, bool) {
	if d, ok := a.Context.Deadline(); ok && d.Before(a.deadline) {
		return d, true
	}
	return a.deadline, true
}

func (a *attemptCtx) Value(key any) any {
	if key == (attemptKey{}) {
		return a
	}
	return a.Context.Value(key)
}

// boundAttempt gives a unary call made in an attempt the attempt's
// deadline as a real one, which net/http obeys.
func boundAttempt(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if a, ok := ctx.Value(attemptKey{}).(*attemptCtx); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, a.deadline)
			defer cancel()
		}
		return next(ctx, req)
	}
}

// streamWait is what a request on a session stream waits for besides its
// answer and the end of ctx: the attempt's deadline, when an attemptCtx
// left it to the wait (a deadline of ctx's own that comes first ends ctx
// itself, and is its Err). Its timer comes from a pool, so that a round
// trip allocates none.
type streamWait struct {
	ctx   context.Context
	timer *time.Timer
	fired <-chan time.Time // nil when nothing is left to the wait: never ready
}

var waitTimers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

func newStreamWait(ctx context.Context) streamWait {
	w := streamWait{ctx: ctx}
	a, ok := ctx.Value(attemptKey{}).(*attemptCtx)
	if !ok {
		return w
	}
	if d, ok := a.Context.Deadline(); ok && !a.deadline.Before(d) {
		return w
	}
	w.timer = waitTimers.Get().(*time.Timer)
	w.timer.Reset(time.Until(a.deadline))
	w.fired = w.timer.C
	return w
}

// done returns the timer to its pool.
func (w streamWait) done() {
	if w.timer != nil {
		w.timer.Stop() // since Go 1.23 no stale tick is left to read after Stop
		waitTimers.Put(w.timer)
	}
}

// err is why the wait ended without its answer: the caller's ctx, or the
// deadline (which deadline_exceeded says, as a server would).
func (w streamWait) err() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	return connect.NewError(connect.CodeDeadlineExceeded, context.DeadlineExceeded)
}

// heard records that the endpoint answered, so that a probe of it can be
// skipped for a while.
func (e *endpoint) heard() {
	e.mu.Lock()
	e.lastHeard = time.Now()
	e.mu.Unlock()
}

// probeRun is one health probe of an endpoint, shared by every call that
// asks while it runs.
type probeRun struct {
	done     chan struct{}
	answered bool
}

// answers says whether e answers: at once if it answered anything within
// the probe interval, otherwise by one Health call bounded by the attempt
// timeout (one at a time per endpoint, shared by every caller). Any answer
// counts, an error too: a node that says "no leader" is alive, and its own
// retries carry the calls it holds; only silence (a stopped process, a
// half-open connection) is a reason to leave it.
func (c *Client) answers(ctx context.Context, e *endpoint) bool {
	e.mu.Lock()
	if time.Since(e.lastHeard) < c.opts.probeInterval {
		e.mu.Unlock()
		return true
	}
	run := e.probe
	if run == nil {
		run = &probeRun{done: make(chan struct{})}
		e.probe = run
		go func() {
			pctx, cancel := context.WithTimeout(context.Background(), c.opts.attemptTimeout)
			defer cancel()
			_, err := e.cluster.Health(pctx, connect.NewRequest(&pb.HealthRequest{}))
			e.mu.Lock()
			run.answered = err == nil || connect.IsWireError(err)
			if run.answered {
				e.lastHeard = time.Now()
			}
			e.probe = nil
			e.mu.Unlock()
			close(run.done)
		}()
	}
	e.mu.Unlock()
	select {
	case <-run.done:
		return run.answered
	case <-ctx.Done():
		return true // the caller went away; nothing to decide
	}
}

// loopback says whether host (a name or an address) stays on this
// machine: localhost, or a loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// apiKeyInterceptor adds the API key to unary calls and streams.
type apiKeyInterceptor string

func (k apiKeyInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(k))
		return next(ctx, req)
	}
}

func (k apiKeyInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(k))
		return conn
	}
}

func (k apiKeyInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
