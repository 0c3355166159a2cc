package shards

import (
	"slices"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// An expiry in one shard closes the session in the others, as a failure:
// the copy a leader change extended in shard 2 loses its hold with the
// lock-delay, at once, where it would have held it for another TTL. Real
// machines, one per shard; only the leader sends.
func TestExpiredClosesTheOtherCopiesWithTheLockDelay(t *testing.T) {
	const ttl, delay = 1000, 700
	var ms []*core.Machine
	idx := make([]uint64, 3)
	apply := func(k uint64, at core.LogTime, cmds ...core.Command) *core.Output {
		idx[k]++
		return ms[k].Apply(core.Entry{Index: idx[k], Proposal: core.Proposal{Time: at, Commands: cmds}})
	}
	for k := range uint64(3) {
		m, err := core.New(core.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
		apply(k, 10, core.Command{Op: core.OpLeaderChange, Rules: core.RulesVersion})
	}
	create := core.Command{Op: core.OpSessionCreate, TTLMs: ttl, ClientID: "c", Seq: 1}
	id := apply(0, 100, create).Results[0].Session
	for k := uint64(1); k < 3; k++ {
		adopt := create
		adopt.Session = id
		if r := apply(k, 100, adopt).Results[0]; r.Err != nil {
			t.Fatalf("adopt in shard %d: %v", k, r.Err)
		}
		acq := core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "m", Session: id, LockDelayMs: delay, ClientID: "c", Seq: 2}
		if r := apply(k, 100, acq).Results[0]; r.Err != nil || r.Outcome != core.OutcomeGranted {
			t.Fatalf("acquire in shard %d: %+v", k, r)
		}
	}
	// A leader change in shard 2 extends its copy to 600+ttl.
	apply(2, 600, core.Command{Op: core.OpLeaderChange, Rules: core.RulesVersion})

	out := apply(0, 1150) // a tick: shard 0's copy expires
	if !slices.ContainsFunc(out.Effects, func(e core.Effect) bool { return e.Kind == core.EffectSessionExpired && e.Session == id }) {
		t.Fatalf("shard 0 did not expire session %d: %+v", id, out.Effects)
	}
	if cs := Expired(0, 3, false, out); cs != nil {
		t.Fatalf("a member that does not lead sends closes: %+v", cs)
	}
	if cs := Expired(0, 1, true, out); cs != nil {
		t.Fatalf("one shard has no other copies to close: %+v", cs)
	}
	cs := Expired(0, 3, true, out)
	if len(cs) != 1 || cs[0].Session != id || !slices.Equal(cs[0].Shards, []uint64{1, 2}) {
		t.Fatalf("Expired = %+v, want session %d closed in shards 1 and 2", cs, id)
	}
	cmd := cs[0].Close()
	if cmd.Op != core.OpSessionClose || cmd.Session != id || !cmd.ApplyLockDelay {
		t.Fatalf("the close is %+v, want a close of %d with apply_lock_delay", cmd, id)
	}
	// Shard 1's log time trails shard 0's (each shard's leader stamps its
	// own clock): its copy is still live too.
	at := []core.LogTime{1: 1090, 2: 1160}
	for i, k := range cs[0].Shards {
		c := cmd
		c.ClientID, c.Seq = "leader-of-0", uint64(i+1)
		if r := apply(k, at[k], c).Results[0]; r.Err != nil {
			t.Fatalf("close in shard %d: %v", k, r.Err)
		}
		st, err := ms[k].Status(core.KindMutex, "m")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Holders) != 0 || st.LockDelayUntil != at[k]+delay {
			t.Fatalf("shard %d after the close: holders %+v, lock-delay until %d, want none and %d", k, st.Holders, st.LockDelayUntil, at[k]+delay)
		}
	}
	// A second leader's duplicate changes nothing.
	c := cmd
	c.ClientID, c.Seq = "leader-of-1", 1
	if r := apply(2, 1170, c).Results[0]; r.Err == nil || r.Err.Code != core.CodeNotFound {
		t.Fatalf("a second close of the gone copy answered %+v, want not_found", r)
	}
}
