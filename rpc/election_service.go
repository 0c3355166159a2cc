package rpc

import (
	"context"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// ElectionHandler serves lockstep.v1.ElectionService.
type ElectionHandler struct{ *service }

func (h ElectionHandler) Campaign(ctx context.Context, req *connect.Request[pb.CampaignRequest]) (*connect.Response[pb.CampaignResponse], error) {
	m := req.Msg
	a, err := h.acquire(ctx, acquireArgs{
		cmd: core.Command{Op: core.OpCampaign, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
			WaitMs: m.WaitTimeoutMs, Value: m.Value},
		session: m.SessionId, owner: m.Candidate, ttlSeconds: m.TtlSeconds, ttlMs: m.TtlMs,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CampaignResponse{
		Elected:        a.r.Outcome == core.OutcomeGranted,
		FencingToken:   uint64(a.r.Token),
		SessionId:      uint64(a.lease.id),
		SessionCreated: a.lease.created,
		Outcome:        outcomePB(a.r.Outcome),
		Reason:         reasonPB(a.r.Reason),
		WaiterId:       uint64(a.r.Waiter),
	}), nil
}

func (h ElectionHandler) Proclaim(ctx context.Context, req *connect.Request[pb.ProclaimRequest]) (*connect.Response[pb.ProclaimResponse], error) {
	m := req.Msg
	_, err := h.do(ctx, core.Command{Op: core.OpProclaim, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
		Session: core.SessionID(m.SessionId), Token: core.FencingToken(m.FencingToken), Value: m.Value})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ProclaimResponse{}), nil
}

// Resign ends a leadership named by its session or candidate and its token.
// A queued candidacy is withdrawn with SessionService.CancelWait.
func (h ElectionHandler) Resign(ctx context.Context, req *connect.Request[pb.ResignRequest]) (*connect.Response[pb.ResignResponse], error) {
	m := req.Msg
	closed, err := h.release(ctx, releaseArgs{kind: core.KindElection, name: m.Name, clientID: m.ClientId, seq: m.RequestSeq, low: m.LowestPendingSeq,
		session: m.SessionId, owner: m.Candidate, ownerField: "candidate", token: m.FencingToken})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ResignResponse{Resigned: true, SessionClosed: closed}), nil
}

func (h ElectionHandler) Leader(ctx context.Context, req *connect.Request[pb.LeaderRequest]) (*connect.Response[pb.LeaderResponse], error) {
	m := req.Msg
	out := &pb.LeaderResponse{Name: m.Name, Stale: m.Stale}
	idx, err := h.read(ctx, m.Name, m.Stale, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindElection, m.Name)
		if err != nil {
			return err
		}
		if len(st.Holders) > 0 {
			out.HasLeader, out.Leader = true, leaderPB(st.Holders[0])
		}
		out.Candidates = waitersPB(st.Waiters)
		for _, c := range out.Candidates {
			c.Permits = 0 // not a permit count here
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}

func leaderPB(h core.Holder) *pb.ElectionLeader {
	return &pb.ElectionLeader{Candidate: h.Owner, Value: h.Value, SessionId: uint64(h.Session), FencingToken: uint64(h.Token),
		ElectedAtMs: int64(h.AcquiredAt), ExpiresAtMs: int64(h.ExpiresAt)}
}

// Observe sends the election's leader now, then one message per change of
// leader or value, from the log index the first answer reflects on, so no
// change falls between the two. It ends with unavailable when this member
// cannot serve for servingGrace (cut off from the majority, it would show
// a leader the others may have replaced).
func (h ElectionHandler) Observe(ctx context.Context, req *connect.Request[pb.ObserveRequest], stream *connect.ServerStream[pb.ObserveResponse]) error {
	name := req.Msg.Name
	first := &pb.ObserveResponse{Name: name}
	idx, err := h.read(ctx, name, false, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindElection, name)
		if err == nil && len(st.Holders) > 0 {
			first.HasLeader, first.Leader = true, leaderPB(st.Holders[0])
		}
		return err
	})
	if err != nil {
		return err
	}
	first.AppliedIndex = idx
	if err := stream.Send(first); err != nil {
		return err
	}
	events, err := h.b.WatchShard(ctx, h.b.ShardOf(name), name, idx+1) // idx is in the name's shard's log
	if err != nil {
		return h.apiError(err)
	}
	var lastReason core.Reason
	sv := serving{health: h.b.Health}
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	for {
		var ev runtime.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			if err := sv.check(now); err != nil {
				return err
			}
			continue
		case ev, ok = <-events:
		}
		if !ok {
			return h.streamEnded(ctx)
		}
		f := ev.Effect
		if f.Object != core.KindElection || f.Name != name {
			continue
		}
		msg := &pb.ObserveResponse{Name: name, AppliedIndex: ev.Index, Event: eventTypePB(f.Kind)}
		switch f.Kind {
		case core.EffectReleased:
			lastReason = f.Reason
			continue
		case core.EffectLeaderChanged:
			msg.Reason, lastReason = reasonPB(lastReason), 0
		case core.EffectValueChanged:
		default:
			continue
		}
		if f.Session != 0 {
			msg.HasLeader = true
			msg.Leader = &pb.ElectionLeader{SessionId: uint64(f.Session), FencingToken: uint64(f.Token), Value: f.Value}
			// The candidate and times are not in the effect: take them
			// from this node's state when the same leadership is current.
			if g, ok := h.grantDetails(ctx, core.KindElection, name, f.Token); ok {
				msg.Leader = leaderPB(g)
				msg.Leader.Value = f.Value
			}
		}
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
}

// streamEnded says why a watch channel closed: the caller went away, or the
// node is stopping.
func (s *service) streamEnded(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	return connect.NewError(connect.CodeUnavailable, errStreamEnded)
}
