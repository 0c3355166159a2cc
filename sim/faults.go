package sim

import (
	mrand "math/rand/v2"
	"time"
)

// The fault injector: each kind of fault arrives as its own Poisson process
// at the rate the options give it, drawn from the faults stream. Faults that
// last (a partition, a crashed replica, a paused client) end on their own
// timer; partitions last at least a few hundred milliseconds so they do not
// flap.
const (
	faultCrash = iota
	faultPartition
	faultClock
	faultPause
	faultStall // last: a rate of 0 draws nothing, so seeds without stalls draw as before
	faultKinds
)

type faults struct {
	w       *world
	rng     *mrand.Rand
	stopped bool
	partGen uint64
	cutNow  bool
	deaths  int
}

func newFaults(w *world) *faults { return &faults{w: w, rng: w.rngFault} }

func (f *faults) rate(kind int) float64 {
	o := f.w.opts
	switch kind {
	case faultCrash:
		return o.CrashRate
	case faultPartition:
		return o.PartitionRate
	case faultClock:
		return o.ClockRate
	case faultPause:
		return o.PauseRate
	case faultStall:
		return o.StallRate
	}
	return 0
}

func (f *faults) begin() {
	for k := 0; k < faultKinds; k++ {
		f.scheduleNext(k)
	}
}

func (f *faults) scheduleNext(kind int) {
	r := f.rate(kind)
	if r <= 0 {
		return
	}
	gap := time.Duration(f.rng.ExpFloat64() / r * float64(time.Second))
	f.w.schedule(&event{at: f.w.now + gap + time.Millisecond, kind: evFault, arg: kind})
}

func (f *faults) stop() { f.stopped = true }

func (f *faults) fire(kind int) {
	if f.stopped || f.w.now >= f.w.opts.Duration {
		return
	}
	f.scheduleNext(kind)
	switch kind {
	case faultCrash:
		f.crash()
	case faultPartition:
		f.partition()
	case faultClock:
		f.clockJump()
	case faultPause:
		f.pause()
	case faultStall:
		f.stall()
	}
}

// stall stands a replica still while its clocks run on (world.stall): the
// leader most often, and half the time with other replicas, up to a
// majority, so that no election happens and the same leader resumes with
// log time behind its clock (core/replica's Driver.stalled). It ends by
// the end of the safety phase.
func (f *faults) stall() {
	w := f.w
	up := f.upNodes()
	if len(up) == 0 {
		return
	}
	n := up[f.rng.IntN(len(up))]
	if f.rng.IntN(4) != 0 {
		if l := f.leader(); l != nil {
			n = l
		}
	}
	d := min(time.Duration(500+f.rng.IntN(14500))*time.Millisecond, w.opts.Duration-w.now)
	if d <= 0 {
		return
	}
	ids := []int{n.id}
	if f.rng.IntN(2) == 0 {
		for _, o := range up {
			if len(ids) > w.opts.Replicas/2 {
				break
			}
			if o.id != n.id {
				ids = append(ids, o.id)
			}
		}
	}
	w.stats.faults++
	w.tr.logf(w.now, "FAULT stall n%v for %v", ids, d)
	for _, id := range ids {
		w.stall(id, d)
	}
}

func (f *faults) upNodes() []*node {
	var up []*node
	for _, n := range f.w.nodes[1:] {
		if n.up {
			up = append(up, n)
		}
	}
	return up
}

// leader is a leader to pick on: shard 0's, or with several shards a drawn
// shard's (drawn only then, so that a one-shard run draws as before).
func (f *faults) leader() *node {
	nodes := f.w.nodes
	if len(f.w.groups) > 1 {
		nodes = f.w.groups[f.rng.IntN(len(f.w.groups))]
	}
	for _, n := range nodes[1:] {
		if n.up && n.leader {
			return n
		}
	}
	return nil
}

func (f *faults) crash() {
	w := f.w
	up := f.upNodes()
	// At most a majority down at once: sometimes no quorum, never nobody.
	if len(up) <= w.opts.Replicas/2 {
		return
	}
	n := up[f.rng.IntN(len(up))]
	if f.rng.IntN(2) == 0 {
		if l := f.leader(); l != nil {
			n = l // leaders are the interesting ones
		}
	}
	down := time.Duration(200+f.rng.IntN(4800)) * time.Millisecond
	w.tr.logf(w.now, "FAULT crash n%d for %v (unsynced writes lost: %d)", n.id, down, len(n.dsk.pending))
	w.crashReplica(n.id, down)
	w.stats.faults++
}

func (f *faults) partition() {
	w := f.w
	if f.cutNow {
		return
	}
	nodes := w.opts.Replicas
	cut := w.net.cut
	var desc string
	switch f.rng.IntN(4) {
	case 0, 1: // random halves
		perm := f.rng.Perm(nodes)
		k := 1 + f.rng.IntN(nodes-1)
		side := make([]bool, nodes+1)
		for _, i := range perm[:k] {
			side[i+1] = true
		}
		for a := 1; a <= nodes; a++ {
			for b := 1; b <= nodes; b++ {
				if side[a] != side[b] {
					cut[a][b] = true
				}
			}
		}
		desc = "random halves"
	case 2: // isolate the leader (or anyone) from the other replicas
		n := 1 + f.rng.IntN(nodes)
		if l := f.leader(); l != nil {
			n = l.id
		}
		for b := 1; b <= nodes; b++ {
			if b != n {
				cut[n][b], cut[b][n] = true, true
			}
		}
		desc = "isolated replica " + itoa(n)
	case 3: // one way: a replica can send but not hear, or hear but not send
		n := 1 + f.rng.IntN(nodes)
		out := f.rng.IntN(2) == 0
		for b := 1; b <= nodes; b++ {
			if b == n {
				continue
			}
			if out {
				cut[n][b] = true
			} else {
				cut[b][n] = true
			}
		}
		desc = "one-way at replica " + itoa(n)
	}
	f.cutNow = true
	f.partGen++
	d := time.Duration(300+f.rng.IntN(4700)) * time.Millisecond
	w.stats.faults++
	w.tr.logf(w.now, "FAULT partition: %s for %v", desc, d)
	w.schedule(&event{at: w.now + d, kind: evHeal, arg: faultPartition, gen: f.partGen})
}

func (f *faults) heal(kind int, gen uint64) {
	if kind == faultStall {
		f.w.resume(int(gen))
		return
	}
	if kind == faultPartition && gen == f.partGen && f.cutNow {
		f.cutNow = false
		f.w.net.heal()
		f.w.tr.logf(f.w.now, "partition healed")
	}
}

func (f *faults) clockJump() {
	w := f.w
	n := w.nodes[1+f.rng.IntN(w.opts.Replicas)]
	var d time.Duration
	switch f.rng.IntN(4) {
	case 0: // a large step forward (NTP fixing a slow clock, a VM resumed).
		// Bounded so that the liveness bound covers the time log time
		// then stands still under a leader with a correct clock.
		d = time.Duration(3+f.rng.IntN(13)) * time.Second
	case 1: // back
		d = -time.Duration(100+f.rng.IntN(10000)) * time.Millisecond
	default:
		d = time.Duration(50+f.rng.IntN(3000)) * time.Millisecond
	}
	n.clk.jumps += d
	w.stats.faults++
	w.tr.logf(w.now, "FAULT clock of n%d jumps %v", n.id, d)
	w.tr.mix(0xc10c, uint64(n.id), uint64(d))
}

func (f *faults) pause() {
	w := f.w
	c := w.clients[f.rng.IntN(len(w.clients))]
	if c.dead || c.paused {
		return
	}
	w.stats.faults++
	if f.rng.IntN(8) == 0 && f.deaths < (len(w.clients)+2)/3 {
		f.deaths++
		w.tr.logf(w.now, "FAULT client c%d dies", c.idx)
		c.die()
		return
	}
	ttl := c.ttl
	if ttl == 0 {
		ttl = w.opts.TTLMin
	}
	var d time.Duration
	if f.rng.IntN(2) == 0 {
		d = ttl + time.Duration(f.rng.Int64N(int64(2*ttl)))
	} else {
		d = time.Duration(f.rng.Int64N(int64(ttl/2) + 1))
	}
	w.tr.logf(w.now, "FAULT client c%d pauses for %v (ttl %v)", c.idx, d, ttl)
	c.pause(d)
}

// crashReplica crashes every shard of a replica, as a process dies whole,
// and schedules their restart together.
func (w *world) crashReplica(id int, down time.Duration) {
	for _, g := range w.groups {
		g[id].crash()
	}
	w.endStall(id) // a stopped process dies as well (kill -9): the next one runs
	w.schedule(&event{at: w.now + down, kind: evRestart, node: id, gen: w.nodes[id].inc})
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
