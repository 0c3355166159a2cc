package sim

import (
	"strings"
	"testing"
	"time"
)

// The gate is drawn from the seed like every other option, prints in the
// replay flags, and parses back from them.
func TestGateDrawnAndReplayed(t *testing.T) {
	seen := map[int]int{}
	for seed := uint64(1); seed <= 64; seed++ {
		o, err := DefaultOptions(seed).Resolve()
		if err != nil {
			t.Fatal(err)
		}
		seen[o.Gate]++
		back, err := ParseFlags(strings.Fields(o.Flags()))
		if err != nil {
			t.Fatal(err)
		}
		if back, err = back.Resolve(); err != nil || back.Gate != o.Gate {
			t.Fatalf("seed %d: gate %d replays as %d (%v)", seed, o.Gate, back.Gate, err)
		}
		// Overriding the gate leaves every other draw as it was.
		pinned := DefaultOptions(seed)
		pinned.Gate = GateNone
		p, _ := pinned.Resolve()
		p.Gate = o.Gate
		if p != o {
			t.Fatalf("seed %d: -gate changed other options:\n%+v\n%+v", seed, p, o)
		}
	}
	for _, g := range []int{GateNone, 1, 2, 4} {
		if seen[g] == 0 {
			t.Errorf("no seed of 1-64 drew gate %d: %v", g, seen)
		}
	}
}

// With a gate, requests wait in the driver's queue while proposals are
// unconfirmed and go out together; without one, the sim proposes after
// every step. The batching is the point of the gate: it is what put two
// requests in the queue at a leadership change (the queue-walk crash).
func TestGateBatchesRequests(t *testing.T) {
	run := func(gate int) Result {
		o := DefaultOptions(2)
		o.Clients, o.Gate = 16, gate
		res := Run(o, RunConfig{})
		if !res.OK {
			t.Fatalf("lockstep-sim %s: %v", res.Flags, res.Violations[0])
		}
		return res
	}
	gated, free := run(1), run(GateNone)
	if gated.Batched <= free.Batched || gated.Batched == 0 {
		t.Fatalf("proposals with two or more commands: gate 1 %d, no gate %d", gated.Batched, free.Batched)
	}
	t.Logf("proposals with two or more commands: gate 1 %d, no gate %d", gated.Batched, free.Batched)
}

// TestUpgradeDrawn: a quarter of the seeds (about) draw a rolling upgrade
// within the safety phase, the rest none, and -upgrade overrides the draw
// without moving the others.
func TestUpgradeDrawn(t *testing.T) {
	upgrades := 0
	for seed := uint64(1); seed <= 200; seed++ {
		o, err := DefaultOptions(seed).Resolve()
		if err != nil {
			t.Fatal(err)
		}
		if o.Upgrade != UpgradeNone {
			upgrades++
			if o.Upgrade < o.Duration/10 || o.Upgrade > o.Duration*6/10+time.Millisecond {
				t.Fatalf("seed %d: upgrade at %v of a %v safety phase", seed, o.Upgrade, o.Duration)
			}
		}
		none := DefaultOptions(seed)
		none.Upgrade = UpgradeNone
		p, err := none.Resolve()
		if err != nil {
			t.Fatal(err)
		}
		p.Upgrade = o.Upgrade
		if p.Flags() != o.Flags() {
			t.Fatalf("seed %d: -upgrade none moved other draws: %s vs %s", seed, p.Flags(), o.Flags())
		}
		back, err := ParseFlags(strings.Fields(o.Flags()))
		if err != nil {
			t.Fatal(err)
		}
		if r, _ := back.Resolve(); r.Upgrade != o.Upgrade {
			t.Fatalf("seed %d: replay flags give upgrade %v, drawn %v", seed, r.Upgrade, o.Upgrade)
		}
	}
	if upgrades < 30 || upgrades > 70 {
		t.Fatalf("%d of 200 seeds upgrade; want about a quarter", upgrades)
	}
}
