//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// A node with a long tick stamps forwarded requests further behind its
// leader; it says so in every session answer, and the client's lease view
// takes it into account: a TTL the guard would eat is refused.
func TestClientHonoursTheServersStampLag(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n, "--tick-interval-ms", "600")
	c.waitHealthy(20*time.Second, n)
	cl, err := client.New([]string{n.url()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.NewSession(ctx, client.WithTTL(2*time.Second)); err == nil || !strings.Contains(err.Error(), "up to 1.2s behind their leader") {
		t.Fatalf("a 2 s TTL against a 600 ms tick: %v, want a refusal naming the 1.2 s stamp lag", err)
	}
	s, err := cl.NewSession(ctx, client.WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	m := client.NewMutex(s, "lag")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
}
