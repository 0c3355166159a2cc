package rpc

import (
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// An implicit session's client id is the request's own and a print of what
// it acts on: a retry finds the same session, another name (a request_seq
// reused, which with several shards another shard cannot recognise) gets
// another, and it takes exactly the room validation leaves for it.
func TestImplicitClientID(t *testing.T) {
	a := core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "jobs/a", ClientID: "c", Seq: 1}
	b := a
	b.Name = "jobs/b"
	barrier := core.Command{Op: core.OpBarrierWait, Name: "jobs/a", ClientID: "c", Seq: 1}
	ida, idb, idw := implicitClientID("c", &a), implicitClientID("c", &b), implicitClientID("c", &barrier)
	if again := implicitClientID("c", &a); again != ida {
		t.Errorf("the same request derives %q, then %q", ida, again)
	}
	if ida == idb || ida == idw {
		t.Errorf("two requests share the session client id %q (%q, %q)", ida, idb, idw)
	}
	for _, id := range []string{ida, idb, idw} {
		if !strings.HasPrefix(id, "c/") || len(id) != len("c")+len(implicitSuffix) {
			t.Errorf("%q: want c/ and %d hex digits", id, implicitPrintDigits)
		}
	}
}
