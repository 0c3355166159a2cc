package runtime

import (
	"fmt"
	_ "unsafe" // go:linkname: the two variables below are Dragonboat's internal/raft's
)

// Dragonboat keeps a replica's log entries that are not yet applied in a
// slice, and makes a new one of InMemEntrySliceSize entries (512 by
// default, about 48 KiB, zeroed) each time the applied index catches up
// with the last entry and fewer than MinEntrySliceFreeSize (96) places are
// left. On a busy replica that is almost every applied entry: it was 80%
// of a follower's allocated bytes, and 6% of its CPU at one worker, 2% at
// 64, before the collections it caused (docs/performance.md, "Dragonboat's
// entry slice"). The entries in that
// slice are a few at a time here (the proposal gate keeps two entries
// unconfirmed), and the slice still grows by append when a follower
// catches up on many.
//
// Dragonboat reads the two sizes only from dragonboat-soft-settings.json in
// the process's working directory, when its packages initialise. The
// runtime sets the two variables that file sets, here, before any NodeHost
// can exist; a file that gave its own sizes is the operator's and is kept.
// A Dragonboat that renames them fails the link rather than dropping the
// setting; TestEntrySliceAllocation checks that the sizes reach its log.
const (
	inMemEntrySlice     = 64 // entries in a new slice
	minEntrySliceFree   = 16 // fewer free places than this: a new slice
	dragonboatSliceSize = 512
	dragonboatSliceFree = 96
)

//go:linkname dragonboatEntrySliceSize github.com/lni/dragonboat/v4/internal/raft.entrySliceSize
var dragonboatEntrySliceSize uint64

//go:linkname dragonboatMinEntrySliceFree github.com/lni/dragonboat/v4/internal/raft.minEntrySliceSize
var dragonboatMinEntrySliceFree uint64

func init() {
	if dragonboatEntrySliceSize == dragonboatSliceSize && dragonboatMinEntrySliceFree == dragonboatSliceFree {
		dragonboatEntrySliceSize, dragonboatMinEntrySliceFree = inMemEntrySlice, minEntrySliceFree
	}
	// Dragonboat panics on the first replica otherwise; say why here.
	if dragonboatMinEntrySliceFree >= dragonboatEntrySliceSize {
		panic(fmt.Sprintf("runtime: Dragonboat's MinEntrySliceFreeSize (%d) must be below its InMemEntrySliceSize (%d): fix dragonboat-soft-settings.json in the working directory",
			dragonboatMinEntrySliceFree, dragonboatEntrySliceSize))
	}
}
