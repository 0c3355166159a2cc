package rpc

import (
	"context"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// SessionHandler serves lockstep.v1.SessionService.
type SessionHandler struct{ *service }

func (h SessionHandler) Create(ctx context.Context, req *connect.Request[pb.CreateSessionRequest]) (*connect.Response[pb.CreateSessionResponse], error) {
	m := req.Msg
	ttl := h.ttlMs(m.TtlSeconds, m.TtlMs)
	r, err := h.do(ctx, core.Command{Op: core.OpSessionCreate, ClientID: m.ClientId, Seq: m.RequestSeq, TTLMs: ttl, Owner: m.Owner})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CreateSessionResponse{SessionId: uint64(r.Session), TtlMs: ttl, ExpiresAtMs: int64(r.Deadline)}), nil
}

func (h SessionHandler) KeepAlive(ctx context.Context, req *connect.Request[pb.KeepAliveRequest]) (*connect.Response[pb.KeepAliveResponse], error) {
	m := req.Msg
	r, err := h.do(ctx, core.Command{Op: core.OpSessionKeepAlive, ClientID: m.ClientId, Seq: m.RequestSeq, Session: core.SessionID(m.SessionId)})
	if err != nil {
		return nil, err
	}
	out := &pb.KeepAliveResponse{SessionId: uint64(r.Session), ExpiresAtMs: int64(r.Deadline)}
	// The TTL is not in the result; the keepalive was applied here, so this
	// node's state has it.
	_, _ = h.b.Read(ctx, "", true, func(m *core.Machine) error {
		if info, err := m.SessionInfo(r.Session); err == nil {
			out.TtlMs = info.TTLMs
		}
		return nil
	})
	return connect.NewResponse(out), nil
}

func (h SessionHandler) Close(ctx context.Context, req *connect.Request[pb.CloseSessionRequest]) (*connect.Response[pb.CloseSessionResponse], error) {
	m := req.Msg
	r, err := h.do(ctx, core.Command{Op: core.OpSessionClose, ClientID: m.ClientId, Seq: m.RequestSeq, Session: core.SessionID(m.SessionId)})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CloseSessionResponse{SessionId: uint64(r.Session)}), nil
}

func (h SessionHandler) Get(ctx context.Context, req *connect.Request[pb.GetSessionRequest]) (*connect.Response[pb.GetSessionResponse], error) {
	m := req.Msg
	out := &pb.GetSessionResponse{Stale: m.Stale}
	idx, err := h.read(ctx, "", m.Stale, func(mc *core.Machine) error {
		info, err := mc.SessionInfo(core.SessionID(m.SessionId))
		if err != nil {
			return err
		}
		ps := &pb.Session{SessionId: uint64(info.ID), Owner: info.Owner, TtlMs: info.TTLMs,
			CreatedAtMs: int64(info.CreatedAt), ExpiresAtMs: int64(info.Deadline)}
		for _, ref := range info.Holds {
			ps.Holds = append(ps.Holds, &pb.SessionHold{Kind: kindPB(ref.Kind), Name: ref.Name, FencingToken: uint64(ref.Token)})
		}
		for _, ref := range info.Waits {
			w := &pb.SessionWait{Kind: kindPB(ref.Kind), Name: ref.Name, WaiterId: uint64(ref.Waiter)}
			if st, err := mc.Status(ref.Kind, ref.Name); err == nil {
				for _, x := range st.Waiters {
					if x.ID == ref.Waiter {
						w.DeadlineMs = int64(x.Deadline)
					}
				}
			}
			ps.Waits = append(ps.Waits, w)
		}
		out.Session = ps
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}

func (h SessionHandler) CancelWait(ctx context.Context, req *connect.Request[pb.CancelWaitRequest]) (*connect.Response[pb.CancelWaitResponse], error) {
	m := req.Msg
	_, err := h.do(ctx, core.Command{Op: core.OpCancel, ClientID: m.ClientId, Seq: m.RequestSeq,
		Session: core.SessionID(m.SessionId), Waiter: core.WaiterID(m.WaiterId)})
	if connect.CodeOf(err) == connect.CodeNotFound {
		// It already left the queue: granted, timed out or cancelled.
		return connect.NewResponse(&pb.CancelWaitResponse{Cancelled: false}), nil
	}
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CancelWaitResponse{Cancelled: true}), nil
}
