package client_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// lateRelease is a stand-in cluster whose barrier wait (session 7) is
// queued, and answered only when the test says: released in generation
// 77, or, with gone set, never: the first stream ends, and the servers
// answer every request after it not_found, as for a session that ended.
type lateRelease struct {
	pushingStreamOnly
	queued   chan struct{} // closed once the wait is queued
	pushLoss chan struct{} // closed: push the session's expiry
	answer   chan struct{} // closed: answer the wait
	gone     bool
	streams  *atomic.Int32
}

func (l lateRelease) Multiplex(ctx context.Context, st *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	if l.streams.Add(1) > 1 {
		for {
			m, err := st.Receive()
			if err != nil {
				return nil
			}
			var out []*pb.StreamResponse
			for _, req := range m.Requests {
				out = append(out, &pb.StreamResponse{RequestId: req.RequestId, Response: &pb.StreamResponse_Error{Error: &pb.StreamError{
					Code: "not_found", Message: "session 7 not found: it expired or was closed"}}})
			}
			if err := st.Send(&pb.MultiplexResponse{Responses: out}); err != nil {
				return err
			}
		}
	}
	var pushes sync.WaitGroup // the pushes end before the stream does
	defer pushes.Wait()
	var sendMu sync.Mutex // Send is not safe for concurrent use
	send := func(r *pb.StreamResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return st.Send(&pb.MultiplexResponse{Responses: []*pb.StreamResponse{r}})
	}
	for {
		m, err := st.Receive()
		if err != nil {
			return nil
		}
		for _, req := range m.Requests {
			if req.GetWaitBarrier() == nil {
				continue
			}
			if err := send(&pb.StreamResponse{RequestId: req.RequestId, Response: &pb.StreamResponse_Queued{Queued: &pb.StreamQueued{WaiterId: 70}}}); err != nil {
				return err
			}
			close(l.queued)
			pushes.Add(1)
			go func() {
				defer pushes.Done()
				select {
				case <-l.pushLoss:
					_ = send(&pb.StreamResponse{Response: &pb.StreamResponse_SessionLost{SessionLost: &pb.StreamSessionLost{SessionId: 7, Reason: pb.Reason_REASON_SESSION_EXPIRED}}})
				case <-l.answer:
				case <-ctx.Done():
				}
			}()
			select {
			case <-l.answer:
			case <-ctx.Done():
				return nil
			}
			if l.gone {
				return connect.NewError(connect.CodeUnavailable, errors.New("the member stopped"))
			}
			if err := send(&pb.StreamResponse{RequestId: req.RequestId, Response: &pb.StreamResponse_WaitBarrier{WaitBarrier: &pb.WaitBarrierResponse{
				Released: true, Outcome: pb.Outcome_OUTCOME_RELEASED, Generation: 77, SessionId: 7, WaiterId: 70}}}); err != nil {
				return err
			}
		}
	}
}

// TestBarrierReleaseOutlivesTheSession: a party the servers released in
// a round (the others passed counting it) whose session is lost before it
// reads the answer (a process stopped past its lease: the servers expired
// the session and pushed that, or the client counted the lease out first,
// or the answer is read before the keepalive loop runs) still returns the
// round's generation: the servers' answer to its own request says it was
// released. It answered ErrSessionLost, while the others passed with the
// generation.
func TestBarrierReleaseOutlivesTheSession(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(s *client.Session, pushLoss chan struct{}) // before the answer comes
	}{
		{"pushed loss", func(s *client.Session, pushLoss chan struct{}) { close(pushLoss); <-s.Done() }},
		{"lease lapsed here", func(s *client.Session, _ chan struct{}) { client.LoseHere(s) }},
		{"lease passed unnoticed", func(s *client.Session, _ chan struct{}) { client.PassLease(s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := lateRelease{queued: make(chan struct{}), pushLoss: make(chan struct{}), answer: make(chan struct{}), streams: new(atomic.Int32)}
			c := fakeClient(t, srv)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			defer closeFake(ctx, c)
			s, err := c.NewSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				gen uint64
				err error
			}
			done := make(chan result, 1)
			go func() {
				gen, err := client.NewBarrier(s, "t/late-release", 3).Wait(ctx)
				done <- result{gen, err}
			}()
			<-srv.queued
			tc.lose(s, srv.pushLoss)
			close(srv.answer)
			r := <-done
			if r.err != nil || r.gen != 77 {
				t.Fatalf("Wait released in generation 77, its session lost before it read that: %d, %v; want 77, nil", r.gen, r.err)
			}
		})
	}
}

// TestBarrierLossOfUnknownOutcome: a party whose session is lost while it
// waits, and whose wait's answer it can no longer hear (its stream ended,
// and the servers answer nothing more for the session), fails with
// ErrSessionLost saying that it may have been counted in a released round
// and how to find out, rather than as if it certainly was not.
func TestBarrierLossOfUnknownOutcome(t *testing.T) {
	srv := lateRelease{queued: make(chan struct{}), pushLoss: make(chan struct{}), answer: make(chan struct{}), gone: true, streams: new(atomic.Int32)}
	c := fakeClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := client.NewBarrier(s, "t/unknown", 3).Wait(ctx)
		done <- err
	}()
	<-srv.queued
	close(srv.pushLoss)
	<-s.Done()
	close(srv.answer) // the stream ends unanswered; the resend is answered not_found
	err = <-done
	if !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "may have been counted") {
		t.Fatalf("Wait whose outcome could not be learnt: %v, want ErrSessionLost saying it may have been counted", err)
	}
}

// TestBarrierWaitEndedByItsOwnClose: a Wait ended by its session's own
// Close answers the loss without the note of an unknown outcome: the
// caller ended it.
func TestBarrierWaitEndedByItsOwnClose(t *testing.T) {
	srv := lateRelease{queued: make(chan struct{}), pushLoss: make(chan struct{}), answer: make(chan struct{}), streams: new(atomic.Int32)}
	defer close(srv.answer)
	c := fakeClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := client.NewBarrier(s, "t/closed", 3).Wait(ctx)
		done <- err
	}()
	<-srv.queued
	cctx, ccancel := context.WithTimeout(ctx, 100*time.Millisecond) // the stand-in answers no close
	_ = s.Close(cctx)
	ccancel()
	if err := <-done; !errors.Is(err, client.ErrSessionLost) || strings.Contains(err.Error(), "may have been counted") {
		t.Fatalf("Wait ended by its session's Close: %v, want ErrSessionLost without the note of an unknown outcome", err)
	}
}
