package shards

import (
	"errors"
	"fmt"

	"github.com/lockstepd/lockstep/core"
)

// Watches across shards. Each shard numbers its own log, so where a watch
// of a prefix stands is one index per shard: Positions. A watch of one name
// reads one shard (Of) and stands at one index of that shard's log.
//
// The merged stream of several shards (runtime's watchFrom executes it):
//
//   - Each shard's events keep their order, and an entry's events stay
//     together, the last one marked as the entry's end; shards interleave
//     as they apply.
//   - When one shard's stream ends (its consumer fell behind, a snapshot
//     was installed, the node closes), the merged stream ends too, so that
//     a gap is never silent: the consumer resumes from its Positions.
//   - A progress request asks every shard for a marker; a shard already
//     asked and not yet answered is not asked twice.

// ErrAmbiguousIndex is the answer to one log index given where several
// shards' logs are meant: each shard numbers its own, so resume from
// Positions, or watch one shard (one name).
var ErrAmbiguousIndex = errors.New("lockstep: a log index is ambiguous across shards")

// Positions is where a watch of a prefix stands: Positions[i] is the next
// index of shard i's log it has not scanned. Resuming from it, on any node,
// neither misses nor repeats an event, provided it moved only between
// entries (EntryEnd, Marker). 0 means "from now": Fill gives it the next
// index after what the node has applied.
type Positions []uint64

// Position is one shard's entry of Positions as a client sends it back
// (the API's start_positions): shards may come in any order.
type Position struct {
	Shard uint64
	Next  uint64
}

// Fill starts every shard whose position is 0 after applied[i], the index
// the node has applied in shard i (so a watch from now starts with the next
// entry). applied must have one index per shard.
func (p Positions) Fill(applied []uint64) error {
	if len(applied) != len(p) {
		return fmt.Errorf("shards: %d applied indexes for %d positions: give one per shard", len(applied), len(p))
	}
	for i := range p {
		if p[i] == 0 {
			p[i] = applied[i] + 1
		}
	}
	return nil
}

// EntryEnd moves shard's position past the entry at index, whose watched
// events have all been passed on.
func (p Positions) EntryEnd(shard, index uint64) { p[shard] = index + 1 }

// Marker moves shard's position past index, up to which the shard has
// scanned with nothing more to pass on (a progress marker, which comes
// between entries). A position never moves back.
func (p Positions) Marker(shard, index uint64) { p[shard] = max(p[shard], index+1) }

// Check refuses positions that are not one per shard among count shards:
// a caller's bug, or a vector from a cluster with another shard count.
func (p Positions) Check(count int) error {
	if len(p) != count {
		return fmt.Errorf("shards: %d start indexes for %d shards: give one per shard", len(p), count)
	}
	return nil
}

// OneIndex refuses a single start index (from, 0 for now) for a stream of
// every shard among count: it names no entry once there are several logs.
func OneIndex(from uint64, count int) error {
	if from != 0 && count > 1 {
		return fmt.Errorf("%w: from index %d is ambiguous with %d shards (each numbers its own log): "+
			"watch one shard with WatchShard, or start from now (0)", ErrAmbiguousIndex, from, count)
	}
	return nil
}

// WatchStart is where a watch asked to start, among count shards: index
// (the API's start_index), positions (start_positions), or neither (from
// now). A watch of one name lives in one shard: it takes an index only, and
// WatchStart answers nil Positions (its stream reports one applied index).
// A prefix watch gets one position per shard, 0 where it starts from now.
// A start that names no place in this cluster is refused with core's
// invalid_argument, saying what to send instead, in the API's field names.
// count < 1 counts as 1.
func WatchStart(count int, name bool, index uint64, given []Position) (Positions, error) {
	count = max(count, 1)
	if name {
		if len(given) > 0 {
			return nil, invalid("start_positions is for a prefix watch; a name lives in one shard: resume its watch with start_index (the last applied_index + 1)")
		}
		return nil, nil
	}
	next := make(Positions, count)
	if len(given) == 0 {
		if index != 0 && count > 1 {
			return nil, invalid("start_index %d is ambiguous: this cluster has %d shards, each numbering its own log, and a prefix spans them all; "+
				"resume a prefix watch with start_positions (the positions of the last WatchResponse received), "+
				"or watch one name to resume from an index", index, count)
		}
		next[0] = index // one shard: the index is shard 0's
		return next, nil
	}
	if index != 0 {
		return nil, invalid("start_index %d and start_positions are both given: resume a prefix watch with start_positions alone "+
			"(the positions of the last WatchResponse received)", index)
	}
	for i, p := range given {
		switch {
		case p.Shard >= uint64(count):
			return nil, invalid("start_positions[%d]: shard_id %d is not a shard of this cluster, which has %d (shard_id 0..%d): "+
				"send back the positions a WatchResponse of this cluster gave", i, p.Shard, count, count-1)
		case next[p.Shard] != 0:
			return nil, invalid("start_positions[%d]: shard_id %d appears twice: give each shard once", i, p.Shard)
		case p.Next == 0:
			return nil, invalid("start_positions[%d]: next_index is 0 for shard_id %d: give the next_index the last WatchResponse's positions gave "+
				"(at least 1), or leave start_positions empty to watch from now", i, p.Shard)
		}
		next[p.Shard] = p.Next
	}
	var missing []int
	for i, n := range next {
		if n == 0 {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		return nil, invalid("start_positions has no position for shard_id %v: give every shard 0..%d once, "+
			"as the last WatchResponse's positions list them", missing, count-1)
	}
	return next, nil
}

func invalid(format string, args ...any) error {
	return &core.Error{Code: core.CodeInvalidArgument, Msg: fmt.Sprintf(format, args...)}
}
