//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestClientAcrossLeaderFailover drives the Go client against a real
// three-node cluster: a session and a mutex taken through the leader must
// survive the leader's kill -9, the client failing over to the survivors on
// its own, and the next grant's token must be larger.
func TestClientAcrossLeaderFailover(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	leader := c.leader()
	endpoints := []string{leader.url()} // the leader first, so failover has to happen
	for _, nd := range c.nodes {
		if nd != leader {
			endpoints = append(endpoints, nd.url())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl, err := client.New(endpoints, client.WithRetryTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := cl.NewSession(ctx, client.WithTTL(10*time.Second), client.WithOwner("failover-test"))
	if err != nil {
		t.Fatal(err)
	}
	mu := client.NewMutex(sess, "client/failover")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	first := mu.Token()

	leader.Kill()

	// The hold outlives the failover: its session is extended by the new
	// leader, and the client reaches a survivor without being told to.
	if err := mu.Unlock(ctx); err != nil {
		t.Fatalf("unlock after the leader's kill -9: %v", err)
	}
	other := client.NewMutex(sess, "client/after")
	if err := other.Lock(ctx); err != nil {
		t.Fatalf("lock after the leader's kill -9: %v", err)
	}
	if other.Token() <= first {
		t.Fatalf("token %d after failover is not above %d", other.Token(), first)
	}
	select {
	case <-sess.Done():
		t.Fatalf("the session was lost across the failover: %v", sess.Err())
	default:
	}
	if err := sess.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}
