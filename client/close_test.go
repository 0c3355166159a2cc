package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// TestClientCloseEndsWhatItOwns: Close closes the sessions the Client made
// (a mutex one of them holds goes to a waiter of another client at once,
// not when the 30 s lease would run out), ends its watches, and refuses
// every call after it; a second Close answers nil.
func TestClientCloseEndsWhatItOwns(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	holder, err := c.NewSession(ctx, client.WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	idle, err := c.NewSession(ctx, client.WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(holder, "t/client-close/m").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	watch := c.Watch(ctx, "t/client-close/")

	other := newClient(t)
	waiter := client.NewMutex(newSession(t, other), "t/client-close/m")
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a third of the holder's lease
	defer cancel()
	got := make(chan error, 1)
	go func() { got <- waiter.Lock(wctx) }()
	time.Sleep(200 * time.Millisecond) // let the waiter queue

	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, s := range []*client.Session{holder, idle} {
		select {
		case <-s.Done():
		default:
			t.Fatalf("session %d is still open after the Client's Close", s.ID())
		}
		// Both: the session is lost, and by the caller's own Close, which a
		// blocked Lock's error told only in words.
		if !errors.Is(s.Err(), client.ErrSessionLost) || !errors.Is(s.Err(), client.ErrClientClosed) {
			t.Fatalf("session %d after the Client's Close: Err %v, want ErrSessionLost and ErrClientClosed", s.ID(), s.Err())
		}
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter was not granted the mutex the closed Client's session held: %v", err)
	}
	for range watch {
	} // closes: the loop ends (testCtx bounds it)

	if _, err := c.NewSession(ctx); !errors.Is(err, client.ErrClientClosed) {
		t.Fatalf("NewSession after Close: %v, want ErrClientClosed", err)
	}
	if _, err := c.Status(ctx, client.KindMutex, "t/client-close/m"); !errors.Is(err, client.ErrClientClosed) {
		t.Fatalf("Status after Close: %v, want ErrClientClosed", err)
	}
	if st := c.ClusterStatusEach(ctx); len(st) != 1 || !errors.Is(st[0].Err, client.ErrClientClosed) {
		t.Fatalf("ClusterStatusEach after Close: %+v, want ErrClientClosed", st)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// TestClosedSessionLeavesTheClient: a session closed by its owner leaves
// the set the Client's Close would close, so a long-lived Client that
// makes and closes many sessions keeps none of them.
func TestClosedSessionLeavesTheClient(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	for range 3 {
		s, err := c.NewSession(ctx, client.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if n := client.LiveSessions(c); n != 1 {
			t.Fatalf("%d live sessions with one open", n)
		}
		if err := s.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := client.LiveSessions(c); n != 0 {
		t.Fatalf("%d live sessions after every one was closed", n)
	}
}

// TestSessionClosedElsewhereIsPushed: a session closed by another caller
// (an operator's close by its id) ends at once for the Client that made
// it, on a shared stream and on a stream of its own, not at its next
// keepalive ten seconds on; its error says it was closed, not expired.
func TestSessionClosedElsewhereIsPushed(t *testing.T) {
	ctx := testCtx(t)
	for name, opts := range map[string][]client.Option{
		"multiplex":          nil,
		"stream per session": {client.WithStreamPerSession()},
	} {
		t.Run(name, func(t *testing.T) {
			needServer(t)
			c, err := client.New([]string{endpoint}, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			s, err := c.NewSession(ctx, client.WithTTL(30*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			// A request on the session's stream starts its watch there.
			if err := client.NewMutex(s, "t/closed-elsewhere/"+name).TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			closeElsewhere(t, ctx, s)
			if err := s.Err(); !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "closed on the servers by another caller") {
				t.Fatalf("session %d closed elsewhere: Err %v, want ErrSessionLost saying it was closed by another caller", s.ID(), err)
			}
		})
	}
}

// closeElsewhere closes s as another caller would (an operator's close by
// its id) and waits for s to see it.
func closeElsewhere(t *testing.T, ctx context.Context, s *client.Session) {
	t.Helper()
	if _, err := rawSessions().Close(ctx, connect.NewRequest(&pb.CloseSessionRequest{SessionId: s.ID()})); err != nil {
		t.Fatalf("closing session %d from outside: %v", s.ID(), err)
	}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("session %d, closed by another caller, still open after 5 s", s.ID())
	}
}

// TestCloseLeavesNoConnection: after Close, no connection of the Client's
// is left open, even when sessions' own streams (WithStreamPerSession)
// were being torn down at that moment: such a connection was not idle yet
// when Close closed the idle ones, and stayed open with its reader and
// writer goroutines until the transport's idle timeout (90 s; a Go
// developer's audit saw it in 2 runs of 4). The proxy counts the TCP
// connections open.
func TestCloseLeavesNoConnection(t *testing.T) {
	needServer(t)
	for round := range 3 {
		ctx := testCtx(t)
		p := newFaultProxy(t, endpoint)
		c, err := client.New([]string{p.URL()}, client.WithStreamPerSession())
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("t/close-leaves-no-connection/%d", round)
		holder, err := c.NewSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.NewMutex(holder, name).Lock(ctx); err != nil {
			t.Fatal(err)
		}
		var blocked sync.WaitGroup
		for range 30 {
			s, err := c.NewSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			blocked.Go(func() { _ = client.NewMutex(s, name).Lock(ctx) })
		}
		waitFor(t, "the Locks' streams open", func() bool { return p.streamsOpen.Load() >= 31 })
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		blocked.Wait()
		waitFor(t, fmt.Sprintf("round %d: every connection of the closed Client closed", round), func() bool { return p.connsOpen.Load() == 0 })
	}
}

// TestWaitEndedByAnotherCallersCloseSaysSo: a Lock blocked in a session
// that another caller closes returns ErrSessionLost in the words the
// session's other calls use, not the proto's REASON_SESSION_CLOSED.
func TestWaitEndedByAnotherCallersCloseSaysSo(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	holder, s := newSession(t, c), newSession(t, c)
	if err := client.NewMutex(holder, "t/closed-by-another").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- client.NewMutex(s, "t/closed-by-another").Lock(ctx) }()
	time.Sleep(200 * time.Millisecond) // queued
	closeElsewhere(t, ctx, s)
	err := <-done
	if !errors.Is(err, client.ErrSessionLost) || strings.Contains(err.Error(), "REASON_") || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("a Lock whose session another caller closed: %v, want ErrSessionLost saying it was closed", err)
	}
}
