package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

var hot = model.Key{Kind: core.KindMutex, Name: "chaos/m/hot-0"}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func acquire(worker int, s core.SessionID, call, ret int, a outcome, token uint64) op {
	return op{worker: worker, in: model.Input{Op: model.Acquire, Key: hot, Session: s, Try: a == answerRefused},
		answer: a, token: token, call: ms(call), ret: ms(ret)}
}

func release(worker int, s core.SessionID, token uint64, call, ret int, a outcome) op {
	return op{worker: worker, in: model.Input{Op: model.Release, Key: hot, Session: s, Token: core.FencingToken(token)},
		answer: a, call: ms(call), ret: ms(ret)}
}

// logged is a history whose watch delivered the given grants and releases
// (token → session, delivery time in ms).
func logged(ops []op, grants, releases map[uint64][2]int) *history {
	h := newHistory(time.Now())
	h.ops = ops
	for t, g := range grants {
		h.granted[grantKey{hot, t}] = logEvent{session: uint64(g[0]), at: ms(g[1])}
	}
	for t, r := range releases {
		h.released[grantKey{hot, t}] = logEvent{session: uint64(r[0]), at: ms(r[1])}
	}
	return h
}

// TestComplete: the client's answers completed from the log, on histories
// small enough to read; each case says whether the matching or porcupine
// must find a violation.
func TestComplete(t *testing.T) {
	cases := []struct {
		name     string
		h        *history
		mismatch string // a substring of the matching's violation; "" for none
		linear   bool
	}{
		{"answered grants and releases that the log has", logged(
			[]op{acquire(0, 1, 0, 10, answerGranted, 5), release(0, 1, 5, 20, 30, answerOK), acquire(1, 2, 40, 50, answerGranted, 7)},
			map[uint64][2]int{5: {1, 12}, 7: {2, 52}}, map[uint64][2]int{5: {1, 32}}), "", true},
		{"a grant the worker was told of that the log never made", logged(
			[]op{acquire(0, 1, 0, 10, answerGranted, 5)}, nil, nil), "which the log never granted", true},
		{"a grant in the log nobody asked for", logged(
			nil, map[uint64][2]int{5: {1, 12}}, nil), "which no worker asked for", true},
		{"an unanswered acquire that the log granted: it holds, so a later grant overlaps", logged(
			[]op{acquire(0, 1, 0, 10, answerUnknown, 0), acquire(1, 2, 40, 50, answerGranted, 7)},
			map[uint64][2]int{5: {1, 20}, 7: {2, 52}}, nil), "", false},
		{"an unanswered acquire that the log granted, then expired: a later grant is fine", logged(
			[]op{acquire(0, 1, 0, 10, answerUnknown, 0), acquire(1, 2, 40, 50, answerGranted, 7)},
			map[uint64][2]int{5: {1, 20}, 7: {2, 52}}, map[uint64][2]int{5: {1, 45}}), "", true},
		{"a refusal while the log says nobody held the mutex", logged(
			[]op{acquire(0, 1, 0, 10, answerGranted, 5), release(0, 1, 5, 20, 30, answerOK), acquire(1, 2, 40, 50, answerRefused, 0)},
			map[uint64][2]int{5: {1, 12}}, map[uint64][2]int{5: {1, 32}}), "", false},
		{"a release reported but never made: the same token granted again", logged(
			[]op{acquire(0, 1, 0, 10, answerGranted, 5), release(0, 1, 5, 20, 30, answerOK), acquire(0, 1, 40, 50, answerGranted, 5)},
			map[uint64][2]int{5: {1, 12}}, nil), "", false},
	}
	for _, c := range cases {
		ops, bad := c.h.complete()
		got := strings.Join(bad, "; ")
		if (c.mismatch == "") != (got == "") || !strings.Contains(got, c.mismatch) {
			t.Errorf("%s: matching says %q, want %q", c.name, got, c.mismatch)
		}
		if lin := porcupine.CheckOperations(model.Lock, ops); lin != c.linear {
			t.Errorf("%s: linearizable=%v, want %v", c.name, lin, c.linear)
		}
	}
}

// TestResourceCheck: a write accepted after the log ended its grant is a
// violation; one accepted before is not; tokens must not go back.
func TestResourceCheck(t *testing.T) {
	h := logged(nil, nil, map[uint64][2]int{5: {1, 100}})
	r := &resource{h: h, maxSeen: map[string]uint64{}}
	r.accepted = []write{{key: hot, token: 5, asked: ms(50)}}
	if bad := r.check(); len(bad) != 0 {
		t.Fatalf("a write asked before the release: %v", bad)
	}
	r.accepted = append(r.accepted, write{key: hot, token: 5, asked: ms(150)})
	if bad := r.check(); len(bad) != 1 || !strings.Contains(bad[0], "after the log had ended") {
		t.Fatalf("a write asked after the release: %v", bad)
	}
	r.accepted = []write{{key: hot, token: 7, asked: ms(10)}, {key: hot, token: 6, asked: ms(20)}}
	if bad := r.check(); len(bad) != 1 || !strings.Contains(bad[0], "after token 7") {
		t.Fatalf("a token going back: %v", bad)
	}
}

// TestPlan: the schedule is a function of the seed, bounded by the
// duration, held past the election timeout, and one fault at a time.
func TestPlan(t *testing.T) {
	o := Options{Seed: 42, Binary: "x", Duration: time.Minute}
	if err := o.draw(); err != nil {
		t.Fatal(err)
	}
	a, b := plan(&o), plan(&o)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("plans of one seed: %d and %d faults", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("fault %d differs: %v and %v", i, a[i], b[i])
		}
		if a[i].Hold < 500*time.Millisecond || a[i].At+a[i].Hold > o.Duration {
			t.Fatalf("fault %d out of bounds: %+v", i, a[i])
		}
		if i > 0 && a[i].At < a[i-1].At+a[i-1].Hold {
			t.Fatalf("fault %d starts before fault %d heals", i, i-1)
		}
	}
	o2 := o
	o2.Seed = 43
	if c := plan(&o2); len(c) == len(a) && c[0] == a[0] {
		t.Fatalf("seeds 42 and 43 drew the same first fault %v", a[0])
	}
}
