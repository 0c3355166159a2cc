package sim

import (
	"os"
	"time"
)

// Helpers that scenario scripts call on the world.

func (w *world) leaderID() int {
	for _, n := range w.nodes[1:] {
		if n.up && n.leader {
			return n.id
		}
	}
	return 0
}

// isolate cuts a replica off from the other replicas, both ways.
func (w *world) isolate(id int) {
	for b := 1; b <= w.opts.Replicas; b++ {
		if b != id {
			w.net.cut[id][b], w.net.cut[b][id] = true, true
		}
	}
	w.tr.logf(w.now, "SCRIPT isolate n%d", id)
}

func (w *world) healAll() {
	w.net.heal()
	w.tr.logf(w.now, "SCRIPT heal")
}

func (w *world) crashFor(id int, down time.Duration) {
	n := w.nodes[id]
	if !n.up {
		return
	}
	w.tr.logf(w.now, "SCRIPT crash n%d for %v", id, down)
	w.crashReplica(id, down)
}

func at(t time.Duration, do func(w *world)) scripted { return scripted{at: t, do: do} }

// calm is a run with no random faults at all, for scenarios to add theirs.
func calm(seed uint64, replicas, clients int, d time.Duration) Options {
	o := DefaultOptions(seed)
	o.Replicas, o.Clients, o.Duration = replicas, clients, d
	o.CrashRate, o.PartitionRate, o.ClockRate, o.PauseRate, o.Loss, o.Dup = 0, 0, 0, 0, 0, 0
	o.MaxDelay = 5 * time.Millisecond
	o.Mux = MuxNone
	o.Upgrade = UpgradeNone // an upgrade restarts every replica
	o.Private = PrivateNone // scenarios send what they were written to send
	o.Tolerate = os.Getenv("SIM_TOLERATE")
	return o
}

// SIM_TOLERATE=CHECK[,CHECK] makes the tests step over known failures of
// those checks (reported as warnings), to see what else fails meanwhile.
