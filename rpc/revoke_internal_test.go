package rpc

import (
	"context"
	"errors"
	"net/http"
	"testing"

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
	runtime.NotifyQueued(o.waitingIn(context.Background(), st), 1)
	if !errors.Is(ended, errRevoked) {
		t.Fatalf("a call that waits after a reload withdrew its credentials: ended %v", ended)
	}
	ended = nil
	o.reloaded()
	if !errors.Is(ended, errRevoked) {
		t.Fatalf("a waiting call at a reload that withdrew its credentials: ended %v", ended)
	}
}
