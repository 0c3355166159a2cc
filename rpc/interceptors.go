package rpc

import (
	"context"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

// The interceptor chain, outermost first:
//
//	metrics → authentication → audit → authorization → validation → handler
//
// Metrics see everything, refusals included. Authentication names the
// caller from the request headers; audit records what that caller asked and
// how it ended (denials and bad input included); authorization decides from
// the caller, the procedure and the request message; validation answers bad
// input before anything is proposed.
//
// Authentication, authorization and audit are slots: the defaults let
// everyone in anonymously and record nothing. The security issue (API keys,
// mTLS, ACLs, an audit log) fills them through Options without touching the
// handlers. REST requests pass through the same chain: the transcoder hands
// them to the Connect handlers with their headers.

// Principal is who made a request.
type Principal struct {
	// ID names the caller (an API key's name, a certificate's subject);
	// empty for anonymous.
	ID string
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
	Code      connect.Code
	Err       error
	Duration  time.Duration
}

// Auditor records finished requests. It must not block.
type Auditor interface {
	Audit(ctx context.Context, rec AuditRecord)
}

type anonymous struct{}

func (anonymous) Authenticate(context.Context, string, http.Header) (Principal, error) {
	return Principal{}, nil
}

type allowAll struct{}

func (allowAll) Authorize(context.Context, Principal, string, any) error { return nil }

type noAudit struct{}

func (noAudit) Audit(context.Context, AuditRecord) {}

type principalKey struct{}

// PrincipalFrom returns the caller the authenticator named.
func PrincipalFrom(ctx context.Context) Principal {
	p, _ := ctx.Value(principalKey{}).(Principal)
	return p
}

// interceptors builds the chain.
func (s *service) interceptors(m *metrics) []connect.Interceptor {
	return []connect.Interceptor{m, authn{s.opts.Authenticator}, audit{s.opts.Auditor}, authz{s.opts.Authorizer},
		validation{validator{l: s.opts.Limits}}}
}

// authn names the caller.
type authn struct{ a Authenticator }

func (i authn) name(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	p, err := i.a.Authenticate(ctx, procedure, h)
	if err != nil {
		var cerr *connect.Error
		if !errors.As(err, &cerr) {
			err = connect.NewError(connect.CodeUnauthenticated, err)
		}
		return ctx, err
	}
	return context.WithValue(ctx, principalKey{}, p), nil
}

func (i authn) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := i.name(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i authn) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i authn) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := i.name(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// audit records each finished request.
type audit struct{ a Auditor }

func (i audit) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		i.a.Audit(ctx, AuditRecord{Principal: PrincipalFrom(ctx), Procedure: req.Spec().Procedure, Peer: req.Peer().Addr,
			Request: req.Any(), Code: codeOf(err), Err: err, Duration: time.Since(start)})
		return resp, err
	}
}

func (i audit) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i audit) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		rc := &recordingConn{StreamingHandlerConn: conn}
		err := next(ctx, rc)
		i.a.Audit(ctx, AuditRecord{Principal: PrincipalFrom(ctx), Procedure: conn.Spec().Procedure, Peer: conn.Peer().Addr,
			Request: rc.first, Code: codeOf(err), Err: err, Duration: time.Since(start)})
		return err
	}
}

type recordingConn struct {
	connect.StreamingHandlerConn
	first any
}

func (c *recordingConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if err == nil && c.first == nil {
		c.first = msg
	}
	return err
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

func (i authz) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := i.decide(ctx, req.Spec().Procedure, req.Any()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i authz) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i authz) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, &checkingConn{StreamingHandlerConn: conn, check: func(msg any) error {
			return i.decide(ctx, conn.Spec().Procedure, msg)
		}})
	}
}

// validation answers bad input before the handler runs.
type validation struct{ v validator }

func (i validation) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		v := i.v
		v.rest = isREST(ctx)
		if err := v.check(req.Any()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (i validation) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i validation) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, &checkingConn{StreamingHandlerConn: conn, check: func(msg any) error {
			if err := i.v.check(msg); err != nil {
				return err
			}
			return nil
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
