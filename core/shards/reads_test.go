package shards

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// st is a listed object.
func st(kind core.Kind, name string) core.Status { return core.Status{Kind: kind, Name: name} }

// keys is a page's objects as "kind/name", in order.
func keys(list []core.Status) string {
	var out []string
	for _, s := range list {
		out = append(out, fmt.Sprintf("%d/%s", s.Kind, s.Name))
	}
	return strings.Join(out, " ")
}

func cursorString(c *Cursor) string {
	if c == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%s", c.Kind, c.Name)
}

func TestListPage(t *testing.T) {
	mutex, sem := core.KindMutex, core.KindSemaphore
	// Three shards' answers, each in core's order (kind, then name).
	parts := [][]core.Status{
		{st(mutex, "b"), st(mutex, "d"), st(sem, "b")},
		{st(mutex, "a"), st(sem, "c")},
		{st(mutex, "secret/x"), st(sem, "e")},
	}
	noSecret := func(name string) bool { return !strings.HasPrefix(name, "secret/") }
	for _, c := range []struct {
		what  string
		after *Cursor
		size  int
		keep  func(string) bool
		want  string // the page's objects
		next  string // its cursor, "-" for none
	}{
		{"all, name then kind", nil, 0, nil, "1/a 1/b 2/b 2/c 1/d 2/e 1/secret/x", "-"},
		{"a page cut: the cursor is its last object", nil, 3, nil, "1/a 1/b 2/b", "2/b"},
		{"a page that ends with the list has no cursor", nil, 7, nil, "1/a 1/b 2/b 2/c 1/d 2/e 1/secret/x", "-"},
		{"after a cursor", &Cursor{Name: "b", Kind: mutex}, 2, nil, "2/b 2/c", "2/c"},
		{"after the last page's cursor", &Cursor{Name: "c", Kind: sem}, 3, nil, "1/d 2/e 1/secret/x", "-"},
		{"a cursor whose object is gone still places the page", &Cursor{Name: "bb", Kind: mutex}, 0, nil, "2/c 1/d 2/e 1/secret/x", "-"},
		{"a cursor past everything", &Cursor{Name: "z", Kind: mutex}, 0, nil, "", "-"},
		{"the filter leaves names out, not pages short", nil, 6, noSecret, "1/a 1/b 2/b 2/c 1/d 2/e", "-"},
		{"a negative size is the maximum", nil, -1, nil, "1/a 1/b 2/b 2/c 1/d 2/e 1/secret/x", "-"},
	} {
		t.Run(c.what, func(t *testing.T) {
			p := ListPage(parts, c.after, c.size, c.keep)
			if got := keys(p.Objects); got != c.want {
				t.Errorf("objects %q, want %q", got, c.want)
			}
			if got := cursorString(p.Next); got != c.next {
				t.Errorf("next %s, want %s", got, c.next)
			}
		})
	}
}

// TestListPageWalk: following Next from the first page lists every object
// once, in order, whatever the page size and the order of the shards.
func TestListPageWalk(t *testing.T) {
	var parts [][]core.Status
	var all []string
	for s := range 3 {
		var part []core.Status
		for i := range 20 {
			name := fmt.Sprintf("jobs/%02d", 3*i+s)
			part = append(part, st(core.KindMutex, name))
			if i%3 == 0 {
				part = append(part, st(core.KindRWLock, name))
			}
		}
		parts = append(parts, part)
	}
	for _, p := range slices.Concat(parts...) {
		all = append(all, fmt.Sprintf("%d/%s", p.Kind, p.Name))
	}
	slices.SortFunc(all, func(a, b string) int {
		an, bn := a[strings.Index(a, "/")+1:], b[strings.Index(b, "/")+1:]
		if c := strings.Compare(an, bn); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, size := range []int{1, 7, len(all) - 1, len(all), MaxPage} {
		for _, order := range [][]int{{0, 1, 2}, {2, 0, 1}} {
			shuffled := [][]core.Status{parts[order[0]], parts[order[1]], parts[order[2]]}
			var got []string
			var after *Cursor
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("size %d: more pages than objects", size)
				}
				p := ListPage(shuffled, after, size, nil)
				if len(p.Objects) > size {
					t.Fatalf("size %d: a page of %d", size, len(p.Objects))
				}
				got = append(got, strings.Fields(keys(p.Objects))...)
				if p.Next == nil {
					break
				}
				after = p.Next
			}
			if !slices.Equal(got, all) {
				t.Fatalf("size %d, shards in order %v: walked\n%v\nwant\n%v", size, order, got, all)
			}
		}
	}
}

func TestListPageSizeBound(t *testing.T) {
	var part []core.Status
	for i := range MaxPage + 5 {
		part = append(part, st(core.KindMutex, fmt.Sprintf("n%05d", i)))
	}
	for _, size := range []int{0, MaxPage + 1, 1 << 30} {
		p := ListPage([][]core.Status{part}, nil, size, nil)
		if len(p.Objects) != MaxPage || p.Next == nil || p.Next.Name != fmt.Sprintf("n%05d", MaxPage-1) {
			t.Errorf("size %d: %d objects, next %s; want %d and a cursor at the last", size, len(p.Objects), cursorString(p.Next), MaxPage)
		}
	}
}

func ref(kind core.Kind, name string, token core.FencingToken) core.ObjectRef {
	return core.ObjectRef{Kind: kind, Name: name, Token: token}
}

func wait(kind core.Kind, name string, w core.WaiterID) core.ObjectRef {
	return core.ObjectRef{Kind: kind, Name: name, Waiter: w}
}

func refs(list []core.ObjectRef) string {
	var out []string
	for _, r := range list {
		out = append(out, fmt.Sprintf("%d/%s#%d", r.Kind, r.Name, r.Token+core.FencingToken(r.Waiter)))
	}
	return strings.Join(out, " ")
}

func TestSession(t *testing.T) {
	mutex, sem := core.KindMutex, core.KindSemaphore
	lease := func(shard uint64, deadline core.LogTime, holds, waits []core.ObjectRef) SessionRead {
		return SessionRead{Shard: shard, Info: core.SessionInfo{ID: 7, TTLMs: 10_000, Owner: "w1",
			CreatedAt: 100 + core.LogTime(shard), Deadline: deadline, Holds: holds, Waits: waits}}
	}
	gone := func(shard uint64) SessionRead {
		return SessionRead{Shard: shard, Err: &core.Error{Code: core.CodeNotFound, Msg: fmt.Sprintf("session 7 is gone in shard %d", shard)}}
	}
	// One shard: core's order (grant order), not name order.
	one := lease(0, 900, []core.ObjectRef{ref(mutex, "z", 5), ref(mutex, "a", 6)}, []core.ObjectRef{wait(sem, "q", 9), wait(mutex, "b", 3)})
	for _, c := range []struct {
		what     string
		reads    []SessionRead
		err      string // the error's message, "" for none
		deadline core.LogTime
		created  core.LogTime
		holds    string
		waits    string
	}{
		{"one shard keeps core's order", []SessionRead{one}, "", 900, 100, "1/z#5 1/a#6", "2/q#9 1/b#3"},
		{"several: name order, shard 0's lease, the earliest deadline", []SessionRead{
			lease(2, 850, []core.ObjectRef{ref(mutex, "c", 4)}, nil),
			lease(0, 900, []core.ObjectRef{ref(mutex, "d", 9), ref(sem, "b", 2)}, []core.ObjectRef{wait(mutex, "e", 1)}),
			lease(1, 950, []core.ObjectRef{ref(sem, "a", 3), ref(mutex, "b", 7), ref(sem, "a", 8)}, []core.ObjectRef{wait(mutex, "a", 1)}),
		}, "", 850, 100, "2/a#3 2/a#8 1/b#7 2/b#2 1/c#4 1/d#9", "1/a#1 1/e#1"},
		{"gone in one shard: lost, that shard's error", []SessionRead{
			lease(0, 900, nil, nil), gone(2), lease(1, 900, nil, nil),
		}, "session 7 is gone in shard 2", 0, 0, "", ""},
		{"gone in two: the lowest shard's error", []SessionRead{
			gone(2), lease(0, 900, nil, nil), gone(1),
		}, "session 7 is gone in shard 1", 0, 0, "", ""},
		{"no reads", nil, "a session read of no shard", 0, 0, "", ""},
	} {
		t.Run(c.what, func(t *testing.T) {
			info, err := Session(c.reads)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.ID != 7 || info.Owner != "w1" || info.TTLMs != 10_000 || info.Deadline != c.deadline || info.CreatedAt != c.created {
				t.Errorf("lease %+v, want id 7, owner w1, ttl 10000, deadline %d, created %d", info, c.deadline, c.created)
			}
			if got := refs(info.Holds); got != c.holds {
				t.Errorf("holds %q, want %q", got, c.holds)
			}
			if got := refs(info.Waits); got != c.waits {
				t.Errorf("waits %q, want %q", got, c.waits)
			}
		})
	}
	// The merge must not change what the reads hold.
	if refs(one.Info.Holds) != "1/z#5 1/a#6" {
		t.Errorf("Session changed its input: %s", refs(one.Info.Holds))
	}
	var ce *core.Error
	if _, err := Session([]SessionRead{gone(0)}); !errors.As(err, &ce) || ce.Code != core.CodeNotFound {
		t.Errorf("gone: %v, want core's not_found as is", err)
	}
}

func TestOwnsOnlyIn(t *testing.T) {
	held := func(shard uint64, n int) SessionRead {
		r := SessionRead{Shard: shard, Info: core.SessionInfo{ID: 7}}
		for i := range n {
			r.Info.Holds = append(r.Info.Holds, ref(core.KindMutex, fmt.Sprint(i), 1))
		}
		return r
	}
	waiting := SessionRead{Shard: 2, Info: core.SessionInfo{ID: 7, Waits: []core.ObjectRef{wait(core.KindMutex, "x", 1)}}}
	gone := SessionRead{Shard: 2, Err: &core.Error{Code: core.CodeNotFound}, Info: core.SessionInfo{Holds: []core.ObjectRef{ref(core.KindMutex, "ignored", 1)}}}
	for _, c := range []struct {
		what  string
		home  uint64
		reads []SessionRead
		want  bool
	}{
		{"holds in home only", 1, []SessionRead{held(0, 0), held(1, 3), held(2, 0)}, true},
		{"a hold elsewhere", 1, []SessionRead{held(0, 1), held(1, 1), held(2, 0)}, false},
		{"a wait elsewhere", 0, []SessionRead{held(0, 1), held(1, 0), waiting}, false},
		{"gone elsewhere holds nothing there", 0, []SessionRead{held(0, 1), held(1, 0), gone}, true},
		{"one shard", 0, []SessionRead{held(0, 2)}, true},
	} {
		if got := OwnsOnlyIn(c.home, c.reads); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}

// sessionPart is what core's Sessions answers for a shard holding ids
// (ascending): those above after, at most limit, and whether it cut.
func sessionPart(ids []core.SessionID, after core.SessionID, limit int, lease func(shard int, id core.SessionID) core.SessionSummary, shard int) SessionPart {
	var p SessionPart
	for _, id := range ids {
		if id <= after {
			continue
		}
		if len(p.Sessions) == limit {
			p.More = true
			break
		}
		p.Sessions = append(p.Sessions, lease(shard, id))
	}
	return p
}

// TestSessionPage: a session of several shards is listed once, with shard
// 0's lease, the earliest deadline and its holds and waits summed; one
// missing in a shard is lost and left out, as Session answers it; and
// pages of any size walk every session every shard has exactly once, in
// id order, whichever shard cut its part first.
func TestSessionPage(t *testing.T) {
	lease := func(shard int, id core.SessionID) core.SessionSummary {
		return core.SessionSummary{ID: id, Owner: fmt.Sprintf("o%d", id), TTLMs: 1000, CreatedAt: 5,
			Deadline: core.LogTime(100*int(id) - shard), Holds: shard + 1, Waits: 2 * shard}
	}
	t.Run("merge", func(t *testing.T) {
		parts := []SessionPart{
			sessionPart([]core.SessionID{1, 2, 3}, 0, 10, lease, 0),
			sessionPart([]core.SessionID{1, 3}, 0, 10, lease, 1),
			sessionPart([]core.SessionID{1, 2, 3}, 0, 10, lease, 2),
		}
		p := SessionPage(parts, 0)
		if len(p.Sessions) != 2 || p.Next != 0 {
			t.Fatalf("page %+v, want sessions 1 and 3 (2 is lost in shard 1) and no next", p)
		}
		s := p.Sessions[0]
		want := core.SessionSummary{ID: 1, Owner: "o1", TTLMs: 1000, CreatedAt: 5, Deadline: 100 - 2, Holds: 1 + 2 + 3, Waits: 0 + 2 + 4}
		if s != want {
			t.Fatalf("merged session 1: %+v, want %+v", s, want)
		}
		// What Session answers for the lost one: not_found, so the list
		// leaves it out rather than show what a read of it denies.
		_, err := Session([]SessionRead{{Shard: 0, Info: core.SessionInfo{ID: 2}},
			{Shard: 1, Err: &core.Error{Code: core.CodeNotFound, Msg: "gone"}}})
		if err == nil {
			t.Fatal("Session of a session lost in shard 1 answered it")
		}
	})
	t.Run("walk", func(t *testing.T) {
		// Shard 1 lost 4 and 5, shard 2 lost 9: a page's end is the
		// lowest id a cut part speaks for.
		shardIDs := [][]core.SessionID{
			{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
			{1, 2, 3, 6, 7, 8, 9, 10, 11, 12},
			{1, 2, 3, 4, 5, 6, 7, 8, 10, 11},
		}
		want := []core.SessionID{1, 2, 3, 6, 7, 8, 10, 11}
		for size := 1; size <= 12; size++ {
			var got []core.SessionID
			var after core.SessionID
			pages := 0
			for ; pages < 50; pages++ {
				parts := make([]SessionPart, len(shardIDs))
				for i, ids := range shardIDs {
					parts[i] = sessionPart(ids, after, size+1, lease, i)
				}
				p := SessionPage(parts, size)
				if len(p.Sessions) > size {
					t.Fatalf("size %d: a page of %d", size, len(p.Sessions))
				}
				for _, s := range p.Sessions {
					got = append(got, s.ID)
				}
				if p.Next == 0 {
					break
				}
				if p.Next <= after {
					t.Fatalf("size %d: next %d does not move past %d", size, p.Next, after)
				}
				after = p.Next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("size %d: walked %v in %d pages, want %v", size, got, pages+1, want)
			}
		}
	})
	t.Run("size bound", func(t *testing.T) {
		var ids []core.SessionID
		for id := core.SessionID(1); id <= MaxPage+5; id++ {
			ids = append(ids, id)
		}
		for _, size := range []int{0, -1, MaxPage + 1} {
			p := SessionPage([]SessionPart{sessionPart(ids, 0, MaxPage+1, lease, 0)}, size)
			if len(p.Sessions) != MaxPage || p.Next != MaxPage {
				t.Fatalf("size %d: %d sessions, next %d; want MaxPage (%d) and next %d", size, len(p.Sessions), p.Next, MaxPage, MaxPage)
			}
		}
	})
}
