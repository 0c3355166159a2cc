package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// cycle acquires and releases name n times and returns the last token.
func cycle(t *testing.T, node *Node, s core.SessionID, name string, n int, after core.FencingToken) core.FencingToken {
	t.Helper()
	for range n {
		g := do(t, node, mutex(name, s, 0))
		if g.Token <= after {
			t.Fatalf("token %d after %d", g.Token, after)
		}
		after = g.Token
		do(t, node, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: s, Token: g.Token})
	}
	return after
}

// TestRestartFromSnapshotAndLog: a node restarted from its data directory
// recovers its state from the last snapshot plus the log after it; tokens
// keep increasing, sessions and holds survive.
func TestRestartFromSnapshotAndLog(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1, snapshotEntries: 20})
	n := c.nodes[0]
	s := session(t, n, time.Minute)
	last := cycle(t, n, s, "r", 30, 0)
	held := do(t, n, mutex("held", s, 0))
	if got := counter(t, c.regs[0], "lockstep_snapshots_saved_total"); got == 0 {
		t.Fatalf("no snapshot after %d entries", held.Token.LogIndex())
	}
	st, _ := n.Status(tctx(t))
	before := st.Shards[0].AppliedIndex

	c.stop(0)
	c.restart(0)
	c.waitLeader(0)
	n = c.nodes[0]
	st, err := n.Status(tctx(t))
	if err != nil || st.Shards[0].AppliedIndex < before || st.Shards[0].Role != "leader" ||
		len(st.Members) != 1 || st.Members[0].NodeID != "node-1" {
		t.Fatalf("status after restart: %+v %v (applied %d before)", st, err, before)
	}
	if hs := status(t, n, core.KindMutex, "held", false); len(hs.Holders) != 1 || hs.Holders[0].Token != held.Token {
		t.Errorf("the hold did not survive the restart: %+v", hs)
	}
	cycle(t, n, s, "r", 3, max(last, held.Token))

	// The events before the restart's snapshot are gone from the watch ring.
	if _, err := n.Watch(tctx(t), "", 1); !errors.Is(err, ErrCompacted) {
		t.Errorf("Watch from index 1 after a restart: %v, want ErrCompacted", err)
	}
}

// TestWipedNodeCatchesUpFromSnapshot: a member removed, wiped and added back
// (as a new incarnation, since Raft never reuses a removed replica id)
// catches up from a snapshot, and a member restarted after the log was
// compacted past it catches up too.
func TestWipedNodeCatchesUpFromSnapshot(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, snapshotEntries: 20})
	l := c.waitLeader(0)
	victim := (l + 1) % 3
	other := 3 - l - victim
	name := c.cfgs[victim].Cluster.NodeID
	n := c.nodes[l]
	s := session(t, n, time.Minute)
	last := cycle(t, n, s, "w", 5, 0)

	// Restart after compaction: stop, write enough for snapshots, start.
	c.stop(other)
	last = cycle(t, n, s, "w", 30, last)
	c.restart(other)
	eventually(t, "the restarted member catches up", func() bool {
		return len(status(t, c.nodes[other], core.KindMutex, "w", true).Holders) == 0 &&
			c.nodes[other].shards[0].sm.appliedIndex.Load() >= last.LogIndex()
	})

	// Remove, wipe, add back.
	c.stop(victim)
	if err := n.RemoveNode(tctx(t), name); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.Status(tctx(t)); len(st.Members) != 2 {
		t.Fatalf("members after removal: %+v", st.Members)
	}
	if err := os.RemoveAll(c.cfgs[victim].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	last = cycle(t, n, s, "w", 30, last)
	held := do(t, n, mutex("w2", s, 0))
	added, err := n.AddMember(tctx(t), name, c.cfgs[victim].Cluster.RaftAddress)
	if err != nil || added != (AddedMember{Incarnation: 1}) {
		t.Fatalf("AddMember: %+v, %v (want incarnation 1, not a member before)", added, err)
	}
	inc := added.Incarnation
	// Again: idempotent, and it says so, so that the CLI does not advise
	// starting a second process for the member.
	if again, err := n.AddMember(tctx(t), name, c.cfgs[victim].Cluster.RaftAddress); err != nil || again != (AddedMember{Incarnation: 1, AlreadyMember: true}) {
		t.Errorf("adding a current member again: %+v, %v (want incarnation 1, already a member)", again, err)
	}
	taken := c.cfgs[other].Cluster
	if err := n.AddNode(tctx(t), "node-9", taken.RaftAddress); err == nil || !strings.Contains(err.Error(), "already the address of "+taken.NodeID) {
		t.Errorf("adding node-9 at %s's address: %v, want an error naming %s", taken.NodeID, err, taken.NodeID)
	}
	c.cfgs[victim].Cluster.Join = true
	c.cfgs[victim].Cluster.Incarnation = inc
	// A member that joins knows no peers from its configuration: the other
	// members' names reach it through the log, as AddNode wrote them.
	c.cfgs[victim].Cluster.Peers = nil
	c.restart(victim)
	// Restarted as the docs say, without join (and still without peers):
	// its data directory holds the member.
	c.stop(victim)
	c.cfgs[victim].Cluster.Join = false
	c.restart(victim)
	w := c.nodes[victim]
	eventually(t, "the wiped member catches up", func() bool {
		st := status(t, w, core.KindMutex, "w2", true)
		return len(st.Holders) == 1 && st.Holders[0].Token == held.Token
	})
	// Eventually: a restore puts the state in place before it counts itself.
	eventually(t, "the wiped member caught up from a snapshot", func() bool {
		return counter(t, c.regs[victim], "lockstep_snapshots_restored_total") > 0
	})
	// The snapshot it restored may predate its own addition: it shows three
	// members once it has applied that configuration change too.
	var st ClusterStatus
	eventually(t, "the re-added member sees three members", func() bool {
		var err error
		st, err = w.Status(tctx(t))
		return err == nil && len(st.Members) == 3
	})
	for _, m := range st.Members {
		if m.NodeID != "node-1" && m.NodeID != "node-2" && m.NodeID != "node-3" {
			t.Errorf("member without its name: %+v", st.Members)
		}
	}
	if lead := st.Shards[0].LeaderID; lead != "node-1" && lead != "node-2" && lead != "node-3" {
		t.Errorf("the re-added member names the leader %q", lead)
	}
	// It serves, and can lead.
	cycle(t, w, s, "w", 3, max(last, held.Token))
	if err := n.TransferLeadership(tctx(t), 0, name); err != nil {
		t.Fatal(err)
	}
	cycle(t, w, s, "w", 3, max(last, held.Token))
}

// TestCloseDrains: Close lets in-flight commands finish, withdraws queued
// waits through the log, and refuses new requests.
func TestCloseDrains(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[0]
	s1 := session(t, n, time.Minute)
	s2 := session(t, n, time.Minute)
	do(t, n, mutex("d", s1, 0))
	queued := make(chan error, 1)
	go func() {
		_, err := n.Do(context.Background(), mutex("d", s2, -1))
		queued <- err
	}()
	eventually(t, "the waiter queues", func() bool { return len(status(t, n, core.KindMutex, "d", false).Waiters) == 1 })

	var wg sync.WaitGroup
	var ok, refused, other int
	var mu sync.Mutex
	for range 32 {
		wg.Go(func() {
			for range 20 {
				r, err := n.Do(context.Background(), core.Command{Op: core.OpSessionCreate, TTLMs: 60_000})
				mu.Lock()
				switch {
				case err == nil && r.Err == nil:
					ok++
				case errors.Is(err, ErrShuttingDown):
					refused++
				default:
					other++
					t.Errorf("during Close: %+v, %v", r, err)
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	wg.Wait()
	t.Logf("Close took %v; %d commands answered, %d refused", took.Round(time.Millisecond), ok, refused)
	if err := <-queued; !errors.Is(err, ErrShuttingDown) {
		t.Errorf("queued wait at Close: %v", err)
	}
	if _, err := n.Do(context.Background(), core.Command{Op: core.OpSessionCreate, TTLMs: 1000}); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Do after Close: %v", err)
	}
	if _, err := n.Read(context.Background(), "", true, func(*core.Machine) error { return nil }); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("Read after Close: %v", err)
	}
	if n.Healthy() {
		t.Error("healthy after Close")
	}
	c.nodes[0] = nil
	c.restart(0)
	c.waitLeader(0)
	if st := status(t, c.nodes[0], core.KindMutex, "d", false); len(st.Waiters) != 0 || len(st.Holders) != 1 {
		t.Errorf("after restart, the withdrawn wait is still queued: %+v", st)
	}
}

// TestWatchResume: a stream resumed from an index replays the events from
// there; a stream sees only its prefix.
func TestWatchResume(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live, err := n.Watch(ctx, "w/", 0)
	if err != nil {
		t.Fatal(err)
	}
	s1 := session(t, n, time.Minute)
	s2 := session(t, n, time.Minute)
	g := do(t, n, mutex("w/a", s1, 0))
	do(t, n, mutex("other", s1, 0))
	waiting := make(chan core.Result, 1)
	go func() { waiting <- do(t, n, mutex("w/a", s2, 5*time.Second)) }()
	eventually(t, "the waiter queues", func() bool { return len(status(t, n, core.KindMutex, "w/a", false).Waiters) == 1 })
	do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "w/a", Session: s1, Token: g.Token})
	<-waiting
	// granted to s1; then, in one entry, released by s1 and granted to s2's waiter.
	var all []Event
	for len(all) < 3 {
		select {
		case ev := <-live:
			all = append(all, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("watch: only %+v", all)
		}
	}
	seen := all[1:]
	if all[0].Effect.Kind != core.EffectGranted || all[0].Effect.Session != s1 ||
		seen[0].Effect.Kind != core.EffectReleased || seen[1].Effect.Kind != core.EffectGranted ||
		seen[1].Effect.Session != s2 || seen[0].Index != seen[1].Index {
		t.Errorf("live events: %+v", all)
	}
	resumed, err := n.Watch(ctx, "w/", seen[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		select {
		case ev := <-resumed:
			if ev.Index != seen[i].Index || ev.Effect.Kind != seen[i].Effect.Kind {
				t.Errorf("resumed event %d: %+v, want %+v", i, ev, seen[i])
			}
		case <-time.After(5 * time.Second):
			t.Fatal("resumed watch replayed nothing")
		}
	}
	cancel()
	eventually(t, "the streams close with their ctx", func() bool {
		_, ok := <-resumed
		return !ok
	})
}

// TestCloseFollowerWithdrawsWait: a follower closing withdraws the waits
// blocked on it through the log, so they do not sit in the queue.
func TestCloseFollowerWithdrawsWait(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, f := c.waitLeader(0), c.follower()
	s1 := session(t, c.nodes[l], time.Minute)
	do(t, c.nodes[l], mutex("cf", s1, 0))
	s2 := session(t, c.nodes[f], time.Minute)
	queued := make(chan error, 1)
	go func() {
		_, err := c.nodes[f].Do(context.Background(), mutex("cf", s2, -1))
		queued <- err
	}()
	eventually(t, "the waiter queues", func() bool { return len(status(t, c.nodes[l], core.KindMutex, "cf", false).Waiters) == 1 })
	c.stop(f)
	if err := <-queued; !errors.Is(err, ErrShuttingDown) {
		t.Errorf("queued wait at Close: %v", err)
	}
	if st := status(t, c.nodes[l], core.KindMutex, "cf", false); len(st.Waiters) != 0 {
		t.Errorf("the closed follower's wait is still queued: %+v", st)
	}
}

// TestAddNodeChecksTheCertificateForPeers: AddNode refuses when this
// member's certificate cannot serve a cluster of several (a member started
// alone is not held to it at start), before anything is proposed.
func TestAddNodeChecksTheCertificateForPeers(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[c.waitLeader(0)]
	// As if it ran with TLS, its certificate file gone since (Raft reads
	// it at every dial, and so does the check).
	n.cfg.Security.TLS = &config.TLS{CertFile: filepath.Join(t.TempDir(), "gone.pem"), KeyFile: filepath.Join(t.TempDir(), "gone-key.pem")}
	before, err := n.Status(tctx(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = n.AddNodeIncarnation(tctx(t), "node-2", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "cannot take a peer with its certificate") {
		t.Fatalf("AddNode with a certificate unfit for peers: %v", err)
	}
	if after, err := n.Status(tctx(t)); err != nil || len(after.Members) != len(before.Members) {
		t.Fatalf("members after the refused AddNode: %+v (before %+v), %v", after.Members, before.Members, err)
	}
}

// TestMemberThatLostItsLogIsCutOff: a member whose data directory was
// wiped and which is started again as it was (its peers list, no --join)
// has forgotten its votes and what it acknowledged. Here it alone holds a
// committed lock beside a stopped leader; with a member that missed the
// lock it would make a majority that elects that member and loses the
// lock. Its peer knows it from its old log and refuses it, so no leader is
// elected until the old leader is back, and the lock is kept.
func TestMemberThatLostItsLogIsCutOff(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	wiped := (l + 1) % 3
	stale := 3 - l - wiped
	n := c.nodes[l]
	// The member that will miss the lock learns, from the log, the log the
	// other takes part under, though it hears little of it: both follow.
	eventually(t, "the followers know each other's logs", func() bool {
		log, ok := c.nodes[stale].book.Known(c.nodes[wiped].replicaID)
		return ok && log != 0
	})
	c.stop(stale)
	s := session(t, n, time.Hour)
	held := do(t, n, mutex("kept", s, 0)) // committed by the leader and the member to be wiped
	last := cycle(t, n, s, "other", 3, 0)
	eventually(t, "the member to be wiped applied the lock", func() bool {
		return c.nodes[wiped].shards[0].sm.appliedIndex.Load() >= last.LogIndex()
	})
	c.stop(l)
	c.stop(wiped)
	if err := os.RemoveAll(c.cfgs[wiped].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.restart(wiped)
	c.restart(stale)
	// Whichever dials first refuses the other: the member that missed the
	// lock refuses the wiped one's hello, or the wiped one refuses a hello
	// that expects it under its old log. Either way it is told.
	eventually(t, "the wiped member hears that it lost its log", func() bool {
		return counter(t, c.regs[wiped], "lockstep_raft_lost_log") == 1
	})
	wantCutOff(t, c.nodes[wiped], RoleLostLog, "it lost its log")
	// Twenty election timeouts: without the refusal the two elect the
	// member that missed the lock within two or three.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, i := range []int{wiped, stale} {
			if st, err := c.nodes[i].Status(tctx(t)); err == nil && st.Shards[0].LeaderID != "" {
				t.Fatalf("node %d sees %s lead without the old leader", i+1, st.Shards[0].LeaderID)
			}
		}
	}
	c.restart(l)
	lead := c.waitLeaderBesides(0, wiped)
	if lead == wiped {
		t.Fatal("the wiped member leads")
	}
	st := status(t, c.nodes[lead], core.KindMutex, "kept", false)
	if len(st.Holders) != 1 || st.Holders[0].Token != held.Token {
		t.Fatalf("the lock after the wiped member came back: %+v, want the holder of token %d", st.Holders, held.Token)
	}
	if a := c.nodes[wiped].shards[0].sm.appliedIndex.Load(); a != 0 {
		t.Errorf("the wiped member applied up to %d, want nothing: it is sent no entries", a)
	}
	wantCutOff(t, c.nodes[wiped], RoleLostLog, "it lost its log")
	for _, i := range []int{lead, 3 - lead - wiped} {
		eventually(t, "the members that did not lose their logs are healthy", c.nodes[i].Healthy)
	}
}

// TestWipedMemberRestartedBesideItsLeader: the common case of a lost log,
// a follower wiped and started again as it was while the others run. The
// leader, which dials it first, would send a commit index beyond its empty
// log, on which Raft panics; its hello says whom it expects there, and the
// wiped member refuses the connection itself. It applies nothing, says why,
// and the others serve on.
func TestWipedMemberRestartedBesideItsLeader(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	w := (l + 1) % 3
	n := c.nodes[l]
	s := session(t, n, time.Hour)
	last := cycle(t, n, s, "x", 5, 0)
	eventually(t, "every member knows the others' logs", func() bool {
		for i := range c.nodes {
			for j := range c.nodes {
				if _, ok := c.nodes[i].book.Known(c.nodes[j].replicaID); i != j && !ok {
					return false
				}
			}
		}
		return true
	})
	c.stop(w)
	if err := os.RemoveAll(c.cfgs[w].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.restart(w)
	eventually(t, "the wiped member hears that it lost its log", func() bool {
		return counter(t, c.regs[w], "lockstep_raft_lost_log") == 1
	})
	wantCutOff(t, c.nodes[w], RoleLostLog, "it lost its log")
	last = cycle(t, n, s, "x", 5, last)
	time.Sleep(time.Second) // ten heartbeats
	if a := c.nodes[w].shards[0].sm.appliedIndex.Load(); a != 0 {
		t.Errorf("the wiped member applied up to %d, want nothing", a)
	}
	if lead := c.waitLeaderBesides(0, w); lead != l {
		t.Errorf("leadership moved from node %d to node %d", l+1, lead+1)
	}
}

// TestRemovedMemberIsToldSo: a member removed and started again on its data
// directory, or one added back but started under its old incarnation (the
// one removed), used to pre-vote (or wait to be sent the log) forever,
// ignored and saying nothing. The removal is recorded in the log, and the
// members refuse the removed one saying why; the one under its old
// incarnation refuses the leader, whose hello expects the new one there.
func TestRemovedMemberIsToldSo(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	x := (l + 1) % 3
	n := c.nodes[l]
	name := c.cfgs[x].Cluster.NodeID
	c.stop(x)
	if removed, err := n.RemoveMember(tctx(t), name); err != nil || removed.NotAMember {
		t.Fatalf("removing %s: %+v, %v", name, removed, err)
	}
	// Again: it was a member, so a retried call is no error, but says it
	// found no member by that name (nothing changed), and names those
	// there are.
	again, err := n.RemoveMember(tctx(t), name)
	if err != nil {
		t.Fatalf("removing %s again: %v", name, err)
	}
	if !again.NotAMember || len(again.Members) != 2 || slices.Contains(again.Members, name) {
		t.Fatalf("removing %s again: %+v, want it told no member is %s, and the two that are", name, again, name)
	}
	// A node id that never named a member (a typo) is not answered
	// "removed", with the advice to wipe a member still voting.
	if err := n.RemoveNode(tctx(t), "node9"); !errors.Is(err, ErrNotMember) ||
		!strings.Contains(err.Error(), `"node9" is not a member of the cluster, and never was (its members: `) ||
		!strings.Contains(err.Error(), c.cfgs[l].Cluster.NodeID) {
		t.Fatalf("removing a node id that never was a member: %v", err)
	}
	c.restart(x)
	eventually(t, "the removed member hears it was removed", func() bool {
		return counter(t, c.regs[x], "lockstep_raft_removed") == 1
	})
	// Whichever of the two members it dials first tells it (the follower's
	// book knows the removal as well as the leader's), and it then stops
	// dialling, so only one of them need have refused it.
	third := 3 - l - x
	if labeled(t, c.regs[l], "lockstep_raft_refused_connections_total", "reason", "removed")+
		labeled(t, c.regs[third], "lockstep_raft_refused_connections_total", "reason", "removed") == 0 {
		t.Error("neither member that stayed counted the removed member refused")
	}
	if counter(t, c.regs[x], "lockstep_raft_lost_log") != 0 {
		t.Error("the removed member was told it lost its log")
	}
	wantCutOff(t, c.nodes[x], RoleRemoved, "it was removed from the cluster")
	if err := n.Health(); err != nil {
		t.Errorf("the leader that removed it: %v", err)
	}

	// Added back, but started empty under the incarnation removed.
	c.stop(x)
	inc, err := n.AddNodeIncarnation(tctx(t), name, c.cfgs[x].Cluster.RaftAddress)
	if err != nil || inc != 1 {
		t.Fatalf("AddNodeIncarnation: %d, %v", inc, err)
	}
	if err := os.RemoveAll(c.cfgs[x].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.cfgs[x].Cluster.Join = true
	c.restart(x)
	// The leader dials the replica it added, and says so in its hello.
	eventually(t, "the member under its old incarnation refuses a peer that expects the new one", func() bool {
		return labeled(t, c.regs[x], "lockstep_raft_refused_connections_total", "reason", "other replica") > 0
	})
	// It counts the refusal just before it records it.
	eventually(t, "the member under its old incarnation says it is cut off", func() bool {
		return errors.Is(c.nodes[x].Health(), ErrCutOff)
	})
	wantCutOff(t, c.nodes[x], RoleOtherReplica, "a peer expects another replica at its Raft address")
	if err := n.Health(); err != nil {
		t.Errorf("the leader: %v", err)
	}
}

// TestRemovedLeaderThatRunsSaysSo: a member removed while it runs, here a
// leader (the one the CLI's removal of it reaches first), says it was
// removed: its Status gives every shard the role removed and no leader,
// its Health fails saying so, lockstep_raft_removed is 1. It applies its
// own removal, on which Dragonboat unloads its replicas, and its peers
// send it nothing more: it said it was a follower. The members that stay
// list each other only, and know a leader for every shard.
func TestRemovedLeaderThatRunsSaysSo(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, shards: 2})
	x := c.waitLeader(0)
	via := (x + 1) % 3
	name := c.cfgs[x].Cluster.NodeID
	if _, err := c.nodes[via].RemoveMember(tctx(t), name); err != nil {
		t.Fatalf("removing %s, which leads shard 0, through %s: %v", name, c.cfgs[via].Cluster.NodeID, err)
	}
	eventually(t, "the removed member says it was removed", func() bool {
		return errors.Is(c.nodes[x].Health(), ErrCutOff)
	})
	wantCutOff(t, c.nodes[x], RoleRemoved, "it was removed from the cluster")
	if v := counter(t, c.regs[x], "lockstep_raft_removed"); v != 1 {
		t.Errorf("lockstep_raft_removed of the removed member: %v, want 1", v)
	}
	for i, n := range c.nodes {
		if i == x {
			continue
		}
		eventually(t, n.NodeID()+" knows a leader for every shard", func() bool { return n.Healthy() })
		st, err := n.Status(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var members []string
		for _, m := range st.Members {
			members = append(members, m.NodeID)
		}
		if len(members) != 2 || slices.Contains(members, name) {
			t.Errorf("%s's members: %v, want the two that stay", n.NodeID(), members)
		}
		for _, s := range st.Shards {
			if s.Role != RoleLeader && s.Role != RoleFollower || s.LeaderID == "" || s.LeaderID == name {
				t.Errorf("%s's shard %d: role %q, leader %q; want leader or follower of a member that stays", n.NodeID(), s.ShardID, s.Role, s.LeaderID)
			}
		}
	}
}

// TestMembershipWithoutQuorumIsUnavailable: with one member of three up, a
// membership change cannot commit. AddNode and RemoveNode answer
// ErrUnavailable saying there is no quorum and to bring members back, within
// a few election timeouts rather than at the end of the caller's deadline;
// before, they waited all of it and then answered Dragonboat's
// "specified timeout value is too small" (or "invalid deadline"), which the
// API turned into failed_precondition ("fix the arguments").
func TestMembershipWithoutQuorumIsUnavailable(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.waitLeader(0)
	survivor := (l + 1) % 3
	for i := range 3 {
		if i != survivor {
			c.stop(i)
		}
	}
	n := c.nodes[survivor]
	gone := c.cfgs[l].Cluster.NodeID
	for _, tc := range []struct {
		what string
		call func(ctx context.Context) error
	}{
		{"RemoveNode", func(ctx context.Context) error { return n.RemoveNode(ctx, gone) }},
		{"AddNode", func(ctx context.Context) error { return n.AddNode(ctx, "node-9", "127.0.0.1:1") }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		start := time.Now()
		err := tc.call(ctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no quorum") || !strings.Contains(err.Error(), "bring") {
			t.Errorf("%s without a quorum: %v; want ErrUnavailable saying there is no quorum and to bring members back", tc.what, err)
		}
		// The runtime's bound (retry budget, an attempt) is a few seconds
		// here; the caller's deadline is 15.
		if took > 8*time.Second {
			t.Errorf("%s without a quorum answered after %v: want it well before the caller's 15 s deadline", tc.what, took)
		}
	}
}

// TestMembershipOutOfTimeIsUnavailable: Dragonboat refuses a request whose
// deadline is within a tick, or past before ctx says so, with errors of its
// own; a membership change that meets them ran out of time (unavailable),
// it was not refused for its arguments, and says what the member knows of
// the leader rather than their words ("specified timeout value is too
// small"), as it does when ctx ran out ("context deadline exceeded").
func TestMembershipOutOfTimeIsUnavailable(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[0]
	ended, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for _, c := range []struct {
		ctx     context.Context
		refusal error
	}{
		{tctx(t), dragonboat.ErrTimeoutTooSmall},
		{tctx(t), dragonboat.ErrInvalidDeadline},
		{ended, context.DeadlineExceeded},
	} {
		err := n.membershipAttempts(c.ctx, n.shards[0], func(context.Context) error { return c.refusal })
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("a step refused with %q: %v, want ErrUnavailable", c.refusal, err)
		}
		// Its words (Dragonboat's, ctx's) say nothing to the caller; what
		// this member knows of the leader does.
		if err != nil && (strings.Contains(err.Error(), c.refusal.Error()) || !strings.Contains(err.Error(), "this member leads")) {
			t.Errorf("a step refused with %q: %q, want what the member knows of the leader instead", c.refusal, err)
		}
	}
}

// TestEveryMemberLogsMembershipChanges: "node added" and "node removed"
// are logged at INFO by every member as it applies the change, not only
// by the member that took the call, so that each member's log tells the
// cluster's story; and only those: not the initial members of a new
// cluster, which it applies one entry at a time as it starts.
func TestEveryMemberLogsMembershipChanges(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, captureLogs: true})
	// Each member logs the changes it applies once it caught up: not the
	// initial members, which a new cluster applies one entry at a time.
	for i := range 3 {
		eventually(t, fmt.Sprintf("node-%d reads its first membership", i+1), c.nodes[i].membershipKnown.Load)
	}
	n := c.nodes[c.follower()]
	addr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0]) // never started: the other three are a quorum of four
	if err := n.AddNode(tctx(t), "node-4", addr); err != nil {
		t.Fatal(err)
	}
	logged := func(i int, msg, attrs string) bool {
		for _, l := range strings.Split(c.logs[i].String(), "\n") {
			if strings.Contains(l, "level=INFO "+msg) && strings.Contains(l, attrs) {
				return true
			}
		}
		return false
	}
	for i := range 3 {
		eventually(t, fmt.Sprintf("node-%d logs the addition", i+1), func() bool {
			return logged(i, `msg="node added"`, "added=node-4 raft_address="+addr)
		})
	}
	if err := n.RemoveNode(tctx(t), "node-4"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		eventually(t, fmt.Sprintf("node-%d logs the removal", i+1), func() bool {
			return logged(i, `msg="node removed"`, "removed=node-4 raft_address="+addr)
		})
		if got := strings.Count(c.logs[i].String(), `msg="node added"`) + strings.Count(c.logs[i].String(), `msg="node removed"`); got != 2 {
			t.Errorf("node-%d logged %d membership changes, want 2:\n%s", i+1, got, c.logs[i])
		}
	}
}

// TestFirstStartNeedsPeers: a start that knows no members (no peers, no
// join) on an empty data directory is refused, saying what to give,
// before the directory is made; on the directory of a member that joined,
// it is a restart and needs neither (TestWipedNodeCatchesUpFromSnapshot
// restarts one so).
func TestFirstStartNeedsPeers(t *testing.T) {
	cfg := config.Dev(filepath.Join(t.TempDir(), "data"))
	cfg.Cluster.Peers = nil
	_, err := Start(context.Background(), Options{Config: cfg, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "cluster.peers: required at a member's first start") {
		t.Fatalf("a first start without peers or join: %v", err)
	}
	if _, err := os.Stat(cfg.Cluster.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start made its data directory (%v)", err)
	}
}

// TestMemberRefusesToRemoveItself: the removal of a member sent to that
// member (the leader, which a client reaches first) is refused as
// unavailable, saying to send it to another member, and changes nothing.
// Each of its replicas stops as it applies its own removal: the call
// answered "shutting down" at shard 0 and left it a member of shard 1.
func TestMemberRefusesToRemoveItself(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, shards: 2})
	x := c.waitLeader(0)
	name := c.cfgs[x].Cluster.NodeID
	_, err := c.nodes[x].RemoveMember(tctx(t), name)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cannot remove itself: send the removal to another member") {
		t.Fatalf("%s removing itself: %v, want unavailable saying to ask another member", name, err)
	}
	for _, n := range c.nodes {
		for _, sh := range n.shards {
			mem, err := n.nh.SyncGetShardMembership(tctx(t), sh.dbID)
			if err != nil || len(mem.Nodes) != 3 || n.memberID(name, mem.Nodes) == 0 {
				t.Fatalf("%s's %s after the refusal: %v, %v; want the three members", n.NodeID(), sh, mem, err)
			}
		}
	}
	via := (x + 1) % 3
	if _, err := c.nodes[via].RemoveMember(tctx(t), name); err != nil {
		t.Fatalf("removing %s through %s: %v", name, c.cfgs[via].Cluster.NodeID, err)
	}
	wantCutOff(t, c.nodes[x], RoleRemoved, "it was removed from the cluster")
}
