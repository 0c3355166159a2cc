package shards

import (
	"cmp"
	"slices"
	"strings"

	"github.com/lockstepd/lockstep/core"
)

// Reads across shards. A read of one name reads that name's shard (Of); a
// read of a prefix or of a session reads every shard, and the rules below
// make the shards' answers one answer. Each shard's read is linearizable on
// its own; together they are not one snapshot (an object never moves between
// shards, but a session's holds in two shards may be read at slightly
// different moments). Each shard numbers its own log, so a read spanning
// shards has no one applied index: the API answers shard 0's
// (docs/api.md).

// MaxPage is the most objects one page of a list answers: a page size of 0,
// or above MaxPage, gets MaxPage. It bounds one answer's size and the work
// of building it, whatever the caller asks.
const MaxPage = 1000

// Cursor is where a page of a list ended: the (name, kind) of its last
// object. The next page starts with the first object after it in list
// order, so objects made or removed between pages neither shift a page nor
// repeat one.
type Cursor struct {
	Name string
	Kind core.Kind
}

// Page is one page of a list: its objects in list order, and Next, the
// cursor of the page after it (nil on the last page).
type Page struct {
	Objects []core.Status
	Next    *Cursor
}

// listOrder is the order of every read across shards: by name, then kind.
// Core lists one shard in kind, then name order; the merged list of every
// shard is in name order, so that a prefix's objects read as a tree
// whatever their kinds.
func listOrder(aName string, aKind core.Kind, bName string, bKind core.Kind) int {
	return cmp.Or(strings.Compare(aName, bName), cmp.Compare(aKind, bKind))
}

func compareStatus(a, b core.Status) int { return listOrder(a.Name, a.Kind, b.Name, b.Kind) }

// after says whether st comes after the cursor in list order.
func (c Cursor) after(st core.Status) bool { return listOrder(st.Name, st.Kind, c.Name, c.Kind) > 0 }

// ListPage is one page of the union of every shard's list (parts[i] is
// shard i's answer to core's List, in any order): the objects in list order
// (name, then kind), without those whose name keep refuses (nil keeps all:
// an ACL's read filter leaves a name out rather than refuse it, since a
// refusal would say the name exists), after the cursor (nil: from the
// first), at most size of them (size <= 0 or above MaxPage: MaxPage). Next
// is set only when an object follows the page.
//
// Each part must hold, of its shard, every object after the cursor that
// keep takes, or at least the first size+1 of them in list order
// (core.Machine.ListFrom answers that), for the page and its Next to be
// right.
func ListPage(parts [][]core.Status, after *Cursor, size int, keep func(name string) bool) Page {
	if size <= 0 || size > MaxPage {
		size = MaxPage
	}
	// An object lives in one shard, so no two parts share a (name, kind):
	// the order is total, whatever order the parts come in.
	union := slices.SortedFunc(func(yield func(core.Status) bool) {
		for _, part := range parts {
			for _, st := range part {
				if !yield(st) {
					return
				}
			}
		}
	}, compareStatus)
	var p Page
	for _, st := range union {
		if keep != nil && !keep(st.Name) {
			continue
		}
		if after != nil && !after.after(st) {
			continue
		}
		if len(p.Objects) == size {
			last := p.Objects[len(p.Objects)-1]
			p.Next = &Cursor{Name: last.Name, Kind: last.Kind}
			break
		}
		p.Objects = append(p.Objects, st)
	}
	return p
}

// SessionRead is one shard's read of a session: core's SessionInfo, or the
// error core answered there (not_found: the session is gone in that shard).
type SessionRead struct {
	Shard uint64
	Info  core.SessionInfo
	Err   error
}

// Session merges the reads of one session from every shard into the
// session as one shard would show it:
//
//   - Missing in any shard, it is lost (its next keepalive answers
//     not_found and closes the copies left): the answer is the lowest
//     shard's error.
//   - The lease (owner, TTL, creation) is shard 0's, which made the session
//     (the others adopted it). The deadline is the earliest of any shard:
//     the first copy to expire loses the session.
//   - Holds and waits are every shard's. With one shard they are in core's
//     order (grant order, queue order); with several, in list order (name,
//     then kind), each object's in its shard's order.
//
// reads may come in any order; the answer does not depend on it. No reads
// is the caller's bug, answered as an invalid argument.
func Session(reads []SessionRead) (core.SessionInfo, error) {
	if len(reads) == 0 {
		return core.SessionInfo{}, &core.Error{Code: core.CodeInvalidArgument, Msg: "shards: a session read of no shard"}
	}
	sorted := slices.SortedFunc(slices.Values(reads), func(a, b SessionRead) int { return cmp.Compare(a.Shard, b.Shard) })
	for _, r := range sorted {
		if r.Err != nil {
			return core.SessionInfo{}, r.Err
		}
	}
	info := sorted[0].Info
	if len(sorted) == 1 {
		return info, nil
	}
	info.Holds, info.Waits = nil, nil
	for _, r := range sorted {
		info.Deadline = min(info.Deadline, r.Info.Deadline)
		info.Holds = append(info.Holds, r.Info.Holds...)
		info.Waits = append(info.Waits, r.Info.Waits...)
	}
	// Stable: an object lives in one shard, so the entries of one
	// (name, kind) keep their shard's order.
	slices.SortStableFunc(info.Holds, compareRef)
	slices.SortStableFunc(info.Waits, compareRef)
	return info, nil
}

func compareRef(a, b core.ObjectRef) int { return listOrder(a.Name, a.Kind, b.Name, b.Kind) }

// OwnsOnlyIn says whether the session holds and waits for nothing in any
// shard but home, the shard of the one name it was made for: a session the
// server created for one grant is closed with that grant only then
// (closing it otherwise would end its holds and waits elsewhere). A shard
// where the read found no session (Err set) holds nothing of it.
func OwnsOnlyIn(home uint64, reads []SessionRead) bool {
	for _, r := range reads {
		if r.Err == nil && r.Shard != home && len(r.Info.Holds)+len(r.Info.Waits) > 0 {
			return false
		}
	}
	return true
}

// SessionPart is one shard's answer to core's Sessions for a page: the
// sessions in id order, and More when the shard left sessions out past its
// limit.
type SessionPart struct {
	Sessions []core.SessionSummary
	More     bool
}

// SessionsPage is one page of the sessions of every shard, merged: in id
// order, and Next, the cursor (the last id read) of the page after it, 0
// on the last page.
type SessionsPage struct {
	Sessions []core.SessionSummary
	Next     core.SessionID
}

// SessionPage merges one page of the sessions of every shard (parts[i] is
// shard i's answer to core's Sessions, each from the same cursor and with
// the same filter, cut at the same limit, which must be above size) into
// the sessions as Session merges one: a session lives in every shard under
// one id, so it is listed once, with the lease (owner, TTL, creation) of
// the lowest shard, the earliest deadline of any, and its holds and waits
// summed. A session missing in any shard is lost (Session answers its read
// not_found), and is left out. At most size sessions (size <= 0 or above
// MaxPage: MaxPage).
//
// A part cut at its limit (More) says nothing of the ids above its last,
// so the page ends at the lowest such last id: an id at or below it is in
// a part exactly when its shard has it. A page may therefore be shorter
// than size, even empty, when lost sessions were left out, and still be
// followed by another (Next set). The work is O(the parts' total length).
func SessionPage(parts []SessionPart, size int) SessionsPage {
	if size <= 0 || size > MaxPage {
		size = MaxPage
	}
	var horizon core.SessionID // the highest id every part speaks for; 0: no part was cut
	for _, p := range parts {
		if !p.More || len(p.Sessions) == 0 {
			continue
		}
		last := slices.MaxFunc(p.Sessions, func(a, b core.SessionSummary) int { return cmp.Compare(a.ID, b.ID) }).ID
		if horizon == 0 || last < horizon {
			horizon = last
		}
	}
	type merged struct {
		s      core.SessionSummary
		shards int
	}
	byID := map[core.SessionID]*merged{}
	var ids []core.SessionID
	for _, p := range parts {
		for _, s := range p.Sessions {
			if horizon != 0 && s.ID > horizon {
				continue
			}
			e := byID[s.ID]
			if e == nil {
				// The lowest shard's lease: it made the session, the
				// others adopted it.
				byID[s.ID] = &merged{s: s, shards: 1}
				ids = append(ids, s.ID)
				continue
			}
			e.shards++
			e.s.Deadline = min(e.s.Deadline, s.Deadline)
			e.s.Holds += s.Holds
			e.s.Waits += s.Waits
		}
	}
	slices.Sort(ids)
	var page SessionsPage
	for _, id := range ids {
		e := byID[id]
		if e.shards < len(parts) {
			continue // lost in some shard
		}
		if len(page.Sessions) == size {
			page.Next = page.Sessions[size-1].ID
			return page
		}
		page.Sessions = append(page.Sessions, e.s)
	}
	page.Next = horizon
	return page
}
