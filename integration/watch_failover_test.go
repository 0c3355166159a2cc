//go:build integration

package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// TestClientWatchAcrossKill: a Go client's prefix watch of names spread
// over four shards, connected to one node of three, survives a kill -9 of
// that node (which leads shards of its own): the client resumes on a
// survivor from its per-shard positions and receives every grant and
// release of the locks taken before, during and after the failover, each
// exactly once.
func TestClientWatchAcrossKill(t *testing.T) {
	c := startShardedCluster(t)
	victim := c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	watcher, err := client.New([]string{victim.url(), c.nodes[1].url(), c.nodes[2].url()}, client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	worker, err := client.New([]string{c.nodes[1].url(), c.nodes[2].url()}, client.WithRetryTimeout(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 12)
	covered := map[uint64]bool{}
	for i := range names {
		names[i] = fmt.Sprintf("iw/%d", i)
		covered[runtime.ShardOf(names[i], itShards)] = true
	}
	if len(covered) != itShards {
		t.Fatalf("the names cover shards %v only, want all %d", covered, itShards)
	}

	// The watch, recording every event by what it says.
	type seenKey struct {
		name  string
		typ   pb.EventType
		token uint64
	}
	var mu sync.Mutex
	seen := map[seenKey]int{}
	byEntry := map[string]int{} // shard/index/type/name: an event delivered twice repeats this
	var watchErr error
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for r := range watcher.Watch(wctx, "iw/") {
			mu.Lock()
			if r.Err != nil {
				watchErr = r.Err
			}
			for _, e := range r.Events {
				seen[seenKey{e.Name, e.Type, e.FencingToken}]++
				byEntry[fmt.Sprintf("%d/%d/%v/%s", e.ShardId, e.Index, e.Type, e.Name)]++
			}
			mu.Unlock()
		}
	}()
	sawGrant := func(name string, token uint64) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[seenKey{name, pb.EventType_EVENT_TYPE_GRANTED, token}] > 0
	}

	sess, err := worker.NewSession(ctx, client.WithTTL(10*time.Second), client.WithOwner("watch-failover"))
	if err != nil {
		t.Fatal(err)
	}
	// The watch starts from "now" when its stream opens: lock a sentinel
	// until the watch sees it, so that everything after is in its range.
	eventually(t, 10*time.Second, "the watch sees a grant", func() error {
		m := client.NewMutex(sess, "iw/start")
		if err := m.Lock(ctx); err != nil {
			return err
		}
		tok := m.Token()
		if err := m.Unlock(ctx); err != nil {
			return err
		}
		for range 10 {
			if sawGrant("iw/start", tok) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("no grant of iw/start %d yet", tok)
	})

	// The workload: lock and unlock every name, round after round, until
	// told to stop; every grant and release it made must be watched.
	var want []seenKey
	var wmu sync.Mutex
	ops := func() int { wmu.Lock(); defer wmu.Unlock(); return len(want) }
	stop := make(chan struct{})
	workErr := make(chan error, 1)
	go func() {
		for round := 0; ; round++ {
			for _, name := range names {
				select {
				case <-stop:
					workErr <- nil
					return
				default:
				}
				m := client.NewMutex(sess, name)
				if err := m.Lock(ctx); err != nil {
					workErr <- fmt.Errorf("round %d: lock %s: %w", round, name, err)
					return
				}
				tok := m.Token() // Unlock forgets it
				if err := m.Unlock(ctx); err != nil {
					workErr <- fmt.Errorf("round %d: unlock %s: %w", round, name, err)
					return
				}
				wmu.Lock()
				want = append(want, seenKey{name, pb.EventType_EVENT_TYPE_GRANTED, tok}, seenKey{name, pb.EventType_EVENT_TYPE_RELEASED, tok})
				wmu.Unlock()
			}
		}
	}()
	eventually(t, 10*time.Second, "a round of locks before the kill", func() error {
		if n := ops(); n < 2*len(names) {
			return fmt.Errorf("%d events made", n)
		}
		return nil
	})
	victim.Kill()
	atKill := ops()
	eventually(t, 20*time.Second, "two rounds of locks after the kill", func() error {
		if n := ops(); n < atKill+4*len(names) {
			return fmt.Errorf("%d events made since the kill", n-atKill)
		}
		return nil
	})
	close(stop)
	if err := <-workErr; err != nil {
		t.Fatal(err)
	}

	wmu.Lock()
	made := append([]seenKey(nil), want...)
	wmu.Unlock()
	eventually(t, 15*time.Second, "the watch receives every event made", func() error {
		mu.Lock()
		defer mu.Unlock()
		if watchErr != nil {
			return fmt.Errorf("the watch failed: %w", watchErr)
		}
		missing := 0
		var first seenKey
		for _, k := range made {
			if seen[k] == 0 {
				if missing == 0 {
					first = k
				}
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d events not received, the first %+v", missing, len(made), first)
		}
		return nil
	})
	wcancel()
	<-watchDone
	mu.Lock()
	defer mu.Unlock()
	if watchErr != nil {
		t.Errorf("the watch failed: %v", watchErr)
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%+v received %d times, want once", k, n)
		}
	}
	for k, n := range byEntry {
		if n != 1 {
			t.Errorf("event %s received %d times, want once", k, n)
		}
	}
	if got := watcher.Endpoint(); got == victim.url() {
		t.Errorf("the watch is still on the killed node %s", got)
	}
	t.Logf("%d events made (%d after the kill), each received once", len(made), len(made)-atKill)
}
