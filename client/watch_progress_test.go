package client_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// ringEvents is more than the events a node keeps per shard for resumes
// (runtime.watchRingEvents, 8192).
const ringEvents = 8192

// churn locks and unlocks mutexes under prefix from several clients at
// once (a client keeps the results of its last 32 requests only) until at
// least events events (a grant and a release per cycle) have been applied.
func churn(t *testing.T, ctx context.Context, prefix string, events int) {
	t.Helper()
	var cycles atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		s, err := newClient(t).NewSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { _ = s.Close(context.Background()) }()
			m := client.NewMutex(s, fmt.Sprintf("%s%d", prefix, w))
			for cycles.Add(1) <= int64(events/2) {
				if err := m.Lock(ctx); err != nil {
					errs <- err
					return
				}
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// appliedIndexes is the dev node's applied index of every shard, by shard.
func appliedIndexes(t *testing.T, ctx context.Context, c *client.Client) []uint64 {
	t.Helper()
	st, err := c.ClusterStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]uint64, len(st.Shards))
	for _, sh := range st.Shards {
		out[sh.ShardId] = sh.AppliedIndex
	}
	return out
}

// beyond says whether positions are past index in every shard.
func beyond(positions []*pb.ShardPosition, index []uint64) bool {
	if len(positions) != len(index) {
		return false
	}
	for _, p := range positions {
		if p.NextIndex <= index[p.ShardId] {
			return false
		}
	}
	return true
}

// TestWatchProgressResumePastFilteredEvents: a prefix watch filtered by kind
// sees none of the many mutex events under its prefix, more than the node
// keeps; progress messages carry its positions past them, so that after a
// break the watch resumes from the last positions received without
// out_of_range, and gets the next semaphore event, once, and not the one
// before the break again.
func TestWatchProgressResumePastFilteredEvents(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const prefix = "t/progress/"
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, endpoint)
	req := &pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: prefix}, Kinds: []pb.Kind{pb.Kind_KIND_SEMAPHORE}}
	// The stream's bound: progress comes every second or so.
	wctx, wcancel := context.WithTimeout(ctx, 45*time.Second)
	defer wcancel()
	stream, err := watch.Watch(wctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no first message: %v", stream.Err())
	}
	sem := client.NewSemaphore(newSession(t, c), prefix+"sem", 2)
	if err := sem.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	var positions []*pb.ShardPosition
	granted := false
	for !granted && stream.Receive() {
		m := stream.Msg()
		positions = m.Positions
		for _, e := range m.Events {
			granted = granted || (e.Name == prefix+"sem" && e.Type == pb.EventType_EVENT_TYPE_GRANTED)
		}
	}
	if !granted {
		t.Fatalf("no grant of the semaphore: %v", stream.Err())
	}
	before := positions
	// More mutex events under the prefix than the node keeps, none of
	// them watched.
	churn(t, ctx, prefix+"m/", ringEvents+1000)
	target := appliedIndexes(t, ctx, c)
	progress := 0
	for !beyond(positions, target) && stream.Receive() {
		m := stream.Msg()
		if len(m.Events) > 0 {
			t.Fatalf("events of mutexes through a semaphore watch: %v", m.Events)
		}
		progress++
		positions = m.Positions
	}
	if !beyond(positions, target) {
		t.Fatalf("the watch's positions %v never passed the applied indexes %v after the mutex events (%d progress messages): %v",
			positions, target, progress, stream.Err())
	}
	// The break, then a watched event while no stream is open.
	wcancel()
	stream.Close()
	if err := sem.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Without progress the watch would have resumed from before: the
	// churn was long enough to make that fail.
	req.StartPositions = before
	old, err := watch.Watch(ctx, connect.NewRequest(req))
	if err == nil {
		for old.Receive() {
		}
		err = old.Err()
		old.Close()
	}
	if connect.CodeOf(err) != connect.CodeOutOfRange {
		t.Fatalf("a resume from the positions before the mutex events (%v): %v, want out_of_range", before, err)
	}
	req.StartPositions = positions
	resumed, err := watch.Watch(ctx, connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resumed.Close()
	var got []string
	for len(got) == 0 && resumed.Receive() {
		for _, e := range resumed.Msg().Events {
			got = append(got, fmt.Sprintf("%s %s", e.Name, e.Type))
		}
	}
	if len(got) == 0 {
		t.Fatalf("the resume from %v delivered nothing: %v (out_of_range: it fell off the events the node keeps)", positions, resumed.Err())
	}
	if want := prefix + "sem EVENT_TYPE_RELEASED"; len(got) != 1 || got[0] != want {
		t.Errorf("after the resume: %q, want only %q (nothing missed, nothing repeated)", got, want)
	}
}

// TestWatchProgressWhileIdle: a watch of a prefix nobody touches, while
// other names are busy, gets messages without events whose positions move
// on; a watch of one name gets them with applied_index moving on.
func TestWatchProgressWhileIdle(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, endpoint)
	for _, req := range []*pb.WatchRequest{
		{Target: &pb.WatchRequest_Prefix{Prefix: "t/idle/"}},
		{Target: &pb.WatchRequest_Name{Name: "t/idle/name"}},
	} {
		t.Run(fmt.Sprint(req.GetName(), req.GetPrefix()), func(t *testing.T) {
			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			stream, err := watch.Watch(wctx, connect.NewRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			if !stream.Receive() {
				t.Fatalf("no first message: %v", stream.Err())
			}
			first := stream.Msg()
			// Other names stay busy until the watch has said it moved on.
			busy, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				s, err := c.NewSession(busy)
				if err != nil {
					return
				}
				defer func() { _ = s.Close(context.Background()) }()
				m := client.NewMutex(s, "t/busy/x")
				for busy.Err() == nil {
					if m.Lock(busy) == nil {
						_ = m.Unlock(busy)
					}
				}
			}()
			defer func() { stop(); <-done }()
			if !stream.Receive() {
				t.Fatalf("no progress message: %v", stream.Err())
			}
			m := stream.Msg()
			if len(m.Events) > 0 {
				t.Fatalf("events of other names: %v", m.Events)
			}
			if req.GetName() != "" {
				if len(m.Positions) != 0 || m.AppliedIndex <= first.AppliedIndex {
					t.Errorf("progress: applied_index %d, positions %v; want past %d, none", m.AppliedIndex, m.Positions, first.AppliedIndex)
				}
				return
			}
			moved := false
			for i, p := range m.Positions {
				if p.NextIndex < first.Positions[i].NextIndex {
					t.Errorf("progress: positions %v went back from %v", m.Positions, first.Positions)
				}
				moved = moved || p.NextIndex > first.Positions[i].NextIndex
			}
			if !moved || len(m.Positions) != len(first.Positions) {
				t.Errorf("progress: positions %v, want past %v", m.Positions, first.Positions)
			}
		})
	}
}
