package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
)

// TestPrimitivesThreeNodes runs every primitive through the leader and a
// follower, whose commands are forwarded.
func TestPrimitivesThreeNodes(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	testPrimitives(t, c.nodes[c.waitLeader(0)], c.nodes[c.follower()])
}

// TestQueuedAcquireWokenByReleaseOnAnotherNode: a request blocked on one
// node is granted by a release sent to another.
func TestQueuedAcquireWokenByReleaseOnAnotherNode(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	a, b, x := c.nodes[0], c.nodes[1], c.nodes[2]
	s1 := session(t, a, 30*time.Second)
	s2 := session(t, b, 30*time.Second)
	g := do(t, a, mutex("q", s1, 0))
	woken := make(chan core.Result, 1)
	go func() { woken <- do(t, b, mutex("q", s2, -1)) }()
	eventually(t, "the waiter queues", func() bool { return len(status(t, x, core.KindMutex, "q", false).Waiters) == 1 })
	select {
	case r := <-woken:
		t.Fatalf("granted before the release: %+v", r)
	default:
	}
	do(t, x, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "q", Session: s1, Token: g.Token})
	r := <-woken
	if r.Outcome != core.OutcomeGranted || r.Token <= g.Token {
		t.Fatalf("woken: %+v (first token %d)", r, g.Token)
	}
	if st := status(t, a, core.KindMutex, "q", false); len(st.Holders) != 1 || st.Holders[0].Session != s2 {
		t.Errorf("status after hand-off: %+v", st)
	}
}

// TestCancelWithdrawsWait: a queued acquire whose ctx ends is withdrawn from
// the queue through the log, on the leader and on a follower.
func TestCancelWithdrawsWait(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, f := c.nodes[c.waitLeader(0)], c.nodes[c.follower()]
	s1 := session(t, l, 30*time.Second)
	do(t, l, mutex("c", s1, 0))
	for _, n := range []*Node{l, f} {
		s := session(t, n, 30*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := n.Do(ctx, mutex("c", s, -1))
			done <- err
		}()
		eventually(t, "the waiter queues", func() bool { return len(status(t, l, core.KindMutex, "c", false).Waiters) == 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Do after cancel: %v", n.NodeID(), err)
		}
		eventually(t, "the wait is withdrawn", func() bool { return len(status(t, l, core.KindMutex, "c", false).Waiters) == 0 })
	}
}

// TestTokensIncreaseAcrossLeaderTransfer: grants after a leadership move get
// larger tokens, and the sessions survive it.
func TestTokensIncreaseAcrossLeaderTransfer(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	n := c.nodes[(l+1)%3]
	s := session(t, n, 30*time.Second)
	var last core.FencingToken
	for round := range 3 {
		for range 3 {
			g := do(t, n, mutex("tok", s, 0))
			if g.Token <= last {
				t.Fatalf("round %d: token %d after %d", round, g.Token, last)
			}
			last = g.Token
			do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "tok", Session: s, Token: g.Token})
		}
		from := c.waitLeader(0)
		to := c.cfgs[(from+1)%3].Cluster.NodeID
		if err := c.nodes[from].TransferLeadership(tctx(t), 0, to); err != nil {
			t.Fatalf("transfer to %s: %v", to, err)
		}
		if got := c.cfgs[c.waitLeader(0)].Cluster.NodeID; got != to {
			t.Fatalf("leader is %s, want %s", got, to)
		}
	}
	if elections := counter(t, c.regs[0], "leader_elections_total"); elections < 4 {
		t.Errorf("leader_elections_total = %v after 3 transfers", elections)
	}
}

// TestReadLinearizableAndStale: a linearizable read on a follower sees a
// write acknowledged by the leader; without a quorum it fails with
// ErrUnavailable while a stale read still answers.
func TestReadLinearizableAndStale(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, fi := c.waitLeader(0), c.follower()
	f := c.nodes[fi]
	s := session(t, c.nodes[l], 30*time.Second)
	for i := range 20 {
		name := string(rune('a' + i))
		g := do(t, c.nodes[l], mutex(name, s, 0))
		// Linearizable: the follower's read waits for the write's entry.
		idx, err := f.Read(tctx(t), name, false, func(m *core.Machine) error {
			st, err := m.Status(core.KindMutex, name)
			if err == nil && (len(st.Holders) != 1 || st.Holders[0].Token != g.Token) {
				t.Errorf("linearizable read of %s on a follower: %+v, want token %d", name, st, g.Token)
			}
			return err
		})
		if err != nil || idx < g.Token.LogIndex() {
			t.Fatalf("read: index %d, %v (the grant is at %d)", idx, err, g.Token.LogIndex())
		}
	}
	// fn's own error comes back as is.
	if _, err := f.Read(tctx(t), "", false, func(m *core.Machine) error {
		_, err := m.Status(core.KindMutex, "")
		return err
	}); core.CodeOf(err) != core.CodeInvalidArgument {
		t.Errorf("read error: %v", err)
	}

	// Stop the other two: no quorum.
	for i := range c.nodes {
		if i != fi {
			c.stop(i)
		}
	}
	start := time.Now()
	_, err := f.Read(context.Background(), "a", false, func(*core.Machine) error { return nil })
	if !isUnavailable(err) {
		t.Errorf("linearizable read without quorum: %v, want ErrUnavailable", err)
	}
	t.Logf("linearizable read without quorum failed after %v", time.Since(start).Round(time.Millisecond))
	if st := status(t, f, core.KindMutex, "a", true); len(st.Holders) != 1 {
		t.Errorf("stale read: %+v", st)
	}
	start = time.Now()
	if _, err := f.Do(context.Background(), mutex("z", s, 0)); !isUnavailable(err) {
		t.Errorf("Do without quorum: %v, want ErrUnavailable", err)
	}
	t.Logf("Do without quorum failed after %v", time.Since(start).Round(time.Millisecond))
	if f.Healthy() {
		st, _ := f.Status(context.Background())
		t.Logf("still healthy without quorum: %+v", st)
	}
}

// TestSessionExpiryReleases: a session that stops keeping alive loses its
// grants, and a watcher sees it.
func TestSessionExpiryReleases(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	n := c.nodes[c.follower()]
	events, err := n.Watch(tctx(t), "exp/", 0)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, n, time.Second)
	g := do(t, n, mutex("exp/a", s, 0))
	for i := range 3 { // kept alive: still held past its first TTL
		time.Sleep(400 * time.Millisecond)
		do(t, n, core.Command{Op: core.OpSessionKeepAlive, Session: s})
		if st := status(t, n, core.KindMutex, "exp/a", false); len(st.Holders) != 1 {
			t.Fatalf("keepalive %d: released early: %+v", i, st)
		}
	}
	eventually(t, "the grant is released", func() bool { return len(status(t, n, core.KindMutex, "exp/a", false).Holders) == 0 })
	var kinds []core.EffectKind
	for ev := range events {
		if ev.Effect.Name != "exp/a" {
			t.Errorf("watch of exp/ got %+v", ev)
		}
		kinds = append(kinds, ev.Effect.Kind)
		if ev.Effect.Kind == core.EffectReleased {
			if ev.Effect.Reason != core.ReasonSessionExpired || ev.Effect.Token != g.Token {
				t.Errorf("release event: %+v", ev)
			}
			break
		}
	}
	t.Logf("watch saw %v", kinds)
}

// TestLeaderChangeExtendsSessions: with a clock the test moves, a session
// past its deadline in the old leader's log time survives a leader change,
// because the new leader's first entry extends every session by its TTL.
func TestLeaderChangeExtendsSessions(t *testing.T) {
	clock := newTestClock()
	c := newTestCluster(t, clusterOpts{size: 3, clock: clock.now})
	l := c.waitLeader(0)
	s := session(t, c.nodes[l], 10*time.Second)
	logNow := func() core.LogTime {
		var now core.LogTime
		if _, err := c.nodes[c.waitLeader(0)].Read(tctx(t), "", false, func(m *core.Machine) error {
			now = m.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return now
	}
	alive := func() bool {
		_, err := c.nodes[c.waitLeader(0)].Read(tctx(t), "", false, func(m *core.Machine) error {
			_, err := m.SessionInfo(s)
			return err
		})
		return err == nil
	}
	// advance moves the clock in steps the machine accepts (at most 2 s per
	// entry) and waits for the leader's ticks to apply them: while the
	// session lives, the leader ticks at least every second (KeepTimeMs);
	// once nothing is timed, it proposes nothing and log time stays.
	advance := func(d time.Duration) {
		for d > 0 {
			step := min(d, time.Second)
			clock.advance(step)
			d -= step
			want := core.LogTime(clock.now().UnixMilli())
			eventually(t, "log time follows the clock while the session lives", func() bool { return logNow() >= want || !alive() })
		}
	}
	created := logNow()
	advance(8 * time.Second)
	from := c.waitLeader(0)
	to := c.cfgs[(from+1)%3].Cluster.NodeID
	if err := c.nodes[from].TransferLeadership(tctx(t), 0, to); err != nil {
		t.Fatal(err)
	}
	advance(4 * time.Second) // 12 s after creation: past the 10 s TTL
	if !alive() {
		t.Fatalf("the session expired across the leader change (created at %d, now %d)", created, logNow())
	}
	advance(8 * time.Second) // 10 s after the leader change, with no keepalive
	eventually(t, "the session expires", func() bool { return !alive() })
}

// TestGroupCommit: concurrent commands are packed into fewer entries than
// commands.
func TestGroupCommit(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	for _, target := range []string{"leader", "follower"} {
		i := c.waitLeader(0)
		if target == "follower" {
			i = c.follower()
		}
		n, reg := c.nodes[i], c.regs[i]
		entries0, cmds0 := counter(t, reg, "lockstep_raft_entries_applied_total"), counter(t, reg, "lockstep_commands_applied_total")
		const clients, each = 64, 20
		start := time.Now()
		errs := make(chan error, clients)
		for range clients {
			go func() {
				for range each {
					r, err := n.Do(tctx(t), core.Command{Op: core.OpSessionCreate, TTLMs: 60_000})
					if err == nil && r.Err != nil {
						err = r.Err
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range clients {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		entries := counter(t, reg, "lockstep_raft_entries_applied_total") - entries0
		cmds := counter(t, reg, "lockstep_commands_applied_total") - cmds0
		t.Logf("through the %s: %d commands from %d clients in %v: %.0f commands/s, %.0f entries (%.1f commands per entry)",
			target, clients*each, clients, elapsed.Round(time.Millisecond), float64(clients*each)/elapsed.Seconds(),
			entries, cmds/max(entries, 1))
		t.Logf("commit latency: %s", histogram(t, reg, "consensus_commit_latency_seconds"))
		if cmds < clients*each || entries >= cmds {
			t.Errorf("through the %s: %v entries for %v commands: nothing was packed", target, entries, cmds)
		}
	}
}

// TestLeaderCrash: when the leader stops without a hand-off, the others
// elect a new one and serve within a few election timeouts; tokens keep
// increasing; the crashed node restarts from its disk and catches up.
func TestLeaderCrash(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	f := c.follower()
	s := session(t, c.nodes[f], 30*time.Second)
	last := cycle(t, c.nodes[f], s, "k", 3, 0)
	held := do(t, c.nodes[f], mutex("held", s, 0))

	c.nodes[l].crash()
	c.nodes[l] = nil
	start := time.Now()
	g := do(t, c.nodes[f], mutex("k", s, 0))
	t.Logf("leader crash to next grant: %v (election timeout %d ms)", time.Since(start).Round(time.Millisecond),
		c.cfgs[l].Consensus.ElectionTimeoutMs)
	if g.Token <= max(last, held.Token) {
		t.Fatalf("token %d after a crash, previous %d", g.Token, max(last, held.Token))
	}
	do(t, c.nodes[f], core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "k", Session: s, Token: g.Token})
	if st := status(t, c.nodes[f], core.KindMutex, "held", false); len(st.Holders) != 1 {
		t.Errorf("the session's hold did not survive the failover: %+v", st)
	}
	last = cycle(t, c.nodes[f], s, "k", 3, g.Token)

	c.restart(l)
	eventually(t, "the restarted node catches up", func() bool {
		return c.nodes[l].shards[0].sm.appliedIndex.Load() >= last.LogIndex()
	})
	cycle(t, c.nodes[l], s, "k", 3, last)
}

// TestReadRightAfterLeaderCrash: a linearizable read sent to a follower
// just after the leader crashed reaches the next leader: a ReadIndex sent to
// the dead one is never answered, so each attempt is bounded and retried,
// and the read answers soon after the election, not at its ctx's deadline.
func TestReadRightAfterLeaderCrash(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	f := c.follower()
	c.nodes[l].crash()
	c.nodes[l] = nil
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := c.nodes[f].Read(ctx, "x", false, func(*core.Machine) error { return nil }); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("a linearizable read right after the leader's crash: %v", took.Round(time.Millisecond))
	if limit := 10 * time.Second; took > limit {
		t.Errorf("the read took %v, want under %v (it waited for the dead leader)", took, limit)
	}
}

// TestOneDriverRolePerNode: each node runs one driver per shard, and its
// role follows leadership: the leader's leads, the followers' forward (they
// have applied the leader's entries), and after a leader change the roles
// swap on the same drivers.
func TestOneDriverRolePerNode(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	roles := func() (leaders, forwarders int) {
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			sh := n.shards[0]
			sh.mu.Lock()
			switch r := sh.drv.Role(); {
			case r == replica.RoleLeader && sh.isLeader:
				leaders++
			case r == replica.RoleForwarder && !sh.isLeader && sh.leaderID != 0:
				forwarders++
			}
			sh.mu.Unlock()
		}
		return leaders, forwarders
	}
	settled := func() bool { l, f := roles(); return l == 1 && f == 2 }
	l := c.waitLeader(0)
	eventually(t, "one leading driver and two forwarding ones", settled)
	// Dragonboat's target skips the campaign while it has committed
	// entries to apply, as it may in a cluster's first moments (the
	// leader-change entry, the members' logs shared), and the hand-off
	// then asks again an election timeout later. This test is about the
	// roles, so it hands off once every member knows every log and has
	// applied what the leader has (TestCloseHandsOffLeadershipWhenBusy
	// tests the hand-off).
	eventually(t, "a quiet cluster", func() bool {
		applied := c.nodes[l].shards[0].sm.appliedIndex.Load()
		for _, n := range c.nodes {
			logs, _ := n.shards[0].sm.Lookup(logsQuery{})
			if len(logs.(map[uint64]uint64)) != len(c.nodes) || n.shards[0].sm.appliedIndex.Load() != applied {
				return false
			}
		}
		return true
	})
	first := c.nodes[l].shards[0].drv
	c.nodes[l].handOffLeadership()
	eventually(t, "a new leader", func() bool { return c.waitLeader(0) != l })
	eventually(t, "the roles swapped on the same drivers", settled)
	if c.nodes[l].shards[0].drv != first || first.Role() != replica.RoleForwarder {
		t.Fatalf("the old leader's driver was replaced or is a %v", first.Role())
	}
}

// TestWallClockStepWhileLeading: a leader's wall clock stepped 5 s ahead
// during its term (NTP, a resumed virtual machine) moves no log time, so a
// session whose client counts its lease on a monotonic clock is not cut
// short by the step (docs/design.md, Time).
func TestWallClockStepWhileLeading(t *testing.T) {
	wall, mono := newTestClock(), newTestClock()
	c := newTestCluster(t, clusterOpts{size: 1, clock: wall.now, mono: mono.since})
	l := c.waitLeader(0)
	n := c.nodes[l]
	logNow := func() core.LogTime {
		var now core.LogTime
		if _, err := n.Read(tctx(t), "", false, func(m *core.Machine) error {
			now = m.Now()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return now
	}
	s := session(t, n, 3*time.Second)
	created := logNow()
	wall.advance(5 * time.Second)
	for range 4 {
		wall.advance(100 * time.Millisecond)
		mono.advance(100 * time.Millisecond)
		session(t, n, 3*time.Second) // an entry stamped now
	}
	if got := logNow() - created; got != 400 {
		t.Fatalf("log time moved %d ms after the wall clock stepped 5 s and the monotonic clock 400 ms; want 400", got)
	}
	if _, err := n.Read(tctx(t), "", false, func(m *core.Machine) error {
		_, err := m.SessionInfo(s)
		return err
	}); err != nil {
		t.Fatalf("the session did not survive the wall clock's step: %v", err)
	}
	if got := labeled(t, c.regs[l], "lockstep_clock_offset_seconds", "shard", "0"); got != 5 {
		t.Fatalf("lockstep_clock_offset_seconds %v on the leader, want the 5 s step", got)
	}
}

// TestFollowerShowsItsClockOffset: a follower whose wall clock stands 5 s
// ahead of the leader's, from its start, shows it in lockstep_clock_offset_seconds, idle
// shard or not, so that an operator sees the skew before that member
// leads and moves log time that far ahead; the leader and the other follower show
// none.
func TestFollowerShowsItsClockOffset(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, skewable: true})
	l := c.waitLeader(0)
	f := (l + 1) % 3
	session(t, c.nodes[l], time.Minute) // something timed: the leader keeps log time moving
	// Restarted with its clock ahead, so that its clock reads ahead from its
	// first reading on, not only after a step.
	c.stop(f)
	c.skews[f].Store(5_000)
	c.restart(f)
	eventually(t, "the skewed follower shows 5 s", func() bool {
		got := labeled(t, c.regs[f], "lockstep_clock_offset_seconds", "shard", "0")
		return got > 4.7 && got < 5.3
	})
	for i := range 3 {
		if i == f {
			continue
		}
		if got := labeled(t, c.regs[i], "lockstep_clock_offset_seconds", "shard", "0"); got < -0.3 || got > 0.3 {
			t.Errorf("node-%d (leader: %v), whose clock is right, shows an offset of %v s", i+1, i == l, got)
		}
	}
}
