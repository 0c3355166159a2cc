package core

import (
	"slices"
	"strings"
	"testing"
)

// TestSessionsPagesInIDOrder: Sessions lists sessions in id order from a
// cursor, with their lease and how many holds and waits they have; pages
// of two walk every session once; a filter costs the sessions it keeps no
// place; and a limit of 0, or above MaxListResults, is MaxListResults, so
// no read answers more than that however many sessions there are.
func TestSessionsPagesInIDOrder(t *testing.T) {
	h := newTblHarness(t, func(l *Limits) { l.MaxListResults = 3 })
	m, l, apply := h.m, h.m.limits, h.ok
	var ids []SessionID
	owners := map[SessionID]string{}
	for i, owner := range []string{"web-1", "batch-1", "web-2", "batch-2", "web-3", "auto:web-4", "batch-3"} {
		id := apply(Command{Op: OpSessionCreate, TTLMs: int64(10_000 * (i + 1)), Owner: owner}).Session
		ids = append(ids, id)
		owners[id] = owner
	}
	// The first session holds two mutexes and waits for one of them in
	// the second: counts, not lists.
	apply(Command{Op: OpAcquire, Kind: KindMutex, Name: "a", Session: ids[0]})
	apply(Command{Op: OpAcquire, Kind: KindMutex, Name: "b", Session: ids[0]})
	apply(Command{Op: OpAcquire, Kind: KindMutex, Name: "a", Session: ids[1], WaitMs: 60_000})

	walk := func(keep func(string) bool, limit int) (got []SessionID, pages int) {
		var after SessionID
		for pages = 1; pages <= len(ids)+1; pages++ {
			list, more := m.Sessions(SessionQuery{After: after, Keep: keep, Limit: limit})
			if len(list) > min(limit, l.MaxListResults) && limit > 0 {
				t.Fatalf("a page of %d sessions for limit %d", len(list), limit)
			}
			for _, s := range list {
				got = append(got, s.ID)
			}
			if !more {
				return got, pages
			}
			after = list[len(list)-1].ID
		}
		t.Fatalf("more than %d pages", len(ids)+1)
		return nil, 0
	}
	if got, pages := walk(nil, 2); !slices.Equal(got, ids) || pages != 4 {
		t.Fatalf("pages of 2: %v in %d pages, want %v in 4", got, pages, ids)
	}
	web := func(owner string) bool { return strings.HasPrefix(owner, "web-") }
	var wantWeb []SessionID
	for _, id := range ids {
		if web(owners[id]) {
			wantWeb = append(wantWeb, id)
		}
	}
	if got, pages := walk(web, 2); !slices.Equal(got, wantWeb) || pages != 2 {
		t.Fatalf("filtered pages of 2: %v in %d pages, want %v in 2 (the filter costs no place)", got, pages, wantWeb)
	}
	for _, limit := range []int{0, 4, 1 << 30} {
		list, more := m.Sessions(SessionQuery{Limit: limit})
		if len(list) != l.MaxListResults || !more {
			t.Fatalf("limit %d: %d sessions, more %v; want MaxListResults (%d) and more", limit, len(list), more, l.MaxListResults)
		}
	}
	list, _ := m.Sessions(SessionQuery{Limit: 2})
	first, second := list[0], list[1]
	if first.ID != ids[0] || first.Owner != "web-1" || first.TTLMs != 10_000 || first.Holds != 2 || first.Waits != 0 ||
		first.CreatedAt == 0 || first.Deadline != first.CreatedAt+LogTime(first.TTLMs) {
		t.Fatalf("first session: %+v, want web-1's lease, 2 holds, no waits", first)
	}
	if second.Holds != 0 || second.Waits != 1 {
		t.Fatalf("second session: %+v, want 1 wait, no holds", second)
	}
	if list, more := m.Sessions(SessionQuery{After: ids[len(ids)-1]}); len(list) != 0 || more {
		t.Fatalf("after the last session: %v, more %v; want nothing", list, more)
	}
}
