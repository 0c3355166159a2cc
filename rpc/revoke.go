package rpc

// A stream is authenticated once, when it opens; its requests are each
// authorized, but a credential withdrawn by a reload (an API key removed
// from the keys file, a CA no longer trusted) would otherwise keep
// working on every stream it had opened, for as long as the client kept
// the stream: a session stream carries acquires and keepalives for hours.
// So each open stream is authenticated again at every reload, with the
// headers and connection it opened with, and one whose credential no
// longer names its principal is ended with unauthenticated, as Consul ends
// what a deleted token held. docs/security.md, "Revoking an API key".
//
// The same holds for a unary call in flight, which may wait for a lock
// for as long as it likes, and for what a request was authorized to do:
// a wait that the ACL in force no longer allows (its rule removed by a
// reload) is ended with permission_denied, rather than granted after the
// reload; so is an Observe stream of a name its principal may no longer
// read, and each request waiting on a session stream. A reviewer's
// revoked principal was granted a lock a second after the reload.
//
// Credentials that expire (a client certificate, Principal.Expires) are
// refused to each new request by Authenticate, but what they opened would
// outlive them until the next reload (the TLS handshake is not repeated:
// an HTTP/2 connection and its streams last for hours), and short-lived
// client certificates are docs/security.md's way to revoke. So each open
// stream, and each call once it waits, holds one timer at its
// credentials' expiry, which ends it as a reload that withdrew them would
// (expired), and stops when it ends.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime"
)

// Reloadable is an Authenticator whose credentials a reload may withdraw:
// OnReload registers f to run after each reload, once Authenticate
// answers by what was reloaded.
type Reloadable interface {
	OnReload(f func())
}

var (
	// errRevoked is the cause an open stream or call is ended with when
	// its credential was withdrawn.
	errRevoked = errors.New("the credentials this stream or request was made with were withdrawn by a reload of the security settings")
	// errDenied is the cause a request in flight is ended with when the
	// ACL reloaded no longer allows it.
	errDenied = errors.New("the ACL in force since a reload of the security settings no longer allows this request")
	// errExpired is the cause an open stream or call is ended with when
	// the credentials it was made with expire.
	errExpired = errors.New("the credentials this stream or request was made with expired")
)

// openStream is a stream or a call in flight, as it was authenticated and
// authorized.
type openStream struct {
	ctx       context.Context // the handler's, before authentication: its connection's TLS state
	procedure string
	header    http.Header // nil: not authenticated again; a session stream's request has its stream's (streamCreds)
	principal Principal
	// request is what is authorized again (nil until known: a stream's
	// first message; none for a session stream, whose requests are each
	// their own entry).
	request atomic.Pointer[anyMsg]
	end     context.CancelCauseFunc // a call's withdraws its wait instead (withdrawal)
	// call marks a unary call or a session stream's request, which a
	// reload ends only once it waits (queued): one on its way to be
	// applied, or applied, is left to finish, since ending it could answer
	// "denied" for what took effect (a reviewer's releases were).
	call    bool
	waiting atomic.Bool
	// seenAt is how many reloads o had seen before st was authenticated.
	seenAt uint64
	// expiry ends st when its principal's credentials expire
	// (watchExpiry); a call's is set once it waits.
	expiry expiryTimer
}

// waitingIn is ctx telling st when its request is queued, and whatever
// ctx told before, with the withdrawal of w. A reload since st was
// authenticated, which left it be while it was on its way, checks it
// then.
func (o *openStreams) waitingIn(ctx context.Context, st *openStream, w *withdrawal) context.Context {
	return runtime.WithWithdrawal(ctx, func(id core.WaiterID) {
		st.waiting.Store(true)
		if o.seen() != st.seenAt {
			o.check(st)
		}
		// A wait may last for hours: it ends when its credentials expire
		// (at once when they did on its way).
		o.watchExpiry(st)
		runtime.NotifyQueued(ctx, id)
	}, w.ch)
}

// withdrawal is how a reload ends a call that waits: its wait is
// withdrawn through the log, and the call hears how it ended
// (runtime.WithWithdrawal). Cancelling its context would race the grant:
// the caller would hear "denied" of a lock granted the moment before,
// and held, unknown to it, until its session ended.
type withdrawal struct {
	ch    chan struct{}
	once  sync.Once
	cause atomic.Pointer[error]
}

func newWithdrawal() *withdrawal { return &withdrawal{ch: make(chan struct{})} }

// withdraw asks the wait withdrawn for cause (openStream.end of a call).
func (w *withdrawal) withdraw(cause error) {
	w.once.Do(func() {
		w.cause.Store(&cause)
		close(w.ch)
	})
}

// err is the error a call withdrawn by a reload fails with, nil while
// none was asked.
func (w *withdrawal) err() error {
	if c := w.cause.Load(); c != nil {
		return revocation(*c)
	}
	return nil
}

// streamCreds are a session stream's credentials, for its requests: each
// request in flight is authenticated again with them at a reload, so that
// a wait is withdrawn through the log (withdrawal) rather than cut when
// the stream ends. A stream whose credentials a reload withdrew refuses
// new requests at once, and ends once the requests it serves have
// answered (their waits withdrawn), or after streamRevokeGrace: ending
// it first cancelled its waits' contexts, and a lock granted just before
// the cancel was held by a session its client had heard "unauthenticated"
// from.
type streamCreds struct {
	ctx    context.Context // the stream's, before authentication: its connection's TLS state
	header http.Header

	mu      sync.Mutex
	checked uint64 // the count of reloads its credentials were last checked at
	calls   int
	cause   error         // non-nil once revoked
	drained chan struct{} // closed once revoked and no call is left
}

// current checks, for a request of the stream, that the stream's
// credentials still name principal, when a reload came since they were
// last checked: a request that entered during a reload, after its count
// moved and before its walk reached the stream, was checked by neither.
func (o *openStreams) current(sc *streamCreds, procedure string, principal Principal) error {
	n := o.seen()
	sc.mu.Lock()
	same := sc.checked == n
	sc.mu.Unlock()
	if same {
		return nil
	}
	if cause := o.stillNames(sc.ctx, procedure, sc.header, principal); cause != nil {
		return revocation(cause)
	}
	sc.mu.Lock()
	sc.checked = max(sc.checked, n)
	sc.mu.Unlock()
	return nil
}

type streamCredsKey struct{}

// streamRevokeGrace bounds how long a session stream whose credentials a
// reload withdrew stays open for its waits to be withdrawn: one commit,
// unless the member has no quorum.
const streamRevokeGrace = 2 * time.Second

// enter counts a request of the stream, or refuses it once the stream's
// credentials were withdrawn.
func (sc *streamCreds) enter() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cause != nil {
		return revocation(sc.cause)
	}
	sc.calls++
	return nil
}

func (sc *streamCreds) leave() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.calls--; sc.calls == 0 && sc.drained != nil {
		close(sc.drained)
		sc.drained = nil
	}
}

// revoke refuses the stream's new requests, and runs end once those it
// serves have answered, or after streamRevokeGrace.
func (sc *streamCreds) revoke(cause error, end func()) {
	sc.mu.Lock()
	if sc.cause != nil {
		sc.mu.Unlock()
		return
	}
	sc.cause = cause
	drained := make(chan struct{})
	if sc.calls == 0 {
		close(drained)
	} else {
		sc.drained = drained
	}
	sc.mu.Unlock()
	go func() {
		t := time.NewTimer(streamRevokeGrace)
		defer t.Stop()
		select {
		case <-drained:
		case <-t.C:
		}
		end()
	}()
}

// anyMsg boxes a request message for an atomic pointer.
type anyMsg struct{ m any }

// setRequest records the request to authorize again at a reload.
func (st *openStream) setRequest(m any) { st.request.Store(&anyMsg{m}) }

// openStreams are the streams and calls in flight, authenticated and
// authorized again at each reload.
type openStreams struct {
	a Authenticator
	z Authorizer

	mu      sync.Mutex
	streams map[*openStream]struct{}
	reloads uint64 // reloads seen: a stream authenticated across one is checked again
}

// add registers st; reloads is what the count was before st was
// authenticated: when a reload came since, st is checked at once, as the
// reload's own check may have missed it.
func (o *openStreams) add(st *openStream, reloads uint64) {
	st.seenAt = reloads
	o.mu.Lock()
	if o.streams == nil {
		o.streams = map[*openStream]struct{}{}
	}
	o.streams[st] = struct{}{}
	again := o.reloads != reloads
	o.mu.Unlock()
	if again {
		o.check(st)
	}
}

func (o *openStreams) remove(st *openStream) {
	o.mu.Lock()
	delete(o.streams, st)
	o.mu.Unlock()
}

// seen is how many reloads o has seen (0 for none: no registry).
func (o *openStreams) seen() uint64 {
	if o == nil {
		return 0
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reloads
}

// reloaded authenticates every open stream again (Reloadable.OnReload).
func (o *openStreams) reloaded() {
	o.mu.Lock()
	o.reloads++
	all := make([]*openStream, 0, len(o.streams))
	for st := range o.streams {
		all = append(all, st)
	}
	o.mu.Unlock()
	for _, st := range all {
		o.check(st)
	}
}

// check ends st when its credential no longer names its principal, or
// when the ACL no longer allows its request.
func (o *openStreams) check(st *openStream) {
	if st.call && !st.waiting.Load() {
		return
	}
	if st.header != nil {
		if cause := o.stillNames(st.ctx, st.procedure, st.header, st.principal); cause != nil {
			st.end(cause)
			return
		}
	}
	if r := st.request.Load(); r != nil && o.z != nil {
		if err := o.z.Authorize(st.ctx, st.principal, st.procedure, r.m); err != nil {
			st.end(fmt.Errorf("%w: %s", errDenied, errorMessage(err)))
		}
	}
}

// stillNames is nil while the credentials in header, authenticated again
// by what a reload put in force, name principal; else the cause (errRevoked)
// to end what they opened with.
func (o *openStreams) stillNames(ctx context.Context, procedure string, header http.Header, principal Principal) error {
	p, err := o.a.Authenticate(ctx, procedure, header)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %v; open it again with good credentials", errRevoked, err)
	case p.ID != principal.ID:
		return fmt.Errorf("%w: they now name principal %q, not %q; open it again", errRevoked, p.ID, principal.ID)
	}
	return nil
}

// expiryTimer is the one timer of a stream or a waiting call at its
// credentials' expiry. A timer of time.AfterFunc has no goroutine until it
// fires; stop leaves none armed.
type expiryTimer struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

// arm runs f after d, in place of what was armed before; nothing once
// stopped.
func (e *expiryTimer) arm(d time.Duration, f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	if e.t != nil {
		e.t.Stop()
	}
	e.t = time.AfterFunc(d, f)
}

// stop disarms the timer for good: the stream or call ended.
func (e *expiryTimer) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	if e.t != nil {
		e.t.Stop()
	}
}

// watchExpiry arms st's timer at its principal's credentials' expiry,
// when they have one.
func (o *openStreams) watchExpiry(st *openStream) {
	if exp := st.principal.Expires; !exp.IsZero() {
		st.expiry.arm(time.Until(exp), func() { o.expired(st, exp) })
	}
}

// expired ends st, whose credentials were good until exp, as a reload
// that withdrew them would: authenticated again, they say why (and
// lockstep_auth_failures_total counts it); unless a reload has since made
// them good for longer (a CA renewed under the same key), when the timer
// is armed again at their new expiry.
func (o *openStreams) expired(st *openStream, exp time.Time) {
	detail := "they were good until " + exp.UTC().Format(time.RFC3339) + "; renew them"
	if st.header != nil {
		p, err := o.a.Authenticate(st.ctx, st.procedure, st.header)
		switch {
		case err == nil && p.ID == st.principal.ID && p.Expires.IsZero():
			return // they no longer expire
		case err == nil && p.ID == st.principal.ID && p.Expires.After(time.Now()):
			st.expiry.arm(time.Until(p.Expires), func() { o.expired(st, p.Expires) })
			return
		case err != nil:
			detail = errorMessage(err)
		}
	}
	st.end(fmt.Errorf("%w: %s", errExpired, detail))
}

// errorMessage is err's message without Connect's code in front.
func errorMessage(err error) string {
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr.Message()
	}
	return err.Error()
}

// expiredAt refuses a request of a stream made after its credentials
// expired: the stream's timer ends it, but a request may come first.
func expiredAt(p Principal, now time.Time) error {
	if p.Expires.IsZero() || !now.After(p.Expires) {
		return nil
	}
	return connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w: they were good until %s; renew them",
		errExpired, p.Expires.UTC().Format(time.RFC3339)))
}

// revoked is the error a request of a stream or a call ended by a reload
// fails with, nil while it stands.
func revoked(ctx context.Context) error { return revocation(context.Cause(ctx)) }

// revocation is the error of a stream or call that cause ended: nil when
// cause is not a reload's.
func revocation(cause error) error {
	switch {
	case cause == nil:
		return nil
	case errors.Is(cause, errRevoked), errors.Is(cause, errExpired):
		return connect.NewError(connect.CodeUnauthenticated, cause)
	case errors.Is(cause, errDenied):
		return connect.NewError(connect.CodePermissionDenied, cause)
	}
	return nil
}

// interruptRead ends a session stream's wait for its client's next
// message, so that a stream ended by a reload returns at once rather than
// at that message.
func interruptRead(ctx context.Context) {
	if ib, ok := ctx.Value(idleBodyKey{}).(*idleBody); ok {
		ib.interrupt()
	}
}

// interrupt makes the body's blocked read return now. Once the stream's
// handler returned (stop), it does nothing: the response writer is gone,
// and setting its deadline then crashed the member (net/http's HTTP/2
// writer dereferences its finished stream), which a reload racing the
// stream's end could do (streamCreds.revoke ends the stream from a
// goroutine of its own).
func (b *idleBody) interrupt() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.stopped = true
	if b.check != nil {
		b.check.Stop()
	}
	_ = b.rc.SetReadDeadline(time.Now())
}
