package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// The interceptor chain, outermost first:
//
//	metrics → audit → authentication → authorization → validation → ownership → handler
//
// Metrics see everything, refusals included. Audit records who asked what
// and how it ended, failed authentications and denials included (the
// authenticator names the caller into the audit's record as it goes), and
// refuses every request while the audit log cannot be written (503).
// Authentication names the caller from the request's headers and its TLS
// connection; authorization decides from the caller, the procedure and the
// request message; validation answers bad input before anything is
// proposed; ownership keeps an authenticated principal's sessions its own
// (ownership.go).
//
// Authentication, authorization and audit are slots: the defaults let
// everyone in anonymously and record nothing. Package security fills them
// (client certificates, API keys, ACLs, the audit log) through Options
// without touching the handlers. REST requests pass through the same chain:
// the transcoder hands them to the Connect handlers with their headers and
// their context, which carries the TLS connection (connInfo).

// Principal is who made a request.
type Principal struct {
	// ID names the caller (an API key's name, a certificate's subject);
	// empty for anonymous.
	ID string
	// Auth is how the caller was proven, or for a refusal how it tried:
	// "mtls", "api_key", "basic" (an Authorization: Basic header, which
	// package security always refuses), or "none".
	Auth string
	// Expires is when the credentials that proved the caller stop being
	// good (a client certificate's NotAfter); zero for credentials that
	// do not expire (an API key). A new request is checked by
	// Authenticate, but what they opened would outlive them: with a
	// Reloadable authenticator, a stream and a wait they opened end then,
	// with unauthenticated, as a reload that withdrew them would end
	// them (revoke.go).
	Expires time.Time
}

// Authenticator names the caller of a request, or refuses it with
// connect.CodeUnauthenticated (401).
type Authenticator interface {
	Authenticate(ctx context.Context, procedure string, header http.Header) (Principal, error)
}

// Authorizer allows or refuses (connect.CodePermissionDenied, 403) a caller's
// request. msg is the request message (for a streaming call, its first).
type Authorizer interface {
	Authorize(ctx context.Context, who Principal, procedure string, msg any) error
}

// AuditRecord is one finished request.
type AuditRecord struct {
	Principal Principal
	Procedure string
	Peer      string
	Request   any // the request message; nil when it could not be read
	Response  any // the response message of a unary call that succeeded
	Code      connect.Code
	Err       error
	Duration  time.Duration
	// Session and FencingToken are the grant a release (of a lock, a
	// semaphore, an RW lock, or a resign) ended, which its answer does
	// not carry and its request need not (a release by owner label names
	// no session): 0 for other requests, and for a release that failed.
	Session, FencingToken uint64
	// Opened says the record is a stream's opening (its first message
	// read), not its end: a Watch or a session stream held for hours left
	// no trace until it ended, and none if the member crashed.
	Opened bool
}

// ended is where a release leaves the grant it ended for the audit
// record of its request (AuditRecord.Session and FencingToken).
type ended struct{ session, token uint64 }

type endedKey struct{}

// withEnded is ctx with a place for what the request's release ends.
func withEnded(ctx context.Context) (context.Context, *ended) {
	e := &ended{}
	return context.WithValue(ctx, endedKey{}, e), e
}

// noteEnded records the grant a release ended, for its audit record.
func noteEnded(ctx context.Context, session, token uint64) {
	if e, ok := ctx.Value(endedKey{}).(*ended); ok {
		e.session, e.token = session, token
	}
}

// Auditor records finished requests. Audit returns once rec is recorded,
// or with why it could not be: the request's answer is withheld then
// (withheld), so that no answer goes out without its record. It must not
// wait past ctx.
type Auditor interface {
	Audit(ctx context.Context, rec AuditRecord) error
}

// AuditHealth is an Auditor that can tell it is failing to write: while
// Healthy answers an error, every request is refused with it (503), since a
// request that cannot be recorded must not happen (like Vault's audit
// devices).
type AuditHealth interface {
	Healthy() error
}

// ReadFilter is an Authorizer that also says which names a caller may see:
// List and Watch leave the others out rather than fail, so that a refusal
// does not tell which names exist.
type ReadFilter interface {
	CanRead(ctx context.Context, who Principal, name string) bool
}

// SessionAdministrator is an Authorizer that also says which callers may
// show, list and close every principal's sessions, not only their own: the
// operator's force-release of a stuck holder (as etcd's root revokes any
// lease and Consul's management token destroys any session). Only those
// three: keeping another's session alive, or acquiring, releasing or
// waiting through it, stays its principal's alone.
type SessionAdministrator interface {
	AdministersSessions(ctx context.Context, who Principal) bool
}

type anonymous struct{}

func (anonymous) Authenticate(context.Context, string, http.Header) (Principal, error) {
	return Principal{}, nil
}

type allowAll struct{}

func (allowAll) Authorize(context.Context, Principal, string, any) error { return nil }

type noAudit struct{}

func (noAudit) Audit(context.Context, AuditRecord) error { return nil }

type principalKey struct{}

// PrincipalFrom returns the caller the authenticator named.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// connInfo is what the HTTP layer knows of a request's connection, carried
// in its context past the REST transcoder (which rebuilds the request).
type connInfo struct {
	tls    *tls.ConnectionState
	remote string
}

type connInfoKey struct{}

func withConnInfo(r *http.Request) *http.Request {
	return r.WithContext(WithConnection(r.Context(), r.TLS, r.RemoteAddr))
}

// WithConnection returns ctx carrying a request's TLS connection (nil for
// plaintext) and remote address, as the API's HTTP layer puts them there
// for the authenticator (TLSFrom) and the audit (RemoteFrom).
func WithConnection(ctx context.Context, cs *tls.ConnectionState, remote string) context.Context {
	return context.WithValue(ctx, connInfoKey{}, connInfo{tls: cs, remote: remote})
}

// TLSFrom returns the TLS connection a request came on; nil for plaintext.
func TLSFrom(ctx context.Context) *tls.ConnectionState {
	ci, _ := ctx.Value(connInfoKey{}).(connInfo)
	return ci.tls
}

// RemoteFrom returns the address a request came from (host:port).
func RemoteFrom(ctx context.Context) string {
	ci, _ := ctx.Value(connInfoKey{}).(connInfo)
	return ci.remote
}

// interceptors builds the chain. Its checks are also what serveMessage
// runs on each request of a session stream.
func (s *service) interceptors(m *metrics) []connect.Interceptor {
	s.m = m
	s.checks = []requestCheck{authz{s.opts.Authorizer}.decide, validator{l: s.opts.Limits, defaultTTLMs: s.opts.DefaultTTL.Milliseconds()}.validate, ownership{s}.check}
	an := authn{a: s.opts.Authenticator}
	if s.opts.MaxStreamsPerPrincipal > 0 {
		an.streams = &streamCounts{max: s.opts.MaxStreamsPerPrincipal, open: map[string]int{}}
	}
	if r, ok := s.opts.Authenticator.(Reloadable); ok {
		an.open = &openStreams{a: s.opts.Authenticator, z: s.opts.Authorizer}
		r.OnReload(an.open.reloaded)
		s.open = an.open
	}
	out := []connect.Interceptor{m, audit{s.opts.Auditor}, an}
	for _, c := range s.checks {
		out = append(out, c)
	}
	return out
}

// serveMessage runs one request of a session stream (session_stream.go)
// through exactly what a unary call of its twin procedure meets after
// authentication, which the stream met once, at its start, from the same
// headers: metrics and the audit log under the twin's procedure, then
// authorization, validation and ownership (s.checks, the chain's own), in
// the chain's order, then handle. An interceptor chain does not see the
// messages of a stream, so this is how each of them is checked, counted
// and recorded like a unary call.
func (s *service) serveMessage(ctx context.Context, procedure, peer string, msg any, handle func(context.Context) (any, error)) (any, error) {
	pm := s.m.forProc(procedure)
	start := time.Now()
	s.m.inFlight.Inc()
	// The reloads seen before the request is authorized: one between its
	// checks and its registration is then not missed.
	reloads := s.open.seen()
	a := audit{s.opts.Auditor}
	_, quiet := a.a.(noAudit)
	err := revoked(ctx)
	if err == nil {
		err = expiredAt(PrincipalFrom(ctx), start)
	}
	if err == nil && !quiet {
		err = a.healthy()
	}
	for _, check := range s.checks {
		if err != nil {
			break
		}
		err = check(ctx, procedure, msg)
	}
	var reply any
	var end *ended // only for the audit record: not on the path of a member that audits nothing
	if !quiet {
		ctx, end = withEnded(ctx)
	}
	if err == nil {
		if s.open != nil {
			// A reload that no longer allows it, or withdrew the stream's
			// credentials, withdraws its wait rather than let it be granted
			// afterwards.
			st := &openStream{ctx: ctx, procedure: procedure, principal: PrincipalFrom(ctx)}
			sc, _ := ctx.Value(streamCredsKey{}).(*streamCreds)
			if sc != nil {
				st.ctx, st.header = sc.ctx, sc.header
				if err = sc.enter(); err == nil {
					defer sc.leave()
					err = s.open.current(sc, procedure, st.principal)
				}
			}
			if err == nil {
				reply, err = inFlight(s.open, ctx, st, msg, reloads, handle)
			}
		} else {
			reply, err = handle(ctx)
		}
	}
	if !quiet {
		rec := AuditRecord{Principal: PrincipalFrom(ctx), Procedure: procedure, Peer: peer,
			Request: msg, Response: reply, Code: codeOf(err), Err: err, Duration: time.Since(start)}
		if err == nil {
			rec.Session, rec.FencingToken = end.session, end.token
		}
		if aerr := a.a.Audit(ctx, rec); aerr != nil && err == nil {
			reply, err = nil, withheld(aerr)
		}
	}
	s.m.inFlight.Dec()
	s.m.finish(pm, procedure, time.Since(start).Seconds(), reply, err)
	return reply, err
}

// firstMessage records a stream's first message as the request its
// openStream is authorized by again at each reload.
type firstMessage struct {
	connect.StreamingHandlerConn
	st   *openStream
	seen bool
}

func (c *firstMessage) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err == nil && !c.seen {
		c.seen = true
		c.st.setRequest(msg)
	}
	return err
}

// isSessionStream says whether procedure is a session stream, whose every
// request is authorized (and, in flight, authorized again) on its own.
func isSessionStream(procedure string) bool {
	return procedure == lockstepv1connect.SessionServiceStreamProcedure || procedure == lockstepv1connect.SessionServiceMultiplexProcedure
}

// auditNote is where authentication leaves the caller for the audit
// interceptor, which runs outside it.
type auditNote struct{ p Principal }

type auditNoteKey struct{}

// authn names the caller. With a Reloadable authenticator, open streams
// are named again at each reload (open).
type authn struct {
	a       Authenticator
	open    *openStreams  // nil: credentials are never withdrawn
	streams *streamCounts // nil: streams are not bounded per principal
}

// streamCounts are the streams each principal holds open, bounded by max
// (Options.MaxStreamsPerPrincipal).
type streamCounts struct {
	max  int
	mu   sync.Mutex
	open map[string]int
}

// take counts a stream of principal p, or refuses it past the bound;
// give uncounts it.
func (c *streamCounts) take(p string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[p] >= c.max {
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("principal %q has %d streams open on this member, the most "+
			"security.max_streams_per_principal allows: close the streams it no longer reads, or raise the bound", p, c.open[p]))
	}
	c.open[p]++
	return nil
}

func (c *streamCounts) give(p string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[p]--; c.open[p] <= 0 {
		delete(c.open, p)
	}
}

func (i authn) name(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	p, err := i.a.Authenticate(ctx, procedure, h)
	if note, ok := ctx.Value(auditNoteKey{}).(*auditNote); ok {
		note.p = p
	}
	if err != nil {
		var cerr *connect.Error
		if !errors.As(err, &cerr) {
			cerr = connect.NewError(connect.CodeUnauthenticated, err)
			err = cerr
		}
		if p.Auth == "mtls" && connectionCertificate(ctx) {
			cerr.Meta().Set("Connection", "close")
		}
		return ctx, err
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

// connectionCertificate says whether the request's connection presented a
// client certificate. When that certificate is what a refusal is about
// (expired, or one the CA in force no longer accepts), the answer carries
// "Connection: close", which Go's HTTP/2 server turns into a GOAWAY once
// the answer is out: the client's next request then opens a new connection
// and presents its certificate again, a renewed one if the client reads it
// at each connection (the Go client and the CLI do). Without it, an open
// connection kept the expired certificate and every request on it was
// refused until the client was restarted.
func connectionCertificate(ctx context.Context) bool {
	cs := TLSFrom(ctx)
	return cs != nil && len(cs.PeerCertificates) > 0
}

func (i authn) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		reloads := i.open.seen()
		named, err := i.name(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		if i.open == nil {
			return next(named, req)
		}
		// In flight, the call is authenticated and authorized again at
		// each reload, as a stream is: it may wait for a lock for hours.
		st := &openStream{ctx: ctx, procedure: req.Spec().Procedure, header: req.Header(), principal: PrincipalFrom(named)}
		return inFlight(i.open, named, st, req.Any(), reloads, func(ctx context.Context) (connect.AnyResponse, error) {
			return next(ctx, req)
		})
	}
}

// inFlight runs call as st, a unary call or a session stream's request
// that msg asks, registered in o from before it was authorized (reloads:
// the count seen then) until it ends, so that a reload that withdraws its
// credentials or its rule withdraws its wait, once it waits. A grant the
// log applied before the withdrawal stands, as does any answer that came
// before.
func inFlight[T any](o *openStreams, ctx context.Context, st *openStream, msg any, reloads uint64, call func(context.Context) (T, error)) (T, error) {
	w := newWithdrawal()
	st.end, st.call = w.withdraw, true
	st.setRequest(msg)
	o.add(st, reloads)
	defer o.remove(st)
	defer st.expiry.stop() // armed once it waits
	out, err := call(o.waitingIn(ctx, st, w))
	if err != nil {
		if rerr := w.err(); rerr != nil {
			var none T
			return none, rerr
		}
	}
	return out, err
}

func (i authn) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i authn) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		reloads := i.open.seen()
		named, err := i.name(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			var cerr *connect.Error
			if errors.As(err, &cerr) && cerr.Meta().Get("Connection") == "close" {
				// A stream's error travels in its last message, not in the
				// headers, where the server looks for it.
				conn.ResponseHeader().Set("Connection", "close")
			}
			return err
		}
		if p := PrincipalFrom(named).ID; i.streams != nil && p != "" {
			if err := i.streams.take(p); err != nil {
				return err
			}
			defer i.streams.give(p)
		}
		if i.open == nil {
			return next(named, conn)
		}
		var sc *streamCreds
		if isSessionStream(conn.Spec().Procedure) {
			sc = &streamCreds{ctx: ctx, header: conn.RequestHeader(), checked: reloads}
			named = context.WithValue(named, streamCredsKey{}, sc)
		}
		sctx, end := context.WithCancelCause(named)
		defer end(nil)
		st := &openStream{ctx: ctx, procedure: conn.Spec().Procedure, header: conn.RequestHeader(), principal: PrincipalFrom(named),
			end: func(cause error) {
				stop := func() {
					end(cause)
					interruptRead(ctx)
				}
				if sc != nil {
					sc.revoke(cause, stop)
					return
				}
				stop()
			}}
		i.open.add(st, reloads)
		defer i.open.remove(st)
		// Its credentials' expiry ends it, as a reload that withdrew them
		// would: a client certificate is checked at each new request, not
		// again on what it opened.
		i.open.watchExpiry(st)
		defer st.expiry.stop()
		if !isSessionStream(conn.Spec().Procedure) {
			// Watch and Observe: what their first message asks is
			// authorized again at each reload.
			conn = &firstMessage{StreamingHandlerConn: conn, st: st}
		}
		err = next(sctx, conn)
		if rerr := revoked(sctx); rerr != nil {
			return rerr
		}
		return err
	}
}

// audit records each finished request.
type audit struct{ a Auditor }

// healthy refuses requests while the audit log cannot be written.
func (i audit) healthy() error {
	h, ok := i.a.(AuditHealth)
	if !ok {
		return nil
	}
	if err := h.Healthy(); err != nil {
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the audit log cannot be written, so no request is served: %w", err))
	}
	return nil
}

// withheld is the answer to a request served whose record could not be
// written: unavailable, since a retry with the same client_id and
// request_seq is answered what this one did, and its record written then.
func withheld(err error) error {
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the audit log could not record this request (%w), so "+
		"its answer is withheld: it may have taken effect; retry it with the same client_id and request_seq, on another "+
		"member or once this one serves again", err))
}

// peerOf prefers the HTTP layer's remote address: REST requests reach the
// handlers through the transcoder, which does not carry it.
func peerOf(ctx context.Context, peer connect.Peer) string {
	if r := RemoteFrom(ctx); r != "" {
		return r
	}
	return peer.Addr
}

// Audited says whether requests of procedure are recorded: all but the
// health check (ClusterService.Health, GET /health), which load balancers
// probe every few seconds without credentials and which changes and
// reveals nothing; like gRPC health, which no interceptor sees, and like
// Vault's and Consul's health endpoints (docs/security.md, Audit log).
func Audited(procedure string) bool {
	return procedure != lockstepv1connect.ClusterServiceHealthProcedure
}

func (i audit) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	if _, ok := i.a.(noAudit); ok {
		return next // nothing to record: no note, no timing
	}
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if !Audited(req.Spec().Procedure) {
			// Not recorded, but refused like every request while the log
			// cannot be written: the member serves nothing else then.
			if err := i.healthy(); err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
		start := time.Now()
		note := &auditNote{}
		ctx = context.WithValue(ctx, auditNoteKey{}, note)
		ctx, end := withEnded(ctx)
		var resp connect.AnyResponse
		err := i.healthy()
		if err == nil {
			resp, err = next(ctx, req)
		}
		rec := AuditRecord{Principal: note.p, Procedure: req.Spec().Procedure, Peer: peerOf(ctx, req.Peer()),
			Request: req.Any(), Code: codeOf(err), Err: err, Duration: time.Since(start)}
		if err == nil && resp != nil {
			rec.Response = resp.Any()
			rec.Session, rec.FencingToken = end.session, end.token
		}
		if aerr := i.a.Audit(ctx, rec); aerr != nil && err == nil {
			resp, err = nil, withheld(aerr)
		}
		return resp, err
	}
}

func (i audit) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i audit) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	if _, ok := i.a.(noAudit); ok {
		return next
	}
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		note := &auditNote{}
		ctx = context.WithValue(ctx, auditNoteKey{}, note)
		rc := &recordingConn{StreamingHandlerConn: conn, opened: func(first any) error {
			// The line of its opening: a session stream's at its first
			// message (authenticated: note; each of its requests is
			// authorized, and recorded, on its own), a Watch's or an
			// Observe's at its first answer, once its request was
			// authorized (at its first message, a refused Observe had
			// one too). A stream whose opening cannot be recorded does
			// not go on.
			err := i.a.Audit(ctx, AuditRecord{Principal: note.p, Procedure: conn.Spec().Procedure, Peer: peerOf(ctx, conn.Peer()),
				Request: first, Opened: true})
			if err != nil {
				return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the audit log could not record this stream's opening (%w): "+
					"open it again, on another member or once this one serves again", err))
			}
			return nil
		}}
		err := i.healthy()
		if err == nil {
			err = next(ctx, rc)
		}
		// The stream's own line, at its end: its requests had theirs, and
		// nothing is left to withhold.
		_ = i.a.Audit(ctx, AuditRecord{Principal: note.p, Procedure: conn.Spec().Procedure, Peer: peerOf(ctx, conn.Peer()),
			Request: rc.first, Code: codeOf(err), Err: err, Duration: time.Since(start)})
		return err
	}
}

type recordingConn struct {
	connect.StreamingHandlerConn
	first  any
	opened func(first any) error // records the opening
	said   bool                  // opened was called
}

func (c *recordingConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err == nil && c.first == nil {
		c.first = msg
		if isSessionStream(c.Spec().Procedure) {
			return c.open()
		}
	}
	return err
}

func (c *recordingConn) Send(msg any) error {
	if err := c.open(); err != nil {
		return err
	}
	return c.StreamingHandlerConn.Send(msg)
}

// open records the stream's opening, once.
func (c *recordingConn) open() error {
	if c.said || c.opened == nil {
		return nil
	}
	c.said = true
	return c.opened(c.first)
}

// authz decides whether the caller may make the request.
type authz struct{ a Authorizer }

func (i authz) decide(ctx context.Context, procedure string, msg any) error {
	err := i.a.Authorize(ctx, PrincipalFrom(ctx), procedure, msg)
	if err != nil {
		var cerr *connect.Error
		if !errors.As(err, &cerr) {
			err = connect.NewError(connect.CodePermissionDenied, err)
		}
	}
	return err
}

// validate answers bad input before the handler runs. REST requests are
// checked with REST's rules for waits.
func (v validator) validate(ctx context.Context, procedure string, msg any) error {
	v.rest = isREST(ctx)
	if who := PrincipalFrom(ctx); who.ID != "" && ActionOf(procedure) == ActionUse {
		v.mark = who.ID + OwnerSeparator // what ownership puts before the labels
	}
	if err := v.check(msg); err != nil {
		return err // a nil *connect.Error must not become a non-nil error
	}
	return nil
}

// requestCheck is an interceptor that runs a check on every request message
// before the handler: the unary request, or each message a streaming
// handler receives. Authorization, validation and session ownership are
// each one such check.
type requestCheck func(ctx context.Context, procedure string, msg any) error

func (c requestCheck) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := c(ctx, req.Spec().Procedure, req.Any()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (c requestCheck) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (c requestCheck) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, &checkingConn{StreamingHandlerConn: conn, check: func(msg any) error {
			return c(ctx, conn.Spec().Procedure, msg)
		}})
	}
}

// checkingConn runs a check on every message a streaming handler receives
// (our streams are server streams: one request message).
type checkingConn struct {
	connect.StreamingHandlerConn
	check func(msg any) error
}

func (c *checkingConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return c.check(msg)
}

// codeOf is the code a request ended with; 0 (OK) for nil.
func codeOf(err error) connect.Code {
	if err == nil {
		return 0
	}
	return connect.CodeOf(err)
}
