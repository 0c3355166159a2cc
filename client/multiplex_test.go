package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// The sessions of one Client share one stream to the endpoint
// (Multiplex); WithStreamPerSession opens one stream per session instead.
func TestSessionsShareOneStream(t *testing.T) {
	needServer(t)
	for _, tc := range []struct {
		name              string
		opts              []client.Option
		multi, perSession int
	}{{"default", nil, 1, 0}, {"WithStreamPerSession", []client.Option{client.WithStreamPerSession()}, 0, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFaultProxy(t, endpoint)
			c, err := client.New([]string{p.URL()}, append([]client.Option{client.WithRetryTimeout(5 * time.Second)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			for i := range 3 {
				m := client.NewMutex(newSession(t, c), "t/share/"+string(rune('a'+i)))
				if err := m.Lock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := m.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			}
			p.mu.Lock()
			multi, perSession := 0, 0
			for _, path := range p.opened {
				switch {
				case strings.HasSuffix(path, "/Multiplex"):
					multi++
				case strings.HasSuffix(path, "/Stream"):
					perSession++
				}
			}
			p.mu.Unlock()
			if multi != tc.multi || perSession != tc.perSession {
				t.Fatalf("three sessions opened %d Multiplex and %d session streams, want %d and %d", multi, perSession, tc.multi, tc.perSession)
			}
		})
	}
}

// Closing one session fails its own waiting Lock, not that of another
// session on the same shared stream, which is granted when the holder
// lets go.
func TestClosingASessionEndsOnlyItsOwnRequests(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	const name = "t/share-close"
	holder := client.NewMutex(newSession(t, c), name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	a, b := newSession(t, c), newSession(t, c)
	aDone, bDone := make(chan error, 1), make(chan error, 1)
	go func() { aDone <- client.NewMutex(a, name).Lock(ctx) }()
	go func() { bDone <- client.NewMutex(b, name).Lock(ctx) }()
	waitFor(t, "both Locks queued", func() bool {
		st, err := c.Status(ctx, client.KindMutex, name)
		return err == nil && len(st.Waiters) == 2
	})
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-aDone:
		if !errors.Is(err, client.ErrSessionLost) {
			t.Fatalf("the closed session's Lock: %v, want ErrSessionLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the closed session's Lock still waits")
	}
	select {
	case err := <-bDone:
		t.Fatalf("the other session's Lock ended while the holder holds: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("the other session's Lock after the holder let go: %v", err)
	}
}

// A Client whose sessions were all lost without Close (here closed by
// another caller, so the loss is pushed) holds no stream, even when a
// Lock was waiting on one: the last session to go shuts the shared
// stream, and with WithStreamPerSession each session's loss shuts its own.
// A new session opens another; Close of a lost session still answers nil
// and leaves no stream behind. The proxy counts the streams that are open
// on the wire, not in the client's books.
func TestLostSessionsLeaveNoStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []client.Option
		two  int // the streams two sessions hold
	}{{"shared stream", nil, 1}, {"stream per session", []client.Option{client.WithStreamPerSession()}, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			needServer(t)
			ctx := testCtx(t)
			p := newFaultProxy(t, endpoint)
			c, err := client.New([]string{p.URL()}, append([]client.Option{client.WithRetryTimeout(5 * time.Second)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			open := func(when string, want int) {
				t.Helper()
				waitFor(t, fmt.Sprintf("%s: %d streams open", when, want), func() bool { return int(p.streamsOpen.Load()) == want })
			}
			name := "t/lost-no-stream/" + tc.name
			held := newSession(t, c)
			if err := client.NewMutex(held, name).Lock(ctx); err != nil {
				t.Fatal(err)
			}
			waiter := newSession(t, c)
			waited := make(chan error, 1)
			go func() { waited <- client.NewMutex(waiter, name).Lock(ctx) }()
			waitFor(t, "the Lock queued", func() bool {
				st, err := c.Status(ctx, client.KindMutex, name)
				return err == nil && len(st.Waiters) == 1
			})
			open("two sessions", tc.two)
			closeElsewhere(t, ctx, waiter)
			if err := <-waited; !errors.Is(err, client.ErrSessionLost) {
				t.Fatalf("the lost session's Lock: %v, want ErrSessionLost", err)
			}
			open("one session left", 1)
			closeElsewhere(t, ctx, held)
			open("both sessions lost", 0)
			if n := client.SharedStreams(c); n != 0 {
				t.Fatalf("with both sessions lost the Client still lists %d shared streams", n)
			}
			fresh := newSession(t, c)
			m := client.NewMutex(fresh, name)
			if err := m.Lock(ctx); err != nil {
				t.Fatalf("Lock on a new session after the streams shut: %v", err)
			}
			open("a new session", 1)
			for _, s := range []*client.Session{waiter, held} {
				if err := s.Close(ctx); err != nil {
					t.Fatalf("Close of session %d, lost: %v", s.ID(), err)
				}
			}
			open("the lost sessions closed", 1)
			if err := fresh.Close(ctx); err != nil {
				t.Fatal(err)
			}
			open("every session closed", 0)
		})
	}
}

// A session whose lease ran out unrenewed (its keepalives never arrive)
// and that is never closed leaves no stream either, shared or its own,
// though a keepalive was still waiting on it when the lease ended.
func TestExpiredSessionLeavesNoStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []client.Option
	}{{"shared stream", nil}, {"stream per session", []client.Option{client.WithStreamPerSession()}}} {
		t.Run(tc.name, func(t *testing.T) {
			needServer(t)
			ctx := testCtx(t)
			p := newFaultProxy(t, endpoint)
			c, err := client.New([]string{p.URL()}, append([]client.Option{client.WithRetryTimeout(5 * time.Second)}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			s, err := c.NewSession(ctx, client.WithTTL(client.MinTTL))
			if err != nil {
				t.Fatal(err)
			}
			if err := client.NewMutex(s, "t/expired-no-stream/"+tc.name).TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			if n := p.streamsOpen.Load(); n != 1 {
				t.Fatalf("a session that locked holds %d streams, want 1", n)
			}
			p.dropKeepalives.Store(true)
			select {
			case <-s.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("the session outlived its lease without keepalives")
			}
			waitFor(t, "the lost session's stream shut", func() bool { return p.streamsOpen.Load() == 0 })
		})
	}
}
