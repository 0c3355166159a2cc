package client_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// releaseAsAnother releases name's grant token as another client of the
// same principal may, over REST or Connect: by the holder's owner label
// and the token, naming no session.
func releaseAsAnother(t *testing.T, ctx context.Context, name, owner string, token uint64) {
	t.Helper()
	locks := lockstepv1connect.NewLockServiceClient(http.DefaultClient, endpoint)
	r, err := locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: name, Owner: owner, FencingToken: token}))
	if err != nil || !r.Msg.Released {
		t.Fatalf("another caller's release of %q token %d: %v %v", name, token, r, err)
	}
}

// TestLostClosesWhenAnotherReleasesTheGrant: another caller's release of a
// Mutex's grant by its token (the user trial: a REST release by owner
// label and token) ends the grant here as a release would: Lost closes at
// once (the servers push it on the session's stream), Token answers 0,
// LostErr says another caller released it, naming the token, Unlock
// answers ErrNotHeld, and the session's gate of the name is let go, so
// another value on the session takes the name at once. The session lives
// on. With every session on its own stream (WithStreamPerSession) too.
func TestLostClosesWhenAnotherReleasesTheGrant(t *testing.T) {
	for _, perSession := range []bool{false, true} {
		t.Run("per-session="+strconv.FormatBool(perSession), func(t *testing.T) {
			needServer(t)
			var opts []client.Option
			if perSession {
				opts = append(opts, client.WithStreamPerSession())
			}
			c, err := client.New([]string{endpoint}, append(opts, client.WithRetryTimeout(5*time.Second))...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(context.Background()) })
			ctx := testCtx(t)
			name := "t/released-by-another-" + strconv.FormatBool(perSession)
			owner := "trial-" + strconv.FormatBool(perSession)
			s := newSession(t, c, client.WithOwner(owner))
			m := client.NewMutex(s, name)
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			token, lost := m.Token(), m.Lost()
			if m.LostErr() != nil {
				t.Fatalf("LostErr %v while held", m.LostErr())
			}
			releaseAsAnother(t, ctx, name, owner, token)
			if !closedWithin(lost, 3*time.Second) {
				t.Fatalf("Lost open 3 s after another caller released the grant (Token %d)", m.Token())
			}
			if m.Token() != 0 {
				t.Fatalf("Token %d after another caller released the grant, want 0", m.Token())
			}
			why := m.LostErr()
			if !errors.Is(why, client.ErrReleasedByAnother) || !errors.Is(why, client.ErrNotHeld) ||
				!strings.Contains(why.Error(), "token "+strconv.FormatUint(token, 10)) {
				t.Fatalf("LostErr %v: want ErrReleasedByAnother and ErrNotHeld, naming token %d", why, token)
			}
			if s.Err() != nil {
				t.Fatalf("the session was lost: %v", s.Err())
			}
			if err := m.Unlock(ctx); !errors.Is(err, client.ErrNotHeld) {
				t.Fatalf("Unlock after another's release: %v, want ErrNotHeld", err)
			}
			// The gate is free: another value on the session takes the name.
			other := client.NewMutex(s, name)
			if err := other.TryLock(ctx); err != nil {
				t.Fatalf("another value's TryLock on the session after the push: %v", err)
			}
			if other.Token() <= token {
				t.Fatalf("the new grant's token %d is not past %d", other.Token(), token)
			}
			if err := other.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOwnUnlockWhenItsPushComesFirst: the servers push the end of every
// grant of a session while it lives, its own releases too, and the push
// may reach the client before the release's answer. Unlock then answers
// nil, not an error; Lost closes and LostErr stays nil (it was this
// value's release, not another caller's); the gate is let go once, so a
// second value takes the name and a third waits for it.
func TestOwnUnlockWhenItsPushComesFirst(t *testing.T) {
	c := newClient(t)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	ctx := testCtx(t)
	s := newSession(t, c)
	const name = "t/own-unlock-pushed-first"
	for i := range 3 {
		m := client.NewMutex(s, name)
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		lost := m.Lost()
		if err := client.UnlockPushedFirst(ctx, m); err != nil {
			t.Fatalf("round %d: Unlock with its push handled first: %v", i, err)
		}
		if !closedWithin(lost, time.Second) || m.Token() != 0 {
			t.Fatalf("round %d: after Unlock: Lost closed %v, Token %d", i, closedWithin(lost, 0), m.Token())
		}
		if err := m.LostErr(); err != nil {
			t.Fatalf("round %d: LostErr after its own Unlock: %v", i, err)
		}
		if err := m.Unlock(ctx); !errors.Is(err, client.ErrNotHeld) {
			t.Fatalf("round %d: a second Unlock: %v, want ErrNotHeld", i, err)
		}
	}
	// The gate was let go exactly once each round: one value holds it now,
	// and another waits for it.
	a, b := client.NewMutex(s, name), client.NewMutex(s, name)
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("a second value's TryLock while the first holds: %v, want ErrLocked", err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}
