package rpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// WatchHandler serves lockstep.v1.WatchService.
type WatchHandler struct{ *service }

var errStreamEnded = errors.New("this node stopped streaming (shutting down or lost its shard): resume on any node from the last applied_index + 1")

// maxEventsPerMessage bounds one WatchResponse.
const maxEventsPerMessage = 256

// progressInterval is how long a watch may go without sending a message
// before the handler asks how far its shards have been scanned, and sends a
// progress message (no events, positions or applied_index further on) if
// they have moved: a watch whose filter skips everything (other kinds,
// other names in busy shards) keeps a position close to the head of the
// log, and a resume does not fall off the events the node keeps.
const progressInterval = time.Second

// Watch streams the effects on one name or a prefix. Events arrive one at a
// time from the backend; the handler sends what has arrived as one message,
// and never ends a message in the middle of an entry's events (it waits for
// the rest, which the backend delivers together), so that where a message
// says the stream stands is exact: resuming from a prefix watch's positions,
// or from a name watch's applied_index + 1 (the last entry sent whole),
// neither misses nor repeats an event. A stream that sent nothing for
// progressInterval gets a progress message (no events) when the runtime's
// markers say it has scanned further.
func (h WatchHandler) Watch(ctx context.Context, req *connect.Request[pb.WatchRequest], stream *connect.ServerStream[pb.WatchResponse]) error {
	m := req.Msg
	prefix, exact := "", false
	switch t := m.Target.(type) {
	case *pb.WatchRequest_Name:
		prefix, exact = t.Name, true
	case *pb.WatchRequest_Prefix:
		prefix = t.Prefix
	}
	kinds := make([]core.Kind, 0, len(m.Kinds))
	for _, k := range m.Kinds {
		kinds = append(kinds, core.Kind(k))
	}
	canRead := h.readable(ctx)
	wanted := func(f core.Effect) bool {
		if exact && f.Name != prefix {
			return false
		}
		// Names the caller may not read are left out; so are session
		// expiries (no name), unless the caller may read every name.
		if canRead != nil && !canRead(f.Name) {
			return false
		}
		if len(kinds) > 0 && !slices.Contains(kinds, f.Object) {
			return false
		}
		// Session expiries carry no name: they belong to watches of
		// everything.
		return f.Name != "" || (prefix == "" && len(kinds) == 0)
	}
	shards := h.b.Shards()
	// next is, for a prefix, each shard's next index to send (nil for a
	// name, which reports applied_index alone).
	var next []uint64
	if !exact {
		var err error
		if next, err = h.startPositions(m, shards); err != nil {
			return err
		}
	} else if len(m.StartPositions) > 0 {
		return invalid("start_positions is for a prefix watch; a name lives in one shard: resume its watch with start_index (the last applied_index + 1)")
	}
	// The first message is progress only, at once: it tells the client
	// where the stream starts, and gets the response headers out (a gRPC
	// client's call returns only when they arrive). Without a start the
	// stream starts after this node's applied index (of every shard, for a
	// prefix).
	askProgress := make(chan struct{}, 1)
	events, from, err := h.subscribe(ctx, m, prefix, exact, shards, next, askProgress)
	if err != nil {
		return err
	}
	merged := !exact && shards > 1
	// scanned is, for one log (a name, or a prefix with one shard), the
	// last entry whose watched events have all been sent or are in msg:
	// the last entry received whole, or a progress marker's index. It is
	// the messages' applied_index, so that a resume from it + 1 is exact.
	scanned := from - min(from, 1)
	applied := func() uint64 {
		if merged {
			return 0 // no one index covers every shard
		}
		return scanned
	}
	first := &pb.WatchResponse{AppliedIndex: applied(), Positions: positionsPB(next)}
	if err := stream.Send(first); err != nil {
		return err
	}
	// What the last message said, so that a progress message is sent only
	// when it says more.
	sentApplied, sentNext := first.AppliedIndex, slices.Clone(next)
	// One timer per stream: when a period passes without a message, the
	// handler asks the runtime for progress markers, and sends a message
	// without events if they move the stream's position.
	timer := time.NewTimer(progressInterval)
	defer timer.Stop()
	sentSince := false
	// open is the shards whose last event received did not end its entry,
	// with that entry's index: the message waits for the rest of it.
	open := map[uint64]uint64{}
	for {
		var ev runtime.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			if !sentSince {
				select {
				case askProgress <- struct{}{}:
				default:
				}
			}
			sentSince = false
			timer.Reset(progressInterval)
			continue
		case ev, ok = <-events:
		}
		if !ok {
			return h.streamEnded(ctx)
		}
		msg := &pb.WatchResponse{}
		marker := false
		add := func(e runtime.Event) {
			if e.Progress {
				// Markers come between entries: every watched event of
				// the shard's entries up to e.Index came before it.
				if _, inEntry := open[e.Shard]; !inEntry {
					marker = true
					if next != nil {
						next[e.Shard] = max(next[e.Shard], e.Index+1)
					}
					scanned = max(scanned, e.Index)
				}
				return
			}
			if e.EntryEnd {
				delete(open, e.Shard)
				scanned = max(scanned, e.Index)
				if next != nil {
					next[e.Shard] = e.Index + 1
				}
			} else {
				open[e.Shard] = e.Index
			}
			if wanted(e.Effect) {
				msg.Events = append(msg.Events, eventPB(e))
			}
		}
		add(ev)
		closed := false
	drain:
		// An entry's events all come (the backend sends them together, or
		// ends the stream): the bound may be passed by one entry's worth.
		for len(msg.Events) < maxEventsPerMessage || len(open) > 0 {
			var e runtime.Event
			if len(open) > 0 {
				select {
				case <-ctx.Done():
					return nil
				case e, ok = <-events:
				}
			} else {
				select {
				case e, ok = <-events:
				default:
					break drain
				}
			}
			if !ok {
				closed = true
				break
			}
			add(e)
		}
		if closed && len(open) > 0 {
			// The stream ended inside an entry: leave that entry out, so
			// that a resume from next gets all of it, once.
			msg.Events = slices.DeleteFunc(msg.Events, func(e *pb.Event) bool {
				idx, ok := open[e.ShardId]
				return ok && e.Index == idx
			})
		}
		// A message without events is progress: nothing watched happened,
		// but the stream has scanned further; a client resuming from it
		// skips what it was never going to get, rather than fall off the
		// history.
		if len(msg.Events) == 0 && !(marker && (applied() > sentApplied || !slices.Equal(next, sentNext))) {
			msg = nil
		}
		if msg != nil {
			msg.AppliedIndex = applied()
			msg.Positions = positionsPB(next)
			if err := stream.Send(msg); err != nil {
				return err
			}
			sentApplied, sentSince = msg.AppliedIndex, true
			copy(sentNext, next)
		}
		if closed {
			return h.streamEnded(ctx)
		}
	}
}

// startPositions answers, for a prefix watch, the index each shard's stream
// starts from (0: after this node's applied index), from start_positions or
// start_index, or refuses them with what to fix.
func (h WatchHandler) startPositions(m *pb.WatchRequest, shards int) ([]uint64, error) {
	next := make([]uint64, shards)
	if len(m.StartPositions) == 0 {
		if m.StartIndex != 0 && shards > 1 {
			return nil, invalid("start_index %d is ambiguous: this cluster has %d shards, each numbering its own log, and a prefix spans them all; "+
				"resume a prefix watch with start_positions (the positions of the last WatchResponse received), "+
				"or watch one name to resume from an index", m.StartIndex, shards)
		}
		next[0] = m.StartIndex // one shard: the index is shard 0's
		return next, nil
	}
	if m.StartIndex != 0 {
		return nil, invalid("start_index %d and start_positions are both given: resume a prefix watch with start_positions alone "+
			"(the positions of the last WatchResponse received)", m.StartIndex)
	}
	for i, p := range m.StartPositions {
		switch {
		case p.ShardId >= uint64(shards):
			return nil, invalid("start_positions[%d]: shard_id %d is not a shard of this cluster, which has %d (shard_id 0..%d): "+
				"send back the positions a WatchResponse of this cluster gave", i, p.ShardId, shards, shards-1)
		case next[p.ShardId] != 0:
			return nil, invalid("start_positions[%d]: shard_id %d appears twice: give each shard once", i, p.ShardId)
		case p.NextIndex == 0:
			return nil, invalid("start_positions[%d]: next_index is 0 for shard_id %d: give the next_index the last WatchResponse's positions gave "+
				"(at least 1), or leave start_positions empty to watch from now", i, p.ShardId)
		}
		next[p.ShardId] = p.NextIndex
	}
	var missing []int
	for i, n := range next {
		if n == 0 {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		return nil, invalid("start_positions has no position for shard_id %v: give every shard 0..%d once, "+
			"as the last WatchResponse's positions list them", missing, shards-1)
	}
	return next, nil
}

// subscribe opens the backend's stream. For a name it answers the index the
// stream starts from; for a prefix it fills next in, where it was 0, with
// this node's applied index + 1 of that shard.
func (h WatchHandler) subscribe(ctx context.Context, m *pb.WatchRequest, prefix string, exact bool, shards int, next []uint64,
	askProgress <-chan struct{}) (<-chan runtime.Event, uint64, error) {
	progress := runtime.WithProgress(askProgress)
	if exact {
		from := m.StartIndex
		if from == 0 {
			idx, err := h.read(ctx, prefix, true, func(*core.Machine) error { return nil })
			if err != nil {
				return nil, 0, err
			}
			from = idx + 1
		}
		events, err := h.b.WatchShard(ctx, h.b.ShardOf(prefix), prefix, from, progress)
		if err != nil {
			return nil, 0, h.apiError(err)
		}
		return events, from, nil
	}
	if slices.Contains(next, 0) {
		rctx, cancel := withTimeout(ctx, h.opts.RequestTimeout)
		idx, err := h.b.ReadAll(rctx, true, func(uint64, *core.Machine) error { return nil })
		cancel()
		if err != nil {
			return nil, 0, h.apiError(err)
		}
		for i := range next {
			if next[i] == 0 {
				next[i] = idx[i] + 1
			}
		}
	}
	var events <-chan runtime.Event
	var err error
	if shards == 1 {
		events, err = h.b.WatchShard(ctx, 0, prefix, next[0], progress)
	} else {
		events, err = h.b.WatchShards(ctx, prefix, next, progress)
	}
	if errors.Is(err, runtime.ErrCompacted) {
		return nil, 0, connect.NewError(connect.CodeOutOfRange, fmt.Errorf("%w: the stream cannot resume without a gap; "+
			"read the prefix's state (List) and watch it again from now, without start_positions", err))
	}
	if err != nil {
		return nil, 0, h.apiError(err)
	}
	return events, next[0], nil
}

// positionsPB is next as the positions of a WatchResponse (nil for nil).
func positionsPB(next []uint64) []*pb.ShardPosition {
	if next == nil {
		return nil
	}
	out := make([]*pb.ShardPosition, len(next))
	for i, n := range next {
		out[i] = &pb.ShardPosition{ShardId: uint64(i), NextIndex: n}
	}
	return out
}
