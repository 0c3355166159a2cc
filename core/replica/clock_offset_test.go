package replica

import (
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// TestFollowerClockOffset: a replica that does not lead reports how far
// its wall clock stands from log time: the log time it applied last,
// carried forward by its monotonic clock, so the figure holds while the
// shard is idle; a wall-clock step shows at once. This is what shows a
// member's clock ahead before it takes the lead and log times jump.
func TestFollowerClockOffset(t *testing.T) {
	h := newHarness(t, Config{TickIntervalMs: 100, KeepTimeMs: 1000})
	h.follow(2, 2)
	wall, mono := h.now+5_000, core.LogTime(7) // this member's clock runs 5 s ahead
	tick := func(dWall, dMono core.LogTime) {
		wall, mono = wall+dWall, mono+dMono
		h.step(ClockEvent(wall, mono))
	}
	tick(0, 0)
	h.applyOther(core.Proposal{Time: h.now}) // the leader stamps its own clock, 5 s behind this one
	if got := h.d.ClockOffset(); got != 5_000 {
		t.Fatalf("a follower 5 s ahead of the leader's stamps: ClockOffset %d, want 5000", got)
	}
	tick(30_000, 30_000) // 30 s with nothing applied: an idle shard
	if got := h.d.ClockOffset(); got != 5_000 {
		t.Fatalf("after 30 idle seconds: ClockOffset %d, want still 5000", got)
	}
	tick(-8_000+100, 100) // its wall clock stepped 8 s back as 100 ms passed
	if got := h.d.ClockOffset(); got != -3_000 {
		t.Fatalf("after an 8 s step back: ClockOffset %d, want -3000", got)
	}
}
