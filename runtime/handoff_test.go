package runtime

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// TestCloseHandsOffLeadershipWhenBusy: a leader that closes while the
// others forward a steady load hands its leadership to another member
// before it is gone, within handOffBound, so the cluster does not wait
// an election timeout to notice it left. Under load the target of a
// request often still has committed entries to apply, and Dragonboat's
// target then skips its campaign: with one request, a third to a half of
// the rounds were elected after Close instead (0.4-0.6 s after it began,
// against 5-20 ms, or an election timeout when Close asks again).
func TestCloseHandsOffLeadershipWhenBusy(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	el := time.Duration(c.cfgs[0].Consensus.ElectionTimeoutMs) * time.Millisecond
	hb := time.Duration(c.cfgs[0].Consensus.HeartbeatIntervalMs) * time.Millisecond
	bound := handOffBound(el, hb)
	const rounds = 4
	for round := range rounds {
		l := c.waitLeader(0)
		_, _, term, _ := c.nodes[l].shards[0].leaderState()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		cycles := make([]int, len(c.nodes))
		for i, n := range c.nodes {
			if i == l {
				continue
			}
			s := session(t, n, time.Minute)
			for g := range 4 {
				wg.Go(func() {
					name := fmt.Sprintf("busy-%d-%d-%d", round, i, g)
					// Bounded: it stops when the round does, or after 10 s.
					for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
						select {
						case <-stop:
							return
						default:
						}
						ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
						r, err := n.Do(ctx, mutex(name, s, 0))
						if err == nil && r.Err == nil {
							_, _ = n.Do(ctx, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: s, Token: r.Token})
							if g == 0 {
								cycles[i]++
							}
						}
						cancel()
					}
				})
			}
		}
		time.Sleep(300 * time.Millisecond) // the load under way
		start := time.Now()
		c.stop(l)
		closed := time.Now()
		close(stop)
		wg.Wait()
		next := c.waitLeader(0)
		took, tookTerm := time.Duration(0), uint64(0)
		if isLeader, _, t2, since := c.nodes[next].shards[0].leaderState(); isLeader {
			took, tookTerm = since.Sub(start), t2
		}
		t.Logf("round %d: Close took %v; node %d led %v after Close began (term %d → %d); load: %v",
			round, closed.Sub(start).Round(time.Millisecond), next+1, took.Round(time.Millisecond), term, tookTerm, cycles)
		// Taken over while the old leader closed, not elected after it was
		// gone: the drain and the flush of withdrawals (a second at most)
		// come before the hand-off, which is bounded.
		if took <= 0 || took > time.Second+bound {
			t.Errorf("round %d: node %d took over %v after Close began, want it handed within %v of the flush", round, next+1, took, bound)
		}
		if since := closed.Sub(start); took > since {
			t.Errorf("round %d: node %d took over %v after Close began, after Close returned (%v): elected, not handed the lead",
				round, next+1, took, since)
		}
		c.restart(l)
	}
}
