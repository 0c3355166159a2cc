package main

import (
	"context"
	"fmt"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// The cycle and hand-off points can also be driven through the Go client
// (-via client, client-per-session, client-unary): one client.Client given
// all three endpoints, as a Go program meets Lockstep, each worker with
// its own session. "client" carries every session's operations on the
// Client's one stream per endpoint (the client's default),
// "client-per-session" each session's on a stream of its own
// (client.WithStreamPerSession), and "client-unary" sends each as a unary
// call (client.WithUnary), so that each stream's worth is a figure.

// vias are the ways -via names.
var vias = []string{"connect", "client", "client-per-session", "client-unary"}

// goClient is the client package on this cluster's three endpoints, as
// via says.
func (b *bench) goClient(via string) (*client.Client, error) {
	if b.c.sec != nil {
		return nil, fmt.Errorf("-via client runs on a plaintext cluster only")
	}
	var eps []string
	for _, nd := range b.c.nodes {
		eps = append(eps, b.c.url(nd))
	}
	opts := []client.Option{client.WithClientID("lockbench")}
	switch via {
	case "client-unary":
		opts = append(opts, client.WithUnary())
	case "client-per-session":
		opts = append(opts, client.WithStreamPerSession())
	}
	return client.New(eps, opts...)
}

type clientWorker struct {
	s *client.Session
	m *client.Mutex
}

// viaClient runs n workers through the client package: acquire (try once,
// or wait up to 30 s on one shared name for hand-offs) then release. The
// latency is the acquire's.
func (b *bench) viaClient(n int, via string, handoff bool) (result, error) {
	c, err := b.goClient(via)
	if err != nil {
		return result{}, err
	}
	b.run++
	run := b.run
	if !handoff {
		defer b.paced()()
	}
	return b.load(n,
		func(i int, _ api) (any, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := c.NewSession(ctx, client.WithTTL(60*time.Second), client.WithOwner("lockbench"))
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("bench/client/%d/%d", run, i)
			if handoff {
				name = fmt.Sprintf("bench/client-handoff/%d", run)
			}
			return &clientWorker{s: s, m: client.NewMutex(s, name)}, nil
		},
		func(i int, _ api, st any) (time.Duration, bool, error) {
			w := st.(*clientWorker)
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			t0 := time.Now()
			var err error
			if handoff {
				err = w.m.LockWithin(ctx, 30*time.Second)
			} else {
				err = w.m.TryLock(ctx)
			}
			d := time.Since(t0)
			if err != nil {
				return 0, false, fmt.Errorf("lock: %w", err)
			}
			if err := w.m.Unlock(ctx); err != nil {
				return 0, false, fmt.Errorf("unlock: %w", err)
			}
			return d, true, nil
		},
		func(i int, _ api, st any) {
			if w, ok := st.(*clientWorker); ok && w != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = w.s.Close(ctx)
			}
		})
}
