package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// The barrier parties: barrierParties clients, each with its own session,
// wait again and again at one counting barrier of barrierParties parties,
// each wait bounded (a wait that ends withdraws the arrival). Checked
// after the run (checkBarrier): each party's generations strictly
// increase, no generation released more parties than the barrier has,
// and every generation a party was told of is one the log released.
const (
	barrierParties = 3
	barrierName    = runPrefix + "b/round"
	barrierMinWait = time.Second
	barrierMaxWait = 3 * time.Second
)

type barrierParty struct {
	idx int
	run *run
	r   *rand.Rand
	c   *client.Client
	s   *client.Session
}

// barrierWait is one wait a party was answered.
type barrierWait struct {
	party     int
	gen       uint64
	call, ret time.Duration
}

type barrierLog struct {
	mu    sync.Mutex
	waits []barrierWait
}

// BarrierStats sum up the barrier for the report.
type BarrierStats struct {
	Rounds int `json:"rounds"`
	Waits  int `json:"waits"`
}

func (p *barrierParty) loop(ctx context.Context, log *barrierLog) {
	defer func() {
		if p.s != nil {
			p.run.closeSession(p.s)
		}
	}()
	for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
		if p.s != nil {
			select {
			case <-p.s.Done():
				p.s = nil
			default:
			}
		}
		if p.s == nil {
			cctx, cancel := context.WithTimeout(ctx, callSlack)
			owner := fmt.Sprintf("party-%d", p.idx)
			s, err := p.c.NewSession(cctx, client.WithTTL(p.run.o.TTL), client.WithOwner(owner))
			cancel()
			if err != nil {
				sleepCtx(ctx, 200*time.Millisecond)
				continue
			}
			p.run.track(s, owner)
			p.s = s
		}
		wait := barrierMinWait + time.Duration(p.r.Int64N(int64(barrierMaxWait-barrierMinWait)))
		cctx, cancel := context.WithTimeout(ctx, wait)
		call := p.run.h.now()
		gen, err := client.NewBarrier(p.s, barrierName, barrierParties).Wait(cctx)
		cancel()
		if err == nil {
			log.mu.Lock()
			log.waits = append(log.waits, barrierWait{party: p.idx, gen: gen, call: call, ret: p.run.h.now()})
			log.mu.Unlock()
		} else if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			sleepCtx(ctx, 100*time.Millisecond)
		}
		sleepCtx(ctx, time.Duration(p.r.IntN(100))*time.Millisecond)
	}
}

// checkBarrier returns the violations of the barrier's rules.
func (r *run) checkBarrier(log *barrierLog) ([]string, BarrierStats) {
	log.mu.Lock()
	defer log.mu.Unlock()
	r.h.mu.Lock()
	defer r.h.mu.Unlock()
	var bad []string
	released := r.h.barriers[barrierName]
	last := map[int]uint64{}
	count := map[uint64]int{}
	waits := append([]barrierWait(nil), log.waits...)
	sort.SliceStable(waits, func(i, j int) bool { return waits[i].ret < waits[j].ret })
	for _, w := range waits {
		if w.gen <= last[w.party] {
			bad = append(bad, fmt.Sprintf("barrier: party %d was released at generation %d after generation %d", w.party, w.gen, last[w.party]))
		}
		last[w.party] = w.gen
		count[w.gen]++
		if _, ok := released[w.gen]; !ok {
			bad = append(bad, fmt.Sprintf("barrier: party %d was told generation %d was released, which the log never released", w.party, w.gen))
		}
	}
	for gen, n := range count {
		if n > barrierParties {
			bad = append(bad, fmt.Sprintf("barrier: generation %d released %d parties of a barrier of %d", gen, n, barrierParties))
		}
	}
	sort.Strings(bad)
	return bad, BarrierStats{Rounds: len(count), Waits: len(waits)}
}
