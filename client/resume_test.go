package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestOrphanAndResume: a session given up with Orphan keeps what it holds
// on the servers, and a ResumeSession in another Client takes it over:
// its Lock of the held name answers the same grant, and its Close
// releases it (etcd's Session.Orphan and concurrency.WithLease). There was
// no way to hand a session over: a process that restarted lost its locks
// to the TTL, or held them unknown to itself.
func TestOrphanAndResume(t *testing.T) {
	ctx := testCtx(t)
	first := newClient(t)
	defer first.Close(ctx)
	s := newSession(t, first)
	m := client.NewMutex(s, "t/resume")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	s.Orphan()
	select {
	case <-s.Done():
	default:
		t.Fatal("Done open after Orphan")
	}
	if !errors.Is(s.Err(), client.ErrSessionLost) {
		t.Fatalf("Err after Orphan: %v, want ErrSessionLost", s.Err())
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close after Orphan: %v, want nil (nothing sent)", err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	second := newClient(t)
	defer second.Close(ctx)
	st, err := second.Status(ctx, client.KindMutex, "t/resume")
	if err != nil || len(st.Holders) != 1 || st.Holders[0].SessionId != s.ID() {
		t.Fatalf("after Orphan and the first Client's Close: %+v %v, want session %d still holding", st, err, s.ID())
	}

	r, err := second.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	if r.ID() != s.ID() || r.TTL() != s.TTL() {
		t.Fatalf("resumed session %d with TTL %v, want %d with %v", r.ID(), r.TTL(), s.ID(), s.TTL())
	}
	again := client.NewMutex(r, "t/resume")
	if err := again.TryLock(ctx); err != nil || again.Token() != token {
		t.Fatalf("TryLock of the held name on the resumed session: %v, token %d; want the grant it held, token %d", err, again.Token(), token)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := second.Status(ctx, client.KindMutex, "t/resume"); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after the resumed session's Close: %+v %v, want the name free", st, err)
	}

	// Gone on the servers, and asked wrong.
	if _, err := second.ResumeSession(ctx, s.ID()); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("ResumeSession of a closed session: %v, want ErrSessionLost", err)
	}
	if _, err := second.ResumeSession(ctx, s.ID(), client.WithTTL(s.TTL())); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("ResumeSession with WithTTL: %v, want ErrInvalid", err)
	}
	if _, err := second.ResumeSession(ctx, 0); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("ResumeSession(0): %v, want ErrInvalid", err)
	}
}

// TestResumedSessionIsKeptAlive: the resumed session is renewed from then
// on: it outlives its TTL, holding what it held.
func TestResumedSessionIsKeptAlive(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	s, err := c.NewSession(ctx, client.WithTTL(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(s, "t/resume-kept").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s.Orphan()
	r, err := c.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	time.Sleep(3 * time.Second) // past the TTL: only the resumed session's renewals keep it
	if err := r.Err(); err != nil {
		t.Fatalf("the resumed session after 1.5 TTLs: %v", err)
	}
	st, err := c.Status(ctx, client.KindMutex, "t/resume-kept")
	if err != nil || len(st.Holders) != 1 || st.Holders[0].SessionId != s.ID() {
		t.Fatalf("after 1.5 TTLs on the resumed session: %+v %v, want session %d holding", st, err, s.ID())
	}
}
