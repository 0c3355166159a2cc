package rpc

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	"github.com/lockstepd/lockstep/internal/quote"
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

// implicitSuffix is the room the client id of an implicit session takes
// beyond the request's client_id: "/" and implicitPrintDigits hex digits
// (implicitClientID).
const implicitSuffix = "/0000000"

// implicitPrintDigits is how many hex digits of the request's print the
// implicit session's client id carries.
const implicitPrintDigits = len(implicitSuffix) - 1

// implicitClientID derives the client id under which the implicit session
// of a request is created, so that the session and the request it serves
// each have their own (client_id, request_seq) and a retry finds both. It
// carries a print of what the request acts on (op, kind, name): with
// several shards each shard keeps its own dedupe, so a request_seq reused
// for another name in another shard is not recognised there, and under
// one derived id for every request it joined the first request's session,
// which then served two requests (its release kept the session, and two
// owners' grants shared one lease). With the print, such a request gets a
// session of its own, as a new request does; within one shard the reuse is
// refused as before (core's dedupe).
func implicitClientID(clientID string, c *core.Command) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d/%d/%s", c.Op, c.Kind, c.Name)
	return fmt.Sprintf("%s/%0*x", clientID, implicitPrintDigits, h.Sum32()&(1<<(4*implicitPrintDigits)-1))
}

// maxClientIDBytes leaves room for implicitSuffix within core's bound.
const maxClientIDBytes = core.MaxClientIDBytes - len(implicitSuffix)

type validator struct {
	l            core.Limits
	defaultTTLMs int64 // Options.DefaultTTL: the lease of a session created without a TTL
	rest         bool  // the request came over REST, whose waits are capped (Options.MaxWait)
	// mark is what ownership puts before the caller's labels
	// ("PRINCIPAL:"; empty for an anonymous caller), which counts against
	// their room.
	mark string
}

// heldSession stands in, in the command a validator checks, for a session
// the server supplies: one it creates for the request (no session_id), or
// the holder's that it looks up by owner. core.CheckCommand then checks that
// a session is given, which the server makes true.
const heldSession core.SessionID = 1

// check validates one request message; nil means well formed. A message
// that the server proposes as commands is checked in two parts: first what
// belongs to the API (ttl_seconds beside ttl_ms, the reserved owner mark, a
// session given or created, REST's waits, the proto's strings and enums),
// then core.CheckCommand on each command the handler will propose, so the
// rules of a command are stated once, in core. Messages that propose
// nothing (reads, membership) are checked here alone.
func (v validator) check(msg any) *connect.Error {
	if err := v.transport(msg); err != nil {
		return err
	}
	var buf [2]core.Command // on the stack: no request's check allocates its commands
	for _, cmd := range v.commands(msg, &buf) {
		if err := core.CheckCommand(v.l, &cmd); err != nil {
			return connect.NewError(coreCodes[err.Code], errors.New(err.Msg))
		}
	}
	return nil
}

// transport checks what core does not know about: how the API names a
// session or a holder, and fields no command carries.
func (v validator) transport(msg any) *connect.Error {
	if c, ok := msg.(identified); ok {
		if err := v.client(c.GetClientId()); err != nil {
			return err
		}
	}
	switch r := msg.(type) {
	case *pb.CreateSessionRequest:
		return first(v.ttl(r.TtlSeconds, r.TtlMs), v.reservedOwner(r.Owner), v.label(r.Owner, "owner", false))
	case *pb.ListSessionsRequest:
		// An owner label is at most MaxOwnerBytes, its marks included: a
		// longer prefix matches nothing, and is a mistake.
		return first(need(len(r.OwnerPrefix) <= v.l.MaxOwnerBytes, "owner_prefix is %d bytes: at most %d, the longest owner label", len(r.OwnerPrefix), v.l.MaxOwnerBytes),
			need(r.PageSize >= 0, "page_size %d is negative: use 0 (the server's maximum, %d) or more", r.PageSize, shards.MaxPage))
	case *pb.GetSessionRequest:
		return need(r.SessionId != 0, "session_id is missing or 0: give the session to read (the id POST /sessions answered; none is 0)")
	case *pb.AbandonRequest:
		return v.name(r.Name)
	case *pb.CancelWaitRequest:
		// Ownership (ownership.go) decides by the session a waiter belongs to.
		return need(r.SessionId != 0, "session_id is missing or 0: give the session the waiter belongs to (none is 0)")

	case *pb.AcquireLockRequest:
		return first(v.name(r.Name), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs), v.wait(r.WaitTimeoutMs))
	case *pb.ReleaseLockRequest:
		return first(v.name(r.Name), v.holder(r.SessionId, r.Owner, "owner"))
	case *pb.RenewLockRequest:
		return first(v.name(r.Name), v.holder(r.SessionId, r.Owner, "owner"),
			need(r.FencingToken != 0, "fencing_token is missing: give the token the acquire answered"))
	case *pb.LockStatusRequest:
		return v.name(r.Name)
	case *pb.ListRequest:
		return first(need(len(r.Prefix) <= v.l.MaxNameBytes, "prefix is %d bytes: at most %d", len(r.Prefix), v.l.MaxNameBytes),
			v.kindFilter(r.Kind, "kind"), need(r.PageSize >= 0, "page_size %d is negative: use 0 (the server's maximum) or more", r.PageSize))
	case *pb.CheckFenceRequest:
		return first(v.name(r.Name), v.kindFilter(r.Kind, "kind"),
			need(r.FencingToken != 0, "fencing_token is missing: give the token to check"))

	case *pb.AcquireSemaphoreRequest:
		return first(v.name(r.Name), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs), v.wait(r.WaitTimeoutMs))
	case *pb.ReleaseSemaphoreRequest:
		return first(v.name(r.Name), v.holder(r.SessionId, r.Owner, "owner"))
	case *pb.SemaphoreStatusRequest:
		return v.name(r.Name)

	case *pb.AcquireRWLockRequest:
		return first(v.name(r.Name), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs), v.wait(r.WaitTimeoutMs),
			need(r.Mode == "read" || r.Mode == "write", "mode %s is not a mode: use \"read\" or \"write\"", quote.Bounded(r.Mode)))
	case *pb.ReleaseRWLockRequest:
		return first(v.name(r.Name), v.holder(r.SessionId, r.Owner, "owner"))
	case *pb.RWLockStatusRequest:
		return v.name(r.Name)

	case *pb.WaitBarrierRequest:
		return first(v.name(r.Name), v.lease(r.SessionId, r.Owner, "owner", r.TtlSeconds, r.TtlMs), v.wait(r.WaitTimeoutMs),
			v.label(r.Participant, "participant", false))
	case *pb.SetBarrierRequest:
		return v.name(r.Name)
	case *pb.RemoveBarrierRequest:
		return v.name(r.Name)
	case *pb.BarrierStatusRequest:
		return v.name(r.Name)

	case *pb.CampaignRequest:
		return first(v.name(r.Name), v.lease(r.SessionId, r.Candidate, "candidate", r.TtlSeconds, r.TtlMs), v.wait(r.WaitTimeoutMs))
	case *pb.ProclaimRequest:
		return v.name(r.Name)
	case *pb.ResignRequest:
		return first(v.name(r.Name), v.holder(r.SessionId, r.Candidate, "candidate"))
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

	case *pb.HealthRequest, *pb.ClusterStatusRequest, *pb.BackupRequest:
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

// identified is every message that carries a dedupe identity.
type identified interface {
	GetClientId() string
	GetRequestSeq() uint64
	GetLowestPendingSeq() uint64
}

// commands are the commands the handler of msg proposes, as core will see
// them, with heldSession where the server supplies the session. A request
// without session_id proposes a session_create first (service.sessionFor).
// They are put in buf, and the slice answered is buf's.
func (v validator) commands(msg any, buf *[2]core.Command) []core.Command {
	var c core.Command
	if m, ok := msg.(identified); ok {
		c = core.Command{ClientID: m.GetClientId(), Seq: m.GetRequestSeq(), LowestPending: m.GetLowestPendingSeq()}
	}
	// lease adds the session a request without session_id gets, labelled
	// with the mark and created under the derived client id.
	lease := func(session uint64, owner string, seconds, ms int64) []core.Command {
		if session != 0 {
			c.Session = core.SessionID(session)
			return append(buf[:0], c)
		}
		c.Session = heldSession
		create := core.Command{Op: core.OpSessionCreate, TTLMs: v.ttlMs(seconds, ms), Owner: autoOwnerPrefix + owner}
		if c.ClientID != "" {
			create.ClientID, create.Seq = implicitClientID(c.ClientID, &c), c.Seq
		}
		return append(buf[:0], c, create) // c first: its owner is the caller's label, at the caller's byte offsets
	}
	held := func(session uint64) core.SessionID {
		if session == 0 {
			return heldSession // the holder's, found by its owner
		}
		return core.SessionID(session)
	}
	switch r := msg.(type) {
	case *pb.CreateSessionRequest:
		c.Op, c.TTLMs, c.Owner = core.OpSessionCreate, v.ttlMs(r.TtlSeconds, r.TtlMs), r.Owner
	case *pb.KeepAliveRequest:
		c.Op, c.Session = core.OpSessionKeepAlive, core.SessionID(r.SessionId)
	case *pb.CloseSessionRequest:
		c.Op, c.Session, c.ApplyLockDelay = core.OpSessionClose, core.SessionID(r.SessionId), r.ApplyLockDelay
	case *pb.AbandonRequest:
		c.Op, c.Session, c.Kind, c.Name, c.TargetSeq = core.OpAbandon, core.SessionID(r.SessionId), kindCore(r.Kind, 0), r.Name, r.AbandonSeq
	case *pb.CancelWaitRequest:
		c.Op, c.Session, c.Waiter = core.OpCancel, core.SessionID(r.SessionId), core.WaiterID(r.WaiterId)

	case *pb.AcquireLockRequest:
		c.Op, c.Kind, c.Name, c.Owner, c.WaitMs = core.OpAcquire, core.KindMutex, r.Name, r.Owner, v.waitMs(r.WaitTimeoutMs)
		c.LockDelayMs, c.MaxHoldMs, c.Value = r.LockDelayMs, r.MaxHoldMs, r.Value
		return lease(r.SessionId, r.Owner, r.TtlSeconds, r.TtlMs)
	case *pb.AcquireSemaphoreRequest:
		c.Op, c.Kind, c.Name, c.Owner, c.WaitMs = core.OpAcquire, core.KindSemaphore, r.Name, r.Owner, v.waitMs(r.WaitTimeoutMs)
		c.LockDelayMs, c.MaxHoldMs, c.Value, c.Limit, c.Permits = r.LockDelayMs, r.MaxHoldMs, r.Value, r.Limit, r.Permits
		if r.Limit == 0 {
			// The server proposes the existing semaphore's limit, which
			// core checks against permits when the acquire applies.
			c.Limit = v.l.MaxSemaphoreLimit
		}
		return lease(r.SessionId, r.Owner, r.TtlSeconds, r.TtlMs)
	case *pb.AcquireRWLockRequest:
		c.Op, c.Kind, c.Name, c.Owner, c.WaitMs = core.OpAcquire, core.KindRWLock, r.Name, r.Owner, v.waitMs(r.WaitTimeoutMs)
		c.LockDelayMs, c.MaxHoldMs, c.Value, c.Mode = r.LockDelayMs, r.MaxHoldMs, r.Value, modeCore(r.Mode)
		return lease(r.SessionId, r.Owner, r.TtlSeconds, r.TtlMs)
	case *pb.ReleaseLockRequest:
		c.Op, c.Kind, c.Name, c.Session, c.Token = core.OpRelease, core.KindMutex, r.Name, held(r.SessionId), core.FencingToken(r.FencingToken)
	case *pb.ReleaseSemaphoreRequest:
		c.Op, c.Kind, c.Name, c.Session, c.Token = core.OpRelease, core.KindSemaphore, r.Name, held(r.SessionId), core.FencingToken(r.FencingToken)
	case *pb.ReleaseRWLockRequest:
		c.Op, c.Kind, c.Name, c.Session, c.Token = core.OpRelease, core.KindRWLock, r.Name, held(r.SessionId), core.FencingToken(r.FencingToken)
	case *pb.RenewLockRequest:
		c.Op, c.Session = core.OpSessionKeepAlive, held(r.SessionId)

	case *pb.WaitBarrierRequest:
		c.Op, c.Name, c.WaitMs, c.Parties, c.Participant = core.OpBarrierWait, r.Name, v.waitMs(r.WaitTimeoutMs), r.Parties, r.Participant
		return lease(r.SessionId, r.Owner, r.TtlSeconds, r.TtlMs)
	case *pb.SetBarrierRequest:
		c.Op, c.Name, c.Session = core.OpBarrierSet, r.Name, core.SessionID(r.SessionId)
	case *pb.RemoveBarrierRequest:
		c.Op, c.Name = core.OpBarrierRemove, r.Name

	case *pb.CampaignRequest:
		c.Op, c.Name, c.Owner, c.WaitMs, c.Value = core.OpCampaign, r.Name, r.Candidate, v.waitMs(r.WaitTimeoutMs), r.Value
		return lease(r.SessionId, r.Candidate, r.TtlSeconds, r.TtlMs)
	case *pb.ProclaimRequest:
		c.Op, c.Name, c.Session, c.Token, c.Value = core.OpProclaim, r.Name, core.SessionID(r.SessionId), core.FencingToken(r.FencingToken), r.Value
	case *pb.ResignRequest:
		c.Op, c.Name, c.Session, c.Token = core.OpResign, r.Name, held(r.SessionId), core.FencingToken(r.FencingToken)
	default:
		return nil
	}
	return append(buf[:0], c)
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
		return invalid("name: %s (a name with / goes in a REST path as %%2F)", coreMessage(err))
	}
	return nil
}

// coreMessage is what core said, without its code's prefix.
func coreMessage(err error) string {
	if ce, ok := err.(*core.Error); ok {
		return ce.Msg
	}
	return err.Error()
}

// client checks the length of client_id: a request without session_id gets
// a session created under client_id+implicitSuffix, which must fit core's
// bound too. core.CheckCommand checks the rest of the identity.
func (v validator) client(id string) *connect.Error {
	return first(need(len(id) <= maxClientIDBytes, "client_id is %d bytes: at most %d", len(id), maxClientIDBytes),
		need(utf8.ValidString(id), "client_id is not valid UTF-8"))
}

// ttl checks a lease given as ttl_seconds or ttl_ms; core checks the
// ttl_ms it becomes (ttlMs).
func (v validator) ttl(seconds, ms int64) *connect.Error {
	switch {
	case seconds != 0 && ms != 0:
		return invalid("ttl_seconds and ttl_ms are both set: give one")
	case seconds != 0 && (seconds < 0 || seconds > v.l.MaxTTLMs/1000 || seconds*1000 < v.l.MinTTLMs):
		return invalid("ttl_seconds %d is out of range: use %d..%d", seconds, (v.l.MinTTLMs+999)/1000, v.l.MaxTTLMs/1000)
	}
	return nil
}

// ttlMs is the TTL the server proposes.
func (v validator) ttlMs(seconds, ms int64) int64 { return leaseTTLMs(seconds, ms, v.defaultTTLMs) }

// lease checks how a request names its session: an existing session_id, or
// a TTL and label for a session the server creates. core checks the label
// itself, in the command and in the session made for it.
func (v validator) lease(session uint64, owner, ownerField string, seconds, ms int64) *connect.Error {
	if session != 0 {
		return first(need(seconds == 0 && ms == 0,
			"ttl_seconds and ttl_ms apply only without session_id (they size the session the server creates): leave them out or drop session_id"),
			v.label(owner, ownerField, false))
	}
	return first(v.ttl(seconds, ms),
		need(ms == 0 || ms >= minServerMadeTTLMs,
			"ttl_ms %d is too short for the session the server makes for this request: it is renewed while the request waits, "+
				"a third of its lease at a time, and a lease under %d ms ran out before the request applied (answered as a session that "+
				"does not exist); give ttl_ms of at least %d, or create a session (POST /sessions) and pass its session_id",
			ms, minServerMadeTTLMs, minServerMadeTTLMs),
		v.label(owner, ownerField, true))
}

// minServerMadeTTLMs bounds the lease of a session the server makes for
// one request from below, above core's bound for sessions in general
// (core.Limits.MinTTLMs): renewed every third of its lease while the
// request waits, a 10 ms lease expired before the acquire it was made for
// applied, which answered 404 "session ... does not exist" of a session
// the caller never named.
const minServerMadeTTLMs = 100

// label checks that a label the caller gives has room for what the
// server puts before it: the caller's principal (v.mark) and, in a
// session the server creates for the request (serverMade), its mark. A
// caller was told "owner is 129 bytes: at most 128" of a 121-byte label,
// and "at most 123 here" where 120 was the room left.
func (v validator) label(owner, field string, serverMade bool) *connect.Error {
	room, less := v.l.MaxOwnerBytes, ""
	if serverMade {
		room -= len(autoOwnerPrefix)
		less += fmt.Sprintf(", less %d for the %q mark of the session the server creates for this request", len(autoOwnerPrefix), autoOwnerPrefix)
	}
	if v.mark != "" {
		room -= len(v.mark)
		less += fmt.Sprintf(", less %d for the %q the server puts before your principal's labels", len(v.mark), v.mark)
	}
	if less == "" {
		return nil // core checks the label as given
	}
	return need(len(owner) <= room, "%s is %d bytes: at most %d here (%d%s)", field, len(owner), room, v.l.MaxOwnerBytes, less)
}

func (v validator) reservedOwner(owner string) *connect.Error {
	return need(!strings.HasPrefix(owner, autoOwnerPrefix),
		"owner %s starts with %q, which marks the sessions the server creates for an acquire: choose another label", quote.Bounded(owner), autoOwnerPrefix)
}

// wait checks REST's rule for waits; core checks the others' (waitMs).
func (v validator) wait(ms int64) *connect.Error {
	if !v.rest {
		return nil
	}
	// REST caps every wait at locks.max_wait_time_seconds, -1 included.
	return need(ms >= core.WaitForever,
		"wait_timeout_ms %d is negative: use 0 (try once) or a wait in ms (over REST a wait lasts at most locks.max_wait_time_seconds; -1 asks for that longest wait)", ms)
}

// waitMs is the wait core sees. Over REST the server caps it at
// Options.MaxWait (service.waitMs), which Options keeps within the limits;
// elsewhere core checks the wait as given.
func (v validator) waitMs(ms int64) int64 {
	if v.rest && ms > v.l.MaxWaitMs {
		return v.l.MaxWaitMs
	}
	return ms
}

// holder checks how a release, renew or resign names the grant's session:
// session_id, or the label the server looks the holder up by (which no
// command carries, so it is checked here by core's rule for labels).
func (v validator) holder(session uint64, owner, ownerField string) *connect.Error {
	if session == 0 && owner == "" {
		return invalid("the holder is missing: give session_id or %s", ownerField)
	}
	if err := v.l.ValidateLabel(ownerField, owner); err != nil {
		return invalid("%s", coreMessage(err))
	}
	return nil
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
		return invalid("raft_address %s is not host:port", quote.Bounded(addr))
	}
	return nil
}
