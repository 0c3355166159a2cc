package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// orphanBegun waits until Orphan has begun on s, and then checks that s
// refuses a new request, saying why.
func orphanBegun(t *testing.T, ctx context.Context, s *client.Session) {
	t.Helper()
	waitFor(t, "Orphan to begin", func() bool { return client.Orphaning(s) })
	if err := client.NewMutex(s, "t/orphan-probe").TryLock(ctx); !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "orphaned") {
		t.Fatalf("TryLock once Orphan began: %v, want ErrSessionLost saying the session is being orphaned", err)
	}
}

// TestOrphanAndResume: a session given up with Orphan keeps what it holds
// on the servers, through its Client's Close, and a ResumeSession in
// another Client takes it over: its Lock of the held name answers the
// same grant, and its Close releases it (etcd's Session.Orphan and
// concurrency.WithLease). The orphaned value and its Mutex refuse
// everything, saying so.
func TestOrphanAndResume(t *testing.T) {
	ctx := testCtx(t)
	first := newClient(t)
	defer first.Close(ctx)
	s, err := first.NewSession(ctx, client.WithOwner("resumer"))
	if err != nil {
		t.Fatal(err)
	}
	m := client.NewMutex(s, "t/resume")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done open after Orphan")
	}
	select {
	case <-m.Lost():
	default:
		t.Fatal("Lost open after Orphan")
	}
	if err := s.Err(); !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "orphaned") {
		t.Fatalf("Err after Orphan: %v, want ErrSessionLost saying orphaned", err)
	}
	if m.Token() != 0 {
		t.Fatalf("Token after Orphan: %d, want 0", m.Token())
	}
	if err := m.Unlock(ctx); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("Unlock after Orphan: %v, want ErrSessionLost", err)
	}
	if err := client.NewMutex(s, "t/resume-other").TryLock(ctx); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("TryLock after Orphan: %v, want ErrSessionLost", err)
	}
	if err := s.Orphan(ctx); err != nil {
		t.Fatalf("Orphan again: %v, want nil", err)
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
	if r.ID() != s.ID() || r.TTL() != s.TTL() || !strings.HasSuffix(r.Owner(), "resumer") {
		t.Fatalf("resumed session %d, TTL %v, owner %q; want %d, %v, the session's own label", r.ID(), r.TTL(), r.Owner(), s.ID(), s.TTL())
	}
	if _, err := second.ResumeSession(ctx, s.ID()); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("ResumeSession of an id a live value of the Client has: %v, want ErrInvalid", err)
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

// TestResumedReacquireEndsWithTheGrantsMaxHold: a re-acquire on a resumed
// session is answered the grant the session held, made before the resume
// with a max hold of 2 s; when the servers end it and give the name to
// another session, the re-acquiring Mutex's Token is 0, whether it asked
// for no max hold or a longer one. Before, the client counted the max hold
// from the re-acquire's start with the new Mutex's own WithMaxHold, and
// without one not at all: Token answered the old token while another
// session held the name.
func TestResumedReacquireEndsWithTheGrantsMaxHold(t *testing.T) {
	for _, opts := range [][]client.HoldOption{nil, {client.WithMaxHold(time.Minute)}} {
		name := "t/resume-maxhold-" + map[bool]string{true: "none", false: "longer"}[opts == nil]
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			c := newClient(t)
			defer c.Close(ctx)
			s := newSession(t, c)
			if err := client.NewMutex(s, name, client.WithMaxHold(2*time.Second)).Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Orphan(ctx); err != nil {
				t.Fatal(err)
			}
			r, err := c.ResumeSession(ctx, s.ID())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(ctx)
			m := client.NewMutex(r, name, opts...)
			if err := m.TryLock(ctx); err != nil {
				t.Fatal(err)
			}
			token := m.Token()
			if token == 0 {
				t.Fatal("the re-acquired grant answers Token 0 before its max hold")
			}
			// Granted to another session once the servers end the old
			// grant at its max hold.
			other := client.NewMutex(newSession(t, c), name)
			if err := other.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			if got := m.Token(); got != 0 {
				t.Fatalf("Token of the resumed session's grant while another session holds the name: %d (was %d), want 0", got, token)
			}
			<-m.Lost()
		})
	}
}

// TestOrphanLetsAnUnlockInFlightAnswer: an Unlock on its way when Orphan
// is called answers its true outcome (released), and Orphan returns after
// it. Before, Orphan failed it at once ("orphaned") while its release
// still applied.
func TestOrphanLetsAnUnlockInFlightAnswer(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	defer c.Close(context.Background())
	ctx := testCtx(t)
	s := newSession(t, c)
	m := client.NewMutex(s, "t/orphan-unlock")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	p.holdBack(func(path string, body []byte) bool {
		r := &pb.ReleaseLockRequest{}
		return strings.HasSuffix(path, "LockService/Release") && proto.Unmarshal(body, r) == nil && r.Name == "t/orphan-unlock"
	})
	unlocked := make(chan error, 1)
	go func() { unlocked <- m.Unlock(ctx) }()
	waitFor(t, "the Unlock to be held back", func() bool { return p.holding.Load() > 0 })
	orphaned := make(chan error, 1)
	go func() { orphaned <- s.Orphan(ctx) }()
	orphanBegun(t, ctx, s)
	p.release()
	if err := <-unlocked; err != nil {
		t.Fatalf("Unlock in flight during Orphan: %v, want nil (it released)", err)
	}
	if err := <-orphaned; err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, client.KindMutex, "t/orphan-unlock"); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after the Unlock: %+v %v, want the name free", st, err)
	}
}

// TestOrphanWithdrawsABlockedLock: a Lock waiting when Orphan is called
// ends (ErrSessionLost, being orphaned), and its request is withdrawn from
// the servers before Orphan returns: the session waits for nothing, and
// the wait is never granted to the session behind a successor's back.
// Before, Orphan stopped the withdrawal, and the wait stayed queued.
func TestOrphanWithdrawsABlockedLock(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	holder := client.NewMutex(newSession(t, c), "t/orphan-wait")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	s := newSession(t, c)
	locked := make(chan error, 1)
	go func() { locked <- client.NewMutex(s, "t/orphan-wait").Lock(ctx) }()
	waitFor(t, "the Lock to queue", func() bool { ss := onServer(t, s.ID()); return ss != nil && len(ss.Waits) == 1 })
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Waits) != 0 || len(ss.Holds) != 0 {
		t.Fatalf("after Orphan the session is %v, want it alive, waiting for nothing", ss)
	}
	if err := <-locked; !errors.Is(err, client.ErrSessionLost) || !strings.Contains(err.Error(), "orphaned") {
		t.Fatalf("the blocked Lock: %v, want ErrSessionLost saying the session is being orphaned", err)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Status(ctx, client.KindMutex, "t/orphan-wait"); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after the holder's Unlock: %+v %v, want the name free (the orphaned session's wait withdrawn)", st, err)
	}
}

// TestOrphanBoundedByCtx: Orphan waits for a request in flight only as
// long as its ctx: it then answers ctx's error, and the session is still
// kept alive, holding what it holds; a later Orphan finishes.
func TestOrphanBoundedByCtx(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	defer c.Close(context.Background())
	ctx := testCtx(t)
	s := newSession(t, c)
	m := client.NewMutex(s, "t/orphan-bounded")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	p.holdBack(func(path string, body []byte) bool { return strings.HasSuffix(path, "LockService/Release") })
	unlocked := make(chan error, 1)
	go func() { unlocked <- m.Unlock(ctx) }()
	waitFor(t, "the Unlock to be held back", func() bool { return p.holding.Load() > 0 })
	short, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Orphan(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("Orphan with an Unlock held back and its ctx ended: %v, want context.Canceled", err)
	}
	if s.Err() != nil {
		t.Fatalf("the session after an Orphan that did not finish: %v, want it alive", s.Err())
	}
	p.release()
	if err := <-unlocked; err != nil {
		t.Fatal(err)
	}
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	if ss := onServer(t, s.ID()); ss == nil {
		t.Fatal("the orphaned session is gone on the servers")
	}
}

// TestTwoValuesOfOneIDInOneClient: a session lost on the client's side
// (its lease ran out unrenewed) that the servers still have is resumed in
// the same Client; the old value leaving the shared streams, as its Close
// does, leaves the new value's route of the id's pushed loss in place.
// Before, it deleted the route by id, and the new value missed its loss.
func TestTwoValuesOfOneIDInOneClient(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	s := newSession(t, c)
	if err := client.NewMutex(s, "t/two-values").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	client.LoseHere(s)
	r, err := c.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if err := client.NewMutex(r, "t/two-values").TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if !client.Routed(r) {
		t.Fatal("the resumed value is not routed on the shared stream after a request")
	}
	client.LeaveStreams(s)
	if !client.Routed(r) {
		t.Fatal("the old value leaving the shared streams took the resumed value's route")
	}
}

// TestOrphanWaitsForAWithdrawalInFlight: the withdrawal of a Lock that
// timed out before Orphan (held back on its way) is waited for: Orphan
// with an ended ctx answers ctx's error and leaves the session alive, its
// wait still queued; once the withdrawal lands, Orphan finishes and the
// session waits for nothing. Before, Orphan stopped the withdrawal, and a
// wait it had not settled could be granted to the session after a
// ResumeSession, unknown to the successor (or a late withdrawal release
// the successor's grant).
func TestOrphanWaitsForAWithdrawalInFlight(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := newClient(t, p.URL())
	defer c.Close(context.Background())
	ctx := testCtx(t)
	holder := client.NewMutex(newSession(t, c), "t/orphan-withdrawal")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	p.holdBack(func(path string, body []byte) bool { return strings.HasSuffix(path, "SessionService/Abandon") })
	s := newSession(t, c)
	lctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := client.NewMutex(s, "t/orphan-withdrawal").Lock(lctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held name with a short ctx: %v, want DeadlineExceeded", err)
	}
	waitFor(t, "the withdrawal to be held back", func() bool { return p.holding.Load() > 0 })
	ended, stop := context.WithCancel(ctx)
	stop()
	if err := s.Orphan(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Orphan with the withdrawal held back and its ctx ended: %v, want context.Canceled", err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("the session after an Orphan that did not finish: %v, want it alive", err)
	}
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Waits) != 1 {
		t.Fatalf("with the withdrawal held back the session is %v, want it waiting still", ss)
	}
	p.release()
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	if ss := onServer(t, s.ID()); ss == nil || len(ss.Waits) != 0 || len(ss.Holds) != 0 {
		t.Fatalf("after Orphan the session is %v, want it alive, waiting for nothing", ss)
	}
}

// TestResumedSessionsFreshBoundedGrant: a new grant with WithMaxHold on a
// resumed session, counted only from its log time, has its deadline placed
// by the keepalive answer Lock waits for: Lock does not answer a grant
// whose Token is 0.
func TestResumedSessionsFreshBoundedGrant(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	s := newSession(t, c)
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	for _, m := range []interface {
		Token() uint64
		Lost() <-chan struct{}
	}{client.NewMutex(r, "t/resume-fresh", client.WithMaxHold(time.Minute)), client.NewRWMutex(r, "t/resume-fresh", client.WithMaxHold(time.Minute))} {
		var err error
		switch m := m.(type) {
		case *client.Mutex:
			err = m.Lock(ctx)
		case *client.RWMutex:
			err = m.RLock(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Token() == 0 {
			t.Fatalf("%T: Token 0 right after a grant with a minute's max hold on a resumed session", m)
		}
		select {
		case <-m.Lost():
			t.Fatalf("%T: Lost closed right after the grant", m)
		default:
		}
	}
}

// TestResumedCampaignProclaimsItsValue: a process that resumes a session
// leading an election and campaigns with its new address is answered the
// leadership it had, token and all, and the election then advertises the
// new address: observers see a VALUE_CHANGED of that leadership, as for a
// Proclaim (etcd's Campaign of a session that campaigns again). Before
// (rules 3), the campaign kept the old value and readers saw a stale
// address.
func TestResumedCampaignProclaimsItsValue(t *testing.T) {
	ctx := testCtx(t)
	const name = "t/resume-elect"
	first := newClient(t)
	defer first.Close(ctx)
	s, err := first.NewSession(ctx, client.WithOwner("resumer"))
	if err != nil {
		t.Fatal(err)
	}
	e := client.NewElection(s, name)
	if err := e.Campaign(ctx, []byte("10.0.0.1:80")); err != nil {
		t.Fatal(err)
	}
	token := e.Token()
	if err := s.Orphan(ctx); err != nil {
		t.Fatal(err)
	}

	second := newClient(t)
	defer second.Close(ctx)
	octx, stop := context.WithCancel(ctx)
	defer stop()
	obs := second.Observe(octx, name)
	if l := <-obs; l.Err != nil || l.FencingToken != token || string(l.Value) != "10.0.0.1:80" {
		t.Fatalf("first observation %+v, want token %d with the old address", l, token)
	}
	r, err := second.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	again := client.NewElection(r, name)
	if err := again.Campaign(ctx, []byte("10.0.0.2:80")); err != nil || again.Token() != token {
		t.Fatalf("Campaign on the resumed session: %v, token %d; want the leadership it had, token %d", err, again.Token(), token)
	}
	if l, err := second.Leader(ctx, name); err != nil || l.FencingToken != token || string(l.Value) != "10.0.0.2:80" {
		t.Fatalf("leader after the resumed Campaign: %+v %v, want token %d with the new address", l, err, token)
	}
	if l := <-obs; l.Err != nil || l.Event != pb.EventType_EVENT_TYPE_VALUE_CHANGED || l.FencingToken != token || string(l.Value) != "10.0.0.2:80" {
		t.Fatalf("observed %+v, want a VALUE_CHANGED of token %d to the new address", l, token)
	}
}

// An Unlock whose ctx ended while its release was on its way (held back
// here, as by a slow leader change) has an unknown outcome, and the
// release may still land, on the grant a successor is answered after
// ResumeSession: two holders. So Orphan sends such a release again until
// the servers answer it, and does not hand over before: here it cannot
// (the proxy holds every release back) and says so, and once the releases
// pass, a second Orphan settles it and the successor is answered a new
// grant, which no late release can end.
func TestOrphanSettlesAReleaseOfUnknownOutcome(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	c := p.unaryClient()
	ctx := testCtx(t)
	const name = "t/review-orphan-release"
	s := newSession(t, c)
	m := client.NewMutex(s, name)
	token := p.lockThenHoldTheRelease(ctx, m)

	octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
	defer ocancel()
	if err := s.Orphan(octx); err == nil || !strings.Contains(err.Error(), "unknown outcome") {
		t.Fatalf("Orphan with a release of unknown outcome that cannot pass answered %v, want a refusal to hand over", err)
	}
	p.release() // the held-back releases land now, and the next pass
	if err := s.Orphan(ctx); err != nil {
		t.Fatalf("Orphan again once releases pass: %v", err)
	}
	second := newClient(t)
	defer second.Close(ctx)
	r, err := second.ResumeSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	again := client.NewMutex(r, name)
	if err := again.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if again.Token() == token || again.Token() == 0 {
		t.Fatalf("the successor's re-acquire answered token %d; the old grant (%d) was released before the hand-over, so want a new one", again.Token(), token)
	}
}
