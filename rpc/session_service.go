package rpc

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// SessionHandler serves lockstep.v1.SessionService.
type SessionHandler struct{ *service }

func (h SessionHandler) Create(ctx context.Context, req *connect.Request[pb.CreateSessionRequest]) (*connect.Response[pb.CreateSessionResponse], error) {
	m := req.Msg
	ttl := h.ttlMs(m.TtlSeconds, m.TtlMs)
	r, err := h.do(ctx, core.Command{Op: core.OpSessionCreate, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq, TTLMs: ttl, Owner: m.Owner})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CreateSessionResponse{SessionId: uint64(r.Session), TtlMs: ttl, ExpiresAtMs: int64(r.Deadline),
		StampLagMs: h.opts.StampLag.Milliseconds()}), nil
}

func (h SessionHandler) KeepAlive(ctx context.Context, req *connect.Request[pb.KeepAliveRequest]) (*connect.Response[pb.KeepAliveResponse], error) {
	m := req.Msg
	r, err := h.do(ctx, core.Command{Op: core.OpSessionKeepAlive, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq, Session: core.SessionID(m.SessionId)})
	if err != nil {
		return nil, err
	}
	out := &pb.KeepAliveResponse{SessionId: uint64(r.Session), ExpiresAtMs: int64(r.Deadline), StampLagMs: h.opts.StampLag.Milliseconds()}
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
	r, err := h.do(ctx, core.Command{Op: core.OpSessionClose, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq, Session: core.SessionID(m.SessionId),
		ApplyLockDelay: m.ApplyLockDelay})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CloseSessionResponse{SessionId: uint64(r.Session), LockDelayApplied: m.ApplyLockDelay}), nil
}

// Get shows a session and what it holds and waits for. A session lives in
// every shard (see docs/runtime.md), its holds and waits in the shards of
// their names: Get reads them all, and core/shards (Session) merges the
// reads; a session missing from any shard is lost (its next keepalive
// fails), so Get answers not_found for it.
func (h SessionHandler) Get(ctx context.Context, req *connect.Request[pb.GetSessionRequest]) (*connect.Response[pb.GetSessionResponse], error) {
	m := req.Msg
	id := core.SessionID(m.SessionId)
	var reads []shards.SessionRead
	// A wait's deadline is in its object's queue, read with the session in
	// the wait's shard. (kind, name) lives in one shard, so with the
	// waiter id it names one wait.
	type waitKey struct {
		kind   core.Kind
		name   string
		waiter core.WaiterID
	}
	deadlines := map[waitKey]core.LogTime{}
	idx, err := h.readAll(ctx, m.Stale, func(shard uint64, mc *core.Machine) error {
		info, err := mc.SessionInfo(id)
		reads = append(reads, shards.SessionRead{Shard: shard, Info: info, Err: err})
		for _, ref := range info.Waits {
			if st, err := mc.Status(ref.Kind, ref.Name); err == nil {
				for _, x := range st.Waiters {
					if x.ID == ref.Waiter {
						deadlines[waitKey{ref.Kind, ref.Name, ref.Waiter}] = x.Deadline
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	info, err := shards.Session(reads)
	if err != nil {
		return nil, h.apiError(err)
	}
	ps := &pb.Session{SessionId: uint64(info.ID), Owner: info.Owner, TtlMs: info.TTLMs,
		CreatedAtMs: int64(info.CreatedAt), ExpiresAtMs: int64(info.Deadline)}
	for _, ref := range info.Holds {
		ps.Holds = append(ps.Holds, &pb.SessionHold{Kind: kindPB(ref.Kind), Name: ref.Name, FencingToken: uint64(ref.Token)})
	}
	for _, ref := range info.Waits {
		ps.Waits = append(ps.Waits, &pb.SessionWait{Kind: kindPB(ref.Kind), Name: ref.Name, WaiterId: uint64(ref.Waiter),
			DeadlineMs: int64(deadlines[waitKey{ref.Kind, ref.Name, ref.Waiter}])})
	}
	return connect.NewResponse(&pb.GetSessionResponse{Stale: m.Stale, Session: ps, AppliedIndex: idx}), nil
}

// List pages through the live sessions in id order. Every shard has a copy
// of each session: List reads every shard from the cursor on, one more than
// a page, and core/shards (SessionPage) merges the copies as Get's read
// merges them, leaving out a session lost in some shard (Get answers it
// not_found). The page token is the last id read, encoded.
//
// With authentication on, the caller sees its own sessions only, as Get
// (ownership.go) does: another principal's session is one Get answers
// not_found, so a list that showed it would reveal what Get hides. The
// filter is core's, so another's sessions cost a page no place.
func (h SessionHandler) List(ctx context.Context, req *connect.Request[pb.ListSessionsRequest]) (*connect.Response[pb.ListSessionsResponse], error) {
	m := req.Msg
	after, err := decodeSessionPageToken(m.PageToken)
	if err != nil {
		return nil, err
	}
	size := int(m.PageSize)
	if size <= 0 || size > shards.MaxPage {
		size = shards.MaxPage
	}
	who := PrincipalFrom(ctx)
	every := who.ID == "" || h.administersSessions(ctx, who)
	keep := func(owner string) bool {
		return (every || ownerPrincipal(owner) == who.ID) && strings.HasPrefix(owner, m.OwnerPrefix)
	}
	q := core.SessionQuery{After: after, Keep: keep, Limit: size + 1}
	parts := make([]shards.SessionPart, h.b.Shards())
	idx, err := h.readAll(ctx, m.Stale, func(shard uint64, mc *core.Machine) error {
		list, more := mc.Sessions(q)
		parts[shard] = shards.SessionPart{Sessions: list, More: more}
		return nil
	})
	if err != nil {
		return nil, err
	}
	page := shards.SessionPage(parts, size)
	out := &pb.ListSessionsResponse{Stale: m.Stale, AppliedIndex: idx, Sessions: make([]*pb.SessionSummary, 0, len(page.Sessions))}
	for _, s := range page.Sessions {
		out.Sessions = append(out.Sessions, &pb.SessionSummary{SessionId: uint64(s.ID), Owner: s.Owner, TtlMs: s.TTLMs,
			CreatedAtMs: int64(s.CreatedAt), ExpiresAtMs: int64(s.Deadline), HoldCount: int64(s.Holds), WaitCount: int64(s.Waits)})
	}
	if page.Next != 0 {
		out.NextPageToken = encodeSessionPageToken(page.Next)
	}
	return connect.NewResponse(out), nil
}

// sessionTokenMark starts a session page token's bytes, so that a
// LockService.List token ("KIND/NAME") passed here is refused rather than
// read as a cursor.
const sessionTokenMark = "s"

// encodeSessionPageToken is a session cursor as a page token: opaque to
// the client, which passes it back unchanged.
func encodeSessionPageToken(after core.SessionID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(sessionTokenMark + strconv.FormatUint(uint64(after), 10)))
}

func decodeSessionPageToken(tok string) (core.SessionID, error) {
	if tok == "" {
		return 0, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		digits, ok := strings.CutPrefix(string(raw), sessionTokenMark)
		var id uint64
		if id, err = strconv.ParseUint(digits, 10, 64); err == nil && ok && id != 0 {
			return core.SessionID(id), nil
		}
	}
	return 0, invalid("page_token %s is not one SessionService.List gave: pass its next_page_token unchanged, or leave it empty for the first page", quote.Bounded(tok))
}

// readAll runs fn on every shard, linearizably unless stale, and answers
// shard 0's applied index: each shard numbers its own log, and a read
// spanning shards has no one index (docs/api.md).
func (s *service) readAll(ctx context.Context, stale bool, fn func(shard uint64, m *core.Machine) error) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	idx, err := s.b.ReadAll(ctx, stale, fn)
	if err != nil {
		return 0, s.apiError(err)
	}
	return idx[0], nil
}

// ownsNothingElse says whether session id holds and waits for nothing in
// any shard but the one of name (core/shards, OwnsOnlyIn): a session the
// server created for one grant is closed with that grant only then. With
// one shard the caller's own check suffices, and nothing is read. A read
// that fails answers false: the session is kept, to its TTL.
func (s *service) ownsNothingElse(ctx context.Context, id core.SessionID, name string) bool {
	if s.b.Shards() == 1 {
		return true
	}
	var reads []shards.SessionRead
	_, err := s.readAll(ctx, false, func(shard uint64, m *core.Machine) error {
		info, err := m.SessionInfo(id)
		reads = append(reads, shards.SessionRead{Shard: shard, Info: info, Err: err})
		return nil
	})
	return err == nil && shards.OwnsOnlyIn(s.b.ShardOf(name), reads)
}

func (h SessionHandler) CancelWait(ctx context.Context, req *connect.Request[pb.CancelWaitRequest]) (*connect.Response[pb.CancelWaitResponse], error) {
	m := req.Msg
	_, err := h.do(ctx, core.Command{Op: core.OpCancel, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
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

// Abandon withdraws an earlier request by its (client_id, request_seq),
// whether or not it has arrived (core/abandon.go). It goes to the shard of
// the name, the one the abandoned request went to.
func (h SessionHandler) Abandon(ctx context.Context, req *connect.Request[pb.AbandonRequest]) (*connect.Response[pb.AbandonResponse], error) {
	m := req.Msg
	r, err := h.do(ctx, core.Command{Op: core.OpAbandon, ClientID: m.ClientId, Seq: m.RequestSeq, LowestPending: m.LowestPendingSeq,
		Session: core.SessionID(m.SessionId), Kind: kindCore(m.Kind, 0), Name: m.Name, TargetSeq: m.AbandonSeq})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.AbandonResponse{ReleasedFencingToken: uint64(r.Token)}), nil
}
