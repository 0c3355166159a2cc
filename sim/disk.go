package sim

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// disk is one replica's durable storage. Writes land in a volatile buffer
// and become durable only when synced; a crash throws the buffer away. The
// replica follows etcd raft's contract (persist a Ready's entries and hard
// state before sending its messages), so what a crash loses was never
// promised to anyone, unless a planted bug says otherwise.
type disk struct {
	hard *pb.HardState
	snap *pb.Snapshot
	ents []*pb.Entry // contiguous; entries at or below the snapshot's index are ignored on load

	pending []diskWrite
	syncs   uint64
}

type diskWrite struct {
	hard *pb.HardState
	snap *pb.Snapshot
	ents []*pb.Entry
}

func (d *disk) write(w diskWrite) { d.pending = append(d.pending, w) }

// sync makes every buffered write durable, in order.
func (d *disk) sync() {
	for _, w := range d.pending {
		d.apply(w)
	}
	d.pending = d.pending[:0]
	d.syncs++
}

// crash loses what was not synced.
func (d *disk) crash() { d.pending = nil }

func (d *disk) apply(w diskWrite) {
	if w.snap != nil {
		d.snap = w.snap
		// A received snapshot replaces the whole log, as etcd's
		// MemoryStorage.ApplySnapshot does in memory.
		d.ents = nil
	}
	if len(w.ents) > 0 {
		first := w.ents[0].GetIndex()
		cut := len(d.ents)
		for cut > 0 && d.ents[cut-1].GetIndex() >= first {
			cut--
		}
		d.ents = append(d.ents[:cut], w.ents...)
	}
	if w.hard != nil {
		d.hard = w.hard
	}
}

// saveSnapshot records a snapshot the replica took of its own applied
// state and drops the entries at or below keepFrom-1. Taking it is a
// durable write of its own (the state it describes was applied from
// durable entries).
func (d *disk) saveSnapshot(s *pb.Snapshot, compactTo uint64) {
	d.snap = s
	i := 0
	for i < len(d.ents) && d.ents[i].GetIndex() <= compactTo {
		i++
	}
	d.ents = append([]*pb.Entry(nil), d.ents[i:]...)
}

// load rebuilds the raft storage a restarting replica starts from.
func (d *disk) load() *raft.MemoryStorage {
	ms := raft.NewMemoryStorage()
	si := uint64(0)
	if d.snap != nil {
		if err := ms.ApplySnapshot(d.snap); err != nil {
			panic("sim: disk snapshot does not load: " + err.Error())
		}
		si = d.snap.GetMetadata().GetIndex()
	}
	var ents []*pb.Entry
	for _, e := range d.ents {
		if e.GetIndex() > si {
			ents = append(ents, e)
		}
	}
	if len(ents) > 0 {
		if err := ms.Append(ents); err != nil {
			panic("sim: disk log does not load: " + err.Error())
		}
	}
	if d.hard != nil {
		if err := ms.SetHardState(d.hard); err != nil {
			panic("sim: disk hard state does not load: " + err.Error())
		}
	}
	return ms
}
