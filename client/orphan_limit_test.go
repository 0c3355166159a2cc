package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// A resource_exhausted answer to a release says only that that copy was
// not applied, nothing of an earlier copy of unknown outcome still on its
// way: Orphan must not take it for settled (it did, handed over, and the
// late release landed on the grant the successor held).
func TestOrphanLimitRefusalDoesNotSettleALateRelease(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	var limiting atomic.Bool
	c := releaseLimiter(t, p.URL(), "client has 64 requests pending at or above lowest_pending_seq",
		func(int64) bool { return limiting.Load() })
	ctx := testCtx(t)
	const name = "t/review-orphan-limit"
	s := newSession(t, c)
	m := client.NewMutex(s, name)
	token := p.lockThenHoldTheRelease(ctx, m)
	// Orphan's resend meets a limit of the servers.
	limiting.Store(true)
	octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
	defer ocancel()
	if err := s.Orphan(octx); err == nil {
		// Handed over: show the consequence.
		limiting.Store(false)
		succ, tm, got := successorThenThird(t, ctx, s.ID(), name, p.release) // the first release, of unknown outcome, lands between
		if got == nil {
			t.Fatalf("two holders: successor holds token %d (old %d), third session took %q with token %d: Orphan took a resend's resource_exhausted for settled while the first release was on its way",
				succ.Token(), token, name, tm.Token())
		}
		t.Fatalf("Orphan answered nil with a release of unknown outcome unsettled (its resend refused by a limit); third TryLock: %v", got)
	}
	p.release()
}

// The same on the first send: an attempt given up as stuck (its copy still
// on its way), then the retry of the same request refused by a limit. The
// Unlock answers ErrLimit, and its outcome stays unknown for Orphan (it
// was taken for "nothing applied", and Orphan handed over at once).
func TestUnlockLimitAfterAStuckAttemptIsNotSettled(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	// Every release after the first (the attempt given up as stuck) meets
	// the limit.
	c := releaseLimiter(t, p.URL(), "principal has 64 streams open on this member",
		func(releases int64) bool { return releases > 1 }, client.WithAttemptTimeout(200*time.Millisecond))
	ctx := testCtx(t)
	const name = "t/review-unlock-limit"
	s := newSession(t, c)
	m := client.NewMutex(s, name)
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	p.holdBackReleases()
	if err := m.Unlock(ctx); !errors.Is(err, client.ErrLimit) {
		p.release()
		t.Skipf("Unlock answered %v, not the limit this test arranges", err)
	}
	octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
	defer ocancel()
	if err := s.Orphan(octx); err != nil {
		p.release()
		return // it kept the release of unknown outcome: as it should
	}
	// The stuck attempt's copy lands between.
	if succ, tm, err := successorThenThird(t, ctx, s.ID(), name, p.release); err == nil {
		t.Fatalf("two holders: successor holds token %d, third session took it with token %d: an Unlock answered ErrLimit after a stuck attempt was taken for settled", succ.Token(), tm.Token())
	}
	t.Fatal("Orphan answered nil after an Unlock whose stuck attempt's outcome is unknown (answered ErrLimit on retry)")
}

// An Orphan waiting for the session's requests must not wake between a
// release's unknown answer and its record (sendAs's endOp ran first, and
// Orphan found nothing to settle and handed over). Stress: an Unlock held
// on its way whose ctx ends while Orphan waits for it; it failed under
// -race in every run before the fix.
func TestOrphanWaitsForTheRecordOfAnUnknownRelease(t *testing.T) {
	needServer(t)
	p := newFaultProxy(t, endpoint)
	defer p.release()
	p.holdBackReleases()
	c := p.unaryClient()
	ctx := testCtx(t)
	for i := 0; i < 60; i++ {
		s := newSession(t, c)
		m := client.NewMutex(s, "t/review-orphan-record-race")
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		before := p.holding.Load()
		unlocked := make(chan error, 1)
		go func() {
			uctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			unlocked <- m.Unlock(uctx)
		}()
		waitFor(t, "the release to be held back", func() bool { return p.holding.Load() > before })
		octx, ocancel := context.WithTimeout(ctx, 250*time.Millisecond)
		oerr := s.Orphan(octx)
		ocancel()
		uerr := <-unlocked
		if oerr == nil && uerr != nil && !errors.Is(uerr, client.ErrNotHeld) {
			t.Fatalf("iteration %d: Orphan answered nil (handed over) while the Unlock it waited for ended with its outcome unknown (%v): the release on its way lands on the successor's grant", i, uerr)
		}
		_ = s.Close(ctx)
	}
}

// successorThenThird shows what a hand-over with a release of unknown
// outcome on its way leads to: a successor resumes session id and takes
// name, then land lets the late release land, and a third session tries
// name for 2 s. It answers the successor's mutex, the third's, and the
// third's last TryLock error: nil when it took name, so that the late
// release ended the successor's grant while the successor was answered
// it: two holders.
func successorThenThird(t *testing.T, ctx context.Context, id uint64, name string, land func()) (succ, third *client.Mutex, err error) {
	t.Helper()
	second := newClient(t)
	t.Cleanup(func() { second.Close(context.Background()) })
	r, err := second.ResumeSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	succ = client.NewMutex(r, name)
	if err := succ.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	land()
	ts := newSession(t, newClient(t))
	t.Cleanup(func() { ts.Close(context.Background()) })
	third = client.NewMutex(ts, name)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = third.TryLock(ctx); err == nil {
			break
		}
	}
	return succ, third, err
}
