package core

import (
	"strings"
	"testing"
)

// Adopting a session id is how the runtime mirrors a session into every
// shard: shard 0 allocates the id, the others adopt it.
func TestSessionAdoptTable(t *testing.T) {
	const id = SessionID(7<<SlotBits | 3) // an id another machine allocated
	adopt := func(ttl int64, owner string) Command {
		return Command{Op: OpSessionCreate, Session: id, TTLMs: ttl, Owner: owner}
	}
	t.Run("adopting gives the session that id, a deadline and the owner", func(t *testing.T) {
		h := newTblHarness(t)
		r := h.ok(adopt(5_000, "worker-1"))
		if r.Outcome != OutcomeDone || r.Session != id || r.Deadline != h.now()+5_000 {
			t.Fatalf("adopt: %+v", r)
		}
		info, err := h.m.SessionInfo(id)
		if err != nil || info.TTLMs != 5_000 || info.Owner != "worker-1" || info.CreatedAt != h.now() {
			t.Fatalf("SessionInfo: %+v, %v", info, err)
		}
	})
	t.Run("an adopted session holds, expires and releases like any other", func(t *testing.T) {
		h := newTblHarness(t)
		h.ok(adopt(1_000, ""))
		tok := h.granted(cMutex("a", id, 0))
		if tok == 0 {
			t.Fatal("no token")
		}
		effs := h.advance(1_000)
		tblOne(t, effs, EffectSessionExpired)
		if h.live(id) {
			t.Fatal("adopted session outlived its deadline")
		}
		if st, err := h.m.Status(KindMutex, "a"); err == nil && len(st.Holders) > 0 {
			t.Fatalf("the hold outlived its session: %+v", st)
		}
	})
	t.Run("adopting a live id again with the same ttl and owner changes nothing", func(t *testing.T) {
		h := newTblHarness(t)
		first := h.ok(adopt(5_000, "w"))
		h.advance(1_000)
		twin := h.twin()
		r := h.ok(adopt(5_000, "w"))
		twin.apply(h.now())
		if r.Session != id || r.Deadline != first.Deadline || r.Duplicate {
			t.Fatalf("re-adopt answered %+v, want session %d deadline %d", r, id, first.Deadline)
		}
		if h.m.Hash() != twin.m.Hash() {
			t.Fatal("re-adopting a live session changed the state")
		}
	})
	t.Run("a retried adopt with the same client and seq is a duplicate", func(t *testing.T) {
		h := newTblHarness(t)
		h.ok(with(adopt(5_000, "w"), "c", 1))
		r := h.ok(with(adopt(5_000, "w"), "c", 1))
		if !r.Duplicate || r.Session != id {
			t.Fatalf("retry: %+v", r)
		}
	})
	t.Run("an adopted id does not disturb the machine's own ids", func(t *testing.T) {
		h := newTblHarness(t)
		h.ok(adopt(5_000, ""))
		r := h.ok(cCreate(5_000))
		if r.Session == id || FencingToken(r.Session).LogIndex() != h.idx {
			t.Fatalf("allocated %d after adopting %d", r.Session, id)
		}
	})
	t.Run("an adopted session survives a snapshot", func(t *testing.T) {
		h := newTblHarness(t)
		h.ok(adopt(5_000, "w"))
		h.granted(cMutex("a", id, 0))
		m2 := h.twin().m
		if info, err := m2.SessionInfo(id); err != nil || info.Owner != "w" || len(info.Holds) != 1 {
			t.Fatalf("restored: %+v, %v", info, err)
		}
	})
}

func TestSessionAdoptErrorsTable(t *testing.T) {
	const id = SessionID(9<<SlotBits | 1)
	tests := []struct {
		name   string
		tweak  func(*Limits)
		cmd    func(h *tblHarness) Command
		code   Code
		phrase string
	}{
		{"adopt a live id with another ttl", nil, func(h *tblHarness) Command {
			h.ok(Command{Op: OpSessionCreate, Session: id, TTLMs: 5_000, Owner: "w"})
			return Command{Op: OpSessionCreate, Session: id, TTLMs: 6_000, Owner: "w"}
		}, CodeFailedPrecondition, "is live with ttl_ms 5000 and owner \"w\", not ttl_ms 6000"},
		{"adopt a live id with another owner", nil, func(h *tblHarness) Command {
			h.ok(Command{Op: OpSessionCreate, Session: id, TTLMs: 5_000, Owner: "w"})
			return Command{Op: OpSessionCreate, Session: id, TTLMs: 5_000, Owner: "x"}
		}, CodeFailedPrecondition, "adopt an id with the TTL and owner it was created with"},
		{"adopt the id of a session this machine allocated, with another ttl", nil, func(h *tblHarness) Command {
			s := h.session(1_000)
			return Command{Op: OpSessionCreate, Session: s, TTLMs: 2_000}
		}, CodeFailedPrecondition, "or create a new session"},
		{"adopt without a ttl", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, Session: id}
		}, CodeInvalidArgument, "ttl_ms 0 is out of range"},
		{"adopt with a bad owner", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, Session: id, TTLMs: 1_000, Owner: strings.Repeat("o", 129)}
		}, CodeInvalidArgument, "owner is 129 bytes"},
		{"adopt past the session limit", func(l *Limits) { l.MaxSessions = 1 }, func(h *tblHarness) Command {
			h.session(1_000)
			return Command{Op: OpSessionCreate, Session: id, TTLMs: 1_000}
		}, CodeResourceExhausted, "1 sessions are live, the limit"},
		{"adopt with a field it does not take", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, Session: id, TTLMs: 1_000, Token: 4}
		}, CodeInvalidArgument, "session_create does not take fencing_token: leave it empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tweaks []func(*Limits)
			if tc.tweak != nil {
				tweaks = append(tweaks, tc.tweak)
			}
			h := newTblHarness(t, tweaks...)
			h.fails(tc.cmd(h), tc.code, tc.phrase)
		})
	}
}
