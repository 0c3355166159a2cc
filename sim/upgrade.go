package sim

import (
	mrand "math/rand/v2"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
)

// The rolling upgrade (Options.Upgrade): the replicas start as a build of
// rules 3, whose drivers propose leader-change marks without rules, so the
// log applies by rules 3 (core/rules.go). From the drawn moment they are
// upgraded one after another, in an order drawn from the upgrade stream:
// each crashes, as a stopped process does, and restarts from its disk as
// this build (replica.Config.MarkRules left to core.RulesVersion). The
// first mark a leader of the new build proposes raises the rules in force
// to 4 on every replica at one index, and the ledger checks every entry by
// the rules in force at it. A replica down already (a crash fault) is
// upgraded by the restart it waits for. The upgrade takes down no more
// than the crash faults may (a majority stays up, or it waits), and stops
// at the end of the safety phase: the replicas it had not reached stay on
// the old build, and the liveness phase runs with them.
//
// The old build differs from this one only in its marks: its machine is
// this build's core, which applies an entry by the rules in force, so it
// stands for a member of rules 3 exactly where the log says rules 3. The
// Raft hello that cuts members of different versions apart
// (docs/operations.md, rolling upgrade) is not simulated: the mixed
// cluster runs as one, which reaches more interleavings of old and new
// leaders than the real cut-off does.
type upgrade struct {
	rng      *mrand.Rand
	order    []int  // replica ids, in the order they are upgraded
	next     int    // the next of order
	upgraded []bool // per replica id: restarts as the new build
}

func newUpgrade(w *world) *upgrade {
	if w.opts.Upgrade == UpgradeNone {
		return nil
	}
	u := &upgrade{rng: stream(w.opts.Seed, "upgrade"), upgraded: make([]bool, w.opts.Replicas+1)}
	for _, i := range u.rng.Perm(w.opts.Replicas) {
		u.order = append(u.order, i+1)
	}
	w.schedule(&event{at: w.opts.Upgrade, kind: evUpgrade})
	return u
}

// markRules is the replica's driver's MarkRules: the old build's until the
// upgrade reached it.
func (w *world) markRules(id int) uint64 {
	if w.upg == nil || w.upg.upgraded[id] {
		return 0 // core.RulesVersion
	}
	return replica.MarkRulesUnmarked
}

// upgradeNext upgrades the next replica of the order.
func (w *world) upgradeNext() {
	u := w.upg
	if u == nil || u.next >= len(u.order) || w.phase != phaseSafety {
		return
	}
	id := u.order[u.next]
	n := w.nodes[id]
	if n.up {
		up := 0
		for _, o := range w.nodes[1:] {
			if o.up {
				up++
			}
		}
		if up-1 <= w.opts.Replicas/2 {
			// Taking it down would leave no majority: wait for the others.
			w.schedule(&event{at: w.now + 500*time.Millisecond, kind: evUpgrade})
			return
		}
	}
	u.upgraded[id] = true
	u.next++
	down := time.Duration(200+u.rng.IntN(800)) * time.Millisecond
	if n.up {
		w.tr.logf(w.now, "UPGRADE n%d: restarts in %v as a build of rules %d", id, down, core.RulesVersion)
		w.crashReplica(id, down)
	} else {
		w.tr.logf(w.now, "UPGRADE n%d (down): restarts as a build of rules %d", id, core.RulesVersion)
		down = 0
	}
	w.tr.mix(0x0b9ade, uint64(id), uint64(down))
	w.schedule(&event{at: w.now + down + time.Duration(100+u.rng.IntN(400))*time.Millisecond, kind: evUpgrade})
}
