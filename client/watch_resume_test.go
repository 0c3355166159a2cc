package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// shardedWatchServer is an in-process WatchService over a fixed history of
// three shards' events, served as the real one serves them: a first
// message with every shard's position, then one message per entry, each
// with the positions after it. The first stream breaks (unavailable) after
// breakAfter entries; later ones serve from their start_positions.
type shardedWatchServer struct {
	lockstepv1connect.UnimplementedWatchServiceHandler
	history    []*pb.Event // in the order the server sends them; an entry is one event here
	breakAfter int

	mu       sync.Mutex
	requests []*pb.WatchRequest
}

const testShards = 3

func (s *shardedWatchServer) Watch(ctx context.Context, req *connect.Request[pb.WatchRequest], stream *connect.ServerStream[pb.WatchResponse]) error {
	s.mu.Lock()
	s.requests = append(s.requests, req.Msg)
	first := len(s.requests) == 1
	s.mu.Unlock()
	next := make([]uint64, testShards)
	for i := range next {
		next[i] = 1
	}
	for _, p := range req.Msg.StartPositions {
		next[p.ShardId] = p.NextIndex
	}
	positions := func() []*pb.ShardPosition {
		out := make([]*pb.ShardPosition, testShards)
		for i, n := range next {
			out[i] = &pb.ShardPosition{ShardId: uint64(i), NextIndex: n}
		}
		return out
	}
	if err := stream.Send(&pb.WatchResponse{Positions: positions()}); err != nil {
		return err
	}
	sent := 0
	for _, e := range s.history {
		if e.Index < next[e.ShardId] {
			continue
		}
		if first && sent == s.breakAfter {
			return connect.NewError(connect.CodeUnavailable, errors.New("the node went away (test)"))
		}
		next[e.ShardId] = e.Index + 1
		if err := stream.Send(&pb.WatchResponse{Events: []*pb.Event{e}, Positions: positions()}); err != nil {
			return err
		}
		sent++
	}
	<-ctx.Done()
	return nil
}

// TestWatchResumesAcrossShards: a prefix watch whose stream breaks in the
// middle resumes, on the next endpoint, from the positions of the last
// message it received, and delivers every event of every shard exactly
// once, in each shard's order.
func TestWatchResumesAcrossShards(t *testing.T) {
	srv := &shardedWatchServer{breakAfter: 7}
	// Shards apply at their own pace: their indexes interleave unevenly.
	idx := make([]uint64, testShards)
	for i := range 20 {
		sh := uint64(i*7) % testShards
		idx[sh] += uint64(1 + i%3)
		srv.history = append(srv.history, &pb.Event{ShardId: sh, Index: idx[sh], Type: pb.EventType_EVENT_TYPE_GRANTED,
			Name: fmt.Sprintf("jobs/%d", i), FencingToken: idx[sh]})
	}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewWatchServiceHandler(srv))
	hs := httptest.NewServer(mux)
	defer hs.Close()
	// Two endpoints on the same server: the break makes the client fail
	// over to the second, as it would to another node.
	c, err := client.New([]string{hs.URL, hs.URL + "/"}, client.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var got []*pb.Event
	ch := c.Watch(wctx, "jobs/")
	for len(got) < len(srv.history) {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("the watch ended after %d events", len(got))
			}
			if r.Err != nil {
				t.Fatalf("the watch failed after %d events: %v", len(got), r.Err)
			}
			got = append(got, r.Events...)
		case <-ctx.Done():
			t.Fatalf("%d events of %d", len(got), len(srv.history))
		}
	}
	names := func(evs []*pb.Event) []string {
		var out []string
		for _, e := range evs {
			out = append(out, fmt.Sprintf("%d/%d %s", e.ShardId, e.Index, e.Name))
		}
		return out
	}
	if !slices.Equal(names(got), names(srv.history)) {
		t.Errorf("events\n  %q\nwant each once, in order\n  %q", names(got), names(srv.history))
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.requests) != 2 {
		t.Fatalf("%d watch requests, want 2 (the first and one resume)", len(srv.requests))
	}
	first, resume := srv.requests[0], srv.requests[1]
	if len(first.StartPositions) != 0 || first.StartIndex != 0 {
		t.Errorf("the first request starts from %v / %d, want from now", first.StartPositions, first.StartIndex)
	}
	want := make([]uint64, testShards)
	for i := range want {
		want[i] = 1
	}
	for _, e := range srv.history[:srv.breakAfter] {
		want[e.ShardId] = e.Index + 1
	}
	var sent []uint64
	for _, p := range resume.StartPositions {
		sent = append(sent, p.NextIndex)
	}
	if resume.StartIndex != 0 || !slices.Equal(sent, want) {
		t.Errorf("the resume asked for start_index %d, positions %v; want 0 and %v", resume.StartIndex, sent, want)
	}
	if resume.GetPrefix() != "jobs/" {
		t.Errorf("the resume watches %v, want the prefix jobs/", resume.Target)
	}
}
