package runtime

import (
	"slices"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// recordingLogDB stands in for Dragonboat's store: it keeps what it is
// asked to write. A call the tests do not expect panics (nil ILogDB).
type recordingLogDB struct {
	raftio.ILogDB
	saved   [][]pb.Update
	state   raftio.RaftState
	removed []replicaKey
	closed  bool
}

func (r *recordingLogDB) SaveRaftState(u []pb.Update, _ uint64) error {
	r.saved = append(r.saved, slices.Clone(u))
	return nil
}

func (r *recordingLogDB) ReadRaftState(uint64, uint64, uint64) (raftio.RaftState, error) {
	return r.state, nil
}

func (r *recordingLogDB) RemoveNodeData(shard, replica uint64) error {
	r.removed = append(r.removed, replicaKey{shard, replica})
	return nil
}

func (r *recordingLogDB) Close() error { r.closed = true; return nil }

func openRecording(t *testing.T, heldLost bool) (*logStore, *recordingLogDB) {
	t.Helper()
	rec := &recordingLogDB{}
	f := logStoreFactory{heldLost: heldLost, open: func(dbconfig.NodeHostConfig, dbconfig.LogDBCallback, []string, []string) (raftio.ILogDB, error) {
		return rec, nil
	}}
	db, err := f.Create(dbconfig.NodeHostConfig{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db.(*logStore), rec
}

func state(term, vote, commit uint64) pb.State {
	return pb.State{Term: term, Vote: vote, Commit: commit}
}

// TestLogStoreWritesAllButCommitOnlyUpdates: entries, snapshots, and a new
// term or vote reach the store with the newest commit index beside them;
// an update that only moves the commit index does not, nor one with
// nothing to write.
func TestLogStoreWritesAllButCommitOnlyUpdates(t *testing.T) {
	s, rec := openRecording(t, false)
	entries := []pb.Entry{{Index: 7, Term: 2}}
	for i, tc := range []struct {
		what  string
		u     pb.Update
		write bool
	}{
		{"the first state", pb.Update{State: state(2, 1, 5)}, true},
		{"the commit index alone", pb.Update{State: state(2, 1, 6)}, false},
		{"again", pb.Update{State: state(2, 1, 7)}, false},
		{"messages alone", pb.Update{Messages: []pb.Message{{Type: pb.HeartbeatResp}}}, false},
		{"committed entries alone", pb.Update{CommittedEntries: entries}, false},
		{"entries", pb.Update{State: state(2, 1, 7), EntriesToSave: entries}, true},
		{"entries, the state unchanged", pb.Update{EntriesToSave: entries}, true},
		{"a vote", pb.Update{State: state(2, 3, 7)}, true},
		{"a term", pb.Update{State: state(3, 0, 8)}, true},
		{"a snapshot", pb.Update{Snapshot: pb.Snapshot{Index: 8, Term: 3}}, true},
		{"the commit index after them", pb.Update{State: state(3, 0, 9)}, false},
	} {
		tc.u.ShardID, tc.u.ReplicaID = 1, 2
		before := len(rec.saved)
		if err := s.SaveRaftState([]pb.Update{tc.u}, 1); err != nil {
			t.Fatal(err)
		}
		if wrote := len(rec.saved) > before; wrote != tc.write {
			t.Fatalf("%d, %s: written %v, want %v", i, tc.what, wrote, tc.write)
		}
		if tc.write && rec.saved[before][0].State != tc.u.State {
			t.Fatalf("%d, %s: wrote state %v, want %v", i, tc.what, rec.saved[before][0].State, tc.u.State)
		}
	}
}

// TestLogStoreFiltersAMixedBatch: in a batch of several shards' updates
// only those with something to write reach the store, in their order, and
// the engine's slice, which it reads on after the write, is left alone.
func TestLogStoreFiltersAMixedBatch(t *testing.T) {
	s, rec := openRecording(t, false)
	first := []pb.Update{
		{ShardID: 1, ReplicaID: 1, State: state(1, 1, 1)},
		{ShardID: 2, ReplicaID: 1, State: state(1, 1, 1)},
		{ShardID: 3, ReplicaID: 1, State: state(1, 1, 1)},
	}
	if err := s.SaveRaftState(first, 1); err != nil {
		t.Fatal(err)
	}
	batch := []pb.Update{
		{ShardID: 1, ReplicaID: 1, State: state(1, 1, 2)},
		{ShardID: 2, ReplicaID: 1, State: state(1, 1, 2), EntriesToSave: []pb.Entry{{Index: 2, Term: 1}}},
		{ShardID: 3, ReplicaID: 1, State: state(2, 0, 2)},
	}
	kept := slices.Clone(batch)
	if err := s.SaveRaftState(batch, 1); err != nil {
		t.Fatal(err)
	}
	if len(rec.saved) != 2 {
		t.Fatalf("%d writes, want 2", len(rec.saved))
	}
	got := rec.saved[1]
	if len(got) != 2 || got[0].ShardID != 2 || got[1].ShardID != 3 {
		t.Fatalf("wrote %+v, want shards 2 and 3", got)
	}
	for i := range batch {
		if batch[i].ShardID != kept[i].ShardID || batch[i].State != kept[i].State {
			t.Fatalf("the caller's update %d changed: %+v, was %+v", i, batch[i], kept[i])
		}
	}
	// A held update between written ones: those before it are kept too.
	if err := s.SaveRaftState([]pb.Update{
		{ShardID: 2, ReplicaID: 1, State: state(1, 1, 3), EntriesToSave: []pb.Entry{{Index: 3, Term: 1}}},
		{ShardID: 1, ReplicaID: 1, State: state(1, 1, 3)},
		{ShardID: 3, ReplicaID: 1, State: state(3, 0, 2)},
	}, 1); err != nil {
		t.Fatal(err)
	}
	if got := rec.saved[len(rec.saved)-1]; len(rec.saved) != 3 || len(got) != 2 || got[0].ShardID != 2 || got[1].ShardID != 3 {
		t.Fatalf("wrote %+v, want shards 2 and 3", rec.saved)
	}
}

// TestLogStoreWritesWhatItHeldAtClose: a member stopped cleanly restarts
// with its newest commit index; a replica whose data was removed is not
// written back; and with heldLost (a kill -9) nothing is.
func TestLogStoreWritesWhatItHeldAtClose(t *testing.T) {
	for _, lost := range []bool{false, true} {
		s, rec := openRecording(t, lost)
		for _, u := range []pb.Update{
			{ShardID: 1, ReplicaID: 1, State: state(1, 1, 1)},
			{ShardID: 1, ReplicaID: 1, State: state(1, 1, 2)},
			{ShardID: 1, ReplicaID: 1, State: state(1, 1, 3)},
			{ShardID: 2, ReplicaID: 1, State: state(1, 1, 1)},
			{ShardID: 2, ReplicaID: 1, State: state(1, 1, 2)},
		} {
			if err := s.SaveRaftState([]pb.Update{u}, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.RemoveNodeData(2, 1); err != nil {
			t.Fatal(err)
		}
		writes := len(rec.saved)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if !rec.closed {
			t.Fatal("the store was not closed")
		}
		atClose := rec.saved[writes:]
		if lost {
			if len(atClose) != 0 {
				t.Fatalf("held states lost: wrote %+v at close", atClose)
			}
			continue
		}
		if len(atClose) != 1 || len(atClose[0]) != 1 || atClose[0][0].ShardID != 1 || atClose[0][0].State != state(1, 1, 3) {
			t.Fatalf("wrote %+v at close, want shard 1's commit index 3 alone", atClose)
		}
	}
}

// TestLogStoreRaisesCommitToTheSnapshot: a commit index read below the
// snapshot's (its update was held when the member died) is the
// snapshot's, which Dragonboat would refuse otherwise; an empty state (no
// state written yet) stays empty.
func TestLogStoreRaisesCommitToTheSnapshot(t *testing.T) {
	s, rec := openRecording(t, false)
	for _, tc := range []struct {
		read     pb.State
		snapshot uint64
		want     pb.State
	}{
		{state(2, 1, 5), 8, state(2, 1, 8)},
		{state(2, 1, 9), 8, state(2, 1, 9)},
		{state(2, 1, 5), 0, state(2, 1, 5)},
		{pb.State{}, 8, pb.State{}},
	} {
		rec.state = raftio.RaftState{State: tc.read, FirstIndex: 3, EntryCount: 9}
		rs, err := s.ReadRaftState(1, 1, tc.snapshot)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State != tc.want || rs.FirstIndex != 3 || rs.EntryCount != 9 {
			t.Errorf("read %v with a snapshot at %d: %+v, want %v", tc.read, tc.snapshot, rs, tc.want)
		}
	}
}

// TestLogStoreIsDragonboatsPebble: the store under the wrapper is
// Dragonboat's own, under the name Dragonboat records in a data directory
// (so directories written before keep opening), and a commit-only update
// is not on its disk until the store closes.
func TestLogStoreIsDragonboatsPebble(t *testing.T) {
	dir := t.TempDir()
	nhc := nodeHostConfig(config.Defaults(), dir, 1)
	if err := nhc.Prepare(); err != nil {
		t.Fatal(err)
	}
	open := func() raftio.ILogDB {
		t.Helper()
		db, err := nhc.Expert.LogDBFactory.Create(nhc, nil, []string{dir}, []string{dir})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	if name := nhc.Expert.LogDBFactory.Name(); name != dragonboatLogDBName {
		t.Fatalf("the factory is named %q, want Dragonboat's %q", name, dragonboatLogDBName)
	}
	db := open()
	if _, ok := db.(*logStore).ILogDB.(interface{ SelfCheckFailed() (bool, error) }); !ok || db.Name() != dragonboatLogDBName {
		t.Fatalf("the store under the wrapper is %T named %q, not Dragonboat's sharded Pebble store", db.(*logStore).ILogDB, db.Name())
	}
	commitIs := func(db raftio.ILogDB, want uint64) {
		t.Helper()
		rs, err := db.ReadRaftState(1, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if rs.State.Commit != want || rs.State.Term != 2 || rs.EntryCount != 3 {
			t.Fatalf("read %+v, want term 2, commit %d, 3 entries", rs, want)
		}
	}
	ents := []pb.Entry{{Index: 1, Term: 2}, {Index: 2, Term: 2}, {Index: 3, Term: 2}}
	if err := db.SaveRaftState([]pb.Update{{ShardID: 1, ReplicaID: 1, State: state(2, 1, 1), EntriesToSave: ents}}, 1); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveRaftState([]pb.Update{{ShardID: 1, ReplicaID: 1, State: state(2, 1, 3)}}, 1); err != nil {
		t.Fatal(err)
	}
	commitIs(db, 1)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	commitIs(db, 3)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestMemberKilledRightAfterASnapshotRestarts: a member that dies after a
// snapshot taken at an index whose commit index it never wrote (the store
// held it) restarts, instead of Dragonboat refusing a commit index below
// its snapshot's, and holds what it held. A lone member's commit comes with
// its entries (it counts itself at the append), so it takes three: on a
// follower the commit of the newest entry comes alone, with the next
// heartbeat, and on the leader with the follower's answer.
func TestMemberKilledRightAfterASnapshotRestarts(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, heldCommitLost: true})
	l := c.waitLeader(0)
	s := session(t, c.nodes[l], time.Minute)
	r := do(t, c.nodes[l], mutex("kept", s, 0))
	for _, x := range []int{(l + 1) % 3, l} {
		n := c.nodes[x]
		eventually(t, "the member applied the grant", func() bool {
			return len(status(t, n, core.KindMutex, "kept", true).Holders) == 1
		})
		at, err := n.nh.SyncRequestSnapshot(tctx(t), n.shards[0].dbID, dragonboat.SnapshotOption{})
		if err != nil {
			t.Fatal(err)
		}
		c.stop(x)
		c.restart(x)
		c.waitLeader(0)
		st := status(t, c.nodes[x], core.KindMutex, "kept", true)
		if len(st.Holders) != 1 || st.Holders[0].Session != s || st.Holders[0].Token != r.Token {
			t.Fatalf("node %d after a restart from its snapshot at %d: holders %+v, want session %d with token %d", x+1, at, st.Holders, s, r.Token)
		}
	}
}
