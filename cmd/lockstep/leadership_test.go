package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/runtime"
)

// flipping is a node whose health a test sets.
type flipping struct {
	mu     sync.Mutex
	health error
}

func (f *flipping) Status(context.Context) (runtime.ClusterStatus, error) {
	return runtime.ClusterStatus{}, nil
}

func (f *flipping) Health() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

func (f *flipping) set(err error) {
	f.mu.Lock()
	f.health = err
	f.mu.Unlock()
}

// TestLeaderlessMomentIsNotSaid: a shard without a leader for less than
// the grace (an election: a planned hand-off takes a few hundred ms) logs
// nothing; each used to say "not ready" at WARN and "ready" again. One
// that lasts past the grace is said once, and its end.
func TestLeaderlessMomentIsNotSaid(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	said := func() string {
		mu.Lock()
		defer mu.Unlock()
		return buf.String()
	}
	node := &flipping{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		logLeadership(node, log, stop, 10*time.Millisecond, 300*time.Millisecond)
	}()
	defer func() { close(stop); <-done }()
	waitSaid := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(said(), what); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never said %q:\n%s", what, said())
			}
		}
	}
	waitSaid("ready: every shard has a leader")
	noLeader := fmt.Errorf("%w: shard 0 has no leader known to this member", runtime.ErrUnavailable)
	node.set(noLeader)
	time.Sleep(100 * time.Millisecond) // an election
	node.set(nil)
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(said(), "not ready") || strings.Count(said(), "ready: every shard") != 1 {
		t.Fatalf("a 100 ms election was said:\n%s", said())
	}
	node.set(noLeader)
	waitSaid("level=WARN msg=\"not ready: some shard has no leader; /health answers 503\"")
	node.set(nil)
	for deadline := time.Now().Add(5 * time.Second); strings.Count(said(), "ready: every shard") != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the end of a long election was not said:\n%s", said())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestLostAdvice: a session lost because the cluster no longer takes the
// command's credentials, or its ACL no longer allows it, or closed on the
// servers, is not advised to check the network or raise --ttl.
func TestLostAdvice(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: keepalive: unauthenticated: the API key is not known (revoked, or never added)", client.ErrSessionLost), "credentials"},
		{fmt.Errorf("%w: the credentials this stream was opened with were withdrawn by a reload of the security settings", client.ErrSessionLost), "credentials"},
		{fmt.Errorf("%w: permission_denied: the ACL in force since a reload no longer allows this request", client.ErrSessionLost), "security.acl"},
		{fmt.Errorf("%w: not renewed within its lease", client.ErrSessionLost), "raise --ttl"},
		{fmt.Errorf("%w: session 7 expired or was closed on the servers: not_found", client.ErrSessionLost), "raise --ttl"},
		// An operator's close is not the network's doing.
		{fmt.Errorf("%w: session 7 was closed", client.ErrSessionLost), "lockstep session close"},
		{fmt.Errorf("lock: %w: session 7 was closed on the servers", client.ErrSessionLost), "lockstep session close"},
		{fmt.Errorf("%w: session 7 was closed on the servers by another caller (pushed by http://a)", client.ErrSessionLost), "lockstep session close"},
		{fmt.Errorf("%w: keepalive: unauthenticated: the client certificate expired at 2026-12-06T19:52:20Z; renew it", client.ErrSessionLost), "renew it"},
		// A CA rotated under the command: not the network, not the TTL.
		{fmt.Errorf("%w: session 7 was not renewed within its lease: tls: failed to verify certificate: x509: certificate signed by unknown authority", client.ErrSessionLost), "--cacert"},
	} {
		if got := lostAdvice(tc.err); !strings.Contains(got, tc.want) {
			t.Errorf("advice for %v: %q, want it to say %q", tc.err, got, tc.want)
		}
	}
}

// TestLockDelayDefaultsToGrace: lockstep lock keeps the lock from everyone
// for --grace after its session fails, unless told otherwise, so that a
// command cut off from the cluster (SIGTERM, then SIGKILL after --grace)
// is gone before the next holder starts. With no lock-delay by default, a
// cut-off command ran about --grace beside the next holder; the defaults
// promised an overlap.
func TestLockDelayDefaultsToGrace(t *testing.T) {
	for _, tc := range []struct {
		given    time.Duration
		wasGiven bool
		grace    time.Duration
		want     time.Duration
		warns    bool
	}{
		{0, false, 10 * time.Second, 10 * time.Second, false},
		{0, false, 3 * time.Second, 3 * time.Second, false},
		{0, false, 90 * time.Second, time.Minute, true},
		{20 * time.Second, true, 10 * time.Second, 20 * time.Second, false},
		{2 * time.Second, true, 10 * time.Second, 2 * time.Second, true},
		{0, true, 10 * time.Second, 0, false}, // asked for none: the caller's choice
	} {
		got, warn := lockDelayFor(tc.given, tc.wasGiven, tc.grace)
		if got != tc.want || (warn != "") != tc.warns {
			t.Errorf("lock-delay %v (given %v), grace %v: %v, warning %q; want %v, warning %v",
				tc.given, tc.wasGiven, tc.grace, got, warn, tc.want, tc.warns)
		}
	}
}
