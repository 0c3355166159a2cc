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
		!strings.Contains(err.Error(), "watch one name to resume from an index") {
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
