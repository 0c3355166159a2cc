package rpc_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// releaseByOwner releases name's grant token as another caller does over
// REST: by the holder's owner label and the token, naming no session.
func releaseByOwner(t *testing.T, ctx context.Context, url, name, owner string, token uint64) {
	t.Helper()
	locks := lockstepv1connect.NewLockServiceClient(h2c(), url)
	r, err := locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: name, Owner: owner, FencingToken: token}))
	if err != nil || !r.Msg.Released {
		t.Fatalf("another caller's release of %q token %d: %v %v", name, token, r, err)
	}
}

// checkGrantEnded fails unless r is the push of session's grant token of
// the mutex name ended for why.
func checkGrantEnded(t *testing.T, r *pb.StreamResponse, session uint64, name string, token uint64, why pb.Reason) {
	t.Helper()
	g := r.GetGrantEnded()
	if r.RequestId != 0 || g.GetSessionId() != session || g.GetFencingToken() != token || g.GetKind() != pb.Kind_KIND_MUTEX ||
		g.GetName() != name || g.GetReason() != why {
		t.Fatalf("want the end of session %d's grant %d of %q pushed (%v), got %v", session, token, name, why, r)
	}
}

// TestSessionStreamPushesAGrantReleasedByAnother: when another caller
// releases the stream's session's grant by its token (a REST release by
// owner label), the stream is told at once, with the session, token,
// kind, name and why; the session lives on. Its own release of a grant is
// pushed too, besides its answer; a max hold passing is pushed as such.
func TestSessionStreamPushesAGrantReleasedByAnother(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	me := newSession(t, sessions, 30_000)
	token := acquireOnStream(t, st, 1, me, "jobs/rel")
	releaseByOwner(t, ctx, s.url, "jobs/rel", "w", token)
	checkGrantEnded(t, receiveAny(t, st), me, "jobs/rel", token, pb.Reason_REASON_RELEASED)

	send(t, st, &pb.StreamRequest{RequestId: 2, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: me}}})
	if r := receive(t, st); r.RequestId != 2 || r.GetKeepAlive() == nil {
		t.Fatalf("the session lives on after its grant's release: %v", r)
	}

	send(t, st, &pb.StreamRequest{RequestId: 3, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: "jobs/max", SessionId: me, ClientId: "c", RequestSeq: 3, MaxHoldMs: 300}}})
	a := receive(t, st)
	if a.RequestId != 3 || !a.GetAcquireLock().GetAcquired() {
		t.Fatalf("acquire with a max hold: %v", a)
	}
	checkGrantEnded(t, receiveAny(t, st), me, "jobs/max", a.GetAcquireLock().FencingToken, pb.Reason_REASON_MAX_HOLD)
}

// TestMultiplexPushesAGrantReleasedByAnother: the same on a Multiplex
// stream, for each session it carries: the push names the session whose
// grant ended, and the other session's grant is left alone.
func TestMultiplexPushesAGrantReleasedByAnother(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.multiplex(t, ctx, "")
	a, b := newSession(t, sessions, 30_000), newSession(t, sessions, 30_000)
	sendAll(t, st, acquireOn(1, a, "jobs/a", 0), acquireOn(2, b, "jobs/b", 0))
	got, _ := answers(t, st, 2)
	if !got[1].GetAcquireLock().GetAcquired() || !got[2].GetAcquireLock().GetAcquired() {
		t.Fatalf("acquires: %v", got)
	}
	token := got[2].GetAcquireLock().FencingToken
	releaseByOwner(t, ctx, s.url, "jobs/b", "w", token)
	checkGrantEnded(t, grantEnds(t, st, 1)[token], b, "jobs/b", token, pb.Reason_REASON_RELEASED)
	sendAll(t, st, keepAliveOn(3, a), keepAliveOn(4, b))
	got, _ = receiveUntil(t, st, 2, func(r *pb.StreamResponse) bool { return true })
	if got[3].GetKeepAlive() == nil || got[4].GetKeepAlive() == nil {
		t.Fatalf("both sessions live on, and a's grant was not pushed as ended: %v", got)
	}
}

// TestOwnReleaseOnTheStreamIsNotPushed: a release sent on the stream is
// answered, and its grant's end is not pushed as well (the answer says
// it): a push per release doubled a lock-and-unlock cycle's messages, and
// one worker's p50 rose a fifth. Another caller's release still is.
func TestOwnReleaseOnTheStreamIsNotPushed(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, sessions := s.sessionStream(t, ctx, "")
	me := newSession(t, sessions, 30_000)
	own := acquireOnStream(t, st, 1, me, "jobs/own")
	send(t, st, &pb.StreamRequest{RequestId: 2, Request: &pb.StreamRequest_ReleaseLock{ReleaseLock: &pb.ReleaseLockRequest{
		Name: "jobs/own", SessionId: me, ClientId: "c", RequestSeq: 2, FencingToken: own}}})
	if r := receiveAny(t, st); r.RequestId != 2 || r.GetReleaseLock() == nil {
		t.Fatalf("the release's answer: %v", r)
	}
	time.Sleep(200 * time.Millisecond) // a push would have come by now
	send(t, st, &pb.StreamRequest{RequestId: 3, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: me}}})
	if r := receiveAny(t, st); r.RequestId != 3 || r.GetKeepAlive() == nil {
		t.Fatalf("after its own release the stream sent %v, want the keepalive's answer (no push of the release)", r)
	}
	// Another caller's release of the next grant is pushed.
	token := acquireOnStream(t, st, 4, me, "jobs/own")
	releaseByOwner(t, ctx, s.url, "jobs/own", "w", token)
	checkGrantEnded(t, receiveAny(t, st), me, "jobs/own", token, pb.Reason_REASON_RELEASED)
}

// acquireOnStream acquires name on st for session me as request id (and
// request_seq) id, and answers the grant's token.
func acquireOnStream(t *testing.T, st *connect.BidiStreamForClient[pb.StreamRequest, pb.StreamResponse], id, me uint64, name string) uint64 {
	t.Helper()
	send(t, st, &pb.StreamRequest{RequestId: id, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{
		Name: name, SessionId: me, ClientId: "c", RequestSeq: id}}})
	a := receive(t, st)
	if a.RequestId != id || !a.GetAcquireLock().GetAcquired() {
		t.Fatalf("acquire %s: %v", name, a)
	}
	return a.GetAcquireLock().FencingToken
}
