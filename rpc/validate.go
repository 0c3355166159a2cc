package rpc

import (
	"net"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The validator answers every bad input before anything is proposed: a
// request that reaches a handler is well formed, and core only refuses what
// depends on state (a stale token, a full queue, a semaphore's fixed limit).
// Messages name the JSON field to fix.

// autoOwnerPrefix marks the sessions the server creates for a request that
// came without one (a REST acquire, barrier wait or campaign). The mark is
// in the replicated session, so any node can tell, at release, that the
// session was the acquire's own and close it. Callers cannot create sessions
// with such an owner.
const autoOwnerPrefix = "auto:"

// implicitSuffix derives the client id under which an implicit session is
// created, so that the session and the request it serves each have their
// own (client_id, request_seq) and a retry finds both.
const implicitSuffix = "/session"

// maxClientIDBytes leaves room for implicitSuffix within core's bound.
const maxClientIDBytes = core.MaxClientIDBytes - len(implicitSuffix)

type validator struct {
	l    core.Limits
	rest bool // the request came over REST, whose waits are capped (Options.MaxWait)
}

// pendingRequest is every message that carries lowest_pending_seq.
type pendingRequest interface {
	GetClientId() string
	GetRequestSeq() uint64
	GetLowestPendingSeq() uint64
}

// check validates one request message; nil means well formed.
func (v validator) check(msg any) *connect.Error {
	if p, ok := msg.(pendingRequest); ok {
		if err := v.pending(p.GetClientId(), p.GetRequestSeq(), p.GetLowestPendingSeq()); err != nil {
			return err
		}
	}
	switch r := msg.(type) {
	case *pb.CreateSessionRequest:
		return first(v.client(r.ClientId, r.RequestSeq), v.ttl(r.TtlSeconds, r.TtlMs),
			v.owner("owner", r.Owner, 0), v.reservedOwner(r.Owner))
	case *pb.KeepAliveRequest:
		return first(v.client(r.ClientId, r.RequestSeq), need(r.SessionId != 0, "session_id is missing: give the session to keep alive"))
	case *pb.CloseSessionRequest:
		return first(v.client(r.ClientId, r.RequestSeq), need(r.SessionId != 0, "session_id is missing: give the session to close"))
	case *pb.GetSessionRequest:
		return need(r.SessionId != 0, "session_id is missing: give the session to read")
	case *pb.AbandonRequest:
		return first(need(r.ClientId != "", "client_id is missing: give the client_id of the request to abandon"),
			v.client(r.ClientId, r.RequestSeq),
			need(r.SessionId != 0, "session_id is missing: give the session the abandoned request was made for"),
			need(r.AbandonSeq != 0, "abandon_seq is missing: give the request_seq of the request to abandon"),
			need(r.AbandonSeq != r.RequestSeq, "abandon_seq %d equals this request's own request_seq: give the earlier request's", r.AbandonSeq),
			need(r.LowestPendingSeq <= r.AbandonSeq, "lowest_pending_seq %d is above abandon_seq %d: the abandoned request is still pending until Abandon answers",
				r.LowestPendingSeq, r.AbandonSeq),
			need(r.Kind != pb.Kind_KIND_UNSPECIFIED, "kind is missing: give the kind of the abandoned request's object"),
			v.name(r.Name))
	case *pb.CancelWaitRequest:
		return first(v.client(r.ClientId, r.RequestSeq), need(r.SessionId != 0, "session_id is missing: give the session the waiter belongs to"),
			need(r.WaiterId != 0, "waiter_id is missing: give the waiter_id the queued request answered"))

	case *pb.AcquireLockRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs),
			v.wait(r.WaitTimeoutMs), v.lockDelay(r.LockDelayMs), v.maxHold(r.MaxHoldMs), v.value(r.Value))
	case *pb.ReleaseLockRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.holder(r.SessionId, r.Owner, "owner", r.FencingToken))
	case *pb.RenewLockRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.holder(r.SessionId, r.Owner, "owner", r.FencingToken))
	case *pb.LockStatusRequest:
		return v.name(r.Name)
	case *pb.ListRequest:
		return first(need(len(r.Prefix) <= v.l.MaxNameBytes, "prefix is %d bytes: at most %d", len(r.Prefix), v.l.MaxNameBytes),
			v.kindFilter(r.Kind, "kind"), need(r.PageSize >= 0, "page_size %d is negative: use 0 (the server's maximum) or more", r.PageSize))
	case *pb.CheckFenceRequest:
		return first(v.name(r.Name), v.kindFilter(r.Kind, "kind"),
			need(r.FencingToken != 0, "fencing_token is missing: give the token to check"))

	case *pb.AcquireSemaphoreRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs),
			v.wait(r.WaitTimeoutMs), need(r.LockDelayMs == 0, "lock_delay_ms applies to mutexes only: leave it out"),
			v.maxHold(r.MaxHoldMs), v.value(r.Value),
			need(r.Limit >= 0 && r.Limit <= v.l.MaxSemaphoreLimit, "limit %d is out of range: use 1..%d (0: the existing semaphore's limit)", r.Limit, v.l.MaxSemaphoreLimit),
			need(r.Permits >= 0 && (r.Limit == 0 || r.Permits <= r.Limit), "permits %d is out of range: use 1..limit (%d); 0 means 1", r.Permits, r.Limit))
	case *pb.ReleaseSemaphoreRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.holder(r.SessionId, r.Owner, "owner", r.FencingToken))
	case *pb.SemaphoreStatusRequest:
		return v.name(r.Name)

	case *pb.AcquireRWLockRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs),
			v.wait(r.WaitTimeoutMs), need(r.LockDelayMs == 0, "lock_delay_ms applies to mutexes only: leave it out"),
			v.maxHold(r.MaxHoldMs), v.value(r.Value),
			need(r.Mode == "read" || r.Mode == "write", "mode %q is not a mode: use \"read\" or \"write\"", r.Mode))
	case *pb.ReleaseRWLockRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.holder(r.SessionId, r.Owner, "owner", r.FencingToken))
	case *pb.RWLockStatusRequest:
		return v.name(r.Name)

	case *pb.WaitBarrierRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs),
			v.wait(r.WaitTimeoutMs),
			need(r.Parties == 0 || (r.Parties >= 2 && r.Parties <= int64(v.l.MaxParties)),
				"parties %d is out of range: use 2..%d, or 0 to wait for a set barrier to be removed", r.Parties, v.l.MaxParties),
			v.owner("participant", r.Participant, 0))
	case *pb.SetBarrierRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq),
			need(r.SessionId != 0, "session_id is missing: a set barrier stays up while the session that set it lives"))
	case *pb.RemoveBarrierRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq))
	case *pb.BarrierStatusRequest:
		return v.name(r.Name)

	case *pb.CampaignRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.lease(r.SessionId, r.Candidate, "candidate", r.TtlSeconds, r.TtlMs),
			v.wait(r.WaitTimeoutMs), v.value(r.Value))
	case *pb.ProclaimRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq),
			need(r.SessionId != 0, "session_id is missing: give the leader's session"),
			need(r.FencingToken != 0, "fencing_token is missing: give the leadership's token"), v.value(r.Value))
	case *pb.ResignRequest:
		return first(v.name(r.Name), v.client(r.ClientId, r.RequestSeq), v.holder(r.SessionId, r.Candidate, "candidate", r.FencingToken))
	case *pb.LeaderRequest:
		return v.name(r.Name)
	case *pb.ObserveRequest:
		return v.name(r.Name)

	case *pb.WatchRequest:
		var err *connect.Error
		switch t := r.Target.(type) {
		case *pb.WatchRequest_Name:
			err = v.name(t.Name)
		case *pb.WatchRequest_Prefix:
			err = need(len(t.Prefix) <= v.l.MaxNameBytes, "prefix is %d bytes: at most %d", len(t.Prefix), v.l.MaxNameBytes)
		default:
			err = invalid("give name (one object) or prefix (\"\" for everything) to watch")
		}
		for _, k := range r.Kinds {
			err = first(err, v.kindFilter(k, "kinds"), need(k != pb.Kind_KIND_UNSPECIFIED, "kinds lists KIND_UNSPECIFIED: leave kinds empty for every kind"))
		}
		return err

	case *pb.HealthRequest, *pb.ClusterStatusRequest:
		return nil
	case *pb.AddNodeRequest:
		return first(need(r.NodeId != "", "node_id is missing: give the new member's cluster.node_id"), v.address(r.RaftAddress),
			need(r.ShardId == 0, "shard_id %d: membership changes apply to every shard; leave shard_id 0", r.ShardId))
	case *pb.RemoveNodeRequest:
		return first(need(r.NodeId != "", "node_id is missing: give the member to remove"),
			need(r.ShardId == 0, "shard_id %d: membership changes apply to every shard; leave shard_id 0", r.ShardId))
	case *pb.TransferLeadershipRequest:
		// Shards are numbered from 0 (see /cluster/status), so 0 is a shard.
		return need(r.TargetNodeId != "", "target_node_id is missing: give the member to hand leadership to")
	}
	return nil
}

func first(errs ...*connect.Error) *connect.Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func need(ok bool, format string, args ...any) *connect.Error {
	if ok {
		return nil
	}
	return invalid(format, args...)
}

func (v validator) name(name string) *connect.Error {
	if err := v.l.ValidateName(name); err != nil {
		var msg string
		if ce, ok := err.(*core.Error); ok {
			msg = ce.Msg
		} else {
			msg = err.Error()
		}
		return invalid("name: %s (a name with / goes in a REST path as %%2F)", msg)
	}
	return nil
}

func (v validator) client(id string, seq uint64) *connect.Error {
	switch {
	case id == "" && seq != 0:
		return invalid("request_seq %d without a client_id: send both or neither", seq)
	case id != "" && seq == 0:
		return invalid("client_id %q without a request_seq: number requests from 1", id)
	case len(id) > maxClientIDBytes:
		return invalid("client_id is %d bytes: at most %d", len(id), maxClientIDBytes)
	case !utf8.ValidString(id):
		return invalid("client_id is not valid UTF-8")
	}
	return nil
}

// pending checks lowest_pending_seq against the request's own numbering.
func (v validator) pending(id string, seq, low uint64) *connect.Error {
	switch {
	case low != 0 && id == "":
		return invalid("lowest_pending_seq %d without a client_id: it belongs to the client's request numbering", low)
	case low > seq:
		return invalid("lowest_pending_seq %d is above request_seq %d: this request itself is pending, so give at most %d", low, seq, seq)
	}
	return nil
}

// ttl checks a lease given as ttl_seconds or ttl_ms.
func (v validator) ttl(seconds, ms int64) *connect.Error {
	switch {
	case seconds != 0 && ms != 0:
		return invalid("ttl_seconds and ttl_ms are both set: give one")
	case seconds < 0 || ms < 0:
		return invalid("the TTL is negative: give ttl_seconds or ttl_ms of at least %d ms, or neither for the default", v.l.MinTTLMs)
	case seconds != 0 && (seconds > v.l.MaxTTLMs/1000 || seconds*1000 < v.l.MinTTLMs):
		return invalid("ttl_seconds %d is out of range: use 1..%d", seconds, v.l.MaxTTLMs/1000)
	case ms != 0 && (ms < v.l.MinTTLMs || ms > v.l.MaxTTLMs):
		return invalid("ttl_ms %d is out of range: use %d..%d", ms, v.l.MinTTLMs, v.l.MaxTTLMs)
	}
	return nil
}

// lease checks how a request names its session: an existing session_id, or
// a TTL and label for a session the server creates.
func (v validator) lease(session uint64, owner, ownerField string, seconds, ms int64) *connect.Error {
	if session != 0 {
		return first(need(seconds == 0 && ms == 0,
			"ttl_seconds and ttl_ms apply only without session_id (they size the session the server creates): leave them out or drop session_id"),
			v.owner(ownerField, owner, 0))
	}
	return first(v.ttl(seconds, ms), v.owner(ownerField, owner, len(autoOwnerPrefix)))
}

// owner checks a label; reserve is room kept for the mark of a session the
// server creates (autoOwnerPrefix), which the label then goes into.
func (v validator) owner(field, owner string, reserve int) *connect.Error {
	max := v.l.MaxOwnerBytes - reserve
	switch {
	case len(owner) > max && reserve > 0:
		return invalid("%s is %d bytes: at most %d here (%d, less %d for the %q mark of the session the server creates for this request)",
			field, len(owner), max, v.l.MaxOwnerBytes, reserve, autoOwnerPrefix)
	case len(owner) > max:
		return invalid("%s is %d bytes: at most %d", field, len(owner), max)
	}
	if err := core.ValidateLabel(field, owner); err != nil {
		return invalid("%s", err.Msg)
	}
	return nil
}

func (v validator) reservedOwner(owner string) *connect.Error {
	return need(!strings.HasPrefix(owner, autoOwnerPrefix),
		"owner %q starts with %q, which marks the sessions the server creates for an acquire: choose another label", owner, autoOwnerPrefix)
}

func (v validator) wait(ms int64) *connect.Error {
	if v.rest {
		// REST caps every wait at locks.max_wait_time_seconds, -1 included.
		return need(ms >= core.WaitForever,
			"wait_timeout_ms %d is negative: use 0 (try once) or a wait in ms (over REST a wait lasts at most locks.max_wait_time_seconds; -1 asks for that longest wait)", ms)
	}
	return need(ms >= core.WaitForever && ms <= v.l.MaxWaitMs,
		"wait_timeout_ms %d is out of range: use 0 (try once), 1..%d ms, or -1 (until granted or cancelled)", ms, v.l.MaxWaitMs)
}

func (v validator) lockDelay(ms int64) *connect.Error {
	return need(ms >= 0 && ms <= v.l.MaxLockDelayMs, "lock_delay_ms %d is out of range: use 0 (none) to %d", ms, v.l.MaxLockDelayMs)
}

func (v validator) maxHold(ms int64) *connect.Error {
	return need(ms >= 0 && ms <= v.l.MaxHoldMs, "max_hold_ms %d is out of range: use 0 (none) to %d", ms, v.l.MaxHoldMs)
}

func (v validator) value(b []byte) *connect.Error {
	return need(len(b) <= v.l.MaxValueBytes, "value is %d bytes: at most %d", len(b), v.l.MaxValueBytes)
}

// holder checks how a release, renew or resign names the grant.
func (v validator) holder(session uint64, owner, ownerField string, token uint64) *connect.Error {
	return first(need(token != 0, "fencing_token is missing: give the token the acquire answered"),
		need(session != 0 || owner != "", "the holder is missing: give session_id or %s", ownerField),
		v.owner(ownerField, owner, 0))
}

func (v validator) kindFilter(k pb.Kind, field string) *connect.Error {
	if _, ok := pb.Kind_name[int32(k)]; !ok {
		return invalid("%s %d is not a kind: use KIND_MUTEX, KIND_SEMAPHORE, KIND_RWLOCK, KIND_BARRIER or KIND_ELECTION", field, k)
	}
	return nil
}

func (v validator) address(addr string) *connect.Error {
	if addr == "" {
		return invalid("raft_address is missing: give the new member's cluster.raft_address (host:port)")
	}
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return invalid("raft_address %q is not host:port", addr)
	}
	return nil
}
