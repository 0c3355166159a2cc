package rpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// WatchHandler serves lockstep.v1.WatchService.
type WatchHandler struct{ *service }

var errStreamEnded = errors.New("this node stopped streaming (shutting down, lost its shard, or cut off): resume on any node: " +
	"a prefix watch from the last message's positions (start_positions), a name watch from its applied_index + 1, an observation anew")

// maxEventsPerMessage bounds one WatchResponse.
const maxEventsPerMessage = 256

// progressInterval is how long a watch may go without sending a message
// before the handler asks how far its shards have been scanned, and sends a
// progress message (no events, positions or applied_index further on) if
// they have moved: a watch whose filter skips everything (other kinds,
// other names in busy shards) keeps a position close to the head of the
// log, and a resume does not fall off the events the node keeps.
const progressInterval = time.Second

// silentIntervals is how many progress intervals a stream may stay silent,
// its markers showing nothing new, before it gets a message repeating its
// positions: an idle shard writes no entries at all (docs/runtime.md, Idle
// ticks), and a client must tell a quiet cluster from a dead connection
// (the Go client gives a stream up after 5 s of silence).
const silentIntervals = 2

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
	count := h.b.Shards()
	// next is, for a prefix, each shard's next index to send (nil for a
	// name, which reports applied_index alone): core/shards' rules
	// (WatchStart) from start_index or start_positions.
	given := make([]shards.Position, 0, len(m.StartPositions))
	for _, p := range m.StartPositions {
		given = append(given, shards.Position{Shard: p.ShardId, Next: p.NextIndex})
	}
	next, err := shards.WatchStart(count, exact, m.StartIndex, given)
	if err != nil {
		return h.apiError(err)
	}
	// The first message is progress only, at once: it tells the client
	// where the stream starts, and gets the response headers out (a gRPC
	// client's call returns only when they arrive). Without a start the
	// stream starts after this node's applied index (of every shard, for a
	// prefix).
	askProgress := make(chan struct{}, 1)
	events, from, err := h.subscribe(ctx, m, prefix, exact, count, next, askProgress)
	if err != nil {
		return err
	}
	merged := !exact && count > 1
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
	sv := serving{health: h.b.Health}
	sentSince := false
	silent := 0 // progress intervals in a row without a message
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
			if err := sv.check(time.Now()); err != nil {
				return err
			}
			silent++
			if sentSince {
				silent = 0
			}
			if silent >= silentIntervals {
				// Nothing moved: say where the stream still stands.
				if err := stream.Send(&pb.WatchResponse{AppliedIndex: sentApplied, Positions: positionsPB(sentNext)}); err != nil {
					return err
				}
				silent = 0
			} else if !sentSince {
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
						next.Marker(e.Shard, e.Index)
					}
					scanned = max(scanned, e.Index)
				}
				return
			}
			if e.EntryEnd {
				delete(open, e.Shard)
				scanned = max(scanned, e.Index)
				if next != nil {
					next.EntryEnd(e.Shard, e.Index)
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

// subscribe opens the backend's stream. For a name it answers the index the
// stream starts from; for a prefix it fills next in, where it was 0, with
// this node's applied index + 1 of that shard.
func (h WatchHandler) subscribe(ctx context.Context, m *pb.WatchRequest, prefix string, exact bool, count int, next shards.Positions,
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
		if err := next.Fill(idx); err != nil {
			return nil, 0, err
		}
	}
	var events <-chan runtime.Event
	var err error
	if count == 1 {
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
