package client_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestListSessions: ListSessions pages through the live sessions in id
// order, with each one's owner, lease and the counts of its holds and
// waits; an owner prefix keeps the caller's own; a closed session leaves
// the list; and a bad page size or token is ErrInvalid.
func TestListSessions(t *testing.T) {
	ctx := testCtx(t)
	c := newClient(t)
	defer c.Close(ctx)
	prefix := fmt.Sprintf("t/list-%d/", time.Now().UnixNano())
	var want []uint64
	var sessions []*client.Session
	for i := range 3 {
		s := newSession(t, c, client.WithOwner(fmt.Sprintf("%sw%d", prefix, i)))
		want = append(want, s.ID())
		sessions = append(sessions, s)
	}
	if err := client.NewMutex(sessions[0], prefix+"m").Lock(ctx); err != nil {
		t.Fatal(err)
	}
	walk := func() (got []*client.SessionSummary, pages int) {
		token := ""
		for pages = 1; pages <= 10; pages++ {
			page, next, err := c.ListSessions(ctx, client.SessionQuery{OwnerPrefix: prefix, PageSize: 1, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if next == "" {
				return got, pages
			}
			token = next
		}
		t.Fatal("more than 10 pages")
		return nil, 0
	}
	got, pages := walk()
	var ids []uint64
	for _, s := range got {
		ids = append(ids, s.SessionId)
	}
	if !slices.Equal(ids, want) || pages != 3 {
		t.Fatalf("pages of one: %v in %d pages, want %v in 3", ids, pages, want)
	}
	if s := got[0]; s.Owner != prefix+"w0" || s.HoldCount != 1 || s.WaitCount != 0 || s.TtlMs <= 0 || s.ExpiresAtMs <= s.CreatedAtMs {
		t.Fatalf("the first session: %+v, want its owner, lease and one hold", s)
	}
	if err := sessions[1].Close(ctx); err != nil {
		t.Fatal(err)
	}
	page, next, err := c.ListSessions(ctx, client.SessionQuery{OwnerPrefix: prefix, Stale: true})
	if err != nil || next != "" || len(page) != 2 || page[0].SessionId != want[0] || page[1].SessionId != want[2] {
		t.Fatalf("after closing the second: %v %q %v, want the first and the third", page, next, err)
	}
	if _, _, err := c.ListSessions(ctx, client.SessionQuery{PageToken: "bogus"}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a bad token: %v, want ErrInvalid", err)
	}
	if _, _, err := c.ListSessions(ctx, client.SessionQuery{PageSize: -1}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("a negative page size: %v, want ErrInvalid", err)
	}
}
