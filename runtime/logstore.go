package runtime

import (
	"errors"
	"fmt"
	"sync"
	_ "unsafe" // for go:linkname, below

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// The log store: Dragonboat's own Pebble store ("sharded-pebble"), with one
// difference, the one etcd's raft makes too: an update that only moves a
// replica's commit index is not written.
//
// Raft's commit index is volatile state (the Raft paper, figure 2): a
// member that restarts with an older one learns the current one from the
// leader, or, alone, by committing an entry of its new term. Dragonboat
// writes it with every state change all the same, and every write is
// synced, so after each commit the step worker syncs the disk once more for
// that index alone, and a proposal that arrives meanwhile waits for it: at
// one worker, most acquires (docs/performance.md, "What does not meet the
// targets"). Entries, snapshots, and a change of term or vote are still
// written and synced in the update that brings them, with the newest commit
// index beside them; only the updates that carry nothing else are held, and
// the newest of them is written when the store closes, so a member stopped
// cleanly restarts with its commit index as before.
//
// A member that did not stop cleanly restarts with a commit index that may
// be below its newest snapshot's index (the snapshot was taken at an applied
// index whose commit was never written). Dragonboat refuses such a state
// ("out of range state"), though a snapshot covers only committed entries,
// so ReadRaftState raises the index it read to the snapshot's.
//
// It wraps Dragonboat's store rather than being one of Lockstep's own: the
// data directories stay as they are, under the same store name that
// Dragonboat records and checks, and what does the writing is the store
// every Dragonboat user runs. The store is built only inside Dragonboat
// (internal/logdb), so it is reached by its linker name: a Dragonboat
// update that moves or changes it fails to link or fails
// TestLogStoreIsDragonboatsPebble, not silently.

//go:linkname newDragonboatLogDB github.com/lni/dragonboat/v4/internal/logdb.NewDefaultLogDB
func newDragonboatLogDB(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs []string, lldirs []string) (raftio.ILogDB, error)

// dragonboatLogDBName is the name Dragonboat's default factory gives its
// store, which it records in the data directory and checks at every start.
const dragonboatLogDBName = "sharded-pebble"

// logStoreFactory makes the log store for NodeHostConfig.Expert.LogDBFactory.
type logStoreFactory struct {
	// open makes the store it wraps; nil is Dragonboat's.
	open config.LogDBFactoryFunc
	// heldLost: the store drops its held states at Close (Options.heldCommitLost).
	heldLost bool
}

func (f logStoreFactory) Name() string { return dragonboatLogDBName }

func (f logStoreFactory) Create(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, lldirs []string) (raftio.ILogDB, error) {
	open := f.open
	if open == nil {
		open = newDragonboatLogDB
	}
	inner, err := open(cfg, cb, dirs, lldirs)
	if err != nil {
		return nil, err
	}
	// NodeHost runs this check itself only on a store of its own type.
	if sc, ok := inner.(interface{ SelfCheckFailed() (bool, error) }); ok {
		failed, err := sc.SelfCheckFailed()
		if err == nil && failed {
			err = errors.New("the log store's self check failed: its entries were written in another format than the one it is configured for")
		}
		if err != nil {
			return nil, errors.Join(err, inner.Close())
		}
	}
	return &logStore{ILogDB: inner, heldLost: f.heldLost, written: make(map[replicaKey]pb.State), held: make(map[replicaKey]pb.State)}, nil
}

type replicaKey struct{ shard, replica uint64 }

// logStore is Dragonboat's log store with commit-only updates held
// (above).
type logStore struct {
	raftio.ILogDB
	heldLost bool

	mu sync.Mutex
	// written is the state last handed to the store, per replica;
	// held, the newest commit-only state after it, if any.
	written, held map[replicaKey]pb.State
}

// mustWrite says whether u carries anything a restart needs: entries, a
// snapshot, or a term or vote other than the one written.
func (s *logStore) mustWrite(u *pb.Update) bool {
	if len(u.EntriesToSave) > 0 || !pb.IsEmptySnapshot(u.Snapshot) {
		return true
	}
	if pb.IsEmptyState(u.State) {
		return false
	}
	w, ok := s.written[replicaKey{u.ShardID, u.ReplicaID}]
	return !ok || w.Term != u.State.Term || w.Vote != u.State.Vote
}

// SaveRaftState writes the updates that carry anything but a commit index,
// and holds the others' state. The engine goes on to use updates after
// this, so they are filtered into a new slice, made only at the first
// update held (one shard per step worker, the usual case, holds all or
// none).
func (s *logStore) SaveRaftState(updates []pb.Update, worker uint64) error {
	var filtered []pb.Update // nil while every update so far is written
	s.mu.Lock()
	for i := range updates {
		u := &updates[i]
		k := replicaKey{u.ShardID, u.ReplicaID}
		write := s.mustWrite(u)
		switch {
		case write && !pb.IsEmptyState(u.State):
			s.written[k] = u.State
			delete(s.held, k)
		case !write && !pb.IsEmptyState(u.State):
			s.held[k] = u.State
		}
		switch {
		case !write && filtered == nil:
			filtered = append(make([]pb.Update, 0, len(updates)-1), updates[:i]...)
		case write && filtered != nil:
			filtered = append(filtered, *u)
		}
	}
	s.mu.Unlock()
	toWrite := updates
	if filtered != nil {
		toWrite = filtered
	}
	if len(toWrite) == 0 {
		return nil
	}
	return s.ILogDB.SaveRaftState(toWrite, worker)
}

// ReadRaftState raises a commit index below the newest snapshot's to the
// snapshot's (above): Dragonboat passes that snapshot's index as lastIndex.
func (s *logStore) ReadRaftState(shard, replica, snapshotIndex uint64) (raftio.RaftState, error) {
	rs, err := s.ILogDB.ReadRaftState(shard, replica, snapshotIndex)
	if err == nil && !pb.IsEmptyState(rs.State) && rs.State.Commit < snapshotIndex {
		rs.State.Commit = snapshotIndex
	}
	return rs, err
}

// RemoveNodeData forgets the replica's held state, which Close would
// otherwise write back for a replica whose data is gone.
func (s *logStore) RemoveNodeData(shard, replica uint64) error {
	s.forget(shard, replica)
	return s.ILogDB.RemoveNodeData(shard, replica)
}

// ImportSnapshot writes the replica's state anew (a restore), which a held
// state of before must not overwrite at Close.
func (s *logStore) ImportSnapshot(ss pb.Snapshot, replica uint64) error {
	s.forget(ss.ShardID, replica)
	return s.ILogDB.ImportSnapshot(ss, replica)
}

func (s *logStore) forget(shard, replica uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := replicaKey{shard, replica}
	delete(s.written, k)
	delete(s.held, k)
}

// Close writes every held state, one replica at a time (the store writes
// one call's updates into one of its partitions), then closes the store.
// NodeHost closes the store after its step workers have stopped, so the
// first worker's write buffer is free.
func (s *logStore) Close() error {
	s.mu.Lock()
	held := s.held
	s.held = make(map[replicaKey]pb.State)
	s.mu.Unlock()
	if s.heldLost {
		held = nil
	}
	var errs []error
	for k, st := range held {
		u := []pb.Update{{ShardID: k.shard, ReplicaID: k.replica, State: st}}
		if err := s.ILogDB.SaveRaftState(u, 1); err != nil {
			errs = append(errs, fmt.Errorf("writing shard %d's commit index %d at close: %w", k.shard, st.Commit, err))
		}
	}
	return errors.Join(append(errs, s.ILogDB.Close())...)
}
