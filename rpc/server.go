package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/vanguard"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/lockstepd/lockstep/internal/quote"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// serviceNames are the services this server answers, for reflection and
// health.
var serviceNames = []string{
	lockstepv1connect.SessionServiceName,
	lockstepv1connect.LockServiceName,
	lockstepv1connect.SemaphoreServiceName,
	lockstepv1connect.RWLockServiceName,
	lockstepv1connect.BarrierServiceName,
	lockstepv1connect.ElectionServiceName,
	lockstepv1connect.WatchServiceName,
	lockstepv1connect.ClusterServiceName,
}

// compressMinBytes is the smallest reply worth compressing.
const compressMinBytes = 4096

// serviceOf is the service of a procedure path (/package.Service/Method).
func serviceOf(path string) string {
	svc, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return svc
}

// procedures are the paths of every method of serviceNames, from the
// registered descriptors: the generated handler of a service answers a
// method it lacks with Go's plain-text 404, and the API answers JSON.
var procedures = sync.OnceValue(func() map[string]bool {
	out := map[string]bool{}
	for _, name := range serviceNames {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		if err != nil {
			panic(fmt.Sprintf("rpc: service %s is not registered: %v", name, err))
		}
		methods := d.(protoreflect.ServiceDescriptor).Methods()
		for i := range methods.Len() {
			out["/"+name+"/"+string(methods.Get(i).Name())] = true
		}
	}
	return out
})

func isService(name string) bool {
	for _, s := range serviceNames {
		if s == name {
			return true
		}
	}
	return false
}

// New builds the API's HTTP handler: every service over Connect, gRPC and
// gRPC-Web (procedure paths go straight to the Connect handlers), the REST
// paths of docs/design.md through the vanguard transcoder, gRPC health and
// reflection. Serve it with NewHTTPServer, which speaks HTTP/1.1 and h2c.
func New(opts Options) (http.Handler, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &service{b: opts.Backend, opts: opts, workers: newWorkers(workerIdle)}
	m, err := newMetrics(opts.Registerer, opts.NodeID)
	if err != nil {
		return nil, err
	}
	handlerOpts := append(connectCodecs(),
		connect.WithInterceptors(s.interceptors(m)...),
		connect.WithReadMaxBytes(opts.MaxRequestBytes),
		boundedGzip(int64(opts.MaxRequestBytes)),
		// Lock replies are a few dozen bytes: gzip costs far more CPU than it
		// saves (about a tenth of the leader's CPU under load, measured in
		// docs/performance.md), so only large replies (status lists) are
		// compressed.
		connect.WithCompressMinBytes(compressMinBytes),
	)
	cluster := ClusterHandler{s}
	type mount struct {
		path string
		h    http.Handler
	}
	var mounts []mount
	add := func(path string, h http.Handler) { mounts = append(mounts, mount{path, h}) }
	add(lockstepv1connect.NewSessionServiceHandler(SessionHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewLockServiceHandler(LockHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewSemaphoreServiceHandler(SemaphoreHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewRWLockServiceHandler(RWLockHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewBarrierServiceHandler(BarrierHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewElectionServiceHandler(ElectionHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewWatchServiceHandler(WatchHandler{s}, handlerOpts...))
	add(lockstepv1connect.NewClusterServiceHandler(cluster, handlerOpts...))

	rpcMux := http.NewServeMux()
	var services []*vanguard.Service
	for _, mt := range mounts {
		rpcMux.Handle(mt.path, mt.h)
		services = append(services, vanguard.NewService(mt.path, mt.h))
	}
	rpcMux.Handle(grpchealth.NewHandler(cluster))
	reflector := grpcreflect.NewStaticReflector(serviceNames...)
	rpcMux.Handle(grpcreflect.NewHandlerV1(reflector))
	rpcMux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))

	transcoder, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(restJSON),
		vanguard.WithUnknownHandler(http.HandlerFunc(restNotFound)),
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(uint32(opts.MaxRequestBytes)),
			vanguard.WithRESTUnmarshalOptions(vanguard.RESTUnmarshalOptions{DiscardUnknownQueryParams: false}),
		),
	)
	if err != nil {
		return nil, err
	}
	routes, err := restRoutes()
	if err != nil {
		return nil, err
	}
	rest := restFront(transcoder, routes, int64(opts.MaxRequestBytes), opts.BodyReadTimeout)
	// The connection's TLS state and address ride in the context for the
	// authenticator and the audit; a plaintext node without an audit log
	// needs neither, and saves the request copy.
	_, noAuditor := opts.Auditor.(noAudit)
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil || !noAuditor {
			r = withConnInfo(r)
		}
		if isRPCPath(r.URL.Path) {
			if _, pattern := rpcMux.Handler(r); pattern == "" || (isService(serviceOf(r.URL.Path)) && !procedures()[r.URL.Path]) {
				// The mux's own answer is plain text, as is a service
				// handler's for a method it lacks; the API answers JSON.
				// The code is unimplemented, as Connect and gRPC give a
				// procedure a server lacks (HTTP 404 stays): not_found
				// says a session is gone, and a newer client calling a
				// procedure an older member lacks would take it for the
				// loss of its session.
				writeJSONError(w, http.StatusNotFound, "unimplemented",
					fmt.Sprintf("no such procedure: %s (see docs/api.md for the services and their methods)", r.URL.Path))
				return
			}
			if p := envelopeProtocol(r); p != "" && framesWhole(r.URL.Path) {
				if msg, ok := checkFrames(r, p); !ok {
					writeFrameError(w, r, p, msg)
					return
				}
			}
			rpcMux.ServeHTTP(w, r)
			return
		}
		rest.ServeHTTP(w, r)
	})
	// A request body larger than the message limit plus framing is refused
	// before anything reads it, and one that arrives too slowly is cut off.
	return preGrow(limitBody(crossOrigin(root), int64(opts.MaxRequestBytes)+64<<10, opts.BodyReadTimeout, opts.StreamIdleTimeout, opts.Draining)), nil
}

// crossOrigin refuses a browser's cross-site request that changes
// something (net/http's CrossOriginProtection: Sec-Fetch-Site, or Origin
// against Host). REST takes a body sent as a form (for curl -d), which a
// page of any site may make a browser post, with the client certificate
// that browser presents: a forged acquire or close in its user's name.
// Programs and curl send neither header and are not affected; reads
// (GET, HEAD) are never refused.
func crossOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONError(w, http.StatusForbidden, "permission_denied",
			fmt.Sprintf("a browser's cross-origin %s from %s is refused: the API serves programs and curl, not other sites' pages "+
				"(which could act with the browser's client certificate); call it from a program or from the API's own origin",
				r.Method, quote.Bounded(originOf(r))))
	}))
	return p.Handler(next)
}

// originOf is what a refused cross-origin request says it came from.
func originOf(r *http.Request) string {
	if o := r.Header.Get("Origin"); o != "" {
		return o
	}
	return "a page of another site (Sec-Fetch-Site: " + r.Header.Get("Sec-Fetch-Site") + ")"
}

// limitBody bounds a request's body in size (http.MaxBytesReader: too large
// is refused with 413 before anything reads on) and in the time to read it,
// and only the body: the deadline is lifted as soon as the body has been
// read. http.Server's ReadTimeout cannot do this: on HTTP/1.1 it stays armed
// after the body, and when it fires during a long wait the server cancels
// the request. One shallow copy of the request does both (it used to be
// two, http.MaxBytesHandler's and this one's).
func limitBody(next http.Handler, maxBytes int64, limit, idle time.Duration, draining context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A shallow copy, so that the server still sees its own body type
		// and closes a connection whose body did not arrive whole.
		r2 := *r
		body := r.Body
		if sessionStreamPath(r.URL.Path) && body != nil && body != http.NoBody {
			// A session stream's body lasts as long as its session: each
			// message is bounded by the message limit (the Connect
			// handler's read limit), and the stream by how long it may
			// stay silent (Options.StreamIdleTimeout) while it has no
			// request being served, not by a total.
			ib := &idleBody{ReadCloser: body, rc: http.NewResponseController(w), timeout: idle, rearm: min(streamIdleRearm, idle/4)}
			defer ib.stop()
			r2.Body = &readAhead{ReadCloser: ib} // a message in one read of the body, not two (readahead.go)
			if draining != nil {
				// The member stops: closing the body wakes the stream's
				// receive, which then ends the stream (sessionStream.run).
				stop := context.AfterFunc(draining, func() { body.Close() })
				defer stop()
			}
			next.ServeHTTP(w, r2.WithContext(context.WithValue(r.Context(), idleBodyKey{}, ib)))
			return
		}
		if body != nil && body != http.NoBody && r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(limit)); err == nil {
				body = &liftingBody{ReadCloser: body, rc: rc}
			} // else not supported by this connection: no time bound
		}
		r2.Body = http.MaxBytesReader(w, body, maxBytes)
		next.ServeHTTP(w, &r2)
	})
}

// idleBody bounds the silence of a session stream's body: each read must
// deliver within timeout of the deadline's last push, which is at most
// rearm before the read starts. Its client keeps its session alive on it
// well within that.
//
// The deadline is pushed back at most once per rearm, not at every read:
// on HTTP/2 each push is a message to the connection's serve loop and a
// timer reset there, 3% of the leader's CPU at 64 workers when every
// message of every stream did it (docs/performance.md).
type idleBody struct {
	io.ReadCloser
	rc             *http.ResponseController
	timeout, rearm time.Duration

	mu       sync.Mutex
	armed    time.Time   // when the deadline was last pushed back: it is armed + timeout
	inFlight int         // requests of the stream being served (hold, release)
	served   time.Time   // when the last of them ended
	check    *time.Timer // extend, rearm before the deadline, while the stream serves requests
	stopped  bool
}

// idleBodyKey carries a session stream's idleBody to its handler.
type idleBodyKey struct{}

// hold and release count the requests of the stream being served, so that
// the silence bound runs from the later of the last read and the last
// moment a request was served: a client whose only request is a blocked
// acquire sends nothing on that stream (its keepalives may go to another
// endpoint's), and was cut after streamIdleTimeout, its wait withdrawn. A
// connection that died meanwhile is still found, by HTTP/2's pings
// (NewHTTPServer). They only count: the deadline is pushed back by extend,
// once per bound at most, not at every request.
func (b *idleBody) hold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight++
	if b.check == nil && !b.stopped {
		b.check = time.AfterFunc(max(b.armed.Add(b.timeout-b.rearm).Sub(time.Now()), 0), b.extend)
	}
}

func (b *idleBody) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inFlight--
	b.served = time.Now()
}

// extend runs rearm before the deadline: it pushes the deadline back to
// timeout after the last moment a request was served, when that is later
// than the last push, and comes again rearm before the new deadline; when
// nothing was served since, the deadline stands and the next hold starts
// it again.
func (b *idleBody) extend() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	now := time.Now()
	busy := b.served
	if b.inFlight > 0 {
		busy = now
	}
	if busy.After(b.armed) {
		_ = b.rc.SetReadDeadline(busy.Add(b.timeout))
		b.armed = busy
	}
	next := b.armed.Add(b.timeout - b.rearm).Sub(now)
	if next <= 0 {
		b.check = nil
		return
	}
	b.check.Reset(next)
}

// stop ends extend's visits, once the stream's handler returned.
func (b *idleBody) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped = true
	if b.check != nil {
		b.check.Stop()
	}
}

// streamIdleRearm is how often a session stream's read deadline is pushed
// back at most: a read gets at least streamIdleTimeout - streamIdleRearm.
const streamIdleRearm = 10 * time.Second

func (b *idleBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if now := time.Now(); now.Sub(b.armed) >= b.rearm {
		_ = b.rc.SetReadDeadline(now.Add(b.timeout)) // unsupported: no bound, as for other bodies
		b.armed = now
	}
	b.mu.Unlock()
	return b.ReadCloser.Read(p)
}

// liftingBody lifts the read deadline once the whole body has arrived. A
// body that fails (the deadline passed) keeps it, so that the server's
// draining of the rest on Close cannot hang; that connection is closed.
type liftingBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *liftingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Server timeouts and limits. Reads and idle connections are bounded:
// headers within readHeaderTimeout, bodies within Options.BodyReadTimeout
// (bodyDeadline), idle keep-alive connections for idleTimeout. Writes are
// not bounded by the server because acquires wait in queues (REST up to
// locks.max_wait_time_seconds, Connect and gRPC as long as the caller asks)
// and Watch and Observe stream for as long as the client stays; each unary
// call bounds itself instead: its wait plus Options.RequestTimeout.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	maxStreams        = 1000
)

// NewHTTPServer returns the server for the API address: HTTP/1.1 and
// HTTP/2 without TLS (h2c, prior knowledge, as gRPC clients speak it), with
// explicit timeouts and header limits. The errors it logs go to log.
//
// h2c comes from net/http's own HTTP/2 (http.Server.Protocols) rather than
// golang.org/x/net/http2/h2c, whose NewHandler is deprecated in favour of it:
// h2c.NewHandler hijacks each HTTP/2 connection, and hijacked connections
// escape http.Server.Shutdown's graceful drain.
func NewHTTPServer(addr string, h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      maxStreams,
			MaxReceiveBufferPerStream: 1 << 20,
			PingTimeout:               15 * time.Second,
			SendPingTimeout:           time.Minute,
		},
		ErrorLog: ServerErrorLog(log),
	}
}

// ServerErrorLog is an http.Server's ErrorLog for the API and metrics
// servers: what net/http reports at WARN, except a TLS handshake that
// failed, at DEBUG. Those are one client's connection and nothing an
// operator of the server can act on (docs/operations.md, "Logs"): the CLI
// tries every endpoint and drops the ones that did not answer first, so
// each command left "EOF" and "connection reset" handshake lines, and a
// client that does not trust the CA is told so by its own TLS error.
func ServerErrorLog(l *slog.Logger) *stdlog.Logger {
	return stdlog.New(serverErrors{l}, "", 0)
}

type serverErrors struct{ l *slog.Logger }

func (w serverErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") ||
		// A client gone before its HTTP/2 preface (the CLI drops the
		// endpoints that did not answer first, once TLS was up).
		(strings.HasPrefix(msg, "http2: server: error reading preface from client") &&
			(strings.HasSuffix(msg, "connection reset by peer") || strings.HasSuffix(msg, "EOF"))) {
		level = slog.LevelDebug
	}
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

// UseTLS makes srv (from NewHTTPServer) serve TLS with cfg: HTTP/2 by ALPN
// and HTTP/1.1, and no h2c, which is only for plaintext. Serve it with
// srv.ServeTLS(ln, "", ""): the certificate comes from cfg.
func UseTLS(srv *http.Server, cfg *tls.Config) {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	srv.Protocols = &protocols
	cfg = cfg.Clone()
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.NextProtos = []string{"h2", "http/1.1"}
	srv.TLSConfig = cfg
}
