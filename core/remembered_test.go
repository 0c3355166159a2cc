package core

import (
	"strings"
	"testing"
)

// TestRememberedAndCompatibility: Remembered answers what a retry of
// (client, seq) is answered, without applying anything: the stored result,
// nothing for a seq never seen, and the forgotten error for one below the
// client's floor. Compatibility names every version a member must share.
func TestRememberedAndCompatibility(t *testing.T) {
	m, err := New(DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	apply := func(index uint64, c Command) Result {
		out := m.Apply(Entry{Index: index, Proposal: Proposal{Time: 1000 * LogTime(index), Commands: []Command{c}}})
		return out.Results[0]
	}
	created := apply(1, Command{Op: OpSessionCreate, TTLMs: 30_000, ClientID: "c", Seq: 1})
	if created.Err != nil {
		t.Fatal(created.Err)
	}
	before := m.Hash()
	if r, ok := m.Remembered("c", 1); !ok || r.Session != created.Session {
		t.Fatalf("Remembered(c, 1) = %+v, %v; want the create's result", r, ok)
	}
	if _, ok := m.Remembered("c", 2); ok {
		t.Fatal("Remembered(c, 2): a result for a seq never applied")
	}
	if _, ok := m.Remembered("nobody", 1); ok {
		t.Fatal("Remembered(nobody, 1): a result for an unknown client")
	}
	// Seq 3 with lowest pending 3 lets go of seq 1 and 2.
	apply(2, Command{Op: OpSessionKeepAlive, Session: created.Session, ClientID: "c", Seq: 3, LowestPending: 3})
	if r, ok := m.Remembered("c", 1); !ok || r.Err == nil || r.Err.Code != CodeFailedPrecondition {
		t.Fatalf("Remembered(c, 1) after it was let go = %+v, %v; want the forgotten error", r, ok)
	}
	if m.Hash() == before {
		t.Fatal("the keepalive changed nothing") // sanity: Apply works here
	}
	after := m.Hash()
	m.Remembered("c", 3)
	if m.Hash() != after {
		t.Fatal("Remembered changed the state")
	}
	for _, want := range []string{"rules ", "entries ", "snapshots ", "client keys "} {
		if !strings.Contains(Compatibility(), want) {
			t.Errorf("Compatibility() = %q lacks %q", Compatibility(), want)
		}
	}
}
