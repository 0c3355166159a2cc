package rpc_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// reloadableKeys authenticates "Bearer KEY" by a key list a test can
// change, and runs the reload hooks as security.State does.
type reloadableKeys struct {
	mu    sync.Mutex
	keys  map[string]string // key → principal
	hooks []func()
}

func (k *reloadableKeys) Authenticate(_ context.Context, _ string, h http.Header) (rpc.Principal, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.keys[strings.TrimPrefix(h.Get("Authorization"), "Bearer ")]
	if !ok {
		return rpc.Principal{}, connect.NewError(connect.CodeUnauthenticated, errors.New("the API key is not known (revoked, or never added)"))
	}
	return rpc.Principal{ID: p, Auth: "api_key"}, nil
}

func (k *reloadableKeys) OnReload(f func()) {
	k.mu.Lock()
	k.hooks = append(k.hooks, f)
	k.mu.Unlock()
}

// reload puts keys in force, then runs the hooks.
func (k *reloadableKeys) reload(keys map[string]string) {
	k.mu.Lock()
	k.keys = keys
	hooks := k.hooks
	k.mu.Unlock()
	for _, f := range hooks {
		f()
	}
}

// TestRevokedKeyEndsItsStreams: a key withdrawn by a reload stops working
// on the streams it had opened, not only on new calls: the stream ends
// with unauthenticated saying why, at once rather than at its client's
// next message, so its session's keepalives stop and what it holds ends
// with the lease. A stream whose key stays, and one whose key now names
// another principal, are told apart: the first goes on, the second ends.
func TestRevokedKeyEndsItsStreams(t *testing.T) {
	keys := &reloadableKeys{keys: map[string]string{"alice": "alice", "bob": "bob", "carol": "carol"}}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keys })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, alices := s.multiplex(t, ctx, "alice")
	aliceSession := newSession(t, alices, 30_000)
	bob, bobs := s.multiplex(t, ctx, "bob")
	bobSession := newSession(t, bobs, 30_000)
	carol, _ := s.multiplex(t, ctx, "carol")
	sendAll(t, alice, acquireOn(1, aliceSession, "revoke/a", 0))
	if got, _ := answers(t, alice, 1); !got[1].GetAcquireLock().GetAcquired() {
		t.Fatalf("alice's acquire before the reload: %v", got[1])
	}
	sendAll(t, carol, keepAliveOn(1, aliceSession)) // opens carol's stream: answered not hers
	answers(t, carol, 1)

	keys.reload(map[string]string{"bob": "bob", "carol": "dave"})

	ended := make(chan error, 1)
	go func() {
		_, err := alice.Receive()
		ended <- err
	}()
	select {
	case err := <-ended:
		if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "withdrawn by a reload") {
			t.Fatalf("alice's stream after her key was revoked: %v, want unauthenticated saying it was withdrawn", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's stream still stands 5 s after her key was revoked")
	}
	if _, err := carol.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), `now name principal "dave"`) {
		t.Fatalf("carol's stream after her key came to name dave: %v", err)
	}
	if _, err := alices.KeepAlive(ctx, connect.NewRequest(&pb.KeepAliveRequest{SessionId: aliceSession})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a new call with the revoked key: %v", err)
	}
	sendAll(t, bob, keepAliveOn(1, bobSession))
	if got, _ := answers(t, bob, 1); got[1].GetError() != nil {
		t.Fatalf("bob's stream, whose key stayed: %v", got[1])
	}
}
