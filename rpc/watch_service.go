package rpc

import (
	"context"
	"errors"
	"slices"

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

// Watch streams the effects on one name or a prefix. Events arrive one at a
// time from the backend; the handler sends what has arrived as one message.
// applied_index promises that every event up to it was sent, so it is the
// index before the last event's: more events of that same entry may still
// come, and a client resuming from applied_index + 1 gets them all (and may
// see the last entry's events twice).
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
	wanted := func(f core.Effect) bool {
		if exact && f.Name != prefix {
			return false
		}
		if len(kinds) > 0 && !slices.Contains(kinds, f.Object) {
			return false
		}
		// Session expiries carry no name: they belong to watches of
		// everything.
		return f.Name != "" || (prefix == "" && len(kinds) == 0)
	}
	// With several shards, a name's events are all in its shard, whose
	// log indexes a resume can use; a prefix spans every shard, each with
	// its own indexes, so its stream merges them and cannot resume.
	merged := !exact && h.b.Shards() > 1
	if merged && m.StartIndex != 0 {
		return invalid("start_index %d is ambiguous: this cluster has %d shards, each numbering its own log, and a prefix spans them all; "+
			"watch a prefix from now (start_index 0) after reading its state with List, or watch one name to resume from an index", m.StartIndex, h.b.Shards())
	}
	// The first message is progress only, at once: it tells the client
	// where the stream starts, and gets the response headers out (a gRPC
	// client's call returns only when they arrive). Without start_index the
	// stream starts after this node's applied index.
	var events <-chan runtime.Event
	var from uint64
	if merged {
		var err error
		if events, err = h.b.Watch(ctx, prefix, 0); err != nil {
			return h.apiError(err)
		}
	} else {
		from = m.StartIndex
		if from == 0 {
			idx, err := h.read(ctx, prefix, true, func(*core.Machine) error { return nil })
			if err != nil {
				return err
			}
			from = idx + 1
		}
		var err error
		if events, err = h.b.WatchShard(ctx, h.b.ShardOf(prefix), prefix, from); err != nil {
			return h.apiError(err)
		}
	}
	progress := func(last uint64) uint64 {
		if merged || last == 0 {
			return 0 // no one index covers every shard
		}
		return last - 1
	}
	if err := stream.Send(&pb.WatchResponse{AppliedIndex: progress(from)}); err != nil {
		return err
	}
	for {
		var ev runtime.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-events:
		}
		if !ok {
			return h.streamEnded(ctx)
		}
		msg := &pb.WatchResponse{}
		last := ev.Index
		add := func(e runtime.Event) {
			last = e.Index
			if wanted(e.Effect) {
				msg.Events = append(msg.Events, eventPB(e))
			}
		}
		add(ev)
	drain:
		for len(msg.Events) < maxEventsPerMessage {
			select {
			case e, ok := <-events:
				if !ok {
					break drain
				}
				add(e)
			default:
				break drain
			}
		}
		if len(msg.Events) == 0 {
			continue
		}
		msg.AppliedIndex = progress(last)
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}
