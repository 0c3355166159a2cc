package sim

import (
	"fmt"
	"time"
)

// trace is the run's event trace. Every processed event and what it did is
// mixed into a running 64-bit hash, the run's fingerprint: two runs of one
// seed must print the same hash. The text of the trace is kept only when
// asked for (a failing seed is re-run to write it), because formatting every
// event would cost more than simulating it.
type trace struct {
	h     uint64
	steps uint64

	capture bool     // keep the text of every line
	lines   []string // when capture
	ring    []string // the last lines, when ringSize > 0
	ringPos int

	record    bool     // keep the hash after every step
	stepHash  []uint64 // when record
	compare   []uint64 // when set, stop at the first step whose hash differs
	diverged  bool
	divergeAt uint64
}

const fnvPrime = 1099511628211

func newTrace() *trace { return &trace{h: 14695981039346656037} }

// mix folds words into the hash, a word at a time (a multiply-xorshift
// step per word: cheap, and any change in any word changes the rest).
func (t *trace) mix(words ...uint64) {
	h := t.h
	for _, w := range words {
		h = (h ^ w) * fnvPrime
		h ^= h >> 29
	}
	t.h = h
}

func (t *trace) mixString(s string) {
	h := t.h
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	h ^= 0xff
	h *= fnvPrime
	t.h = h
}

// step closes one processed event: it counts it and, in the checking modes,
// records or compares the hash so far.
func (t *trace) step() {
	t.steps++
	if t.record {
		t.stepHash = append(t.stepHash, t.h)
	}
	if t.compare != nil && !t.diverged {
		i := t.steps - 1
		if i >= uint64(len(t.compare)) || t.compare[i] != t.h {
			t.diverged = true
			t.divergeAt = t.steps
		}
	}
}

// text reports whether lines are being kept, so that callers format only
// then.
func (t *trace) text() bool { return t.capture || t.ring != nil }

func (t *trace) logf(at time.Duration, format string, args ...any) {
	if !t.text() {
		return
	}
	line := fmt.Sprintf("%12.6f %s", at.Seconds(), fmt.Sprintf(format, args...))
	if t.capture {
		t.lines = append(t.lines, line)
	}
	if t.ring != nil {
		t.ring[t.ringPos%len(t.ring)] = line
		t.ringPos++
	}
}

// lastLines returns the ring's lines, oldest first.
func (t *trace) lastLines() []string {
	var out []string
	n := len(t.ring)
	for i := 0; i < n; i++ {
		if l := t.ring[(t.ringPos+i)%n]; l != "" {
			out = append(out, l)
		}
	}
	return out
}

func (t *trace) hex() string { return fmt.Sprintf("%016x", t.h) }
