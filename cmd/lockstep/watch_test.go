package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// batchWatch sends each batch as one message, then refuses, which ends
// the watch.
type batchWatch struct {
	lockstepv1connect.UnimplementedWatchServiceHandler
	lockstepv1connect.UnimplementedClusterServiceHandler
	batches [][]*pb.Event
	shards  int // the shards its status answers (none: one)
}

func (b *batchWatch) Status(context.Context, *connect.Request[pb.ClusterStatusRequest]) (*connect.Response[pb.ClusterStatusResponse], error) {
	st := &pb.ClusterStatusResponse{NodeId: "node-1"}
	for i := range max(b.shards, 1) {
		st.Shards = append(st.Shards, &pb.ShardStatus{ShardId: uint64(i), LeaderId: "node-1"})
	}
	return connect.NewResponse(st), nil
}

func (b *batchWatch) Watch(_ context.Context, _ *connect.Request[pb.WatchRequest], s *connect.ServerStream[pb.WatchResponse]) error {
	for _, evs := range b.batches {
		if err := s.Send(&pb.WatchResponse{Events: evs, AppliedIndex: evs[len(evs)-1].Index}); err != nil {
			return err
		}
	}
	return connect.NewError(connect.CodePermissionDenied, errors.New("the test is over"))
}

// TestWatchTableIsAligned: the header and the rows of every batch start
// their columns at the same places (the header was flushed on its own,
// each batch aligned only within itself), and a session's end shows its
// KIND as session, not "unspecified".
func TestWatchTableIsAligned(t *testing.T) {
	at := time.Date(2026, 1, 2, 18, 27, 46, 863e6, time.Local).UnixMilli()
	w := &batchWatch{batches: [][]*pb.Event{
		{{Index: 73, AtMs: at, Type: pb.EventType_EVENT_TYPE_GRANTED, Kind: pb.Kind_KIND_MUTEX, Name: "jobs/a", SessionId: 5, FencingToken: 9}},
		{{Index: 74, AtMs: at, Type: pb.EventType_EVENT_TYPE_RELEASED, Kind: pb.Kind_KIND_SEMAPHORE, Name: "gpu", SessionId: 12, FencingToken: 10, Reason: pb.Reason_REASON_RELEASED},
			{Index: 1075, AtMs: at, Type: pb.EventType_EVENT_TYPE_SESSION_EXPIRED, SessionId: 5, Reason: pb.Reason_REASON_SESSION_EXPIRED}},
	}}
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewWatchServiceHandler(w))
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(w))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var out, errb bytes.Buffer
	if code := run([]string{"watch", "", "--endpoints", srv.URL}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "the test is over") {
		t.Errorf("exit %d, want %d with the refusal; stderr:\n%s", code, exitError, &errb)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", &out)
	}
	cell := regexp.MustCompile(`\S+`)
	starts := func(line string) []int {
		var s []int
		for _, m := range cell.FindAllStringIndex(line, -1) {
			s = append(s, m[0])
		}
		return s
	}
	head := starts(lines[0])
	for _, l := range lines[1:] {
		if got := starts(l); len(got) != len(head) || !equalInts(got, head) {
			t.Errorf("columns not aligned with the header:\n%s\n%s", lines[0], l)
		}
	}
	if f := strings.Fields(lines[3]); len(f) < 4 || f[3] != "session" {
		t.Errorf("a session's end shows KIND %q, want session:\n%s", f[3], lines[3])
	}
}

func equalInts(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestWatchNamesTheShardWithSeveral: with several shards each event's
// INDEX is in its own shard's log, so a SHARD column says which; with one
// there is none. Before, "lockstep watch" interleaved the shards' indexes
// in one column that read as a log going back and forth.
func TestWatchNamesTheShardWithSeveral(t *testing.T) {
	at := time.Date(2026, 1, 2, 18, 27, 46, 0, time.Local).UnixMilli()
	events := [][]*pb.Event{
		{{ShardId: 2, Index: 900, AtMs: at, Type: pb.EventType_EVENT_TYPE_GRANTED, Kind: pb.Kind_KIND_MUTEX, Name: "jobs/a", SessionId: 5, FencingToken: 9}},
		{{ShardId: 0, Index: 41, AtMs: at, Type: pb.EventType_EVENT_TYPE_GRANTED, Kind: pb.Kind_KIND_MUTEX, Name: "jobs/b", SessionId: 5, FencingToken: 10}},
	}
	for _, shards := range []int{1, 3} {
		w := &batchWatch{batches: events, shards: shards}
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewWatchServiceHandler(w))
		mux.Handle(lockstepv1connect.NewClusterServiceHandler(w))
		srv := httptest.NewServer(mux)
		var out, errb bytes.Buffer
		run([]string{"watch", "", "--endpoints", srv.URL}, &out, &errb)
		srv.Close()
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("%d shards: want a header and 2 rows:\n%s\nstderr: %s", shards, &out, &errb)
		}
		head, first, second := strings.Fields(lines[0]), strings.Fields(lines[1]), strings.Fields(lines[2])
		if shards == 1 {
			if head[0] != "INDEX" || first[0] != "900" {
				t.Errorf("one shard: want no SHARD column:\n%s", &out)
			}
			continue
		}
		if head[0] != "SHARD" || head[1] != "INDEX" || first[0] != "2" || first[1] != "900" || second[0] != "0" || second[1] != "41" {
			t.Errorf("%d shards: want SHARD then INDEX, each event's own:\n%s", shards, &out)
		}
	}
}
