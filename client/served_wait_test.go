package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// rollingRestart is a stand-in cluster through which a waiting Lock lives
// a rolling restart: each of its first two attempts is queued (the
// stream's push of the waiter id), served for serve, and then broken as a
// killed member's stream ends, without a word. The third is granted.
// Unary attempts, which hear no push, are each served for serve and
// answered as a draining member answers a wait it leaves queued for the
// resend (runtime.ErrWaitKept's words).
type rollingRestart struct {
	pushingStreamOnly
	serve    time.Duration
	acquires *atomic.Int32
}

const keptWait = "lockstep: the node is shutting down: the queued wait keeps its place: retry on another member with the same client id and seq"

func granted() *pb.AcquireLockResponse {
	return &pb.AcquireLockResponse{Acquired: true, FencingToken: 9, SessionId: 7, Outcome: pb.Outcome_OUTCOME_GRANTED}
}

// answer serves one acquire attempt on a stream: push sends the pushes
// and answers; an error ends the stream (a killed member).
func (r rollingRestart) answer(ctx context.Context, req *pb.StreamRequest, push func(*pb.StreamResponse) error) error {
	n := r.acquires.Add(1)
	if n > 2 {
		return push(&pb.StreamResponse{RequestId: req.RequestId, Response: &pb.StreamResponse_AcquireLock{AcquireLock: granted()}})
	}
	if err := push(&pb.StreamResponse{RequestId: req.RequestId, Response: &pb.StreamResponse_Queued{Queued: &pb.StreamQueued{WaiterId: uint64(n)}}}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.serve):
	}
	return connect.NewError(connect.CodeInternal, errors.New("protocol error: incomplete envelope: unexpected EOF"))
}

func (r rollingRestart) Multiplex(ctx context.Context, st *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	for {
		m, err := st.Receive()
		if err != nil {
			return nil
		}
		for _, req := range m.Requests {
			if req.GetAcquireLock() == nil {
				continue
			}
			if err := r.answer(ctx, req, func(res *pb.StreamResponse) error {
				return st.Send(&pb.MultiplexResponse{Responses: []*pb.StreamResponse{res}})
			}); err != nil {
				return err
			}
		}
	}
}

func (r rollingRestart) Stream(ctx context.Context, st *connect.BidiStream[pb.StreamRequest, pb.StreamResponse]) error {
	for {
		req, err := st.Receive()
		if err != nil {
			return nil
		}
		if req.GetAcquireLock() == nil {
			continue
		}
		if err := r.answer(ctx, req, st.Send); err != nil {
			return err
		}
	}
}

// rollingLocks is rollingRestart's LockService, for unary calls.
type rollingLocks struct {
	lockstepv1connect.UnimplementedLockServiceHandler
	rollingRestart
}

func (r rollingLocks) Acquire(ctx context.Context, _ *connect.Request[pb.AcquireLockRequest]) (*connect.Response[pb.AcquireLockResponse], error) {
	if r.acquires.Add(1) > 2 {
		return connect.NewResponse(granted()), nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(r.serve):
	}
	return nil, connect.NewError(connect.CodeUnavailable, errors.New(keptWait))
}

// streamOnlyRestart is rollingRestart without Multiplex, as a server of
// an earlier version: the session's own stream carries the wait.
type streamOnlyRestart struct{ rollingRestart }

func (streamOnlyRestart) Multiplex(context.Context, *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("no Multiplex"))
}

// TestServedWaitsDoNotAddUp: a waiting Lock whose wait two members in
// turn served (queued it) for less than the retry timeout each, but for
// more together, and then lost (a rolling restart: killed, or drained),
// is resent once more and granted: the retry timeout
// counts only the time no member serves the wait. It gave up with
// ErrUnavailable, the two served waits added up against one budget, on
// the shared stream, a session's own and unary calls alike.
func TestServedWaitsDoNotAddUp(t *testing.T) {
	const retry = time.Second
	const serve = retry * 7 / 10 // each less than the budget, together more
	for _, tc := range []struct {
		name string
		srv  func(*atomic.Int32) lockstepv1connect.SessionServiceHandler
		opts []client.Option
	}{
		{"Multiplex", func(n *atomic.Int32) lockstepv1connect.SessionServiceHandler {
			return rollingRestart{serve: serve, acquires: n}
		}, nil},
		{"session stream", func(n *atomic.Int32) lockstepv1connect.SessionServiceHandler {
			return streamOnlyRestart{rollingRestart{serve: serve, acquires: n}}
		}, []client.Option{client.WithStreamPerSession()}},
		{"unary", func(n *atomic.Int32) lockstepv1connect.SessionServiceHandler {
			return rollingRestart{serve: serve, acquires: n}
		}, []client.Option{client.WithUnary()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var acquires atomic.Int32
			mux := http.NewServeMux()
			mux.Handle(lockstepv1connect.NewSessionServiceHandler(tc.srv(&acquires)))
			mux.Handle(lockstepv1connect.NewLockServiceHandler(rollingLocks{rollingRestart: rollingRestart{serve: serve, acquires: &acquires}}))
			mux.Handle(lockstepv1connect.NewClusterServiceHandler(healthyCluster{}))
			hs := httptest.NewUnstartedServer(mux)
			var p http.Protocols
			p.SetHTTP1(true)
			p.SetUnencryptedHTTP2(true)
			hs.Config.Protocols = &p
			hs.Start()
			t.Cleanup(hs.Close)
			c, err := client.New([]string{hs.URL}, append(tc.opts, client.WithRetryTimeout(retry))...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			defer closeFake(ctx, c)
			s, err := c.NewSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			m := client.NewMutex(s, "t/rolling")
			if err := m.Lock(ctx); err != nil {
				t.Fatalf("Lock through two served waits that broke: %v, want it resent and granted", err)
			}
			if n := acquires.Load(); n != 3 {
				t.Fatalf("%d attempts, want 3 (two served and broken, one granted)", n)
			}
			if m.Token() != 9 {
				t.Fatalf("token %d, want 9", m.Token())
			}
		})
	}
}

// noLeader answers every acquire on the shared stream, after holding it
// for hold, unavailable without ever queueing it: a member that found no
// leader.
type noLeader struct {
	pushingStreamOnly
	hold     time.Duration
	acquires *atomic.Int32
}

func (l noLeader) Multiplex(ctx context.Context, st *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	for {
		m, err := st.Receive()
		if err != nil {
			return nil
		}
		for _, req := range m.Requests {
			if req.GetAcquireLock() == nil {
				continue
			}
			l.acquires.Add(1)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(l.hold):
			}
			if err := st.Send(&pb.MultiplexResponse{Responses: []*pb.StreamResponse{{RequestId: req.RequestId, Response: &pb.StreamResponse_Error{
				Error: &pb.StreamError{Code: "unavailable", Message: "shard 0: this member found no leader"}}}}}); err != nil {
				return err
			}
		}
	}
}

// TestUnservedWaitsUseUpTheBudget: attempts that members held but never
// queued (no leader) are not served waits: they add up against the retry
// timeout, and the Lock fails with ErrUnavailable once it passed.
func TestUnservedWaitsUseUpTheBudget(t *testing.T) {
	var acquires atomic.Int32
	c := fakeClient(t, noLeader{hold: 300 * time.Millisecond, acquires: &acquires}) // a 2 s retry timeout
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(s, "t/no-leader").Lock(ctx); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Lock while no member serves it: %v, want ErrUnavailable", err)
	}
	if n := acquires.Load(); n < 2 {
		t.Fatalf("%d attempts, want several within the retry timeout", n)
	}
}
