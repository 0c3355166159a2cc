package rpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
)

// service is what every handler type shares: the backend, the options, and
// the steps that several RPCs take (a session made for one request, finding
// the holder a release names, the details of a fresh grant).
type service struct {
	b    Backend
	opts Options
	// m and checks are the interceptor chain's metrics and per-request
	// checks (interceptors), which session streams run per request too.
	m      *metrics
	checks []requestCheck
	// open is the registry of streams and calls in flight that a reload
	// of the security settings checks again (nil: never reloaded).
	open *openStreams
	// workers serves the requests of session streams (workers.go).
	workers *workers
}

// restKey marks a request that arrived as REST (set in rest.go before the
// transcoder): REST waits are capped by locks.max_wait_time_seconds.
type restKey struct{}

func isREST(ctx context.Context) bool { v, _ := ctx.Value(restKey{}).(bool); return v }

// waitMs is the wait to propose: a finite wait longer than MaxWait
// (locks.max_wait_time_seconds) is clamped to it on every API. -1 is the
// longest wait over REST, whose callers cannot cancel a wait but by
// dropping the connection; Connect and gRPC callers who ask for -1 wait
// until granted and cancel with their context, as the Go client's Lock does.
func (s *service) waitMs(ctx context.Context, ms int64) int64 {
	if ms == core.WaitForever && !isREST(ctx) {
		return ms
	}
	if s.opts.MaxWait == NoWait {
		return 0
	}
	max := s.opts.MaxWait.Milliseconds()
	if ms == core.WaitForever || ms > max {
		return max
	}
	return ms
}

// ttlMs is a request's lease: ttl_seconds or ttl_ms, else the default.
func (s *service) ttlMs(seconds, ms int64) int64 {
	return leaseTTLMs(seconds, ms, s.opts.DefaultTTL.Milliseconds())
}

// leaseTTLMs is the TTL proposed for ttl_seconds or ttl_ms, else def; the
// validator checks the same value (validator.ttlMs).
func leaseTTLMs(seconds, ms, def int64) int64 {
	switch {
	case ms != 0:
		return ms
	case seconds != 0:
		return seconds * 1000
	}
	return def
}

// do proposes a command with a deadline: the wait plus RequestTimeout, or
// none when it waits forever (the caller cancels). A refusal by core comes
// back as the error. The deadline goes to the backend beside ctx
// (Backend.DoBy), not as a context of its own: the timer that bounds
// every request in the runtime enforces it, where a context.WithTimeout
// cost each request a timer, a child context registered with its parent,
// and its Done channel (a twelfth of the leader's allocated bytes).
func (s *service) do(ctx context.Context, cmd core.Command) (core.Result, error) {
	var deadline time.Time
	if cmd.WaitMs != core.WaitForever {
		deadline = time.Now().Add(time.Duration(cmd.WaitMs)*time.Millisecond + s.opts.RequestTimeout)
	}
	cmd.ClientID = s.clientKey(ctx, cmd.ClientID)
	r, err := s.b.DoBy(ctx, cmd, deadline)
	if err != nil {
		return r, s.apiError(err)
	}
	return r, s.resultError(r)
}

// clientKey is the dedupe identity core keeps a caller's client_id under
// (core.ClientKeysVersion 2): under authentication, in the caller's
// principal's own namespace, so that one principal who learns another's
// client_id cannot be answered its results, nor forge, cancel or forget
// its requests (docs/security.md). A key over core's bound is shortened by
// a hash of the client_id, the same at every retry; a client_id itself
// over the bound is left for core to refuse.
func (s *service) clientKey(ctx context.Context, id string) string {
	p := PrincipalFrom(ctx).ID
	if id == "" || p == "" || len(id) > core.MaxClientIDBytes {
		return id
	}
	key := p + "/" + id // no principal holds a '/'
	if len(key) > core.MaxClientIDBytes {
		sum := sha256.Sum256([]byte(id))
		key = p + "/#" + hex.EncodeToString(sum[:24])
	}
	return key
}

// withTimeout is context.WithTimeout, except that it returns ctx itself
// when ctx already ends no later than d from now (a caller's deadline, such
// as Connect's timeout header, usually does): the result is the same, and
// the request saves a timer and a child context registered with its parent.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && !dl.After(time.Now().Add(d)) {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// read runs fn linearizably, within RequestTimeout, or on this node's
// applied state when stale: a stale read does not wait (Backend.Read), so
// it goes without the deadline, and the timer and child context it would
// cost (every release's first look at its grant is one).
func (s *service) read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	if !stale {
		var cancel context.CancelFunc
		ctx, cancel = withTimeout(ctx, s.opts.RequestTimeout)
		defer cancel()
	}
	idx, err := s.b.Read(ctx, name, stale, fn)
	return idx, s.apiError(err)
}

// lease is the session a request acts in.
type lease struct {
	id      core.SessionID
	created bool
	ttl     time.Duration // of a created session
	owner   string        // a given session's label
}

// sessionFor returns the given session, or creates one for the request
// served alone, labelled autoOwnerPrefix+owner. With a client id, the
// session is created under a derived one (implicitClientID), so a retried
// request finds the same session.
//
// A session the server made for one request is refused as the given one:
// the server closes such a session when that request's grant ends or its
// wait does (release, resign, a refused or ended acquire, a barrier's
// wait), after a read that found nothing else in it, and a grant made in
// it by id between that read and the close would be ended by the close
// after it was acknowledged. Owner labels never change and session ids are
// never reused, so the check cannot go stale before the acquire applies.
func (s *service) sessionFor(ctx context.Context, given uint64, owner string, ttlSeconds, ttlMs int64, served *core.Command) (lease, error) {
	if given != 0 {
		label, err := s.holdsNoOther(ctx, core.SessionID(given))
		if err != nil {
			return lease{}, err
		}
		return lease{id: core.SessionID(given), owner: label}, nil
	}
	cmd := core.Command{Op: core.OpSessionCreate, TTLMs: s.ttlMs(ttlSeconds, ttlMs), Owner: autoOwnerPrefix + owner}
	if served.ClientID != "" {
		cmd.ClientID, cmd.Seq = implicitClientID(served.ClientID, served), served.Seq
	}
	r, err := s.do(ctx, cmd)
	if err != nil {
		return lease{}, err
	}
	return lease{id: r.Session, created: true, ttl: time.Duration(cmd.TTLMs) * time.Millisecond}, nil
}

// holdsNoOther refuses session id, given to a request that would make it
// hold or wait (an acquire, a barrier wait or set, a campaign), when the
// server made it for one request (sessionFor says why). It answers the
// session's owner label.
func (s *service) holdsNoOther(ctx context.Context, id core.SessionID) (string, error) {
	label, err := s.sessionOwner(ctx, id)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(label, autoOwnerPrefix) {
		return "", connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"session %d was created by the server for one request (owner %q) and ends with it: "+
				"create a session of your own (SessionService.Create, POST /sessions) to hold several grants in one session", id, label))
	}
	return label, nil
}

// keepWhileWaiting keeps a session the server created for one request alive
// while that request waits, and returns the function that stops it. A
// request still waiting is proof that its client is there: without this a
// REST acquire with wait_timeout_ms longer than its session's TTL ended
// when the session expired under it. A session the caller gave is the
// caller's to keep alive.
func (s *service) keepWhileWaiting(ctx context.Context, l lease) (stop func()) {
	if !l.created || l.ttl <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(l.ttl/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			kctx, cancel := context.WithTimeout(ctx, max(l.ttl/3, s.opts.RequestTimeout))
			_, err := s.do(kctx, core.Command{Op: core.OpSessionKeepAlive, Session: l.id})
			cancel()
			if connect.CodeOf(err) == connect.CodeNotFound {
				return // gone: the wait ends with it
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// closeSession closes a session the server created, after the request it
// served ended. A session that is already gone is fine.
func (s *service) closeSession(ctx context.Context, id core.SessionID) bool {
	_, err := s.do(context.WithoutCancel(ctx), core.Command{Op: core.OpSessionClose, Session: id})
	if err != nil && connect.CodeOf(err) != connect.CodeNotFound {
		s.opts.Logger.Warn("closing a session created for one request failed; it will expire with its TTL",
			"session", uint64(id), "err", err)
		return false
	}
	return true
}

// holding is a grant that a release, renew or resign named, found in the
// state: its holder entry, and whether its session is one the server created
// for the grant and holds nothing else (so ending the grant closes it).
type holding struct {
	holder core.Holder
	owned  bool
}

// findHolding finds the grant with token on the object and checks that the
// caller named its holder (session or owner label): a wrong holder is a
// conflict. found is false when no current grant has the token.
//
// Unless linearizable, it reads this node's state first, which is enough to
// find a grant that exists (tokens never change hands, and core checks the
// token again when the release applies); only when the grant is not there
// does it ask the leader, so that a node that is behind does not answer 409.
func (s *service) findHolding(ctx context.Context, kind core.Kind, name string, token, session uint64, owner, ownerField string, linearizable bool) (h holding, found bool, err error) {
	look := func(m *core.Machine) error {
		g, ok := m.Grant(kind, name, core.FencingToken(token))
		if !ok {
			return nil
		}
		h.holder, found = g.Holder, true
		h.owned = strings.HasPrefix(g.SessionOwner, autoOwnerPrefix) && g.SessionHolds == 1 && g.SessionWaits == 0
		return nil
	}
	if !linearizable {
		if _, err := s.read(ctx, name, true, look); err != nil {
			return h, false, err
		}
	}
	if !found {
		if _, err := s.read(ctx, name, false, look); err != nil {
			return h, false, err
		}
	}
	switch {
	case !found:
		return h, false, nil
	case session != 0 && uint64(h.holder.Session) != session:
		return h, true, conflict("%s %q with fencing_token %d is held by another session, not session_id %d", kind, name, token, session)
	case owner != "" && h.holder.Owner != owner:
		return h, true, conflict("%s %q with fencing_token %d is held by %s %q, not %q", kind, name, token, ownerField, h.holder.Owner, owner)
	}
	if h.owned && !s.ownsNothingElse(ctx, h.holder.Session, name) {
		h.owned = false // it holds or waits in other shards too: keep it
	}
	return h, true, nil
}

func staleToken(kind core.Kind, name string, token uint64) error {
	return conflict("fencing_token %d does not hold %s %q: the grant ended (released, its session expired, or its max_hold_ms passed) or never was; read its status", token, kind, name)
}

// grantDetails reads, on this node, the holder entry of a grant just made,
// for the times an acquire answers. The grant was applied here before Do
// returned, so a local read sees it unless it already ended.
func (s *service) grantDetails(ctx context.Context, kind core.Kind, name string, token core.FencingToken) (core.Holder, bool) {
	var out core.Holder
	found := false
	_, err := s.b.Read(ctx, name, true, func(m *core.Machine) error {
		if g, ok := m.Grant(kind, name, token); ok {
			out, found = g.Holder, true
		}
		return nil
	})
	return out, err == nil && found
}
