package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstepd/lockstep/core"
)

func TestShardOf(t *testing.T) {
	if ShardOf("anything", 1) != 0 || ShardOf("", 4) != 0 {
		t.Fatal("one shard, or no name, must be shard 0")
	}
	seen := map[uint64]int{}
	for i := range 400 {
		name := fmt.Sprintf("jobs/%d", i)
		s := ShardOf(name, 4)
		if s >= 4 || s != ShardOf(name, 4) {
			t.Fatalf("ShardOf(%q, 4) = %d, not stable or out of range", name, s)
		}
		seen[s]++
	}
	for s := range uint64(4) {
		// 100 expected each; a hash that piles names up fails this.
		if seen[s] < 60 {
			t.Errorf("shard %d got %d of 400 names: %v", s, seen[s], seen)
		}
	}
	// FNV-1a 64 is part of the on-disk contract: the same name must land in
	// the same shard in every version.
	if got := ShardOf("a", 4); got != 0xaf63dc4c8601ec8c%4 {
		t.Errorf(`ShardOf("a", 4) = %d, want FNV-1a 64 mod 4 = %d`, got, uint64(0xaf63dc4c8601ec8c%4))
	}
}

// namesPerShard returns one name for each of count shards.
func namesPerShard(t *testing.T, prefix string, count int) []string {
	t.Helper()
	names := make([]string, count)
	for i := 0; i < 10_000; i++ {
		n := fmt.Sprintf("%s%d", prefix, i)
		if s := ShardOf(n, count); names[s] == "" {
			names[s] = n
		}
		if !slices.Contains(names, "") {
			return names
		}
	}
	t.Fatalf("no name for every shard among 10000: %q", names)
	return nil
}

// shardStatus reads kind/name in one given shard, stale.
func shardStatus(t *testing.T, n *Node, shard uint64, name string) (core.Status, bool) {
	t.Helper()
	var st core.Status
	var found bool
	_, err := n.readShard(tctx(t), n.shards[shard], true, func(m *core.Machine) error {
		var err error
		st, err = m.Status(core.KindMutex, name)
		found = err == nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, found
}

// sessionHolds reads a session in every shard: the names it holds, and in
// how many shards the session exists.
func sessionHolds(t *testing.T, n *Node, s core.SessionID, stale bool) (names []string, in int) {
	t.Helper()
	_, err := n.ReadAll(tctx(t), stale, func(_ uint64, m *core.Machine) error {
		info, err := m.SessionInfo(s)
		if err != nil {
			return nil
		}
		in++
		for _, h := range info.Holds {
			names = append(names, h.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names, in
}

// TestShardedSessionSpansShards: with 3 shards, names land in different
// shards; a session made on a follower exists in every shard; its holds
// in all shards show in its info; keepalives keep them all; close releases
// every one; fencing tokens increase per name.
func TestShardedSessionSpansShards(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards})
	n := c.nodes[1]
	names := namesPerShard(t, "lk-", shards)
	want := slices.Sorted(slices.Values(names))

	s := session(t, n, 30*time.Second)
	if _, in := sessionHolds(t, n, s, false); in != shards {
		t.Fatalf("session %d exists in %d shards, want %d", s, in, shards)
	}
	tokens := map[string]core.FencingToken{}
	for _, name := range names {
		g := do(t, n, mutex(name, s, 0))
		if g.Outcome != core.OutcomeGranted {
			t.Fatalf("%s: %+v", name, g)
		}
		tokens[name] = g.Token
	}
	// Each name is in its own shard and no other.
	for i, name := range names {
		for sh := range uint64(shards) {
			st, found := shardStatus(t, c.nodes[0], sh, name)
			if (sh == uint64(i)) != (found && len(st.Holders) == 1) {
				eventually(t, "the grant reaches node-1", func() bool {
					st, found = shardStatus(t, c.nodes[0], sh, name)
					return (sh == uint64(i)) == (found && len(st.Holders) == 1)
				})
			}
		}
	}
	if got, _ := sessionHolds(t, c.nodes[2], s, false); !slices.Equal(got, want) {
		t.Fatalf("session info holds %q, want %q", got, want)
	}

	// Keepalive answers the earliest deadline and renews every shard.
	r := do(t, n, core.Command{Op: core.OpSessionKeepAlive, Session: s})
	if r.Session != s || r.Deadline == 0 {
		t.Fatalf("keepalive: %+v", r)
	}
	_, err := n.ReadAll(tctx(t), false, func(sh uint64, m *core.Machine) error {
		info, err := m.SessionInfo(s)
		if err != nil {
			return fmt.Errorf("shard %d: %w", sh, err)
		}
		if info.Deadline < r.Deadline {
			return fmt.Errorf("shard %d: deadline %d before the answered %d (the earliest)", sh, info.Deadline, r.Deadline)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Tokens increase per name, through another session.
	s2 := session(t, c.nodes[0], 30*time.Second)
	for _, name := range names {
		do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: s, Token: tokens[name]})
		last := cycle(t, c.nodes[0], s2, name, 3, tokens[name])
		g := do(t, n, mutex(name, s, 0))
		if g.Token <= last {
			t.Fatalf("%s: token %d after %d", name, g.Token, last)
		}
	}

	// Close releases everywhere.
	do(t, c.nodes[2], core.Command{Op: core.OpSessionClose, Session: s})
	for _, name := range names {
		if st := status(t, n, core.KindMutex, name, false); len(st.Holders) != 0 {
			t.Errorf("%s still held after close: %+v", name, st)
		}
	}
	if got, in := sessionHolds(t, n, s, false); in != 0 || len(got) != 0 {
		t.Errorf("after close: session in %d shards holding %q", in, got)
	}
	// A second close: gone everywhere.
	r2, err := n.Do(tctx(t), core.Command{Op: core.OpSessionClose, Session: s})
	if err != nil || core.CodeOf(r2.Err) != core.CodeNotFound {
		t.Errorf("closing a closed session: %+v, %v", r2, err)
	}
}

// TestShardedSessionExpiresEverywhere: keepalives keep holds in every shard
// past the TTL; a session that stops keeping alive loses them in every shard.
func TestShardedSessionExpiresEverywhere(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards})
	n := c.nodes[0]
	names := namesPerShard(t, "ex-", shards)
	// A 3 s lease: keepalives through three shards on a loaded machine
	// (the race detector, other packages' tests) took up to two seconds.
	s := session(t, n, 3*time.Second)
	for _, name := range names {
		do(t, n, mutex(name, s, 0))
	}
	for range 30 { // 6 s of keepalives every 200 ms: twice the TTL
		time.Sleep(200 * time.Millisecond)
		do(t, c.nodes[2], core.Command{Op: core.OpSessionKeepAlive, Session: s})
	}
	if got, in := sessionHolds(t, n, s, false); in != shards || len(got) != shards {
		t.Fatalf("with keepalives: session in %d shards holding %q", in, got)
	}
	eventually(t, "the session expires in every shard", func() bool {
		got, in := sessionHolds(t, n, s, false)
		return in == 0 && len(got) == 0
	})
	// Each shard's leader counts the expiry it applies, once. A shard whose
	// copy was closed first by another shard's expiry (shards.Expired)
	// applies none: so from 1 to shards over the members, never more.
	expired := func() float64 {
		sum := 0.0
		for _, reg := range c.regs {
			sum += counter(t, reg, "lockstep_sessions_expired_total")
		}
		return sum
	}
	eventually(t, "a shard's leader counts the expiry", func() bool { return expired() >= 1 })
	if got := expired(); got < 1 || got > float64(shards) {
		t.Errorf("lockstep_sessions_expired_total summed over members: %v, want 1 to %d", got, shards)
	}
	for _, name := range names {
		if st := status(t, n, core.KindMutex, name, false); len(st.Holders) != 0 {
			t.Errorf("%s still held after expiry: %+v", name, st)
		}
	}
	r, err := n.Do(tctx(t), core.Command{Op: core.OpSessionKeepAlive, Session: s})
	if err != nil || core.CodeOf(r.Err) != core.CodeNotFound {
		t.Errorf("keepalive of an expired session: %+v, %v", r, err)
	}
}

// TestShardedSessionLostInOneShard: when one shard no longer has the
// session, a keepalive answers not_found and the session is closed in the
// other shards, so its holds there do not outlive it; and closed as its
// expiry would end them, so a mutex held with a lock-delay stays blocked
// for it (shards.Cleanup.Close).
func TestShardedSessionLostInOneShard(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 1, shards: shards})
	n := c.nodes[0]
	names := namesPerShard(t, "lost-", shards)
	s := session(t, n, time.Minute)
	lockWithDelay(t, n, s, names)
	// Close it in shard 2 alone, as an expiry there would.
	if r, err := n.doOn(tctx(t), n.shards[2], core.Command{Op: core.OpSessionClose, Session: s}); err != nil || r.Err != nil {
		t.Fatalf("close in shard 2: %+v, %v", r, err)
	}
	r, err := n.Do(tctx(t), core.Command{Op: core.OpSessionKeepAlive, Session: s})
	if err != nil || core.CodeOf(r.Err) != core.CodeNotFound {
		t.Fatalf("keepalive of a session lost in one shard: %+v, %v; want not_found", r, err)
	}
	eventually(t, "the lost session is closed in every shard", func() bool {
		got, in := sessionHolds(t, n, s, false)
		return in == 0 && len(got) == 0
	})
	for _, name := range names[:2] {
		if st := status(t, n, core.KindMutex, name, false); st.LockDelayUntil == 0 {
			t.Errorf("%s (shard %d) after the lost session's cleanup: %+v; want it blocked by the lock-delay", name, n.ShardOf(name), st)
		}
	}
}

// TestShardedSessionExpiredInOneShard: a session whose copy expires in
// one shard is closed in the others by that shard's leader, with the
// lock-delay, though no keepalive's fan-out ever finds it lost (an
// abandoned session sends none). Shards 1 and 2 are kept alive on their
// own, as a leader change there extends them, and go on being kept alive
// after shard 0's expiry: only the expiry-driven close can end them. Before
// it, they lived as long as something extended them.
func TestShardedSessionExpiredInOneShard(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 1, shards: shards})
	n := c.nodes[0]
	names := namesPerShard(t, "expired-", shards)
	s := session(t, n, 2*time.Second)
	lockWithDelay(t, n, s, names)
	// Keep the copies of shards 1 and 2 alive, each alone (no fan-out),
	// every 200 ms, until both answer not_found; shard 0's copy runs out.
	gone := map[uint64]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(gone) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("session %d still lives in shards other than %v 10 s after its creation, its TTL 2 s: "+
				"its expiry in shard 0 did not close it in the others", s, gone)
		}
		for k := uint64(1); k < shards; k++ {
			if gone[k] {
				continue
			}
			r, err := n.doOn(tctx(t), n.shards[k], core.Command{Op: core.OpSessionKeepAlive, Session: s})
			switch {
			case err != nil:
				t.Fatalf("keepalive in shard %d: %v", k, err)
			case r.Err != nil && r.Err.Code == core.CodeNotFound:
				gone[k] = true
			case r.Err != nil:
				t.Fatalf("keepalive in shard %d: %v", k, r.Err)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, in := sessionHolds(t, n, s, false); in != 0 {
		t.Fatalf("session %d is in %d shards, want none", s, in)
	}
	// Every name keeps its lock-delay: shard 0's by its expiry, the others
	// by the close, which ends them as a failure.
	for _, name := range names {
		if st := status(t, n, core.KindMutex, name, false); len(st.Holders) != 0 || st.LockDelayUntil == 0 {
			t.Errorf("%s (shard %d) after the session expired in shard 0: %+v; want it free and blocked by the lock-delay", name, n.ShardOf(name), st)
		}
	}
}

// TestShardedAbandonedSessionAfterLeaderChange is the user's trial: a
// session its client abandoned (no keepalive at all), holding a name in
// each of 3 shards, whose shard 0 changes leader (its leader's node
// stops) partway through the TTL. The new leader's mark extends shard 0's
// copy to now+TTL, while shards 1 and 2 expire theirs on schedule; their
// leaders then close it in shard 0, with the lock-delay, at once. Before,
// shard 0's copy held its name for the rest of the extension, while every
// read of the session already answered it gone.
func TestShardedAbandonedSessionAfterLeaderChange(t *testing.T) {
	const shards = 3
	const ttl = 5 * time.Second
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards})
	lead0 := c.waitLeader(0)
	n := c.nodes[(lead0+1)%len(c.nodes)] // not shard 0's leader, which stops
	names := namesPerShard(t, "abandoned-", shards)
	s := session(t, n, ttl)
	lockWithDelay(t, n, s, names)
	time.Sleep(2 * time.Second)
	if l := c.waitLeader(0); c.nodes[l] != n {
		c.stop(l)
	} else {
		t.Fatalf("shard 0's leader moved to the node the test reads through")
	}
	c.waitLeader(0)
	in := func(shard uint64) bool {
		var live bool
		_, err := n.readShard(tctx(t), n.shards[shard], false, func(m *core.Machine) error {
			_, err := m.SessionInfo(s)
			live = err == nil
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return live
	}
	deadline := time.Now().Add(3 * ttl)
	for in(1) || in(2) {
		if time.Now().After(deadline) {
			t.Fatalf("session %d did not expire in shards 1 and 2 within %v", s, 3*ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Shard 0's copy was extended to at least 2 s + TTL after the
	// acquires, 2 s past the others' expiry; the close ends it well within.
	expired := time.Now()
	for in(0) {
		if time.Since(expired) > 1500*time.Millisecond {
			t.Fatalf("session %d still lives in shard 0 %v after it expired in shards 1 and 2: its expiry there did not close it",
				s, time.Since(expired).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := status(t, n, core.KindMutex, names[0], false); len(st.Holders) != 0 || st.LockDelayUntil == 0 {
		t.Errorf("%s (shard 0) after the session expired in the others: %+v; want it free and blocked by the lock-delay", names[0], st)
	}
}

// TestShardedCancelAndWatch: a queued wait in a shard other than 0 is
// withdrawn when its caller goes away; a cancel by waiter id finds its
// shard; a watch of everything merges every shard's events, each naming its
// shard; a from index is refused as ambiguous; a watch of one shard resumes.
func TestShardedCancelAndWatch(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards})
	n := c.nodes[2]
	names := namesPerShard(t, "cw-", shards)
	if _, err := n.Watch(tctx(t), "", 5); !errors.Is(err, ErrAmbiguousIndex) {
		t.Fatalf("Watch from index 5 with 3 shards: %v, want ErrAmbiguousIndex", err)
	}
	wctx, wcancel := context.WithCancel(tctx(t))
	defer wcancel()
	events, err := n.Watch(wctx, "cw-", 0)
	if err != nil {
		t.Fatal(err)
	}
	holder := session(t, n, time.Minute)
	waiter := session(t, c.nodes[0], time.Minute)
	for _, name := range names {
		do(t, n, mutex(name, holder, 0))
	}
	seen := map[uint64]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < shards {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the merged watch ended")
			}
			if ev.Effect.Kind == core.EffectGranted {
				if want := ShardOf(ev.Effect.Name, shards); ev.Shard != want {
					t.Fatalf("event of %q says shard %d, want %d", ev.Effect.Name, ev.Shard, want)
				}
				seen[ev.Shard] = true
			}
		case <-timeout:
			t.Fatalf("grants seen from shards %v only", seen)
		}
	}

	// A wait withdrawn by its caller, in the last shard.
	name := names[shards-1]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.nodes[0].Do(ctx, mutex(name, waiter, -1))
		done <- err
	}()
	eventually(t, "the waiter queues", func() bool { return len(status(t, n, core.KindMutex, name, false).Waiters) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after cancel: %v", err)
	}
	eventually(t, "the wait is withdrawn", func() bool { return len(status(t, n, core.KindMutex, name, false).Waiters) == 0 })

	// A cancel by waiter id, which names no object.
	name = names[1]
	go func() {
		_, err := c.nodes[0].Do(context.Background(), mutex(name, waiter, 30*time.Second))
		done <- err
	}()
	var w core.WaiterID
	eventually(t, "the waiter queues", func() bool {
		st := status(t, n, core.KindMutex, name, false)
		if len(st.Waiters) == 1 {
			w = st.Waiters[0].ID
		}
		return w != 0
	})
	if r := do(t, n, core.Command{Op: core.OpCancel, Session: waiter, Waiter: w}); r.Outcome != core.OutcomeDone {
		t.Fatalf("cancel: %+v", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("the cancelled acquire: %v", err)
	}
	if r, err := n.Do(tctx(t), core.Command{Op: core.OpCancel, Waiter: w}); err != nil || core.CodeOf(r.Err) != core.CodeInvalidArgument ||
		!strings.Contains(r.Err.Msg, "needs the session_id") {
		t.Errorf("cancel without a session: %+v, %v", r, err)
	}

	// One shard's watch resumes from an index of that shard.
	sh := ShardOf(name, shards)
	idx, err := n.Read(tctx(t), name, false, func(*core.Machine) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	do(t, n, core.Command{Op: core.OpSessionClose, Session: holder}) // releases name: an event after idx
	one, err := n.WatchShard(wctx, sh, name, idx+1)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-one:
		if ev.Shard != sh || ev.Index <= idx || ev.Effect.Name != name {
			t.Errorf("resumed event %+v, want shard %d after index %d", ev, sh, idx)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event from the resumed shard watch")
	}
}

// TestShardedLeadersSpread: with 3 nodes and 3 shards, leaders all moved to
// one node spread back until every node leads one shard.
func TestShardedLeadersSpread(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards})
	for sh := range uint64(shards) {
		if err := c.nodes[0].TransferLeadership(tctx(t), sh, "node-1"); err != nil {
			t.Fatalf("piling leaders on node-1, shard %d: %v", sh, err)
		}
	}
	deadline := time.Now().Add(40 * time.Second)
	for {
		st, err := c.nodes[0].Status(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		leaders := map[string]int{}
		for _, s := range st.Shards {
			leaders[s.LeaderID]++
		}
		if len(leaders) == 3 && leaders[""] == 0 {
			// The leader gauge, labelled by shard: one leader per shard
			// (each node updates it when it learns of a change).
			eventually(t, "lockstep_raft_is_leader sums to one per shard", func() bool {
				total := 0.0
				for _, reg := range c.regs {
					total += counter(t, reg, "lockstep_raft_is_leader")
				}
				return total == shards
			})
			// Every member knows a leader for every shard (its /health).
			for _, reg := range c.regs {
				eventually(t, "lockstep_raft_has_leader is 1 for every shard", func() bool {
					return counter(t, reg, "lockstep_raft_has_leader") == shards
				})
			}
			// Each shard is led by its preferred member: shard i by node-(i+1).
			for _, s := range st.Shards {
				if want := fmt.Sprintf("node-%d", s.ShardID+1); s.LeaderID != want {
					t.Errorf("shard %d led by %s, want %s", s.ShardID, s.LeaderID, want)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leaders not spread within 40 s: %+v", st.Shards)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShardedSnapshotsAndRestart: with several shards, each shard
// snapshots and compacts on its own; a member restarted after compaction
// catches up in every shard; state survives a restart.
func TestShardedSnapshotsAndRestart(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards, snapshotEntries: 20})
	n := c.nodes[0]
	names := namesPerShard(t, "snap-", shards)
	s := session(t, n, time.Minute)
	c.stop(2)
	for _, name := range names {
		cycle(t, n, s, name, 15, 0)
	}
	held := map[string]core.FencingToken{}
	for _, name := range names {
		held[name] = do(t, n, mutex(name, s, 0)).Token
	}
	c.restart(2)
	r := c.nodes[2]
	for _, name := range names {
		eventually(t, "the restarted member catches up on "+name, func() bool {
			st := status(t, r, core.KindMutex, name, true)
			return len(st.Holders) == 1 && st.Holders[0].Token == held[name]
		})
	}
	if got, in := sessionHolds(t, r, s, true); in != shards || len(got) != shards {
		t.Errorf("restarted member: session in %d shards holding %q", in, got)
	}
	saved := counter(t, c.regs[0], "lockstep_snapshots_saved_total")
	if saved < shards {
		t.Errorf("%v snapshots saved on node-1, want at least one per shard", saved)
	}
}

// TestShardCountCannotChange: a data directory made with one shard count
// refuses another.
func TestShardCountCannotChange(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1, shards: 2})
	c.stop(0)
	b, err := os.ReadFile(filepath.Join(c.cfgs[0].Cluster.DataDir, shardCountFile))
	if err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Fatalf("shard count file: %q, %v", b, err)
	}
	for _, k := range []int{1, 3} {
		cfg := c.cfgs[0]
		cfg.Consensus.Shards = k
		_, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
		want := fmt.Sprintf("consensus.shards: the data directory %s was made with 2 shards, and this start asks for %d: ", c.cfgs[0].Cluster.DataDir, k)
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "set consensus.shards: 2 (--shards 2), or") {
			t.Errorf("restart with %d shards: %v\nwant it to begin %q and say to set consensus.shards: 2", k, err, want)
		}
	}
	c.restart(0)
	c.waitLeader(1)
}

// TestShardedMembership: removing a member removes it from every shard;
// added back wiped (a new incarnation), it catches up in every shard, from
// snapshots, and a session's holds in every shard show there.
func TestShardedMembership(t *testing.T) {
	const shards = 3
	c := newTestCluster(t, clusterOpts{size: 3, shards: shards, snapshotEntries: 20})
	n := c.nodes[0]
	names := namesPerShard(t, "mem-", shards)
	s := session(t, n, time.Minute)

	c.stop(2)
	if err := n.RemoveNode(tctx(t), "node-3"); err != nil {
		t.Fatal(err)
	}
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	for _, si := range info.ShardInfoList {
		if len(si.Replicas) != 2 {
			t.Errorf("shard %d after the removal: members %v", si.ShardID-1, si.Replicas)
		}
	}
	if err := os.RemoveAll(c.cfgs[2].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		cycle(t, n, s, name, 12, 0) // enough entries for a snapshot in every shard
		do(t, n, mutex(name, s, 0))
	}
	// Snapshots are saved and logs compacted in the background; the
	// re-added member must find every shard's log cut, on whichever
	// member leads it, or it would catch up from the log alone.
	for _, m := range c.nodes[:2] {
		for shard := uint64(1); shard <= shards; shard++ {
			eventually(t, fmt.Sprintf("%s compacts shard %d's log", m.NodeID(), shard-1), func() bool {
				lr, err := m.nh.GetLogReader(shard)
				if err != nil {
					return false
				}
				first, _ := lr.GetRange()
				return first > 1
			})
		}
	}
	inc, err := c.nodes[1].AddNodeIncarnation(tctx(t), "node-3", c.cfgs[2].Cluster.RaftAddress)
	if err != nil || inc != 1 {
		t.Fatalf("AddNodeIncarnation: %d, %v", inc, err)
	}
	c.cfgs[2].Cluster.Join, c.cfgs[2].Cluster.Incarnation = true, inc
	c.restart(2)
	w := c.nodes[2]
	eventually(t, "the re-added member holds the session's grants in every shard", func() bool {
		got, in := sessionHolds(t, w, s, true)
		return in == shards && len(got) == shards
	})
	eventually(t, "the re-added member is healthy", w.Healthy)
	// Eventually: a restore puts the state in place before it counts
	// itself, so the grants can be seen a moment before the count.
	eventually(t, "one snapshot restored per shard on the re-added member", func() bool {
		return counter(t, c.regs[2], "lockstep_snapshots_restored_total") >= shards
	})
	eventually(t, "every shard lists three members on it", func() bool {
		st, err := w.Status(tctx(t))
		return err == nil && len(st.Members) == 3 && len(st.Shards) == shards
	})
}

// TestShardedWatchResumesFromPositions: a merged watch cut after some
// events and resumed from each shard's next index (the index after the
// last event that ended its entry) yields exactly the events after them:
// the cut stream and the resumed one together are, shard by shard, the
// stream of a watch that was never cut. Closing a session that holds two
// locks in every shard makes entries of two events each.
func TestShardedWatchResumesFromPositions(t *testing.T) {
	const shards = 4
	c := newTestCluster(t, clusterOpts{size: 1, shards: shards})
	n := c.nodes[0]
	names := append(namesPerShard(t, "wr-a", shards), namesPerShard(t, "wr-b", shards)...)
	if _, err := n.WatchShards(tctx(t), "wr-", []uint64{1, 1}); err == nil {
		t.Fatal("WatchShards with 2 indexes for 4 shards: no error")
	}
	idx, err := n.ReadAll(tctx(t), true, func(uint64, *core.Machine) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	from := make([]uint64, shards)
	for i := range from {
		from[i] = idx[i] + 1
	}
	ref, err := n.WatchShards(tctx(t), "wr-", from)
	if err != nil {
		t.Fatal(err)
	}
	cutCtx, cut := context.WithCancel(tctx(t))
	first, err := n.WatchShards(cutCtx, "wr-", from)
	if err != nil {
		t.Fatal(err)
	}
	take := func(what string, ch <-chan Event, k int) []Event {
		t.Helper()
		var out []Event
		timeout := time.After(20 * time.Second) // a bound, not an assertion on speed
		for len(out) < k {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("%s ended after %d events of %d", what, len(out), k)
				}
				out = append(out, ev)
			case <-timeout:
				t.Fatalf("%s: %d events of %d", what, len(out), k)
			}
		}
		return out
	}
	// hold takes every name in one session and closes it: 2 events per
	// name, the releases two per entry.
	hold := func() {
		s := session(t, n, time.Minute)
		for _, name := range names {
			do(t, n, mutex(name, s, 0))
		}
		do(t, n, core.Command{Op: core.OpSessionClose, Session: s})
	}
	perRound := 2 * len(names)

	hold()
	// Cut inside the round's last entry (two releases): its first event is
	// taken, its second is not. Like the rpc handler, the consumer keeps
	// only whole entries and resumes from the next index of each shard.
	seen := take("the first watch", first, perRound-1)
	next := slices.Clone(from)
	open := map[uint64]uint64{}
	for _, ev := range seen {
		if ev.EntryEnd {
			next[ev.Shard] = ev.Index + 1
			delete(open, ev.Shard)
		} else {
			open[ev.Shard] = ev.Index
		}
	}
	if len(open) != 1 {
		t.Fatalf("entries left open by the cut: %v, want the round's last", open)
	}
	seen = slices.DeleteFunc(seen, func(ev Event) bool { i, ok := open[ev.Shard]; return ok && ev.Index == i })
	cut()

	hold() // while no stream of the first watcher is open
	resumed, err := n.WatchShards(tctx(t), "wr-", next)
	if err != nil {
		t.Fatal(err)
	}
	got := append(seen, take("the resumed watch", resumed, 2*perRound-len(seen))...)
	hold() // after the resume
	got = append(got, take("the resumed watch", resumed, perRound)...)
	want := take("the uncut watch", ref, 3*perRound)

	key := func(evs []Event) [][]string {
		out := make([][]string, shards)
		for _, ev := range evs {
			out[ev.Shard] = append(out[ev.Shard], fmt.Sprintf("%d %v %s %d", ev.Index, ev.Effect.Kind, ev.Effect.Name, ev.Effect.Token))
		}
		return out
	}
	g, w := key(got), key(want)
	for sh := range shards {
		if !slices.Equal(g[sh], w[sh]) {
			t.Errorf("shard %d: cut + resumed watch\n  %q\nthe uncut watch\n  %q", sh, g[sh], w[sh])
		}
	}
	select {
	case ev, ok := <-resumed:
		if ok {
			t.Errorf("the resumed watch has an event more than the uncut one: %+v", ev)
		}
	default:
	}
}

// TestIncarnationCannotChange: a data directory records the incarnation
// its member runs as, and a start under another is refused before
// Dragonboat touches the directory. Before, a member added back (a new
// incarnation) and restarted without its --incarnation found no Raft state
// of its own and bootstrapped a new, empty replica from its peers list; a
// majority restarted so made a new cluster, with fencing tokens below the
// old ones (an on-call walk-through).
func TestIncarnationCannotChange(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	c.stop(0)
	dir := c.cfgs[0].Cluster.DataDir
	b, err := os.ReadFile(filepath.Join(dir, incarnationFile))
	if err != nil || strings.TrimSpace(string(b)) != "0" {
		t.Fatalf("incarnation file: %q, %v", b, err)
	}
	before, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.cfgs[0]
	cfg.Cluster.Incarnation = 1
	if _, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)}); err == nil ||
		!strings.Contains(err.Error(), "cluster.incarnation") || !strings.Contains(err.Error(), "start with --incarnation 0") {
		t.Fatalf("restart under incarnation 1: %v", err)
	}
	if after, err := os.ReadDir(dir); err != nil || len(after) != len(before) {
		t.Fatalf("the refused start changed the directory: %d entries before, %d after (%v)", len(before), len(after), err)
	}
	c.restart(0)
	c.waitLeader(0)
}

// lockWithDelay has session s take a mutex of every one of names, each
// with a minute's lock-delay, so that how its holds end (a failure or a
// release) shows in every name's status.
func lockWithDelay(t *testing.T, n *Node, s core.SessionID, names []string) {
	t.Helper()
	for _, name := range names {
		acq := mutex(name, s, 0)
		acq.LockDelayMs = time.Minute.Milliseconds()
		if g := do(t, n, acq); g.Outcome != core.OutcomeGranted {
			t.Fatalf("%s: %+v", name, g)
		}
	}
}
