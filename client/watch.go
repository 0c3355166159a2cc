package client

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Event is one change of an object or a session (see the proto's Event).
type Event = pb.Event

// ShardPosition is how far a prefix watch has got in one shard's log (see
// the proto's ShardPosition).
type ShardPosition = pb.ShardPosition

// WatchResponse is one batch of events. Every event up to AppliedIndex has
// been sent (a watch of one name; 0 for a prefix with several shards).
// Positions (a prefix watch) is, for every shard, the next index of its log
// still to come: every event before it has been delivered. Err is set on
// the last response before the channel closes when the watch failed (for
// example it could not resume because the server no longer keeps the
// events after its position: read the state again and watch from now).
type WatchResponse struct {
	Events       []*Event
	AppliedIndex uint64
	Positions    []*ShardPosition
	Err          error
}

// Watch streams the changes of every object whose name starts with prefix,
// from now on, until ctx ends or the Client is closed. A broken stream (a
// node failing over or restarting) is resumed on the next endpoint from the
// positions of the last message received, one per shard, so that no event
// is missed or repeated, whatever the number of shards.
func (c *Client) Watch(ctx context.Context, prefix string) <-chan WatchResponse {
	return c.WatchFrom(ctx, prefix, nil)
}

// WatchFrom is Watch from given positions: those of a WatchResponse of an
// earlier watch of the same prefix (every shard once), to carry on where it
// stopped; nil watches from now.
func (c *Client) WatchFrom(ctx context.Context, prefix string, positions []*ShardPosition) <-chan WatchResponse {
	return c.watch(ctx, &pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: prefix}, StartPositions: clonePositions(positions)})
}

// WatchName is Watch for one exact name.
func (c *Client) WatchName(ctx context.Context, name string) <-chan WatchResponse {
	return c.watch(ctx, &pb.WatchRequest{Target: &pb.WatchRequest_Name{Name: name}})
}

func (c *Client) watch(ctx context.Context, req *pb.WatchRequest) <-chan WatchResponse {
	out := make(chan WatchResponse, 16)
	ctx, stop := c.tie(ctx)
	go func() {
		defer close(out)
		defer stop()
		pause := c.opts.backoffMin
		tls := tlsRefusals{c: c}
		c.firstContact(ctx)
		for ctx.Err() == nil {
			ep := c.current()
			stuck, err := c.watchOnce(ctx, ep, req, out, &pause)
			if stuck {
				err = nil // resume elsewhere, as from a broken stream
			}
			if ctx.Err() != nil {
				return
			}
			end := tls.note(ep, err)
			if end == nil && err != nil && !resumable(err) {
				end = ep.explain(err)
			}
			if end != nil {
				select {
				case out <- WatchResponse{AppliedIndex: req.StartIndex - min(req.StartIndex, 1), Positions: clonePositions(req.StartPositions),
					Err: apiErr("watch", end)}:
				case <-ctx.Done():
				}
				return
			}
			c.failover(ep)
			if c.backoff(ctx, &pause) != nil {
				return
			}
		}
	}()
	return out
}

// watchOnce runs one Watch stream on ep until it ends or ctx ends, moving
// req's start positions along with what it receives. A stream that
// delivers nothing, not even a progress message, for the stream silence
// bound is given up (stuck): the servers send a message at least every 2 s,
// progress or a repeat of the positions on an idle cluster, so silence
// means a stopped node or a dead connection.
func (c *Client) watchOnce(ctx context.Context, ep *endpoint, req *pb.WatchRequest, out chan<- WatchResponse, pause *time.Duration) (stuck bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var gaveUp atomic.Bool
	silence := time.AfterFunc(c.opts.streamSilence, func() {
		gaveUp.Store(true)
		cancel()
	})
	defer silence.Stop()
	stream, err := ep.watch.Watch(sctx, connect.NewRequest(req))
	if err != nil {
		return gaveUp.Load(), err
	}
	defer stream.Close()
	for stream.Receive() {
		if !silence.Stop() {
			break // the bound passed just now; the stream is being cancelled
		}
		ep.heard()
		*pause = c.opts.backoffMin
		if !deliver(ctx, req, stream.Msg(), out) {
			return false, nil
		}
		// Counted from here: a caller slow to read is not the stream's
		// silence.
		silence.Reset(c.opts.streamSilence)
	}
	return gaveUp.Load(), stream.Err()
}

// deliver sends m's events to out and moves req's start positions past m;
// false when ctx ended first.
func deliver(ctx context.Context, req *pb.WatchRequest, m *pb.WatchResponse, out chan<- WatchResponse) bool {
	// A prefix resumes from every shard's position (exact: a message never
	// ends inside an entry), a name from its index. Messages without
	// events (the first, and the server's progress messages) only move
	// these.
	if len(m.Positions) > 0 {
		req.StartPositions, req.StartIndex = clonePositions(m.Positions), 0
	} else {
		req.StartIndex = m.AppliedIndex + 1
	}
	if len(m.Events) == 0 {
		return true
	}
	select {
	case out <- WatchResponse{Events: m.Events, AppliedIndex: m.AppliedIndex, Positions: m.Positions}:
		return true
	case <-ctx.Done():
		return false
	}
}

// clonePositions copies positions, so that the request the watch resends
// shares nothing with what its caller holds.
func clonePositions(ps []*ShardPosition) []*ShardPosition {
	if len(ps) == 0 {
		return nil
	}
	out := make([]*ShardPosition, len(ps))
	for i, p := range ps {
		out[i] = &ShardPosition{ShardId: p.ShardId, NextIndex: p.NextIndex}
	}
	return out
}

// resumable says whether a broken watch stream is reopened (on the next
// endpoint) rather than ended: when retryable, and when the stream broke
// in the transport (a node killed mid-message: connect-go reports a
// truncated message as internal, though no server said so). A server's own
// internal or unknown error still ends the watch.
func resumable(err error) bool {
	if retryable(err) {
		return true
	}
	switch connect.CodeOf(err) {
	case connect.CodeInternal, connect.CodeUnknown:
		var ce *connect.Error
		return errors.As(err, &ce) && !connect.IsWireError(err)
	}
	return false
}
