package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
)

// TestWatchStartIndexWithShards: with several shards a prefix watch cannot
// resume from an index (each shard numbers its own log): start_index is
// refused with what to do instead; a name's watch still takes one.
func TestWatchStartIndexWithShards(t *testing.T) {
	s := startServer(t)
	s.b.mu.Lock()
	s.b.shards = 3
	s.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, s.url)

	stream, err := watch.Watch(ctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}, StartIndex: 7}))
	if err == nil {
		for stream.Receive() {
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "start_index 7 is ambiguous") ||
		!strings.Contains(err.Error(), "watch one name to resume from an index") || !strings.Contains(err.Error(), "start_positions") {
		t.Fatalf("prefix watch from an index with 3 shards: %v, want invalid_argument saying what to do", err)
	}

	for _, req := range []*pb.WatchRequest{
		{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}},
		{Target: &pb.WatchRequest_Name{Name: "jobs/a"}, StartIndex: 5},
	} {
		wctx, wcancel := context.WithCancel(ctx)
		stream, err := watch.Watch(wctx, connect.NewRequest(req))
		if err != nil {
			t.Fatalf("%v: %v", req, err)
		}
		if !stream.Receive() {
			t.Fatalf("%v: no first message: %v", req, stream.Err())
		}
		_, isPrefix := req.Target.(*pb.WatchRequest_Prefix)
		if got := stream.Msg().AppliedIndex; isPrefix != (got == 0) {
			t.Errorf("%v: first applied_index %d (a merged prefix watch has none, a name's has one)", req, got)
		}
		wcancel()
	}
}

// TestWatchStartPositionsRefused: each bad start_positions is refused with
// invalid_argument naming what to fix, before any stream is opened.
func TestWatchStartPositionsRefused(t *testing.T) {
	s := startServer(t)
	s.b.mu.Lock()
	s.b.shards = 3
	s.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, s.url)
	prefix := &pb.WatchRequest_Prefix{Prefix: "jobs/"}
	pos := func(shardNext ...uint64) []*pb.ShardPosition {
		var out []*pb.ShardPosition
		for i := 0; i+1 < len(shardNext); i += 2 {
			out = append(out, &pb.ShardPosition{ShardId: shardNext[i], NextIndex: shardNext[i+1]})
		}
		return out
	}
	for _, c := range []struct {
		what   string
		req    *pb.WatchRequest
		phrase string
	}{
		{"unknown shard", &pb.WatchRequest{Target: prefix, StartPositions: pos(0, 5, 1, 5, 3, 5)},
			"start_positions[2]: shard_id 3 is not a shard of this cluster, which has 3 (shard_id 0..2)"},
		{"duplicate shard", &pb.WatchRequest{Target: prefix, StartPositions: pos(0, 5, 1, 5, 1, 6)},
			"start_positions[2]: shard_id 1 appears twice: give each shard once"},
		{"missing shard", &pb.WatchRequest{Target: prefix, StartPositions: pos(0, 5, 2, 5)},
			"no position for shard_id [1]: give every shard 0..2 once"},
		{"next_index 0", &pb.WatchRequest{Target: prefix, StartPositions: pos(0, 5, 1, 0, 2, 5)},
			"start_positions[1]: next_index is 0 for shard_id 1"},
		{"with start_index", &pb.WatchRequest{Target: prefix, StartIndex: 4, StartPositions: pos(0, 5, 1, 5, 2, 5)},
			"start_index 4 and start_positions are both given"},
		{"for a name", &pb.WatchRequest{Target: &pb.WatchRequest_Name{Name: "jobs/a"}, StartPositions: pos(0, 5, 1, 5, 2, 5)},
			"start_positions is for a prefix watch"},
	} {
		stream, err := watch.Watch(ctx, connect.NewRequest(c.req))
		if err == nil {
			if stream.Receive() {
				t.Errorf("%s: a stream opened (first message %v), want invalid_argument", c.what, stream.Msg())
			}
			err = stream.Err()
			stream.Close()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.phrase) {
			t.Errorf("%s: %v, want invalid_argument containing %q", c.what, err, c.phrase)
		}
	}
	s.b.mu.Lock()
	starts := len(s.b.watchStarts)
	s.b.mu.Unlock()
	if starts != 0 {
		t.Errorf("%d merged streams were opened for refused requests, want none", starts)
	}
}

// TestWatchPrefixPositions: a merged prefix watch reports where it stands in
// every shard, first at once and then with every message, and a resume
// from those positions opens each shard's stream exactly there.
func TestWatchPrefixPositions(t *testing.T) {
	s := startServer(t)
	s.b.mu.Lock()
	s.b.shards = 3
	s.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, s.url)
	wctx, wcancel := context.WithCancel(ctx)
	stream, err := watch.Watch(wctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("no first message: %v", stream.Err())
	}
	first := stream.Msg().Positions
	if len(first) != 3 {
		t.Fatalf("first positions %v, want one per shard", first)
	}
	for i, p := range first {
		if p.ShardId != uint64(i) || p.NextIndex == 0 {
			t.Errorf("first positions[%d] = %v, want shard %d with a next_index", i, p, i)
		}
	}
	locks := lockstepv1connect.NewLockServiceClient(http.DefaultClient, s.url)
	if _, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "jobs/a", Owner: "w", TtlSeconds: 10})); err != nil {
		t.Fatal(err)
	}
	var last []*pb.ShardPosition
	for last == nil && stream.Receive() {
		for _, e := range stream.Msg().Events {
			if e.Name == "jobs/a" && e.Type == pb.EventType_EVENT_TYPE_GRANTED {
				last = stream.Msg().Positions
				if want := e.Index + 1; last[e.ShardId].NextIndex != want {
					t.Errorf("positions %v after the grant at shard %d index %d, want its next_index %d", last, e.ShardId, e.Index, want)
				}
			}
		}
	}
	wcancel()
	if last == nil {
		t.Fatalf("no grant event: %v", stream.Err())
	}
	stream2, err := watch.Watch(ctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}, StartPositions: last}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream2.Close()
	if !stream2.Receive() {
		t.Fatalf("resume: no first message: %v", stream2.Err())
	}
	for i, p := range stream2.Msg().Positions {
		if p.NextIndex != last[i].NextIndex {
			t.Errorf("resume: first positions %v, want %v", stream2.Msg().Positions, last)
		}
	}
	s.b.mu.Lock()
	starts := s.b.watchStarts
	s.b.mu.Unlock()
	if got := starts[len(starts)-1]; len(got) != 3 || got[0] != last[0].NextIndex || got[1] != last[1].NextIndex || got[2] != last[2].NextIndex {
		t.Errorf("resume opened shard streams from %v, want %v", got, last)
	}
}

// TestWatchMessagesHoldWholeEntries: the handler sends an entry's events in
// one message, waiting for the rest of an entry it has begun, so that the
// positions it reports are exact; when the stream ends inside an entry, it
// leaves that entry out (its position stays at it) instead of sending a
// part that a resume would repeat.
func TestWatchMessagesHoldWholeEntries(t *testing.T) {
	ctx, stream, feed := fedPrefixWatch(t, "jobs/", 16, 10, 20, 30)
	ev := func(shard, index uint64, name string, end bool) runtime.Event {
		return runtime.Event{Shard: shard, Index: index, EntryEnd: end,
			Effect: core.Effect{Kind: core.EffectReleased, Object: core.KindMutex, Name: name}}
	}
	type got struct {
		events    []string
		positions []uint64
	}
	receive := func() got {
		t.Helper()
		if !stream.Receive() {
			t.Fatalf("no message: %v", stream.Err())
		}
		var g got
		for _, e := range stream.Msg().Events {
			g.events = append(g.events, fmt.Sprintf("%d/%d %s", e.ShardId, e.Index, e.Name))
		}
		for _, p := range stream.Msg().Positions {
			g.positions = append(g.positions, p.NextIndex)
		}
		return g
	}
	// Shard 1's entry 20 is whole; shard 2's entry 30 comes in two parts,
	// the second only once the first may already have been read.
	feed <- ev(1, 20, "jobs/a", true)
	feed <- ev(2, 30, "jobs/b", false)
	// The handler has taken both: one that did not wait would now send
	// the part it has.
	for len(feed) > 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	feed <- ev(2, 30, "jobs/c", true)
	var all []string
	var last got
	for len(all) < 3 {
		last = receive()
		all = append(all, last.events...)
		if n := len(last.events); n > 0 && strings.HasSuffix(last.events[n-1], "jobs/b") {
			t.Fatalf("a message ends inside entry 2/30: %v, positions %v", last.events, last.positions)
		}
	}
	if !slices.Equal(last.positions, []uint64{10, 21, 31}) {
		t.Errorf("positions %v after entries 1/20 and 2/30, want [10 21 31]", last.positions)
	}
	// Shard 0's entry 10 begins, shard 1's entry 21 is whole, and the
	// stream ends before entry 10 does.
	feed <- ev(0, 10, "jobs/d", false)
	feed <- ev(1, 21, "jobs/e", true)
	close(feed)
	last = receive()
	if !slices.Equal(last.events, []string{"1/21 jobs/e"}) || !slices.Equal(last.positions, []uint64{10, 22, 31}) {
		t.Errorf("the last message: %v, positions %v; want only 1/21 jobs/e, positions [10 22 31] (entry 0/10 left out whole)",
			last.events, last.positions)
	}
	if stream.Receive() {
		t.Fatalf("a message after the stream ended: %v", stream.Msg())
	}
	if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
		t.Errorf("the stream ended with %v, want unavailable (resume elsewhere)", stream.Err())
	}
}

// TestWatchSpeaksWhileNothingMoves: an idle shard writes no entries at all,
// so no marker moves a stream on; after silentIntervals of silence the
// handler still sends a message, without events, repeating where the
// stream stands, so that a client can tell a quiet cluster from a dead
// connection.
func TestWatchSpeaksWhileNothingMoves(t *testing.T) {
	_, stream, _ := fedPrefixWatch(t, "quiet/", 1, 7, 9)
	begun := time.Now()
	if !stream.Receive() {
		t.Fatalf("no message while nothing moved: %v", stream.Err())
	}
	m := stream.Msg()
	var positions []uint64
	for _, p := range m.Positions {
		positions = append(positions, p.NextIndex)
	}
	if len(m.Events) != 0 || !slices.Equal(positions, []uint64{7, 9}) {
		t.Fatalf("after %v of silence: events %v, positions %v; want none and [7 9]", time.Since(begun), m.Events, positions)
	}
	t.Logf("a message after %v of silence", time.Since(begun).Round(time.Millisecond))
}

// fedPrefixWatch starts a server whose backend has one shard per start
// position and streams only what the test puts into feed (buffered as
// given), opens a watch of prefix from those positions, and reads its
// first message. The watch ends with the test, or after 10 s.
func fedPrefixWatch(t *testing.T, prefix string, buffered int, start ...uint64) (context.Context, *connect.ServerStreamForClient[pb.WatchResponse], chan runtime.Event) {
	t.Helper()
	s := startServer(t)
	feed := make(chan runtime.Event, buffered)
	s.b.mu.Lock()
	s.b.shards = len(start)
	s.b.watchFeed = feed
	s.b.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	var positions []*pb.ShardPosition
	for i, next := range start {
		positions = append(positions, &pb.ShardPosition{ShardId: uint64(i), NextIndex: next})
	}
	watch := lockstepv1connect.NewWatchServiceClient(http.DefaultClient, s.url)
	stream, err := watch.Watch(ctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: prefix}, StartPositions: positions}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stream.Close() })
	if !stream.Receive() {
		t.Fatalf("no first message: %v", stream.Err())
	}
	return ctx, stream, feed
}
