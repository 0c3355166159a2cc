package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// proxy is a loopback reverse proxy to the dev node whose connections the
// test can cut, as a node going away would.
func proxy(t *testing.T) *httptest.Server {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream each message at once
	s := httptest.NewServer(rp)
	t.Cleanup(s.Close)
	return s
}

// TestWatchNameResumesExactly: a watch of one name whose stream breaks
// right after an entry's events resumes from the applied_index of the last
// message + 1 and neither misses nor repeats an event: applied_index is the
// last whole entry sent, not the one before it.
func TestWatchNameResumesExactly(t *testing.T) {
	needServer(t)
	first, second := proxy(t), proxy(t)
	c, err := client.New([]string{first.URL, second.URL}, client.WithRetryTimeout(5*time.Second),
		client.WithBackoff(time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	const name = "t/exact/a"
	// The session lives on the direct endpoint, so that cutting the
	// proxy breaks the watch alone.
	m := client.NewMutex(newSession(t, newClient(t)), name)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := c.WatchName(wctx, name)
	var got []string
	// receive collects events until one of type want with the token.
	receive := func(want pb.EventType, token uint64) {
		t.Helper()
		for {
			select {
			case r, ok := <-ch:
				if !ok || r.Err != nil {
					t.Fatalf("the watch ended (%v) after %q", r.Err, got)
				}
				done := false
				for _, e := range r.Events {
					got = append(got, fmt.Sprintf("%d %s", e.Index, e.Type))
					done = done || (e.Type == want && e.FencingToken == token)
				}
				if done {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %s: got %q", want, got)
			}
		}
	}
	// The watch starts from when its stream opens: lock and unlock until
	// it shows an event of the name.
	for len(got) == 0 {
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			for _, e := range r.Events {
				got = append(got, fmt.Sprintf("%d %s", e.Index, e.Type))
			}
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the watch shows no event")
		}
	}
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	receive(pb.EventType_EVENT_TYPE_GRANTED, m.Token())
	// The break, right after the message with the grant, the last one
	// with events: the client resumes on the second proxy.
	first.CloseClientConnections()
	token := m.Token()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	receive(pb.EventType_EVENT_TYPE_RELEASED, token)
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("events %q: %s twice (the resume repeated the last entry before the break)", got, g)
		}
		seen[g] = true
	}
}
