package chaos

import (
	"testing"
	"time"
)

// TestHostClockWatch: a step of the wall clock against the monotonic clock
// is noted once, with how far it moved since the last note, either way;
// movement below hostStepNoted is not; the largest step is kept. Readings
// whose two clocks moved alike show no step.
func TestHostClockWatch(t *testing.T) {
	base := time.Now()
	if got := hostStep(base, base.Add(time.Second)); got != 0 {
		t.Fatalf("two readings a second apart on both clocks: a step of %v", got)
	}
	if d := (&hostClockWatch{base: base}).observe(time.Now()); d != 0 {
		t.Fatalf("a reading now: noted a step of %v", d)
	}
	w := &hostClockWatch{}
	for _, c := range []struct{ step, want time.Duration }{
		{50 * time.Millisecond, 0},
		{1950 * time.Millisecond, 1950 * time.Millisecond},
		{2000 * time.Millisecond, 0},
		{-500 * time.Millisecond, -2450 * time.Millisecond},
		{-520 * time.Millisecond, 0},
	} {
		if got := w.note(c.step); got != c.want {
			t.Fatalf("the wall clock %v off: noted %v, want %v", c.step, got, c.want)
		}
	}
	if w.largest != 2000*time.Millisecond {
		t.Fatalf("largest step %v, want 2s", w.largest)
	}
}
