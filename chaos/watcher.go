package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// watcher is a client process that watches every name of the run and
// restarts now and then, resuming from the positions of the last message
// it received (a process that stops and starts again, across faults). It
// checks, as it reads, that each shard's events come in log order; after
// the run, that it saw exactly the events the run's own watch saw between
// where it started and where it stopped, in the same order: none missed,
// none repeated, none made up.
type watcher struct {
	run *run
	r   *rand.Rand
	c   *client.Client

	mu       sync.Mutex
	events   map[uint64][]eventID
	first    map[uint64]uint64 // where its events start, per shard
	last     map[uint64]uint64 // the positions of the last message
	resumes  int
	received int
	disorder []string
	err      error
}

// Bounds of the watcher: how long one stream runs before it is dropped and
// resumed, and the event the planted bug skip-event drops.
const (
	watcherMinStream = 2 * time.Second
	watcherMaxStream = 6 * time.Second
	skipEventAt      = 20
	maxDisorder      = 10
)

// WatcherStats sum up the watcher for the report.
type WatcherStats struct {
	Events  int `json:"events"`
	Resumes int `json:"resumes"`
}

func newWatcher(r *run, c *client.Client) *watcher {
	return &watcher{run: r, r: stream(r.o.Seed, streamWatcher), c: c, events: map[uint64][]eventID{}, last: map[uint64]uint64{}}
}

func (w *watcher) loop(ctx context.Context) {
	var positions []*client.ShardPosition
	for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
		span := watcherMinStream + time.Duration(w.r.Int64N(int64(watcherMaxStream-watcherMinStream)))
		sctx, cancel := context.WithTimeout(ctx, span)
		for resp := range w.c.WatchFrom(sctx, runPrefix, positions) {
			if resp.Err != nil {
				if sctx.Err() == nil {
					w.mu.Lock()
					w.err = resp.Err
					w.mu.Unlock()
				}
				break
			}
			w.take(resp)
			if len(resp.Positions) > 0 {
				positions = resp.Positions
			}
		}
		cancel()
		w.mu.Lock()
		failed := w.err != nil
		if ctx.Err() == nil && !failed {
			w.resumes++
		}
		w.mu.Unlock()
		if failed {
			return
		}
	}
}

func (w *watcher) take(resp client.WatchResponse) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range resp.Events {
		w.received++
		if w.run.bug.is(bugSkipEvent) && w.received == skipEventAt {
			continue
		}
		if evs := w.events[e.ShardId]; len(evs) > 0 && e.Index < evs[len(evs)-1].index && len(w.disorder) < maxDisorder {
			w.disorder = append(w.disorder, fmt.Sprintf("watch order: shard %d's event of index %d came after one of index %d",
				e.ShardId, e.Index, evs[len(evs)-1].index))
		}
		w.events[e.ShardId] = append(w.events[e.ShardId], idOf(e))
	}
	if w.first == nil && len(resp.Positions) > 0 {
		// Where the watcher starts, per shard: the client passes on only
		// messages with events, so this is the first, and its positions
		// are past its events; a shard it has events of starts at the
		// first of them.
		w.first = map[uint64]uint64{}
		for _, p := range resp.Positions {
			w.first[p.ShardId] = p.NextIndex
		}
		for _, e := range resp.Events {
			w.first[e.ShardId] = min(w.first[e.ShardId], e.Index)
		}
	}
	for _, p := range resp.Positions {
		w.last[p.ShardId] = p.NextIndex
	}
}

// check compares the watcher's events with the run's watch's, per shard,
// over the part of the log both read.
func (w *watcher) check() ([]string, WatcherStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.run.h
	h.mu.Lock()
	defer h.mu.Unlock()
	bad := append([]string(nil), w.disorder...)
	if w.err != nil {
		bad = append(bad, fmt.Sprintf("watch order: the watcher's stream failed: %v", w.err))
	}
	st := WatcherStats{Resumes: w.resumes}
	if w.first == nil {
		return append(bad, "watch order: the watcher never received its first message"), st
	}
	for shard, lo := range w.first {
		hi := min(w.last[shard], h.end[shard])
		var want, got []eventID
		for _, e := range h.stream[shard] {
			if e.index >= lo && e.index < hi {
				want = append(want, e)
			}
		}
		for _, e := range w.events[shard] {
			if e.index < hi {
				got = append(got, e)
			}
		}
		st.Events += len(got)
		for i := 0; i < max(len(want), len(got)); i++ {
			switch {
			case i >= len(got):
				bad = append(bad, fmt.Sprintf("watch order: shard %d: the watcher missed %d events from index %d on (the log's %s %q)",
					shard, len(want)-i, want[i].index, want[i].typ, want[i].name))
			case i >= len(want):
				bad = append(bad, fmt.Sprintf("watch order: shard %d: the watcher saw %d events more than the log has, from index %d on",
					shard, len(got)-i, got[i].index))
			case got[i] != want[i]:
				bad = append(bad, fmt.Sprintf("watch order: shard %d: the watcher's event %d is %s %q at index %d; the log's is %s %q at index %d",
					shard, i, got[i].typ, got[i].name, got[i].index, want[i].typ, want[i].name, want[i].index))
			default:
				continue
			}
			break
		}
	}
	return bad, st
}
