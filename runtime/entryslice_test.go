package runtime

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// bytesPerEntry runs sequential acquires and releases on a one-node
// cluster, each its own entry, and answers the bytes the process allocated
// per entry.
func bytesPerEntry(t *testing.T, entries int) float64 {
	t.Helper()
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[c.waitLeader(0)]
	s, err := n.Do(tctx(t), core.Command{Op: core.OpSessionCreate, TTLMs: 60_000})
	if err != nil || s.Err != nil {
		t.Fatal(err, s.Err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range entries / 2 {
		g, err := n.Do(tctx(t), mutex(fmt.Sprintf("slice/%d", i%8), s.Session, 0))
		if err != nil || g.Err != nil || g.Outcome != core.OutcomeGranted {
			t.Fatal(err, g)
		}
		r, err := n.Do(tctx(t), core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: fmt.Sprintf("slice/%d", i%8),
			Session: s.Session, Token: g.Token})
		if err != nil || r.Err != nil {
			t.Fatal(err, r.Err)
		}
	}
	runtime.ReadMemStats(&after)
	c.closeAll()
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(entries)
}

// TestEntrySliceAllocation checks that the runtime's sizes reach
// Dragonboat: with its default a replica allocates a 512-entry slice for
// nearly every entry it applies one at a time, which is most of what the
// process allocates then. The defaults are put back between two clusters,
// when no replica runs.
func TestEntrySliceAllocation(t *testing.T) {
	if dragonboatEntrySliceSize != inMemEntrySlice || dragonboatMinEntrySliceFree != minEntrySliceFree {
		t.Fatalf("Dragonboat's entry slice is %d entries, renewed under %d free; the runtime sets %d and %d",
			dragonboatEntrySliceSize, dragonboatMinEntrySliceFree, inMemEntrySlice, minEntrySliceFree)
	}
	ours := bytesPerEntry(t, 400)
	dragonboatEntrySliceSize, dragonboatMinEntrySliceFree = dragonboatSliceSize, dragonboatSliceFree
	defer func() { dragonboatEntrySliceSize, dragonboatMinEntrySliceFree = inMemEntrySlice, minEntrySliceFree }()
	defaults := bytesPerEntry(t, 400)
	t.Logf("bytes allocated per entry: %.0f with %d-entry slices, %.0f with Dragonboat's %d", ours, inMemEntrySlice, defaults, dragonboatSliceSize)
	if 2*ours > defaults {
		t.Fatalf("%.0f bytes allocated per entry with %d-entry slices, against %.0f with %d: the sizes do not reach Dragonboat's log",
			ours, inMemEntrySlice, defaults, dragonboatSliceSize)
	}
}
