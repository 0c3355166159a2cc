package rpc

import (
	"context"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// SemaphoreHandler serves lockstep.v1.SemaphoreService.
type SemaphoreHandler struct{ *service }

func (h SemaphoreHandler) Acquire(ctx context.Context, req *connect.Request[pb.AcquireSemaphoreRequest]) (*connect.Response[pb.AcquireSemaphoreResponse], error) {
	m := req.Msg
	limit := m.Limit
	if limit == 0 {
		// "0: use the existing limit". Core wants the limit on every
		// acquire and checks it against the semaphore's, so a limit read
		// here that changed meanwhile is refused there, not misapplied.
		readLimit := func(mc *core.Machine) error {
			st, err := mc.Status(core.KindSemaphore, m.Name)
			limit = st.Limit
			return err
		}
		// This node's state first; the leader's when it knows no such
		// semaphore (this node may be behind).
		if _, err := h.read(ctx, m.Name, true, readLimit); err != nil {
			return nil, err
		}
		if limit == 0 {
			if _, err := h.read(ctx, m.Name, false, readLimit); err != nil {
				return nil, err
			}
		}
		if limit == 0 {
			return nil, invalid("semaphore %q does not exist, so limit is required: give the semaphore's size", m.Name)
		}
		if m.Permits > limit {
			return nil, invalid("permits %d is out of range: semaphore %q has limit %d", m.Permits, m.Name, limit)
		}
	}
	a, err := h.acquire(ctx, acquireArgs{
		cmd: core.Command{Op: core.OpAcquire, Kind: core.KindSemaphore, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
			WaitMs: m.WaitTimeoutMs, MaxHoldMs: m.MaxHoldMs, Value: m.Value, Limit: limit, Permits: m.Permits},
		session: m.SessionId, owner: m.Owner, ttlSeconds: m.TtlSeconds, ttlMs: m.TtlMs,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.AcquireSemaphoreResponse{
		Acquired:       a.r.Outcome == core.OutcomeGranted,
		FencingToken:   uint64(a.r.Token),
		SessionId:      uint64(a.lease.id),
		SessionCreated: a.lease.created,
		Outcome:        outcomePB(a.r.Outcome),
		Reason:         reasonPB(a.r.Reason),
		WaiterId:       uint64(a.r.Waiter),
		AcquiredAtMs:   int64(a.holder.AcquiredAt),
		ExpiresAtMs:    int64(a.holder.ExpiresAt),
		MaxHoldUntilMs: int64(a.holder.MaxHoldUntil),
		Permits:        permits(m.Permits),
		Limit:          limit,
	}), nil
}

func (h SemaphoreHandler) Release(ctx context.Context, req *connect.Request[pb.ReleaseSemaphoreRequest]) (*connect.Response[pb.ReleaseSemaphoreResponse], error) {
	m := req.Msg
	closed, err := h.release(ctx, releaseArgs{kind: core.KindSemaphore, name: m.Name, clientID: m.ClientId, seq: m.RequestSeq, low: m.LowestPendingSeq,
		session: m.SessionId, owner: m.Owner, ownerField: "owner", token: m.FencingToken})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ReleaseSemaphoreResponse{Released: true, SessionClosed: closed}), nil
}

func (h SemaphoreHandler) Status(ctx context.Context, req *connect.Request[pb.SemaphoreStatusRequest]) (*connect.Response[pb.SemaphoreStatusResponse], error) {
	m := req.Msg
	out := &pb.SemaphoreStatusResponse{Name: m.Name, Stale: m.Stale}
	idx, err := h.read(ctx, m.Name, m.Stale, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindSemaphore, m.Name)
		if err != nil {
			return err
		}
		out.Limit, out.Available = st.Limit, st.Limit-st.Used
		out.Holders, out.Waiters = holdersPB(st.Holders), waitersPB(st.Waiters)
		out.BlockedUntilMs = int64(st.LockDelayUntil)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}
