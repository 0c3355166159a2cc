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

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
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

// prefixACL allows each principal the names under its prefix; a test
// changes it before a reload.
type prefixACL struct {
	mu     sync.Mutex
	allows map[string]string // principal → prefix
}

func (a *prefixACL) Authorize(_ context.Context, who rpc.Principal, _ string, msg any) error {
	name, named := rpc.NameOf(msg)
	if !named {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if prefix, ok := a.allows[who.ID]; ok && strings.HasPrefix(name, prefix) {
		return nil
	}
	return connect.NewError(connect.CodePermissionDenied, errors.New("principal "+who.ID+" may not use "+name))
}

func (a *prefixACL) set(allows map[string]string) {
	a.mu.Lock()
	a.allows = allows
	a.mu.Unlock()
}

// TestReloadEndsWhatItNoLongerAllows: what was authorized before a reload
// and still waits is checked again: a unary acquire waiting for a lock
// whose principal's rule was removed ends with permission_denied, and one
// whose key was revoked with unauthenticated, instead of being granted
// after the reload (a reviewer's revoked principal got its lock a second
// later); so does a wait on a session stream, whose stream goes on; and an
// Observe stream of an election its principal may no longer read ends.
func TestReloadEndsWhatItNoLongerAllows(t *testing.T) {
	keys := &reloadableKeys{keys: map[string]string{"alice": "alice", "bob": "bob", "ops": "ops"}}
	acl := &prefixACL{allows: map[string]string{"alice": "jobs/", "bob": "jobs/", "ops": ""}}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer = keys, acl })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	locks := func(who string) lockstepv1connect.LockServiceClient {
		return lockstepv1connect.NewLockServiceClient(h2c(), s.url, connect.WithInterceptors(bearer(who)))
	}
	x, err := locks("ops").Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "jobs/x", Owner: "holder"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locks("ops").Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "jobs/y", Owner: "holder"})); err != nil {
		t.Fatal(err)
	}
	waiting := func(who, name string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := locks(who).Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: name, Owner: who, WaitTimeoutMs: -1}))
			done <- err
		}()
		return done
	}
	alice, bob := waiting("alice", "jobs/x"), waiting("bob", "jobs/x")
	mux, sessions := s.multiplex(t, ctx, "bob")
	bobSession := newSession(t, sessions, 30_000)
	sendAll(t, mux, acquireOn(1, bobSession, "jobs/y", -1))
	if m, err := mux.Receive(); err != nil || m.Responses[0].GetQueued() == nil {
		t.Fatalf("bob's wait for jobs/y on his stream: %v %v", m, err)
	}
	obs := s.observe(t, ctx, "alice", "jobs/el")
	time.Sleep(300 * time.Millisecond) // the waits are queued

	acl.set(map[string]string{"bob": "other/", "ops": ""})
	keys.reload(map[string]string{"bob": "bob", "ops": "ops"})

	for who, c := range map[string]struct {
		done <-chan error
		code connect.Code
		say  string
	}{"alice": {alice, connect.CodeUnauthenticated, "withdrawn by a reload"}, "bob": {bob, connect.CodePermissionDenied, "no longer allows"}} {
		select {
		case err := <-c.done:
			if connect.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.say) {
				t.Errorf("%s's waiting acquire after the reload: %v, want %v saying %q", who, err, c.code, c.say)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s's waiting acquire still waits 5 s after the reload", who)
		}
	}
	got, _ := answers(t, mux, 1)
	if e := got[1].GetError(); e.GetCode() != "permission_denied" || !strings.Contains(e.GetMessage(), "no longer allows") {
		t.Errorf("bob's wait on his stream after the reload: %v", got[1])
	}
	sendAll(t, mux, keepAliveOn(2, bobSession))
	if got, _ := answers(t, mux, 1); got[2].GetError() != nil {
		t.Errorf("bob's stream after one of its waits ended: %v", got[2])
	}
	if obs.Receive() {
		t.Errorf("alice's observe goes on after her key and rule were removed: %v", obs.Msg())
	} else if code := connect.CodeOf(obs.Err()); code != connect.CodeUnauthenticated {
		t.Errorf("alice's observe ended with %v", obs.Err())
	}
	// The waits were withdrawn: released, x is free, not granted to them.
	if _, err := locks("ops").Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "jobs/x", Owner: "holder", FencingToken: x.Msg.FencingToken})); err != nil {
		t.Fatal(err)
	}
	st, err := locks("ops").Status(ctx, connect.NewRequest(&pb.LockStatusRequest{Name: "jobs/x"}))
	if err != nil || st.Msg.Held {
		t.Fatalf("jobs/x after its holder released it: %v %v, want free", st, err)
	}
}

// TestReloadEndsAnObserveOfANameNoLongerAllowed: an Observe whose key
// stays but whose rule goes ends with permission_denied.
func TestReloadEndsAnObserveOfANameNoLongerAllowed(t *testing.T) {
	keys := &reloadableKeys{keys: map[string]string{"alice": "alice"}}
	acl := &prefixACL{allows: map[string]string{"alice": "jobs/"}}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer = keys, acl })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs := s.observe(t, ctx, "alice", "jobs/el")
	acl.set(map[string]string{"alice": "other/"})
	keys.reload(map[string]string{"alice": "alice"})
	if obs.Receive() {
		t.Fatalf("alice's observe goes on after her rule was removed: %v", obs.Msg())
	}
	if connect.CodeOf(obs.Err()) != connect.CodePermissionDenied || !strings.Contains(obs.Err().Error(), "no longer allows") {
		t.Fatalf("alice's observe ended with %v, want permission_denied", obs.Err())
	}
}

// observe opens an Observe of name as principal who, and reads its first
// message (the leader now).
func (s *testServer) observe(t *testing.T, ctx context.Context, who, name string) *connect.ServerStreamForClient[pb.ObserveResponse] {
	t.Helper()
	elections := lockstepv1connect.NewElectionServiceClient(h2c(), s.url, connect.WithInterceptors(bearer(who)))
	obs, err := elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: name}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = obs.Close() })
	if !obs.Receive() {
		t.Fatalf("%s's observe of %s: %v", who, name, obs.Err())
	}
	return obs
}

// TestStreamsPerPrincipalAreBounded: a principal holds at most
// MaxStreamsPerPrincipal streams open on a member; the next is refused
// with resource_exhausted saying so, another principal's are not counted,
// and one closed makes room. A principal that could read nothing held
// 2,000 watches and took a member from 60 to 361 MB.
func TestStreamsPerPrincipalAreBounded(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.MaxStreamsPerPrincipal = keyAuth{}, 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := s.observe(t, ctx, "alice", "a/1")
	s.observe(t, ctx, "alice", "a/2")
	elections := lockstepv1connect.NewElectionServiceClient(h2c(), s.url, connect.WithInterceptors(bearer("alice")))
	third, err := elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: "a/3"}))
	if err == nil {
		defer third.Close()
		if third.Receive() {
			t.Fatal("alice's third stream was served with a bound of 2")
		}
		err = third.Err()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), `principal "alice" has 2 streams open on this member`) {
		t.Fatalf("alice's third stream: %v", err)
	}
	s.observe(t, ctx, "bob", "b/1") // bob's are his own
	_ = first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		obs, err := elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: "a/4"}))
		if err == nil {
			ok := obs.Receive()
			_ = obs.Close()
			if ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice closed a stream and still cannot open one: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRevokedStreamWithdrawsItsWaitsFirst: a session stream whose key a
// reload revoked withdraws the waits it serves through the log, and each
// answers unauthenticated on the stream (a grant the log applied first
// would answer as the grant) before the stream ends. Ending the stream
// first cancelled its waits: a lock granted just before the cancel stayed
// held by a session whose client had heard only "unauthenticated".
func TestRevokedStreamWithdrawsItsWaitsFirst(t *testing.T) {
	keys := &reloadableKeys{keys: map[string]string{"alice": "alice", "bob": "bob"}}
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keys })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bob, bobs := s.multiplex(t, ctx, "bob")
	bobSession := newSession(t, bobs, 30_000)
	sendAll(t, bob, acquireOn(1, bobSession, "revoke/held", 0))
	if got, _ := answers(t, bob, 1); !got[1].GetAcquireLock().GetAcquired() {
		t.Fatalf("bob's acquire: %v", got[1])
	}
	alice, alices := s.multiplex(t, ctx, "alice")
	aliceSession := newSession(t, alices, 30_000)
	sendAll(t, alice, acquireOn(1, aliceSession, "revoke/held", -1))
	// Queued: its first answer is the waiter id.
	if m, err := alice.Receive(); err != nil || len(m.Responses) == 0 || m.Responses[0].GetQueued() == nil {
		t.Fatalf("alice's acquire: %v %v, want queued", m, err)
	}
	keys.reload(map[string]string{"bob": "bob"})
	m, err := alice.Receive()
	if err != nil {
		t.Fatalf("alice's stream ended before her wait answered: %v", err)
	}
	if len(m.Responses) != 1 || m.Responses[0].RequestId != 1 || m.Responses[0].GetError().GetCode() != "unauthenticated" ||
		!strings.Contains(m.Responses[0].GetError().GetMessage(), "withdrawn by a reload") {
		t.Fatalf("alice's waiting acquire after her key was revoked: %v, want its own unauthenticated answer", m)
	}
	if _, err := alice.Receive(); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("alice's stream after her wait answered: %v, want it ended unauthenticated", err)
	}
	s.b.mu.Lock()
	st, err := s.b.m.Status(core.KindMutex, "revoke/held")
	s.b.mu.Unlock()
	if err != nil || len(st.Waiters) != 0 {
		t.Fatalf("alice's wait is still queued after the reload: %+v", st.Waiters)
	}
}
