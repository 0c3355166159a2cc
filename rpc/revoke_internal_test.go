package rpc

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/runtime"
)

// refusing authenticates nobody: every credential was withdrawn.
type refusing struct{}

func (refusing) Authenticate(context.Context, string, http.Header) (Principal, error) {
	return Principal{}, errors.New("the API key is not known (revoked, or never added)")
}

// TestReloadLeavesACallOnItsWay: a reload ends a call (unary, or a
// session stream's request) only once it waits; one on its way to be
// applied, or applied, is left to finish: ending it answered "denied" for
// releases that took effect (a reviewer's, under load). One that starts
// waiting after a reload it was authenticated before is checked then.
func TestReloadLeavesACallOnItsWay(t *testing.T) {
	o := &openStreams{a: refusing{}}
	var ended error
	st := &openStream{ctx: context.Background(), header: http.Header{}, principal: Principal{ID: "erin"}, call: true,
		end: func(cause error) { ended = cause }}
	o.add(st, o.seen())
	o.reloaded()
	if ended != nil {
		t.Fatalf("a call on its way was ended by a reload: %v", ended)
	}
	// It is queued now: the reload it missed is checked at once.
	runtime.NotifyQueued(o.waitingIn(context.Background(), st, newWithdrawal()), 1)
	if !errors.Is(ended, errRevoked) {
		t.Fatalf("a call that waits after a reload withdrew its credentials: ended %v", ended)
	}
	ended = nil
	o.reloaded()
	if !errors.Is(ended, errRevoked) {
		t.Fatalf("a waiting call at a reload that withdrew its credentials: ended %v", ended)
	}
}

// TestReloadWithdrawsAWaitThroughTheLog: a reload that ends a waiting
// call asks its wait withdrawn (the runtime's WithWithdrawal) rather than
// cancelling its context. The call then answers what the log did: a grant
// applied first stands; a wait withdrawn answers unauthenticated.
func TestReloadWithdrawsAWaitThroughTheLog(t *testing.T) {
	o := &openStreams{a: refusing{}}
	for _, logSaid := range []error{nil, runtime.ErrWithdrawn} {
		st := &openStream{ctx: context.Background(), header: http.Header{}, principal: Principal{ID: "erin"}}
		got, err := inFlight(o, context.Background(), st, nil, o.seen(), func(ctx context.Context) (string, error) {
			withdraw := runtime.NotifyQueued(ctx, 1)
			o.reloaded()
			select {
			case <-withdraw:
			case <-time.After(5 * time.Second):
				t.Fatal("a reload that withdrew a waiting call's credentials did not ask its wait withdrawn")
			}
			if ctx.Err() != nil {
				t.Fatalf("the reload ended the call's context (%v): its grant could race the cancel", context.Cause(ctx))
			}
			if logSaid != nil {
				return "", logSaid
			}
			return "granted", nil
		})
		switch {
		case logSaid == nil && (err != nil || got != "granted"):
			t.Fatalf("a grant the log applied before the withdrawal answered %q, %v: want the grant", got, err)
		case logSaid != nil && connect.CodeOf(err) != connect.CodeUnauthenticated:
			t.Fatalf("a wait withdrawn by a reload answered %v: want unauthenticated", err)
		}
	}
}

// TestStreamRequestAfterAReloadIsChecked: a session stream's request that
// comes after a reload its stream was not checked at (it entered while
// the reload's count had moved and before the reload's walk reached the
// stream) is checked then; without a reload since, it is not.
func TestStreamRequestAfterAReloadIsChecked(t *testing.T) {
	o := &openStreams{a: refusing{}}
	sc := &streamCreds{ctx: context.Background(), header: http.Header{}, checked: o.seen()}
	if err := o.current(sc, "/lockstep.v1.LockService/Acquire", Principal{ID: "erin"}); err != nil {
		t.Fatalf("no reload since the stream was authenticated: %v", err)
	}
	o.reloaded() // no entry to walk: the stream's request was not registered yet
	if err := o.current(sc, "/lockstep.v1.LockService/Acquire", Principal{ID: "erin"}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a request after a reload that withdrew the stream's key: %v, want unauthenticated", err)
	}
}
