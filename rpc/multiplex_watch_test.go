package rpc

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// endsOnly is a Backend that counts SessionEnded subscriptions and knows
// no session: DoBy answers not_found (the rest is the nil interface: calling
// it panics).
type endsOnly struct {
	Backend
	mu    sync.Mutex
	subs  map[core.SessionID]int
	ended map[core.SessionID]chan core.Reason // the last subscription's channel, to end it
}

func (e *endsOnly) DoBy(context.Context, core.Command, time.Time) (core.Result, error) {
	return core.Result{Err: &core.Error{Code: core.CodeNotFound, Msg: "no such session"}}, nil
}

func (e *endsOnly) SessionEnded(id core.SessionID) (<-chan core.Reason, func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[id]++
	ch := make(chan core.Reason, 1)
	if e.ended != nil {
		e.ended[id] = ch
	}
	return ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.subs[id]--
	}
}

// GrantsEnded sends nothing: no session of endsOnly holds anything.
func (e *endsOnly) GrantsEnded(core.SessionID) (<-chan runtime.GrantEnd, func()) {
	return make(chan runtime.GrantEnd), func() {}
}

func (e *endsOnly) count() (total int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.subs {
		total += n
	}
	return total
}

// A Multiplex stream watches each session it carries once, stops watching
// one whose close it answered, and watches no more than
// maxMultiplexSessions at once; its watchers end with the stream.
func TestMultiplexWatchesEachSessionOnceAndBounded(t *testing.T) {
	b := &endsOnly{subs: map[core.SessionID]int{}}
	ss := newSessionStream(&service{b: b, opts: Options{MaxStreamRequests: 8}}, "test", true)
	ss.out = func(*pb.StreamResponse) {}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 3 {
		if err := ss.bind(ctx, &pb.KeepAliveRequest{SessionId: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.count(); n != 1 {
		t.Fatalf("one session named three times: %d subscriptions, want 1", n)
	}
	ss.unwatch(5)
	ss.watchers.Wait() // the watcher of session 5 ends once it is unwatched
	if n := b.count(); n != 0 {
		t.Fatalf("after its close: %d subscriptions, want 0", n)
	}
	for id := uint64(1); id <= maxMultiplexSessions+10; id++ {
		if err := ss.bind(ctx, &pb.KeepAliveRequest{SessionId: id}); err != nil {
			t.Fatalf("session %d: %v (past the watch bound a request is still served)", id, err)
		}
	}
	if n := b.count(); n != maxMultiplexSessions {
		t.Fatalf("%d sessions named: %d subscriptions, want the bound %d", maxMultiplexSessions+10, n, maxMultiplexSessions)
	}
	cancel()
	ss.watchers.Wait()
	if n := b.count(); n != 0 {
		t.Fatalf("after the stream ended: %d subscriptions, want 0", n)
	}
}

// A session stream (not Multiplex) is bound to its first request's
// session, and watches only that one.
func TestSessionStreamBindsItsFirstSession(t *testing.T) {
	b := &endsOnly{subs: map[core.SessionID]int{}}
	ss := newSessionStream(&service{b: b, opts: Options{MaxStreamRequests: 8}}, "test", false)
	ss.out = func(*pb.StreamResponse) {}
	ctx, cancel := context.WithCancel(context.Background())
	if err := ss.bind(ctx, &pb.KeepAliveRequest{SessionId: 5}); err != nil {
		t.Fatal(err)
	}
	if err := ss.bind(ctx, &pb.KeepAliveRequest{SessionId: 6}); err == nil {
		t.Fatal("a session stream took a request for a second session")
	}
	if n := b.count(); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	cancel()
	ss.watchers.Wait()
}

// A request for a session the node does not know leaves no watch behind
// on a Multiplex stream, so made-up session ids cost nothing past their
// answers.
func TestMultiplexWatchesNoUnknownSession(t *testing.T) {
	b := &endsOnly{subs: map[core.SessionID]int{}}
	opts, err := Options{Backend: b}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := &service{b: b, opts: opts, workers: newWorkers(workerIdle)}
	m, err := newMetrics(nil, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	s.interceptors(m)
	ss := newSessionStream(s, "test", true)
	var mu sync.Mutex
	var got []*pb.StreamResponse
	ss.out = func(r *pb.StreamResponse) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for id := uint64(1); id <= 3; id++ {
		ss.serve(ctx, &pb.StreamRequest{RequestId: id, Request: &pb.StreamRequest_KeepAlive{KeepAlive: &pb.KeepAliveRequest{SessionId: 100 + id}}})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0].GetError().GetCode() != "not_found" {
		t.Fatalf("keepalives of unknown sessions: %v, want three not_found", got)
	}
	ss.mu.Lock()
	watched := len(ss.watched)
	ss.mu.Unlock()
	if watched != 0 {
		t.Fatalf("%d unknown sessions still watched, want 0", watched)
	}
}

// A session whose loss a Multiplex stream pushed is no longer watched
// there, so it does not count toward the bound; the push says why the
// session ended: it expired, or some caller closed it.
func TestMultiplexForgetsALostSession(t *testing.T) {
	b := &endsOnly{subs: map[core.SessionID]int{}, ended: map[core.SessionID]chan core.Reason{}}
	ss := newSessionStream(&service{b: b, opts: Options{MaxStreamRequests: 8}}, "test", true)
	pushed := make(chan *pb.StreamResponse, 1)
	ss.out = func(r *pb.StreamResponse) { pushed <- r }
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); ss.watchers.Wait() }()
	for id, c := range map[uint64]struct {
		why  core.Reason
		want pb.Reason
	}{
		5: {core.ReasonSessionExpired, pb.Reason_REASON_SESSION_EXPIRED},
		6: {core.ReasonSessionClosed, pb.Reason_REASON_SESSION_CLOSED},
	} {
		if err := ss.bind(ctx, &pb.KeepAliveRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		b.ended[core.SessionID(id)] <- c.why
		close(b.ended[core.SessionID(id)])
		b.mu.Unlock()
		r := <-pushed
		if lost := r.GetSessionLost(); lost.GetSessionId() != id || lost.GetReason() != c.want {
			t.Fatalf("session %d ended for %v: pushed %v, want its loss with %v", id, c.why, r, c.want)
		}
		ss.mu.Lock()
		_, still := ss.watched[id]
		ss.mu.Unlock()
		if still {
			t.Fatalf("session %d is still counted as watched after its loss was pushed", id)
		}
	}
}
