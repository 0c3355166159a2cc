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
// the state the runtime itself replicates: the names of the members
// (replica id → node id), so that every member, including one that joined
// later, shows node ids rather than hashes; and, in shard 0, the log each
// replica took part under (replica id → log id), so that every member,
// not only those that heard it then, refuses it when it comes back under
// another (runtime/peerlogs.go).
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
	logs    map[uint64]uint64
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
	return &stateMachine{sh: sh, m: m, names: map[uint64]string{}, logs: map[uint64]uint64{}}, nil
}

// recordVersion is the first byte of an entry the runtime writes for itself.
// core's proposals start with core.ProposalVersion, so the two never meet.
const recordVersion = 0xF1

const (
	recordNames = 1 // replica id → node id pairs
	recordLogs  = 2 // replica id → log id pairs; log 0: the replica was removed
)

// runtimeVersion numbers the runtime's records and snapshot header: 2
// added the logs. A member of another cannot read this one's snapshots,
// so it is part of what peers must share (Node.versions).
const runtimeVersion = 2

func init() {
	if core.ProposalVersion == recordVersion {
		panic("runtime: recordVersion collides with core.ProposalVersion")
	}
}

func encodeNames(names map[uint64]string) []byte {
	b := []byte{recordVersion, recordNames}
	return appendNames(b, names)
}

func encodeLogs(logs map[uint64]uint64) []byte {
	return appendLogs([]byte{recordVersion, recordLogs}, logs)
}

func appendLogs(b []byte, logs map[uint64]uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(logs)))
	for _, id := range slices.Sorted(maps.Keys(logs)) {
		b = binary.AppendUvarint(b, id)
		b = binary.AppendUvarint(b, logs[id])
	}
	return b
}

func readLogs(r *bytes.Reader) (map[uint64]uint64, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > maxPeerLogs {
		return nil, fmt.Errorf("logs: bad count (%v)", err)
	}
	logs := make(map[uint64]uint64, n)
	for range n {
		id, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if logs[id], err = binary.ReadUvarint(r); err != nil {
			return nil, err
		}
	}
	return logs, nil
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
	switch {
	case err == nil && kind == recordNames:
		var names map[uint64]string
		if names, err = readNames(r); err == nil {
			maps.Copy(s.names, names)
			return
		}
	case err == nil && kind == recordLogs:
		var logs map[uint64]uint64
		if logs, err = readLogs(r); err == nil {
			s.learnLogs(logs)
			return
		}
	}
	s.sh.log.Error("skipping a runtime record that does not decode", "index", e.Index, "err", err)
}

// learnLogs keeps the logs of a record or a snapshot, the first one heard
// for each replica, in the state and in the node's book; log 0 marks a
// replica removed, for good.
func (s *stateMachine) learnLogs(logs map[uint64]uint64) {
	for _, id := range slices.Sorted(maps.Keys(logs)) { // in order: every replica keeps the same ones
		had, ok := s.logs[id]
		switch {
		case id == 0:
		case ok && logs[id] == 0 && had != 0:
			s.logs[id] = 0
		case !ok && len(s.logs) < maxPeerLogs:
			s.logs[id] = logs[id]
		}
	}
	if b := s.sh.n.book; b != nil {
		b.learn(s.logs, s.sh.log)
	}
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
	case logsQuery:
		return maps.Clone(s.logs), nil
	}
	return nil, fmt.Errorf("runtime: unknown query %T", q)
}

type namesQuery struct{}
type logsQuery struct{}

const snapshotMagic = "LSRT"

// PrepareSnapshot encodes the state while Update is paused. The runtime's
// header (applied index, member names) precedes core's own snapshot.
func (s *stateMachine) PrepareSnapshot() (any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.encode(), nil
}

// encode is the snapshot of the state now, under s.mu: the runtime's
// header (applied index, names, logs), then core's own.
func (s *stateMachine) encode() []byte {
	b := append([]byte(snapshotMagic), runtimeVersion)
	b = binary.AppendUvarint(b, s.applied)
	b = appendNames(b, s.names)
	b = appendLogs(b, s.logs)
	return s.m.AppendSnapshot(b)
}

// SaveSnapshot writes what PrepareSnapshot encoded, while entries apply.
func (s *stateMachine) SaveSnapshot(ctx any, w io.Writer, _ sm.ISnapshotFileCollection, stopped <-chan struct{}) error {
	b, ok := ctx.([]byte)
	if !ok {
		return fmt.Errorf("runtime: snapshot context is %T", ctx)
	}
	if hook := s.sh.n.savingSnapshot; hook != nil {
		hook()
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
	applied, names, logs, m, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.m, s.names, s.logs, s.applied = m, names, map[uint64]uint64{}, applied
	s.learnLogs(logs)
	s.appliedIndex.Store(applied)
	s.logNow.Store(int64(m.Now()))
	s.mu.Unlock()
	s.sh.restored(applied, m.Now())
	s.sh.m.snapshotsLoaded.Inc()
	s.sh.m.snapshotBytes.Set(float64(len(b)))
	return nil
}

// decodeSnapshot reads a snapshot of this version or the one before
// (which has no logs): a member restarting on a directory an earlier
// build wrote.
func decodeSnapshot(b []byte) (applied uint64, names map[uint64]string, logs map[uint64]uint64, m *core.Machine, err error) {
	if !bytes.HasPrefix(b, []byte(snapshotMagic)) || len(b) < len(snapshotMagic)+1 {
		return 0, nil, nil, nil, errors.New("runtime: not a Lockstep snapshot")
	}
	v := b[len(snapshotMagic)]
	if v != runtimeVersion && v != runtimeVersion-1 {
		return 0, nil, nil, nil, fmt.Errorf("runtime: snapshot version %d; this build reads %d and %d", v, runtimeVersion-1, runtimeVersion)
	}
	r := bytes.NewReader(b[len(snapshotMagic)+1:])
	if applied, err = binary.ReadUvarint(r); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("runtime: snapshot header: %w", err)
	}
	if names, err = readNames(r); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("runtime: snapshot header: %w", err)
	}
	logs = map[uint64]uint64{}
	if v == runtimeVersion {
		if logs, err = readLogs(r); err != nil {
			return 0, nil, nil, nil, fmt.Errorf("runtime: snapshot header: %w", err)
		}
	}
	if m, err = core.Restore(b[len(b)-r.Len():]); err != nil {
		return 0, nil, nil, nil, fmt.Errorf("runtime: snapshot: %w", err)
	}
	return applied, names, logs, m, nil
}

// Close is called when the replica stops; the state needs no release.
func (s *stateMachine) Close() error { return nil }

var _ sm.IConcurrentStateMachine = (*stateMachine)(nil)
