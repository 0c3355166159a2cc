package sim

import (
	"fmt"
	mrand "math/rand/v2"
	"sort"

	"github.com/lockstepd/lockstep/core"
)

// names is the workload's small namespace: few names per kind, so clients
// contend. Semaphore limits and barrier party counts are fixed per name,
// as a real application's would be.
type names struct {
	mutexes    []string
	sems       []string
	semLimits  map[string]int64
	rwlocks    []string
	barriers   []string
	parties    map[string]int64
	setBarrier string // a set/remove barrier (parties 0)
	elections  []string
}

func newNames(o Options, r *mrand.Rand) *names {
	n := &names{semLimits: map[string]int64{}, parties: map[string]int64{}}
	gen := func(prefix string, count int) []string {
		var out []string
		for i := 0; i < count; i++ {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
		}
		return out
	}
	n.mutexes = gen("m", 1+r.IntN(3))
	n.sems = gen("s", 1+r.IntN(2))
	for _, s := range n.sems {
		n.semLimits[s] = int64(1 + r.IntN(3))
	}
	n.rwlocks = gen("rw", 1+r.IntN(2))
	n.barriers = gen("b", 1+r.IntN(2))
	for _, b := range n.barriers {
		n.parties[b] = int64(2 + r.IntN(max(1, min(o.Clients, 4)-1)))
	}
	n.elections = gen("e", 1+r.IntN(2))
	n.setBarrier = "bs0"
	return n
}

func (w *world) semLimit(name string) int64 { return w.names.semLimits[name] }

// all lists every name with its kind, in order.
func (n *names) all() []objKey {
	var out []objKey
	add := func(k core.Kind, ns []string) {
		for _, s := range ns {
			out = append(out, objKey{k, s})
		}
	}
	add(core.KindMutex, n.mutexes)
	add(core.KindSemaphore, n.sems)
	add(core.KindRWLock, n.rwlocks)
	add(core.KindElection, n.elections)
	sort.Slice(out, func(i, j int) bool {
		if out[i].kind != out[j].kind {
			return out[i].kind < out[j].kind
		}
		return out[i].name < out[j].name
	})
	return out
}
