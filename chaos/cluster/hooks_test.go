package cluster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
	"github.com/lockstepd/lockstep/client"
)

// TestSecureChaosBuild: a secured cluster of the chaos build serves over
// TLS to the harness and to a client with the CA and an API key, its
// members agree on their state hashes, and a node's clock moves when asked.
func TestSecureChaosBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lockstep processes")
	}
	c, err := cluster.Start(cluster.Options{Binary: chaosBinary, Secure: true}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, nd := range c.Nodes {
		if nd.URL()[:8] != "https://" {
			t.Fatalf("%s: %s, want https", nd.ID, nd.URL())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.New(c.Endpoints(), client.WithCAFile(c.PKI.CAFile), client.WithAPIKey(c.PKI.APIKey))
	if err != nil {
		t.Fatal(err)
	}
	s, err := cl.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(s, "secure/a").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	anon, _ := client.New(c.Endpoints(), client.WithCAFile(c.PKI.CAFile), client.WithRetryTimeout(2*time.Second))
	if _, err := anon.NewSession(ctx); err == nil {
		t.Fatal("a client with neither a certificate nor an API key opened a session")
	}
	hashes, err := c.SameState(10*time.Second, c.Nodes...)
	if err != nil || len(hashes) != 1 || hashes[0].StateHash == "" {
		t.Fatalf("SameState: %v %v", hashes, err)
	}
	nd := c.Nodes[1]
	if off, err := nd.SetClock(ctx, -1500*time.Millisecond, 0); err != nil || off != -1500*time.Millisecond {
		t.Fatalf("SetClock: %v %v", off, err)
	}
	if off, err := nd.ClockOffset(ctx); err != nil || off != -1500*time.Millisecond {
		t.Fatalf("ClockOffset: %v %v", off, err)
	}
}

// TestReleaseBuildHasNoHook: the harness tells a release binary's node
// from a chaos build's.
func TestReleaseBuildHasNoHook(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Nodes[0].SetClock(ctx, time.Second, 0); !errors.Is(err, cluster.ErrNoHook) {
		t.Fatalf("SetClock on a release binary: %v, want ErrNoHook", err)
	}
	if _, err := c.SameState(time.Second, c.Nodes...); !errors.Is(err, cluster.ErrNoHook) {
		t.Fatalf("SameState on a release binary: %v, want ErrNoHook", err)
	}
}
