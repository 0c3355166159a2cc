package runtime

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// BenchmarkAcquireRelease measures acquire+release cycles through Do on a
// three-node cluster in one process, each client on its own name, entering
// at the leader or at a follower. It reports cycles/s, the acquire latency
// p50/p99, and how many commands shared an entry.
//
//	go test -run '^$' -bench AcquireRelease -benchtime 4000x ./runtime/
func BenchmarkAcquireRelease(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		for _, clients := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("via=%s/clients=%d", via, clients), func(b *testing.B) {
				benchCycles(b, via, clients)
			})
		}
	}
}

func benchCycles(b *testing.B, via string, clients int) {
	c := newTestCluster(b, clusterOpts{size: 3})
	i := c.waitLeader(0)
	if via == "follower" {
		i = c.follower()
	}
	n, reg := c.nodes[i], c.regs[i]
	sessions := make([]core.SessionID, clients)
	for k := range sessions {
		r, err := n.Do(tctx(c.t), core.Command{Op: core.OpSessionCreate, TTLMs: 60_000})
		if err != nil || r.Err != nil {
			b.Fatal(err, r.Err)
		}
		sessions[k] = r.Session
	}
	entries0, cmds0 := counter(c.t, reg, "lockstep_raft_entries_applied_total"), counter(c.t, reg, "lockstep_commands_applied_total")
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for k := range clients {
		wg.Go(func() {
			name := fmt.Sprintf("bench/%d", k)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				g, err := n.Do(tctx(c.t), mutex(name, sessions[k], 0))
				if err != nil || g.Err != nil || g.Outcome != core.OutcomeGranted {
					b.Error(err, g)
					return
				}
				lat[k] = append(lat[k], time.Since(t0))
				r, err := n.Do(tctx(c.t), core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name,
					Session: sessions[k], Token: g.Token})
				if err != nil || r.Err != nil {
					b.Error(err, r.Err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	entries := counter(c.t, reg, "lockstep_raft_entries_applied_total") - entries0
	cmds := counter(c.t, reg, "lockstep_commands_applied_total") - cmds0
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "cycles/s")
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(cmds/max(entries, 1), "cmds/entry")
}
