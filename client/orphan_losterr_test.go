package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// grantingServer grants every acquire and campaign on the shared stream
// at once (session 7, token 5), and answers the session's own releases
// released.
type grantingServer struct{ pushingStreamOnly }

func (grantingServer) Multiplex(ctx context.Context, st *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	for {
		m, err := st.Receive()
		if err != nil {
			return nil
		}
		var out []*pb.StreamResponse
		for _, req := range m.Requests {
			r := &pb.StreamResponse{RequestId: req.RequestId}
			switch {
			case req.GetAcquireLock() != nil:
				r.Response = &pb.StreamResponse_AcquireLock{AcquireLock: &pb.AcquireLockResponse{Acquired: true, FencingToken: 5, SessionId: 7, Outcome: pb.Outcome_OUTCOME_GRANTED}}
			case req.GetAcquireSemaphore() != nil:
				r.Response = &pb.StreamResponse_AcquireSemaphore{AcquireSemaphore: &pb.AcquireSemaphoreResponse{Acquired: true, FencingToken: 5, SessionId: 7, Outcome: pb.Outcome_OUTCOME_GRANTED}}
			case req.GetAcquireRwlock() != nil:
				r.Response = &pb.StreamResponse_AcquireRwlock{AcquireRwlock: &pb.AcquireRWLockResponse{Acquired: true, FencingToken: 5, SessionId: 7, Outcome: pb.Outcome_OUTCOME_GRANTED}}
			case req.GetCampaign() != nil:
				r.Response = &pb.StreamResponse_Campaign{Campaign: &pb.CampaignResponse{Elected: true, FencingToken: 5, SessionId: 7, Outcome: pb.Outcome_OUTCOME_GRANTED}}
			case req.GetReleaseLock() != nil:
				r.Response = &pb.StreamResponse_ReleaseLock{ReleaseLock: &pb.ReleaseLockResponse{Released: true}}
			default:
				continue
			}
			out = append(out, r)
		}
		if len(out) > 0 {
			if err := st.Send(&pb.MultiplexResponse{Responses: out}); err != nil {
				return err
			}
		}
	}
}

// heldThing is a Mutex, Semaphore, RWMutex or Election, as the test
// takes, watches and gives it up.
type heldThing struct {
	take    func(ctx context.Context) error
	give    func(ctx context.Context) error // Unlock, Release, Resign
	lost    func() <-chan struct{}
	lostErr func() error
}

func heldThings(s *client.Session) map[string]heldThing {
	m := client.NewMutex(s, "t/orphan-mutex")
	sem := client.NewSemaphore(s, "t/orphan-sem", 2)
	rw := client.NewRWMutex(s, "t/orphan-rw")
	e := client.NewElection(s, "t/orphan-election")
	return map[string]heldThing{
		"Mutex":     {m.Lock, m.Unlock, m.Lost, m.LostErr},
		"Semaphore": {func(ctx context.Context) error { return sem.Acquire(ctx, 1) }, sem.Release, sem.Lost, sem.LostErr},
		"RWMutex":   {rw.Lock, rw.Unlock, rw.Lost, rw.LostErr},
		"Election":  {func(ctx context.Context) error { return e.Campaign(ctx, []byte("v")) }, e.Resign, e.Lost, e.LostErr},
	}
}

// TestLostErrAfterOrphan: once the session is orphaned, LostErr of what it
// held agrees with the session's Err (ErrSessionLost, "orphaned"), before
// and after the holder's (deferred) Unlock, Release or Resign, which
// answers the loss: an Orphan is not the holder's own release. The
// release turned LostErr to nil, which a watcher of Lost read as a clean
// release. A clean Unlock still leaves it nil.
func TestLostErrAfterOrphan(t *testing.T) {
	c := fakeClient(t, grantingServer{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	things := heldThings(s)
	for name, h := range things {
		if err := h.take(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Err(); !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "orphaned") {
		t.Fatalf("the session's Err after Orphan: %v", err)
	}
	for name, h := range things {
		<-h.lost()
		if err := h.lostErr(); err != s.Err() {
			t.Errorf("%s: LostErr after Orphan: %v, want the session's Err", name, err)
		}
		if err := h.give(ctx); !errors.Is(err, client.ErrSessionLost) {
			t.Errorf("%s: giving it up after Orphan: %v, want ErrSessionLost", name, err)
		}
		if err := h.lostErr(); err != s.Err() {
			t.Errorf("%s: LostErr after Orphan and the holder's release: %v, want the session's Err", name, err)
		}
	}
}

// TestLostErrAfterACleanUnlock: the holder's own release leaves LostErr
// nil, as before.
func TestLostErrAfterACleanUnlock(t *testing.T) {
	c := fakeClient(t, grantingServer{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := client.NewMutex(s, "t/clean")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lost := m.Lost()
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	<-lost
	if err := m.LostErr(); err != nil {
		t.Fatalf("LostErr after the holder's own Unlock: %v, want nil", err)
	}
}
