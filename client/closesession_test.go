package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestCloseSessionByID: an operator's force-release. SessionInfo shows
// what a session holds; CloseSession ends it from another Client, which
// releases its hold at once, and the Client that kept it hears of it.
func TestCloseSessionByID(t *testing.T) {
	ctx := testCtx(t)
	keeper := newClient(t)
	defer keeper.Close(ctx)
	s := newSession(t, keeper)
	if err := client.NewMutex(s, "t/force-release").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	op := newClient(t)
	defer op.Close(ctx)
	info, err := op.SessionInfo(ctx, s.ID())
	if err != nil || len(info.Holds) != 1 || info.Holds[0].Name != "t/force-release" {
		t.Fatalf("SessionInfo: %+v %v, want the one mutex it holds", info, err)
	}
	if err := op.CloseSession(ctx, s.ID()); err != nil {
		t.Fatal(err)
	}
	if st, err := op.Status(ctx, client.KindMutex, "t/force-release"); err != nil || len(st.Holders) != 0 {
		t.Fatalf("after CloseSession: %+v %v, want the name free", st, err)
	}
	select {
	case <-s.Done():
	case <-time.After(s.TTL()):
		t.Fatal("the keeping Client did not hear its session was closed within a TTL")
	}
	if err := op.CloseSession(ctx, s.ID()); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("CloseSession of a closed session: %v, want ErrSessionLost", err)
	}
	if _, err := op.SessionInfo(ctx, s.ID()); !errors.Is(err, client.ErrSessionLost) {
		t.Fatalf("SessionInfo of a closed session: %v, want ErrSessionLost", err)
	}
}
