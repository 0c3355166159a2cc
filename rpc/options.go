package rpc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
)

// Options configures the API. Backend is required; every other field has a
// default.
type Options struct {
	Backend Backend
	// NodeID names this node in logs and answers.
	NodeID string
	// Limits are the state machine's limits, checked here before proposing
	// so that bad input never costs a consensus round. Defaults to
	// core.DefaultLimits(), which is what the runtime runs with.
	Limits core.Limits
	// DefaultTTL is the lease of a session whose request gives no TTL
	// (locks.default_ttl_seconds). Defaults to 30 s.
	DefaultTTL time.Duration
	// MaxWait caps waits (locks.max_wait_time_seconds): a wait longer than
	// this waits this long, on every API, and so does -1 over REST (Connect
	// and gRPC callers may ask -1 and cancel). Defaults to 60 s; NoWait
	// makes every finite wait try once.
	MaxWait time.Duration
	// StampLag is how far behind the leader's clock this member may stamp
	// a request it forwards (consensus.tick_interval_ms, twice): sessions
	// answer it so that clients end their view of a lease that much early.
	// Defaults to 200 ms (the default tick, twice).
	StampLag time.Duration
	// RequestTimeout bounds a call that does not wait in a queue, and is
	// added to the wait of one that does. Defaults to 15 s.
	RequestTimeout time.Duration
	// MaxRequestBytes bounds a request message. Defaults to 1 MiB.
	MaxRequestBytes int
	// MaxStreamsPerPrincipal bounds the streams one authenticated
	// principal holds open at once (security.max_streams_per_principal);
	// 0: no bound. Anonymous callers are not counted.
	MaxStreamsPerPrincipal int
	// MaxStreamRequests bounds the requests one session stream has in
	// flight (SessionService.Stream); past it a request is refused
	// (resource_exhausted) and the stream goes on. Defaults to
	// DefaultMaxStreamRequests (4096).
	MaxStreamRequests int
	// BodyReadTimeout bounds the time to receive a request's body (not the
	// call: waits and streams last longer). Defaults to 10 s.
	BodyReadTimeout time.Duration
	// StreamIdleTimeout cuts a session or Multiplex stream whose client
	// sent nothing for this long while none of its requests was being
	// served (a half-open connection; a connection that dies while a wait
	// is served is found by HTTP/2's pings). Defaults to 3 minutes; the Go
	// client keeps its sessions alive on their stream every minute.
	StreamIdleTimeout time.Duration
	// Draining is done when the member stops serving (SIGTERM's drain,
	// once the node answered what was proposed): every session and
	// Multiplex stream then ends with unavailable, so that its client
	// moves to another member. Without it such a stream lasts until its
	// client ends it, and http.Server.Shutdown waits for it to the drain
	// timeout. nil: never.
	Draining context.Context
	Logger   *slog.Logger
	// Registerer receives the API's metrics. Defaults to none (metrics are
	// counted but not exported).
	Registerer prometheus.Registerer
	// Authenticator, Authorizer and Auditor are the interceptor chain's
	// security slots; each defaults to a no-op (see interceptors.go).
	Authenticator Authenticator
	Authorizer    Authorizer
	Auditor       Auditor
}

// NoWait, as Options.MaxWait, caps REST waits at zero: try once
// (locks.max_wait_time_seconds: 0).
const NoWait time.Duration = -1

func (o Options) withDefaults() (Options, error) {
	if o.Backend == nil {
		return o, errors.New("rpc: Options.Backend is required")
	}
	if o.Limits == (core.Limits{}) {
		o.Limits = core.DefaultLimits()
	}
	if err := o.Limits.Validate(); err != nil {
		return o, err
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = 30 * time.Second
	}
	if o.StampLag == 0 {
		o.StampLag = 200 * time.Millisecond
	}
	if o.MaxWait == 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 15 * time.Second
	}
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = 1 << 20
	}
	if o.MaxStreamRequests == 0 {
		o.MaxStreamRequests = DefaultMaxStreamRequests
	}
	if o.StreamIdleTimeout == 0 {
		o.StreamIdleTimeout = streamIdleTimeout
	}
	if o.BodyReadTimeout == 0 {
		o.BodyReadTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Authenticator == nil {
		o.Authenticator = anonymous{}
	}
	if o.Authorizer == nil {
		o.Authorizer = allowAll{}
	}
	if o.Auditor == nil {
		o.Auditor = noAudit{}
	}
	ttlMs := o.DefaultTTL.Milliseconds()
	if ttlMs < o.Limits.MinTTLMs || ttlMs > o.Limits.MaxTTLMs {
		return o, errors.New("rpc: DefaultTTL is outside the limits' TTL range")
	}
	if o.MaxWait != NoWait && (o.MaxWait.Milliseconds() < 1 || o.MaxWait.Milliseconds() > o.Limits.MaxWaitMs) {
		return o, errors.New("rpc: MaxWait is outside the limits' wait range")
	}
	return o, nil
}
