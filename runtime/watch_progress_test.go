package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
)

// TestWatchProgressMarkers: a stream that asks for progress gets, after
// every event it wants of the entries published so far, one marker with
// the last entry's index, though the entries since were all filtered out;
// a marker that would say nothing new is not sent.
func TestWatchProgressMarkers(t *testing.T) {
	h := newWatchHub(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_watchers"}), 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ask := make(chan struct{})
	ch, err := h.subscribe(ctx, "a/", 1, ask)
	if err != nil {
		t.Fatal(err)
	}
	ef := func(name string) core.Effect {
		return core.Effect{Kind: core.EffectGranted, Object: core.KindMutex, Name: name}
	}
	h.publish(&core.Output{Index: 1, Effects: []core.Effect{ef("a/x"), ef("b/y"), ef("a/z")}})
	for i := uint64(2); i <= 100; i++ {
		h.publish(&core.Output{Index: i, Effects: []core.Effect{ef("b/other")}})
	}
	next := func() Event {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return Event{}
	}
	ask <- struct{}{}
	if e := next(); e.Index != 1 || e.Effect.Name != "a/x" || e.EntryEnd || e.Progress {
		t.Fatalf("first: %+v", e)
	}
	if e := next(); e.Index != 1 || e.Effect.Name != "a/z" || !e.EntryEnd || e.Progress {
		t.Fatalf("second: %+v", e)
	}
	if e := next(); !e.Progress || e.Index != 100 || e.Shard != 3 || !e.EntryEnd {
		t.Fatalf("marker: %+v, want a progress marker at 100 of shard 3", e)
	}
	// Nothing applied since: asking again sends nothing, and the next
	// marker follows the next entry.
	ask <- struct{}{}
	h.publish(&core.Output{Index: 101, Effects: []core.Effect{ef("b/other")}})
	ask <- struct{}{}
	if e := next(); !e.Progress || e.Index != 101 {
		t.Fatalf("after entry 101: %+v, want one marker at 101", e)
	}
	select {
	case e := <-ch:
		t.Fatalf("more: %+v", e)
	default:
	}
}

// TestWatchFromTheLogStart: a shard that restored no snapshot applied its
// log from index 1, and entries core never sees (Dragonboat's membership
// entries) carry no events, so a watch from index 1 replays what the ring
// holds instead of calling it compacted. A watch from before a restored
// snapshot is refused.
func TestWatchFromTheLogStart(t *testing.T) {
	h := newWatchHub(prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_watchers"}), 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ef := core.Effect{Kind: core.EffectGranted, Object: core.KindMutex, Name: "a/x"}
	h.publish(&core.Output{Index: 3, Effects: []core.Effect{ef}}) // entries 1 and 2 were membership changes
	ch, err := h.subscribe(ctx, "a/", 1, nil)
	if err != nil {
		t.Fatalf("watch from index 1 of a log applied from its start: %v", err)
	}
	select {
	case e := <-ch:
		if e.Index != 3 || e.Effect.Name != "a/x" {
			t.Fatalf("replayed %+v", e)
		}
	case <-ctx.Done():
		t.Fatal("the event at index 3 was not replayed")
	}

	h.reset(40) // a snapshot at 40 was restored: what came before is gone
	h.publish(&core.Output{Index: 41, Effects: []core.Effect{ef}})
	if _, err := h.subscribe(ctx, "a/", 5, nil); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 5 after a snapshot at 40: %v, want ErrCompacted", err)
	}
}
