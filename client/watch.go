package client

import (
	"context"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Event is one change of an object or a session (see the proto's Event).
type Event = pb.Event

// WatchResponse is one batch of events. Every event up to AppliedIndex has
// been sent. Err is set on the last response before the channel closes when
// the watch failed (for example its start index is older than the server's
// history: read the status and watch from its applied index + 1).
type WatchResponse struct {
	Events       []*Event
	AppliedIndex uint64
	Err          error
}

// Watch streams the changes of every object whose name starts with prefix,
// from now on, until ctx ends. A broken stream is resumed on the next
// endpoint from the last applied index + 1, so no event is missed (the last
// entry's events may repeat).
func (c *Client) Watch(ctx context.Context, prefix string) <-chan WatchResponse {
	return c.watch(ctx, &pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: prefix}})
}

// WatchName is Watch for one exact name.
func (c *Client) WatchName(ctx context.Context, name string) <-chan WatchResponse {
	return c.watch(ctx, &pb.WatchRequest{Target: &pb.WatchRequest_Name{Name: name}})
}

func (c *Client) watch(ctx context.Context, req *pb.WatchRequest) <-chan WatchResponse {
	out := make(chan WatchResponse, 16)
	go func() {
		defer close(out)
		pause := c.opts.backoffMin
		for ctx.Err() == nil {
			ep := c.current()
			stream, err := ep.watch.Watch(ctx, connect.NewRequest(req))
			if err == nil {
				for stream.Receive() {
					pause = c.opts.backoffMin
					m := stream.Msg()
					req.StartIndex = m.AppliedIndex + 1
					if len(m.Events) == 0 {
						continue
					}
					select {
					case out <- WatchResponse{Events: m.Events, AppliedIndex: m.AppliedIndex}:
					case <-ctx.Done():
						stream.Close()
						return
					}
				}
				err = stream.Err()
				stream.Close()
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil && !retryable(err) {
				select {
				case out <- WatchResponse{AppliedIndex: req.StartIndex - min(req.StartIndex, 1), Err: apiErr("watch", err)}:
				case <-ctx.Done():
				}
				return
			}
			c.failover(ep)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(pause*2, c.opts.backoffMax)
		}
	}()
	return out
}
