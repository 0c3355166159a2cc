package rpc

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// LockHandler serves lockstep.v1.LockService (mutexes, and List and
// CheckFence for every kind).
type LockHandler struct{ *service }

func (h LockHandler) Acquire(ctx context.Context, req *connect.Request[pb.AcquireLockRequest]) (*connect.Response[pb.AcquireLockResponse], error) {
	m := req.Msg
	a, err := h.acquire(ctx, acquireArgs{
		cmd: core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: m.Name, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
			WaitMs: m.WaitTimeoutMs, LockDelayMs: m.LockDelayMs, MaxHoldMs: m.MaxHoldMs, Value: m.Value},
		session: m.SessionId, owner: m.Owner, ttlSeconds: m.TtlSeconds, ttlMs: m.TtlMs,
	})
	if err != nil {
		return nil, err
	}
	var holder *pb.Holder
	var blockedUntil int64
	if a.r.Outcome == core.OutcomeRefused {
		// Who the caller lost to, or the lock-delay that kept it out, from
		// this node's state: a hint, not a promise (either may have gone
		// since).
		_, _ = h.read(ctx, m.Name, true, func(mc *core.Machine) error {
			st, err := mc.Status(core.KindMutex, m.Name)
			switch {
			case err != nil:
			case len(st.Holders) > 0:
				holder = holderPB(st.Holders[0])
			default:
				blockedUntil = int64(st.LockDelayUntil)
			}
			return nil
		})
	}
	return connect.NewResponse(&pb.AcquireLockResponse{
		Holder:         holder,
		SessionClosed:  a.closed,
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
		BlockedUntilMs: blockedUntil,
	}), nil
}

func (h LockHandler) Release(ctx context.Context, req *connect.Request[pb.ReleaseLockRequest]) (*connect.Response[pb.ReleaseLockResponse], error) {
	m := req.Msg
	closed, err := h.release(ctx, releaseArgs{kind: core.KindMutex, name: m.Name, clientID: m.ClientId, seq: m.RequestSeq, low: m.LowestPendingSeq,
		session: m.SessionId, owner: m.Owner, ownerField: "owner", token: m.FencingToken})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.ReleaseLockResponse{Released: true, SessionClosed: closed}), nil
}

// Renew keeps the holder's session alive, after checking that the token
// still holds the mutex: a stale token is refused (409) and renews nothing.
func (h LockHandler) Renew(ctx context.Context, req *connect.Request[pb.RenewLockRequest]) (*connect.Response[pb.RenewLockResponse], error) {
	m := req.Msg
	hd, found, err := h.findHolding(ctx, core.KindMutex, m.Name, m.FencingToken, m.SessionId, m.Owner, "owner", true)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, staleToken(core.KindMutex, m.Name, m.FencingToken)
	}
	r, err := h.do(ctx, core.Command{Op: core.OpSessionKeepAlive, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq, Session: hd.holder.Session})
	if err != nil {
		return nil, err
	}
	out := &pb.RenewLockResponse{SessionId: uint64(r.Session), FencingToken: m.FencingToken, ExpiresAtMs: int64(r.Deadline)}
	if g, ok := h.grantDetails(ctx, core.KindMutex, m.Name, core.FencingToken(m.FencingToken)); ok {
		out.ExpiresAtMs = int64(g.ExpiresAt) // earlier when max_hold_ms ends it first
	}
	return connect.NewResponse(out), nil
}

func (h LockHandler) Status(ctx context.Context, req *connect.Request[pb.LockStatusRequest]) (*connect.Response[pb.LockStatusResponse], error) {
	m := req.Msg
	out := &pb.LockStatusResponse{Name: m.Name, Stale: m.Stale}
	idx, err := h.read(ctx, m.Name, m.Stale, func(mc *core.Machine) error {
		st, err := mc.Status(core.KindMutex, m.Name)
		if err != nil {
			return err
		}
		if len(st.Holders) > 0 {
			out.Held, out.Holder = true, holderPB(st.Holders[0])
		}
		out.Waiters = waitersPB(st.Waiters)
		out.BlockedUntilMs = int64(st.LockDelayUntil)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}

// List pages through the live objects, ordered by name, then kind. The
// page token is the last (name, kind) of the previous page: the merge of
// every shard's objects, their order, the read filter, the page size and
// the cursor are core/shards' (ListPage); the token is the cursor's
// encoding on the wire.
//
// Core answers at most Limits.MaxListResults objects per read (per shard);
// a prefix matching more than that lists only the first ones (core's order
// is kind, then name), which the answer cannot page past. Narrow the prefix
// or the kind. With several shards, applied_index is shard 0's.
func (h LockHandler) List(ctx context.Context, req *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	m := req.Msg
	after, err := decodePageToken(m.PageToken)
	if err != nil {
		return nil, err
	}
	out := &pb.ListResponse{Stale: m.Stale}
	// The names under a prefix are spread over every shard: read them all,
	// each from the cursor on and only what the caller may read, one more
	// than a page, so that the merged page knows whether another follows.
	size := int(m.PageSize)
	if size <= 0 || size > shards.MaxPage {
		size = shards.MaxPage
	}
	keep := h.readable(ctx)
	q := core.ListQuery{Kind: kindCore(m.Kind, 0), Prefix: m.Prefix, Keep: keep, Limit: size + 1}
	if after != nil {
		q.After, q.AfterName, q.AfterKind = true, after.Name, after.Kind
	}
	parts := make([][]core.Status, h.b.Shards())
	idx, err := h.readAll(ctx, m.Stale, func(shard uint64, mc *core.Machine) error {
		part, _, err := mc.ListFrom(q)
		parts[shard] = part
		return err
	})
	if err != nil {
		return nil, err
	}
	page := shards.ListPage(parts, after, size, keep)
	for _, st := range page.Objects {
		out.Objects = append(out.Objects, &pb.ObjectSummary{Kind: kindPB(st.Kind), Name: st.Name,
			HolderCount: int64(len(st.Holders)), WaiterCount: int64(len(st.Waiters))})
	}
	if page.Next != nil {
		out.NextPageToken = encodePageToken(*page.Next)
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}

// encodePageToken is a cursor as a page token: opaque to the client, which
// passes it back unchanged.
func encodePageToken(c shards.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d/%s", c.Kind, c.Name)))
}

func decodePageToken(tok string) (*shards.Cursor, error) {
	if tok == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	var kind uint8
	var name string
	if err == nil {
		k, n, ok := strings.Cut(string(raw), "/")
		if _, serr := fmt.Sscanf(k, "%d", &kind); serr != nil || !ok {
			err = fmt.Errorf("bad cursor")
		}
		name = n
	}
	if err != nil {
		return nil, invalid("page_token %s is not one this server gave: pass next_page_token unchanged, or leave it empty", quote.Bounded(tok))
	}
	return &shards.Cursor{Name: name, Kind: core.Kind(kind)}, nil
}

// CheckFence answers linearizably whether the token is a current grant.
func (h LockHandler) CheckFence(ctx context.Context, req *connect.Request[pb.CheckFenceRequest]) (*connect.Response[pb.CheckFenceResponse], error) {
	m := req.Msg
	out := &pb.CheckFenceResponse{}
	idx, err := h.read(ctx, m.Name, false, func(mc *core.Machine) error {
		ok, err := mc.CheckFence(kindCore(m.Kind, core.KindMutex), m.Name, core.FencingToken(m.FencingToken))
		out.Valid = ok
		return err
	})
	if err != nil {
		return nil, err
	}
	out.AppliedIndex = idx
	return connect.NewResponse(out), nil
}
