package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstepd/lockstep/core"
)

// stateMachine is the shard's Dragonboat state machine: a core.Machine, plus
// the one piece of state the runtime itself replicates, the names of the
// members (replica id → node id), so that every member, including one that
// joined later, shows node ids rather than hashes.
//
// It is an IConcurrentStateMachine rather than an IStateMachine: snapshots
// are encoded while Update is paused (PrepareSnapshot) but written to disk
// while entries keep applying (SaveSnapshot), so a snapshot of a large state
// stalls the log for the encoding only, not for the disk. It is not an
// IOnDiskStateMachine because core keeps its state in memory: a restart
// rebuilds it from the last snapshot plus the log after it.
//
// Update runs on Dragonboat's apply goroutine; Lookup on readers'
// goroutines. mu orders them. Lock order: stateMachine.mu, then shard.mu.
type stateMachine struct {
	sh *shard

	mu      sync.RWMutex
	m       *core.Machine
	names   map[uint64]string
	applied uint64 // the last entry applied, core's or the runtime's

	// Read without mu by the shard's loop and by Status.
	appliedIndex atomic.Uint64
	logNow       atomic.Int64 // core.LogTime after the last applied entry
}

// machineLimits are the limits every replica's machine runs with; Node.Do
// checks commands by them before proposing.
var machineLimits = core.DefaultLimits()

func newStateMachine(sh *shard) (*stateMachine, error) {
	m, err := core.New(machineLimits)
	if err != nil {
		return nil, err
	}
	return &stateMachine{sh: sh, m: m, names: map[uint64]string{}}, nil
}

// recordVersion is the first byte of an entry the runtime writes for itself.
// core's proposals start with core.ProposalVersion, so the two never meet.
const recordVersion = 0xF1

const recordNames = 1 // replica id → node id pairs

func init() {
	if core.ProposalVersion == recordVersion {
		panic("runtime: recordVersion collides with core.ProposalVersion")
	}
}

func encodeNames(names map[uint64]string) []byte {
	b := []byte{recordVersion, recordNames}
	return appendNames(b, names)
}

func appendNames(b []byte, names map[uint64]string) []byte {
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, id := range slices.Sorted(maps.Keys(names)) {
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, uint64(len(names[id])))
		b = append(b, names[id]...)
	}
	return b
}

func readNames(r *bytes.Reader) (map[uint64]string, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 1<<16 {
		return nil, fmt.Errorf("names: bad count (%v)", err)
	}
	names := make(map[uint64]string, n)
	for range n {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		l, err := binary.ReadUvarint(r)
		if err != nil || l > 1<<10 || l > uint64(r.Len()) {
			return nil, fmt.Errorf("names: bad length (%v)", err)
		}
		s := make([]byte, l)
		if _, err := io.ReadFull(r, s); err != nil {
			return nil, err
		}
		names[id] = string(s)
	}
	return names, nil
}

// Update applies committed entries in order.
func (s *stateMachine) Update(entries []sm.Entry) ([]sm.Entry, error) {
	s.mu.Lock()
	for i := range entries {
		s.apply(&entries[i])
	}
	s.mu.Unlock()
	s.sh.stepNow() // the replies go out now, not after a wake-up of the shard loop
	return entries, nil
}

func (s *stateMachine) apply(e *sm.Entry) {
	start := time.Now()
	e.Result = sm.Result{Value: e.Index}
	if len(e.Cmd) > 0 && e.Cmd[0] == recordVersion {
		s.applyRecord(e)
	} else if p, err := core.DecodeProposal(e.Cmd); err != nil {
		// Every replica skips the same bytes, so skipping is deterministic;
		// it is still a bug in whoever proposed them.
		s.sh.log.Error("skipping an entry that does not decode", "index", e.Index, "err", err)
	} else {
		entry := core.Entry{Index: e.Index, Proposal: p}
		out := s.m.Apply(entry)
		s.logNow.Store(int64(out.Time))
		s.sh.applied(entry, out)
		s.sh.m.commandsApplied.Add(float64(p.ClientCommands()))
	}
	s.applied = e.Index
	s.appliedIndex.Store(e.Index)
	mt := &s.sh.m
	mt.entriesApplied.Inc()
	mt.applyLatency.Observe(time.Since(start).Seconds())
	c := s.m.Counts()
	mt.activeLocks.Set(float64(c.Holds))
	mt.sessions.Set(float64(c.Sessions))
	mt.waiters.Set(float64(c.Waiters))
	mt.objects.Set(float64(c.Objects))
}

func (s *stateMachine) applyRecord(e *sm.Entry) {
	r := bytes.NewReader(e.Cmd[1:])
	kind, err := r.ReadByte()
	if err == nil && kind == recordNames {
		var names map[uint64]string
		if names, err = readNames(r); err == nil {
			maps.Copy(s.names, names)
			return
		}
	}
	s.sh.log.Error("skipping a runtime record that does not decode", "index", e.Index, "err", err)
}

// readQuery is what Node.Read passes to Lookup; readResult is what it
// gets back, so that fn's own error is not mistaken for Dragonboat's.
type readQuery struct {
	fn func(*core.Machine) error
}

type readResult struct {
	index uint64
	err   error
}

// Lookup runs a read on the machine and returns the applied index it saw.
func (s *stateMachine) Lookup(q any) (any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch q := q.(type) {
	case readQuery:
		return readResult{index: s.applied, err: q.fn(s.m)}, nil
	case namesQuery:
		return maps.Clone(s.names), nil
	}
	return nil, fmt.Errorf("runtime: unknown query %T", q)
}

type namesQuery struct{}

const snapshotMagic = "LSRT"
const snapshotVersion = 1

// PrepareSnapshot encodes the state while Update is paused. The runtime's
// header (applied index, member names) precedes core's own snapshot.
func (s *stateMachine) PrepareSnapshot() (any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = binary.AppendUvarint(b, s.applied)
	b = appendNames(b, s.names)
	return s.m.AppendSnapshot(b), nil
}

// SaveSnapshot writes what PrepareSnapshot encoded, while entries apply.
func (s *stateMachine) SaveSnapshot(ctx any, w io.Writer, _ sm.ISnapshotFileCollection, stopped <-chan struct{}) error {
	b, ok := ctx.([]byte)
	if !ok {
		return fmt.Errorf("runtime: snapshot context is %T", ctx)
	}
	select {
	case <-stopped:
		return sm.ErrSnapshotStopped
	default:
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	s.sh.m.snapshotsSaved.Inc()
	s.sh.m.snapshotBytes.Set(float64(len(b)))
	return nil
}

// RecoverFromSnapshot replaces the state: at a restart, before the log after
// the snapshot is replayed, or when this replica fell too far behind.
func (s *stateMachine) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, stopped <-chan struct{}) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	select {
	case <-stopped:
		return sm.ErrSnapshotStopped
	default:
	}
	applied, names, m, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.m, s.names, s.applied = m, names, applied
	s.appliedIndex.Store(applied)
	s.logNow.Store(int64(m.Now()))
	s.mu.Unlock()
	s.sh.restored(applied, m.Now())
	s.sh.m.snapshotsLoaded.Inc()
	s.sh.m.snapshotBytes.Set(float64(len(b)))
	return nil
}

func decodeSnapshot(b []byte) (uint64, map[uint64]string, *core.Machine, error) {
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) || len(b) < len(snapshotMagic)+1 {
		return 0, nil, nil, errors.New("runtime: not a Lockstep snapshot")
	}
	if v := b[len(snapshotMagic)]; v != snapshotVersion {
		return 0, nil, nil, fmt.Errorf("runtime: snapshot version %d; this build reads %d", v, snapshotVersion)
	}
	r := bytes.NewReader(b[len(snapshotMagic)+1:])
	applied, err := binary.ReadUvarint(r)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("runtime: snapshot header: %w", err)
	}
	names, err := readNames(r)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("runtime: snapshot header: %w", err)
	}
	m, err := core.Restore(b[len(b)-r.Len():])
	if err != nil {
		return 0, nil, nil, fmt.Errorf("runtime: snapshot: %w", err)
	}
	return applied, names, m, nil
}

// Close is called when the replica stops; the state needs no release.
func (s *stateMachine) Close() error { return nil }

var _ sm.IConcurrentStateMachine = (*stateMachine)(nil)
