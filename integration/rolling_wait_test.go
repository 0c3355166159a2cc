//go:build integration

package integration

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestRollingRestartKeepsAWaitingLock: a Go client's Lock waiting on a held
// mutex lives through a rolling restart of the members it waits through,
// although each served its wait for less than the retry timeout and
// together for more: the timeout counts only the time no member serves the
// wait, and a majority served it throughout. The user trial that found it:
// SIGTERM the waiter's member, restart it, SIGTERM the member it moved to
// ~9 s later, and the Lock failed with ErrUnavailable ("tried 3
// endpoint(s) for 15s") after 17 s.
func TestRollingRestartKeepsAWaitingLock(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	// The holder on the leader; the waiter through the two others, which
	// restart in turn while the leader keeps a majority with either.
	a := c.leader()
	var b, d *node
	for _, nd := range c.nodes {
		switch {
		case nd == a:
		case b == nil:
			b = nd
		default:
			d = nd
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const retry = 8 * time.Second
	session := func(owner string, endpoints []string, opts ...client.Option) *client.Session {
		cl, err := client.New(endpoints, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(context.Background()) })
		s, err := cl.NewSession(ctx, client.WithTTL(30*time.Second), client.WithOwner(owner))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const name = "rolling/wait"
	holderSession := session("holder", []string{a.url()})
	holder := client.NewMutex(holderSession, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiter := client.NewMutex(session("waiter", []string{b.url(), d.url()}, client.WithRetryTimeout(retry)), name)
	locked := make(chan error, 1)
	go func() { locked <- waiter.Lock(ctx) }()
	eventually(t, 10*time.Second, "the waiter queues", func() error {
		st, err := holderSession.Client().Status(ctx, client.KindMutex, name)
		if err == nil && len(st.Waiters) != 1 {
			return fmt.Errorf("waiters %v", st.Waiters)
		}
		return err
	})
	served := retry / 2 // each member serves the wait for less than the timeout; together for more
	time.Sleep(served)
	stopped := time.Now()
	b.signal(t, syscall.SIGTERM)
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("%s drained with exit code %d", b.ID, code)
	}
	c.start(b)
	c.waitHealthy(30*time.Second, b)
	if left := served + time.Second - time.Since(stopped); left > 0 {
		time.Sleep(left)
	} else {
		t.Logf("%s took %v to restart: the wait on %s outlasted %v", b.ID, time.Since(stopped), d.ID, served+time.Second)
	}
	d.signal(t, syscall.SIGTERM)
	if code := d.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("%s drained with exit code %d", d.ID, code)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; err != nil {
		t.Fatalf("Lock after a rolling restart of the members it waited through: %v", err)
	}
}
