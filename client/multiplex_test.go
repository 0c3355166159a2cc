package client_test

import (
	"errors"
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
// another caller, so the loss is pushed) holds no shared stream: the last
// one to go shuts it, even when it had a Lock waiting on it, and a new
// session opens another.
func TestLostSessionsLeaveNoStream(t *testing.T) {
	needServer(t)
	ctx := testCtx(t)
	c := newClient(t)
	const name = "t/lost-no-stream"
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
	if n := client.SharedStreams(c); n != 1 {
		t.Fatalf("two sessions hold %d shared streams, want 1", n)
	}
	closeElsewhere(t, ctx, waiter)
	if err := <-waited; !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("the lost session's Lock: %v, want ErrSessionLost", err)
	}
	if n := client.SharedStreams(c); n != 1 {
		t.Fatalf("with one session left the Client holds %d shared streams, want 1", n)
	}
	closeElsewhere(t, ctx, held)
	waitFor(t, "the shared stream shut", func() bool { return client.SharedStreams(c) == 0 })
	m := client.NewMutex(newSession(t, c), name)
	if err := m.Lock(ctx); err != nil {
		t.Fatalf("Lock on a new session after the stream shut: %v", err)
	}
	if n := client.SharedStreams(c); n != 1 {
		t.Fatalf("a new session holds %d shared streams, want 1", n)
	}
}
