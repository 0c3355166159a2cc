package sim

import (
	"time"

	"github.com/lockstepd/lockstep/core"
)

// clockEpoch is where every replica's wall clock starts, so that log time is
// positive even for a clock set far behind.
const clockEpoch = 1_000_000 * time.Second

// clock is one replica's wall clock as a function of virtual time: a fixed
// offset, a linear drift, and the sum of the jumps the fault injector made
// (forward or back), the shapes of TigerBeetle's time.zig. The raft ticker
// runs at the drifted rate but ignores jumps, like a monotonic clock.
type clock struct {
	offset   time.Duration
	driftPPM int64 // parts per million; positive runs fast
	jumps    time.Duration
}

func (c *clock) wall(v time.Duration) time.Duration {
	return clockEpoch + v + c.offset + time.Duration(int64(v)/1_000_000*c.driftPPM) + c.jumps
}

// logTime is the replica's wall clock in ms: a leader starts each term's
// log time at it.
func (c *clock) logTime(v time.Duration) core.LogTime {
	return core.LogTime(c.wall(v) / time.Millisecond)
}

// monoTime is the replica's monotonic clock in ms: the wall clock without
// its jumps, which carries a leader's log time forward within its term
// (replica.ClockEvent).
func (c *clock) monoTime(v time.Duration) core.LogTime {
	return core.LogTime((c.wall(v) - c.jumps) / time.Millisecond)
}

// every converts an interval of the replica's clock to virtual time.
func (c *clock) every(d time.Duration) time.Duration {
	return time.Duration(int64(d) * 1_000_000 / (1_000_000 + c.driftPPM))
}
