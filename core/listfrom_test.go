package core

import (
	"slices"
	"testing"
)

// TestListFromPagesPastTheLimit: ListFrom lists in name-then-kind order
// from a cursor, so pages of two walk every object even when a shard holds
// more than MaxListResults of them (List's first MaxListResults, in kind
// order, hid the rest from every cursor); and a read filter costs the names
// it keeps no place.
func TestListFromPagesPastTheLimit(t *testing.T) {
	l := DefaultLimits()
	l.MaxListResults = 3
	m, err := New(l)
	if err != nil {
		t.Fatal(err)
	}
	index := uint64(0)
	apply := func(c Command) Result {
		index++
		r := m.Apply(Entry{Index: index, Proposal: Proposal{Time: LogTime(1000 * index), Commands: []Command{c}}}).Results[0]
		if r.Err != nil {
			t.Fatalf("%+v: %v", c, r.Err)
		}
		return r
	}
	s := apply(Command{Op: OpSessionCreate, TTLMs: 60_000}).Session
	type key struct {
		name string
		kind Kind
	}
	var want []key
	for _, name := range []string{"p/e", "p/a", "p/d", "p/b", "p/c", "q/x"} {
		apply(Command{Op: OpAcquire, Kind: KindMutex, Name: name, Session: s})
		apply(Command{Op: OpAcquire, Kind: KindSemaphore, Name: name, Session: s, Limit: 2, Permits: 1})
		if name != "q/x" {
			want = append(want, key{name, KindMutex}, key{name, KindSemaphore})
		}
	}
	slices.SortFunc(want, func(a, b key) int {
		if a.name != b.name {
			if a.name < b.name {
				return -1
			}
			return 1
		}
		return int(a.kind) - int(b.kind)
	})
	var got []key
	q := ListQuery{Prefix: "p/", Limit: 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the pages never end")
		}
		page, more, err := m.ListFrom(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range page {
			got = append(got, key{st.Name, st.Kind})
		}
		if !more {
			break
		}
		last := page[len(page)-1]
		q.After, q.AfterName, q.AfterKind = true, last.Name, last.Kind
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages walked %v, want %v", got, want)
	}
	// Keep: only p/d's two objects, the first and only page, though three
	// objects come before them.
	page, more, err := m.ListFrom(ListQuery{Prefix: "p/", Keep: func(n string) bool { return n == "p/d" }, Limit: 2})
	if err != nil || more || len(page) != 2 || page[0].Name != "p/d" || page[1].Name != "p/d" {
		t.Fatalf("kept p/d: %+v, more %v, %v", page, more, err)
	}
	if _, _, err := m.ListFrom(ListQuery{Kind: 99}); err == nil {
		t.Fatal("an unknown kind was listed")
	}
}
