package rpc_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestBarrierWaitersShowTheirSessionsOwner: a barrier's status shows each
// party's owner, its session's label (a party names none of its own),
// beside its participant name: `lockstep status -o json` showed "owner": ""
// for every party. A party of a session the server made for the wait
// shows the owner it gave, as an acquire's holder does.
func TestBarrierWaitersShowTheirSessionsOwner(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	r, err := sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlMs: 30_000, Owner: "host-a/pid-7"}))
	if err != nil {
		t.Fatal(err)
	}
	send(t, st, &pb.StreamRequest{RequestId: 1, Request: &pb.StreamRequest_WaitBarrier{WaitBarrier: &pb.WaitBarrierRequest{
		Name: "stage", Parties: 3, Participant: "worker-1", SessionId: r.Msg.SessionId, WaitTimeoutMs: -1, ClientId: "c", RequestSeq: 1}}})
	if q := receive(t, st); q.RequestId != 1 || q.GetQueued() == nil {
		t.Fatalf("want the wait queued, got %v", q)
	}
	barriers := lockstepv1connect.NewBarrierServiceClient(h2c(), s.url)
	// A wait without a session: the server makes one for it.
	made := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-made }()
	go func() {
		_, err := barriers.Wait(wctx, connect.NewRequest(&pb.WaitBarrierRequest{Name: "stage", Parties: 3, Participant: "worker-2", Owner: "host-b",
			WaitTimeoutMs: 5000, ClientId: "d", RequestSeq: 1}))
		made <- err
	}()
	var ws []*pb.Waiter
	for range 500 { // the second wait's arrival, which a unary call does not announce
		res, err := barriers.Status(ctx, connect.NewRequest(&pb.BarrierStatusRequest{Name: "stage"}))
		if err != nil {
			t.Fatal(err)
		}
		if ws = res.Msg.Waiters; len(ws) == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(ws) != 2 {
		t.Fatalf("waiters %v, want two", ws)
	}
	for i, want := range [][2]string{{"host-a/pid-7", "worker-1"}, {"host-b", "worker-2"}} {
		if ws[i].Owner != want[0] || ws[i].Participant != want[1] {
			t.Errorf("waiter %d: owner %q, participant %q; want %q, %q", i+1, ws[i].Owner, ws[i].Participant, want[0], want[1])
		}
	}
}
