package rpc

import (
	"context"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// RWLockHandler serves lockstep.v1.RWLockService.
type RWLockHandler struct{ *service }

func (h RWLockHandler) Acquire(ctx context.Context, req *connect.Request[pb.AcquireRWLockRequest]) (*connect.Response[pb.AcquireRWLockResponse], error) {
	m := req.Msg
	a, err := h.acquire(ctx, acquireArgs{
		cmd: core.Command{Op: core.OpAcquire, Kind: core.KindRWLock, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
			WaitMs: m.WaitTimeoutMs, MaxHoldMs: m.MaxHoldMs, Value: m.Value, Mode: modeCore(m.Mode)},
		session: m.SessionId, owner: m.Owner, ttlSeconds: m.TtlSeconds, ttlMs: m.TtlMs,
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.AcquireRWLockResponse{
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
		Mode:           m.Mode,
	}), nil
}

func (h RWLockHandler) Release(ctx context.Context, req *connect.Request[pb.ReleaseRWLockRequest]) (*connect.Response[pb.ReleaseRWLockResponse], error) {
	m := req.Msg
	closed, err := h.release(ctx, releaseArgs{kind: core.KindRWLock, name: m.Name, clientID: m.ClientId, seq: m.RequestSeq, low: m.LowestPendingSeq,
		session: m.SessionId, owner: m.Owner, ownerField: "owner", token: m.FencingToken})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ReleaseRWLockResponse{Released: true, SessionClosed: closed}), nil
}

func (h RWLockHandler) Status(ctx context.Context, req *connect.Request[pb.RWLockStatusRequest]) (*connect.Response[pb.RWLockStatusResponse], error) {
	m := req.Msg
	out := &pb.RWLockStatusResponse{Name: m.Name, Stale: m.Stale}
	idx, err := h.read(ctx, m.Name, m.Stale, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindRWLock, m.Name)
		if err != nil {
			return err
		}
		if len(st.Holders) > 0 {
			out.Mode = modeString(st.Holders[0].Mode)
		}
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
