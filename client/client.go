package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// Client talks to a Lockstep cluster through one of its endpoints at a time,
// moving to the next when one is unavailable. It is safe for concurrent use.
type Client struct {
	opts      options
	endpoints []*endpoint
	cur       atomic.Int64  // index of the endpoint in use
	seq       atomic.Uint64 // the last request_seq handed out
	clientID  string
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
}

// Option configures a Client.
type Option func(*options)

type options struct {
	tls          *tls.Config
	apiKey       string
	clientID     string
	retryTimeout time.Duration
	backoffMin   time.Duration
	backoffMax   time.Duration
	httpClient   *http.Client
}

// WithTLS sets the TLS configuration for https:// endpoints (for example a
// client certificate for mTLS). Defaults to the system roots.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithAPIKey sends key as "Authorization: Bearer KEY" on every request.
// Defaults to none.
func WithAPIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// WithClientID sets the id the server deduplicates this client's requests
// by (at most 120 bytes). Defaults to a random id per Client.
func WithClientID(id string) Option { return func(o *options) { o.clientID = id } }

// WithRetryTimeout bounds how long a request keeps retrying unavailable
// endpoints before it fails with ErrUnavailable. Defaults to 15s.
func WithRetryTimeout(d time.Duration) Option { return func(o *options) { o.retryTimeout = d } }

// WithBackoff sets the first and the largest pause between retries (doubling,
// with jitter). Defaults to 50ms and 1s.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.backoffMin, o.backoffMax = min, max }
}

// WithHTTPClient replaces the HTTP client. Defaults to one built from
// WithTLS: HTTP/1.1 for http://, HTTP/2 when negotiated for https://.
func WithHTTPClient(h *http.Client) Option { return func(o *options) { o.httpClient = h } }

// New returns a client for the cluster whose API endpoints are given
// ("http://127.0.0.1:8080", "https://lockstep-2:8080"). It does not connect
// until the first request.
func New(endpoints []string, opts ...Option) (*Client, error) {
	o := options{retryTimeout: 15 * time.Second, backoffMin: 50 * time.Millisecond, backoffMax: time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if len(endpoints) == 0 {
		return nil, errors.New("lockstep: no endpoints: give at least one, like http://127.0.0.1:8080")
	}
	if o.clientID == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		o.clientID = "go-" + hex.EncodeToString(b[:])
	}
	if len(o.clientID) > 120 {
		return nil, fmt.Errorf("lockstep: client id is %d bytes; at most 120", len(o.clientID))
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
	var copts []connect.ClientOption
	if o.apiKey != "" {
		copts = append(copts, connect.WithInterceptors(apiKeyInterceptor(o.apiKey)))
	}
	c := &Client{opts: o, clientID: o.clientID}
	for _, raw := range endpoints {
		u := strings.TrimRight(strings.TrimSpace(raw), "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			if u == "" {
				return nil, errors.New("lockstep: an empty endpoint")
			}
			u = "http://" + u
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
		})
	}
	return c, nil
}

// ClientID is the id the server deduplicates this client's requests by.
func (c *Client) ClientID() string { return c.clientID }

// Endpoint is the endpoint requests go to now.
func (c *Client) Endpoint() string { return c.current().url }

func (c *Client) current() *endpoint {
	return c.endpoints[int(c.cur.Load())%len(c.endpoints)]
}

// failover moves to the endpoint after from, unless another request has
// already moved on.
func (c *Client) failover(from *endpoint) {
	for i, e := range c.endpoints {
		if e == from {
			c.cur.CompareAndSwap(int64(i), int64((i+1)%len(c.endpoints)))
			return
		}
	}
}

// nextSeq hands out the request_seq of a new mutating request; its retries
// reuse it.
func (c *Client) nextSeq() uint64 { return c.seq.Add(1) }

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

// do runs f against the current endpoint, and on unavailability against the
// next one, with backoff, until it succeeds, fails otherwise, ctx ends or
// the retry timeout passes. Callers build the request (with its client_id
// and request_seq) once, outside f, so every attempt carries the same id.
func do[T any](ctx context.Context, c *Client, f func(ctx context.Context, e *endpoint) (*connect.Response[T], error)) (*T, error) {
	start := time.Now()
	pause := c.opts.backoffMin
	for {
		e := c.current()
		res, err := f(ctx, e)
		if err == nil {
			return res.Msg, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !retryable(err) {
			return nil, err
		}
		c.failover(e)
		if time.Since(start) > c.opts.retryTimeout {
			return nil, fmt.Errorf("%w (tried %d endpoint(s) for %v; last from %s: %v)",
				ErrUnavailable, len(c.endpoints), c.opts.retryTimeout, e.url, err)
		}
		// Jitter keeps clients that lost the same node from retrying in step.
		d := pause/2 + time.Duration(mrand.Int64N(int64(pause)/2+1))
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, c.opts.backoffMax)
	}
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

// closeOnce is a channel closed at most once.
type closeOnce struct {
	once sync.Once
	ch   chan struct{}
}

func newCloseOnce() *closeOnce { return &closeOnce{ch: make(chan struct{})} }
func (c *closeOnce) close()    { c.once.Do(func() { close(c.ch) }) }
