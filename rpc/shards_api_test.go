package rpc_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
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
