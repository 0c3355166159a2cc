package rpc

import (
	"context"
	"strings"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// BarrierHandler serves lockstep.v1.BarrierService.
type BarrierHandler struct{ *service }

// Wait arrives at a barrier. Without session_id the arrival gets a session
// of its own, closed again when the wait ends (but for a wait this member
// left queued as it closed: keptForResend).
func (h BarrierHandler) Wait(ctx context.Context, req *connect.Request[pb.WaitBarrierRequest]) (*connect.Response[pb.WaitBarrierResponse], error) {
	m := req.Msg
	cmd := core.Command{Op: core.OpBarrierWait, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
		Parties: m.Parties, Participant: m.Participant}
	l, err := h.sessionFor(ctx, m.SessionId, m.Owner, m.TtlSeconds, m.TtlMs, &cmd)
	if err != nil {
		return nil, err
	}
	stop := h.keepWhileWaiting(ctx, l)
	cmd.Session, cmd.WaitMs = l.id, h.waitMs(ctx, m.WaitTimeoutMs)
	r, err := h.do(ctx, cmd)
	stop()
	if l.created && (err != nil && !keptForResend(err) || err == nil && r.Outcome != core.OutcomeQueued) {
		h.closeSession(ctx, l.id)
	}
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.WaitBarrierResponse{
		Released:       r.Outcome == core.OutcomeReleased,
		Outcome:        outcomePB(r.Outcome),
		Reason:         reasonPB(r.Reason),
		Generation:     r.Generation,
		SessionId:      uint64(l.id),
		SessionCreated: l.created,
		WaiterId:       uint64(r.Waiter),
	}), nil
}

func (h BarrierHandler) Set(ctx context.Context, req *connect.Request[pb.SetBarrierRequest]) (*connect.Response[pb.SetBarrierResponse], error) {
	m := req.Msg
	if m.SessionId != 0 {
		// A set barrier is a hold of its session, ended with it.
		if _, err := h.holdsNoOther(ctx, core.SessionID(m.SessionId)); err != nil {
			return nil, err
		}
	}
	_, err := h.do(ctx, core.Command{Op: core.OpBarrierSet, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq, Session: core.SessionID(m.SessionId)})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.SetBarrierResponse{}), nil
}

func (h BarrierHandler) Remove(ctx context.Context, req *connect.Request[pb.RemoveBarrierRequest]) (*connect.Response[pb.RemoveBarrierResponse], error) {
	m := req.Msg
	_, err := h.do(ctx, core.Command{Op: core.OpBarrierRemove, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.RemoveBarrierResponse{}), nil
}

// Status answers who waits at the barrier and, for a counting barrier, the
// generation they wait in: the one the next release lets through (0 while
// nobody waits).
func (h BarrierHandler) Status(ctx context.Context, req *connect.Request[pb.BarrierStatusRequest]) (*connect.Response[pb.BarrierStatusResponse], error) {
	m := req.Msg
	out := &pb.BarrierStatusResponse{Name: m.Name, Stale: m.Stale}
	idx, err := h.read(ctx, m.Name, m.Stale, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindBarrier, m.Name)
		if err != nil {
			return err
		}
		out.Parties = st.Parties
		out.Generation = st.Generation
		out.Waiters = waitersPB(st.Waiters)
		for _, w := range out.Waiters {
			// A party names no owner of its own (the log keeps none for
			// it): its session's label is its owner, as an acquire that
			// names none is its session's. Waiters showed owner "".
			if w.Owner != "" {
				continue
			}
			if label, ok := mc.SessionOwner(core.SessionID(w.SessionId)); ok {
				w.Owner = strings.TrimPrefix(label, autoOwnerPrefix) // a session made for the wait: the owner it gave
			}
		}
		if st.Parties == 0 && len(st.Holders) > 0 {
			out.Set, out.SetBySessionId = true, uint64(st.Holders[0].Session)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}
