package chaos

import (
	"context"
	"fmt"
	"time"
)

// The host's clock. Every node of a run shares this machine's wall clock,
// and the run measures on its monotonic clock. A virtual machine paused and
// resumed, or NTP stepping the clock, moves the wall clock against the
// monotonic one on every node at once: a fault the run did not make, which
// a leader's log time ignores while it leads (docs/design.md, Time) but
// which the log times this run prints (read on the wall clock) carry. The
// run watches for it, so that a report says so instead of leaving the next
// reader to find it in the kernel's log (docs/chaos.md, the failure of
// 2026-12-05).

// Bounds of the watch: how often it reads the two clocks, and the smallest
// step it notes (reading both clocks twice takes microseconds; a loaded
// machine delays the ticker, not the difference).
const (
	hostClockEvery = 200 * time.Millisecond
	hostStepNoted  = 100 * time.Millisecond
)

// hostStep is how far the wall clock moved against the monotonic clock
// between two readings of time.Now.
func hostStep(from, to time.Time) time.Duration {
	return to.Round(0).Sub(from.Round(0)) - to.Sub(from)
}

// hostClockWatch notes each step of this machine's wall clock against its
// monotonic clock of hostStepNoted or more.
type hostClockWatch struct {
	base    time.Time
	noted   time.Duration // the step as of the last note
	largest time.Duration // the largest step from base seen, either way
}

// observe takes a reading and returns the step since the last note, or 0
// when it is below hostStepNoted.
func (w *hostClockWatch) observe(now time.Time) time.Duration {
	return w.note(hostStep(w.base, now))
}

// note takes the wall clock's step from base and returns how far it moved
// since the last note, or 0 when that is below hostStepNoted.
func (w *hostClockWatch) note(step time.Duration) time.Duration {
	if step.Abs() > w.largest.Abs() {
		w.largest = step
	}
	if d := step - w.noted; d.Abs() >= hostStepNoted {
		w.noted = step
		return d
	}
	return 0
}

// watchHostClock runs until ctx ends, noting each step in the timeline and
// the run's story; it returns the largest step seen.
func (r *run) watchHostClock(ctx context.Context) time.Duration {
	w := &hostClockWatch{base: time.Now()}
	t := time.NewTicker(hostClockEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			w.observe(time.Now())
			return w.largest
		case <-t.C:
			now := time.Now()
			if d := w.observe(now); d != 0 {
				what := fmt.Sprintf("host: this machine's wall clock stepped %+v against its monotonic clock (a paused virtual machine, NTP); log times from here on read that much off", d.Round(time.Millisecond))
				r.timeline.add(now.Sub(r.start), what)
				r.o.logf("%6.1fs %s", now.Sub(r.start).Seconds(), what)
			}
		}
	}
}
