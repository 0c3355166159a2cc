package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Kind names a primitive: "mutex", "semaphore", "rwlock", "barrier",
// "election".
type Kind string

// The kinds of objects.
const (
	KindMutex     Kind = "mutex"
	KindSemaphore Kind = "semaphore"
	KindRWLock    Kind = "rwlock"
	KindBarrier   Kind = "barrier"
	KindElection  Kind = "election"
)

func kindOf(k pb.Kind) Kind {
	return Kind(strings.ToLower(strings.TrimPrefix(k.String(), "KIND_")))
}

// Holder and Waiter are as status answers show them.
type (
	Holder = pb.Holder
	Waiter = pb.Waiter
)

// Status is one object's holders and queue, whatever its kind.
type Status struct {
	Kind       Kind      `json:"kind"`
	Name       string    `json:"name"`
	Holders    []*Holder `json:"holders"`
	Waiters    []*Waiter `json:"waiters"`             // in the order they will be served
	Limit      int64     `json:"limit,omitempty"`     // semaphores
	Available  int64     `json:"available,omitempty"` // semaphores
	Mode       string    `json:"mode,omitempty"`      // rwlocks
	Parties    int64     `json:"parties,omitempty"`   // barriers
	Generation uint64    `json:"generation,omitempty"`
	Value      []byte    `json:"value,omitempty"` // elections: the leader's value
	// BlockedUntilMs: a lock-delay keeps the name from everyone until then
	// (log time, ms since the epoch), after a holder whose session failed
	// (WithLockDelay); 0 when none.
	BlockedUntilMs int64  `json:"blocked_until_ms,omitempty"`
	AppliedIndex   uint64 `json:"applied_index"`
}

// Status reads one object (linearizable). A name never used answers no
// holders and no waiters.
func (c *Client) Status(ctx context.Context, kind Kind, name string) (*Status, error) {
	if err := badName(opName{"status of", name}); err != nil {
		return nil, err
	}
	st := &Status{Kind: kind, Name: name}
	var err error
	switch kind {
	case KindMutex:
		var r *pb.LockStatusResponse
		r, err = do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.LockStatusResponse], error) {
			return e.locks.Status(ctx, connect.NewRequest(&pb.LockStatusRequest{Name: name}))
		})
		if err == nil {
			if r.Held && r.Holder != nil {
				st.Holders = []*Holder{r.Holder}
			}
			st.Waiters, st.AppliedIndex, st.BlockedUntilMs = r.Waiters, r.AppliedIndex, r.BlockedUntilMs
		}
	case KindSemaphore:
		var r *pb.SemaphoreStatusResponse
		r, err = do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.SemaphoreStatusResponse], error) {
			return e.sems.Status(ctx, connect.NewRequest(&pb.SemaphoreStatusRequest{Name: name}))
		})
		if err == nil {
			st.Holders, st.Waiters, st.AppliedIndex = r.Holders, r.Waiters, r.AppliedIndex
			st.Limit, st.Available, st.BlockedUntilMs = r.Limit, r.Available, r.BlockedUntilMs
		}
	case KindRWLock:
		var r *pb.RWLockStatusResponse
		r, err = do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.RWLockStatusResponse], error) {
			return e.rw.Status(ctx, connect.NewRequest(&pb.RWLockStatusRequest{Name: name}))
		})
		if err == nil {
			st.Holders, st.Waiters, st.AppliedIndex, st.Mode = r.Holders, r.Waiters, r.AppliedIndex, r.Mode
			st.BlockedUntilMs = r.BlockedUntilMs
		}
	case KindBarrier:
		var r *pb.BarrierStatusResponse
		r, err = do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.BarrierStatusResponse], error) {
			return e.barriers.Status(ctx, connect.NewRequest(&pb.BarrierStatusRequest{Name: name}))
		})
		if err == nil {
			st.Waiters, st.AppliedIndex, st.Parties, st.Generation = r.Waiters, r.AppliedIndex, r.Parties, r.Generation
		}
	case KindElection:
		var r *pb.LeaderResponse
		r, err = do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.LeaderResponse], error) {
			return e.elections.Leader(ctx, connect.NewRequest(&pb.LeaderRequest{Name: name}))
		})
		if err == nil {
			if r.HasLeader && r.Leader != nil {
				l := r.Leader
				st.Holders = []*Holder{{SessionId: l.SessionId, Owner: l.Candidate, Value: l.Value,
					FencingToken: l.FencingToken, AcquiredAtMs: l.ElectedAtMs, ExpiresAtMs: l.ExpiresAtMs, Permits: 1}}
				st.Value = l.Value
			}
			st.Waiters, st.AppliedIndex = r.Candidates, r.AppliedIndex
		}
	default:
		return nil, unknownKind(kind)
	}
	if err != nil {
		return nil, apiErr(opName{"status of " + string(kind), name}, err)
	}
	return st, nil
}

// Object is one live object in a List answer.
type Object struct {
	Kind        Kind   `json:"kind"`
	Name        string `json:"name"`
	HolderCount int64  `json:"holders"`
	WaiterCount int64  `json:"waiters"`
}

// List answers every live object whose name starts with prefix, in name
// order, reading every page.
func (c *Client) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	token := ""
	for page := 0; page < 10000; page++ {
		req := &pb.ListRequest{Prefix: prefix, PageToken: token}
		r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ListResponse], error) {
			return e.locks.List(ctx, connect.NewRequest(req))
		})
		if err != nil {
			return nil, apiErr("list", err)
		}
		for _, o := range r.Objects {
			out = append(out, Object{Kind: kindOf(o.Kind), Name: o.Name, HolderCount: o.HolderCount, WaiterCount: o.WaiterCount})
		}
		if r.NextPageToken == "" {
			break
		}
		token = r.NextPageToken
	}
	return out, nil
}

// unknownKind refuses a kind the API does not have, as a malformed
// request (ErrInvalid) is: it was an error of its own, which errors.Is
// did not match, and CheckFence's said nothing of the kinds there are.
func unknownKind(kind Kind) error {
	return fmt.Errorf("%w: unknown kind %s: use mutex, semaphore, rwlock, barrier or election", ErrInvalid, quote.Bounded(string(kind)))
}

// CheckFence asks the cluster, linearizably, whether token still holds the
// object (kind "" means mutex). Token 0 is no grant's (what Token answers
// when nothing is held): it holds nothing, answered false without asking,
// as Fence.Check refuses it. An error means the answer is not known (no
// endpoint answered, a malformed request), never that the token is stale.
//
// The answer is about the moment the cluster read it: the holder may
// change before a write checked so lands. A resource that can keep the
// largest token it accepted, in the same transaction as the write, fences
// exactly; CheckFence is for one that cannot (docs/client.md).
func (c *Client) CheckFence(ctx context.Context, kind Kind, name string, token uint64) (bool, error) {
	if err := badName(opName{"check fence of", name}); err != nil {
		return false, err
	}
	k := pb.Kind_KIND_MUTEX
	if kind != "" {
		v, ok := pb.Kind_value["KIND_"+strings.ToUpper(string(kind))]
		if !ok {
			return false, fmt.Errorf("check fence of %s: %w", quote.Bounded(name), unknownKind(kind))
		}
		k = pb.Kind(v)
	}
	if token == 0 {
		// The servers refuse it as malformed, an error a resource that
		// retries on errors took for the cluster's trouble, and retried a
		// lost holder's write rather than refusing it.
		return false, nil
	}
	r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CheckFenceResponse], error) {
		return e.locks.CheckFence(ctx, connect.NewRequest(&pb.CheckFenceRequest{Name: name, Kind: k, FencingToken: token}))
	})
	if err != nil {
		return false, apiErr("check fence", err)
	}
	return r.Valid, nil
}

// ClusterStatus answers the status of the node the client talks to.
func (c *Client) ClusterStatus(ctx context.Context) (*pb.ClusterStatusResponse, error) {
	r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ClusterStatusResponse], error) {
		return e.cluster.Status(ctx, connect.NewRequest(&pb.ClusterStatusRequest{}))
	})
	return r, apiErr("cluster status", err)
}

// AddNode adds a member to shard 0 and answers the incarnation it must
// start with (the Lockstep-Incarnation header; "" when not sent).
func (c *Client) AddNode(ctx context.Context, nodeID, raftAddress string) (string, error) {
	added, err := c.AddMember(ctx, nodeID, raftAddress)
	return added.Incarnation, err
}

// AddedMember is AddMember's answer.
type AddedMember struct {
	// Incarnation is the cluster.incarnation the node runs as (the
	// Lockstep-Incarnation header; "" when not sent).
	Incarnation string
	// AlreadyMember says the node was a member at that address before the
	// call, which changed nothing (the Lockstep-Already-Member header): it
	// may be running. False from servers that do not send the header, and
	// true after a retry whose lost first attempt had added the node.
	AlreadyMember bool
	// Deployment is the Raft deployment the node must start with
	// (--deployment, cluster.deployment) when the cluster was restored
	// from a backup (the Lockstep-Deployment header); "" otherwise.
	Deployment string
}

// AddMember is AddNode, answering also whether the node was a member
// already.
func (c *Client) AddMember(ctx context.Context, nodeID, raftAddress string) (AddedMember, error) {
	var added AddedMember
	err := c.audited(ctx, "add node", func(ctx context.Context, e *endpoint, id reqID) error {
		r, err := e.cluster.AddNode(ctx, connect.NewRequest(&pb.AddNodeRequest{ClientId: id.ClientID(), RequestSeq: id.seq,
			NodeId: nodeID, RaftAddress: raftAddress}))
		if err == nil {
			added = AddedMember{Incarnation: r.Header().Get("Lockstep-Incarnation"),
				AlreadyMember: r.Header().Get("Lockstep-Already-Member") == "true",
				Deployment:    r.Header().Get("Lockstep-Deployment")}
		}
		return err
	})
	return added, err
}

// RemoveNode removes a member from shard 0.
func (c *Client) RemoveNode(ctx context.Context, nodeID string) error {
	_, err := c.RemoveMember(ctx, nodeID)
	return err
}

// RemovedMember is RemoveMember's answer.
type RemovedMember struct {
	// NotAMember says the node was a member of no shard when the call came,
	// which changed nothing (the Lockstep-Not-A-Member header): it was
	// removed before, or the members know it by another name, and may be
	// running and voting. True also after a retry whose lost first attempt
	// removed it. False from servers that do not send the header.
	NotAMember bool
	// Members are shard 0's members as the servers name them, when
	// NotAMember (the Lockstep-Members header).
	Members []string
}

// RemoveMember is RemoveNode, answering also whether the node was a
// member when the call came.
func (c *Client) RemoveMember(ctx context.Context, nodeID string) (RemovedMember, error) {
	var removed RemovedMember
	err := c.audited(ctx, "remove node", func(ctx context.Context, e *endpoint, id reqID) error {
		r, err := e.cluster.RemoveNode(ctx, connect.NewRequest(&pb.RemoveNodeRequest{ClientId: id.ClientID(), RequestSeq: id.seq, NodeId: nodeID}))
		if err == nil {
			removed = RemovedMember{NotAMember: r.Header().Get("Lockstep-Not-A-Member") == "true"}
			if m := r.Header().Get("Lockstep-Members"); m != "" {
				removed.Members = strings.Split(m, ",")
			}
		}
		return err
	})
	return removed, err
}

// TransferLeadership asks shard 0's leader to hand over to target.
func (c *Client) TransferLeadership(ctx context.Context, target string) error {
	return c.TransferShardLeadership(ctx, 0, target)
}

// TransferShardLeadership asks the leader of shard to hand over to
// target, and returns once target leads it (with several shards,
// consensus.shards, each has its own leader).
func (c *Client) TransferShardLeadership(ctx context.Context, shard uint64, target string) error {
	return c.audited(ctx, "transfer leadership", func(ctx context.Context, e *endpoint, id reqID) error {
		_, err := e.cluster.TransferLeadership(ctx, connect.NewRequest(&pb.TransferLeadershipRequest{ClientId: id.ClientID(),
			RequestSeq: id.seq, TargetNodeId: target, ShardId: shard}))
		return err
	})
}

// audited runs a membership call: idempotent by content on the servers, it
// carries a request id only for the audit log. A configuration change may
// take longer than an attempt timeout, so it is bounded like a blocked
// wait: by probes of its endpoint.
func (c *Client) audited(ctx context.Context, what string, f func(ctx context.Context, e *endpoint, id reqID) error) error {
	id, err := c.inflight.begin(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer id.finish()
	_, err = call(ctx, c, blocking, func(ctx context.Context, e *endpoint) (*connect.Response[struct{}], error) {
		if err := f(ctx, e, id); err != nil {
			return nil, err
		}
		return connect.NewResponse(&struct{}{}), nil
	})
	if connect.CodeOf(err) == connect.CodeNotFound {
		// Not a session: a membership call names no session, and its
		// not_found is a node id that names no member.
		return fmt.Errorf("%s: %w: %w", what, ErrNotMember, err)
	}
	return apiErr(what, err)
}

// MemberStatus is one endpoint's own view of the cluster, as
// ClusterStatusEach reads it: Status when the endpoint answered, Err when
// it did not within the attempt timeout.
type MemberStatus struct {
	Endpoint string
	Status   *pb.ClusterStatusResponse
	Err      error
}

// ClusterStatusEach asks every endpoint of the client for its own view at
// once, each bounded by the attempt timeout (WithAttemptTimeout), and
// answers them in the order the endpoints were given: the cluster-wide view
// of `etcdctl endpoint status --cluster`. An endpoint that does not answer
// is reported, not retried elsewhere.
func (c *Client) ClusterStatusEach(ctx context.Context) []MemberStatus {
	out := make([]MemberStatus, len(c.endpoints))
	if c.isClosed() {
		for i, e := range c.endpoints {
			out[i] = MemberStatus{Endpoint: e.url, Err: ErrClientClosed}
		}
		return out
	}
	var wg sync.WaitGroup
	for i, e := range c.endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, c.opts.attemptTimeout)
			defer cancel()
			r, err := e.cluster.Status(actx, connect.NewRequest(&pb.ClusterStatusRequest{}))
			out[i] = MemberStatus{Endpoint: e.url, Err: apiErr("cluster status", e.explain(err))}
			if err == nil {
				out[i].Status = r.Msg
			}
		}()
	}
	wg.Wait()
	return out
}

// Backup writes a backup of the cluster's whole state to w: a tar archive
// that `lockstep snapshot restore` makes a new cluster's members from
// (docs/operations.md, "Backup and restore"). It needs the admin
// permission. Unless stale, the backup holds every operation acknowledged
// before the call, and needs a quorum; stale backs up what the answering
// member applied, for a cluster that lost its majority.
//
// The endpoints are asked in turn until one starts the archive; from then
// on the bytes go to w as they arrive, so an error after that leaves w
// with part of an archive: write to a temporary file, and keep it only
// when Backup returns nil (lockstep snapshot save does).
func (c *Client) Backup(ctx context.Context, w io.Writer, stale bool) error {
	if c.isClosed() {
		return fmt.Errorf("backup: %w", ErrClientClosed)
	}
	var last error
	for _, e := range c.endpoints {
		wrote, err := backupFrom(ctx, e, w, stale)
		if err == nil {
			return nil
		}
		if wrote || ctx.Err() != nil || !retryable(err) {
			// explain: a metrics port's bare 404 read "unimplemented:
			// HTTP status 404 Not Found", as if the member lacked backups.
			return apiErr("backup", e.explain(err))
		}
		// What a member said (no quorum: take a stale backup) says more
		// than an endpoint that could not be reached.
		if last == nil || !fromServer(last) {
			last = err
		}
	}
	return apiErr("backup", last)
}

// fromServer says whether err came from a server, not from a connection
// that could not be made (a TLS alert, which the server sent, is the
// server's).
func fromServer(err error) bool {
	var op *net.OpError
	return !errors.As(err, &op) || op.Op != "dial"
}

// backupFrom streams one endpoint's backup into w; wrote says some bytes
// reached w.
func backupFrom(ctx context.Context, e *endpoint, w io.Writer, stale bool) (wrote bool, err error) {
	s, err := e.cluster.Backup(ctx, connect.NewRequest(&pb.BackupRequest{Stale: stale}))
	if err != nil {
		return false, err
	}
	defer s.Close()
	for s.Receive() {
		wrote = true
		if _, err := w.Write(s.Msg().Data); err != nil {
			return true, err
		}
	}
	return wrote, s.Err()
}

// SessionInfo is a session as the servers keep it: owner, lease, and what
// it holds and waits for.
type SessionInfo = pb.Session

// SessionInfo reads session id (linearizable), any session the caller's
// principal may see: its own, or any without authentication. One the
// servers do not have answers ErrSessionLost.
func (c *Client) SessionInfo(ctx context.Context, id uint64) (*SessionInfo, error) {
	r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.GetSessionResponse], error) {
		return e.sessions.Get(ctx, connect.NewRequest(&pb.GetSessionRequest{SessionId: id}))
	})
	if err != nil {
		return nil, apiErr(fmt.Sprintf("session %d", id), err)
	}
	return r.Session, nil
}

// SessionSummary is one live session in a ListSessions page: its id, owner
// label, lease (ttl_ms, created_at_ms, expires_at_ms) and how many holds
// and waits it has; SessionInfo lists them.
type SessionSummary = pb.SessionSummary

// SessionQuery asks ListSessions for one page of sessions.
type SessionQuery struct {
	// OwnerPrefix keeps only the sessions whose owner label starts with it,
	// the label as listed (with authentication, "PRINCIPAL:label"; a
	// session the server made, "auto:..."). Empty: every session.
	OwnerPrefix string
	// PageSize is the most sessions the page holds: 0 is the server's
	// maximum (1,000), and so is anything above it.
	PageSize int
	// PageToken is the previous page's next token; empty for the first.
	PageToken string
	// Stale lets the answering member read its own applied state without
	// confirming with the leader: faster, and without a quorum, but maybe
	// behind. False: linearizable.
	Stale bool
}

// ListSessions answers one page of the live sessions the caller's principal
// may see (its own, or all without authentication), in id order, and the
// token of the page after it ("" after the last: pass it back in
// q.PageToken until then). A page may be short, even empty, and still be
// followed by another (with several shards, sessions lost in one are left
// out).
func (c *Client) ListSessions(ctx context.Context, q SessionQuery) ([]*SessionSummary, string, error) {
	if q.PageSize < 0 || q.PageSize > math.MaxInt32 {
		return nil, "", fmt.Errorf("%w: list sessions: page size %d: give 0 (the server's maximum) or more", ErrInvalid, q.PageSize)
	}
	req := &pb.ListSessionsRequest{OwnerPrefix: q.OwnerPrefix, PageSize: int32(q.PageSize), PageToken: q.PageToken, Stale: q.Stale}
	r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.ListSessionsResponse], error) {
		return e.sessions.List(ctx, connect.NewRequest(req))
	})
	if err != nil {
		return nil, "", apiErr("list sessions", err)
	}
	return r.Sessions, r.NextPageToken, nil
}

// CloseSession closes session id on the servers, whoever made it (within
// the caller's principal under authentication): everything it holds is
// released and everything it waits for withdrawn at once, as its own
// Close does. It is an operator's force-release (etcd's lease revoke,
// Consul's session destroy): the process that kept the session learns of
// it at its next request or keepalive, or at once on its stream, and may
// run until then. So, as Consul does, the holds it ends are treated as a
// failure: a Mutex locked WithLockDelay stays locked to everyone for its
// lock-delay, as after the session's expiry, and the next holder starts
// after it (a lock without one is handed on at once). WithoutLockDelay
// hands every lock on at once instead, when the process is known to be
// stopped. A cluster still applying the rules before (rules 3: no leader
// of a build of rules 4 elected since its upgrade) refuses the lock-delay
// (ErrPrecondition), and CloseSession does not retry that: try again
// shortly, or close WithoutLockDelay. Each shard's rules rise with its own
// leader's election, so with several shards a refused close may have
// closed the session in the shards already on rules 4 (the error says in
// how many); trying again closes it in the rest. Servers of a build before
// rules 4 ignore the lock-delay and close as a release does: CloseSession
// then answers an error wrapping errors.ErrUnsupported, with the session
// closed. One the servers do not have answers ErrSessionLost.
func (c *Client) CloseSession(ctx context.Context, id uint64, opts ...CloseOption) error {
	o := closeOptions{lockDelay: true}
	for _, f := range opts {
		f(&o)
	}
	rid, err := c.inflight.begin(ctx)
	if err != nil {
		return fmt.Errorf("close session %d: %w", id, err)
	}
	defer rid.finish()
	r, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CloseSessionResponse], error) {
		return e.sessions.Close(ctx, connect.NewRequest(&pb.CloseSessionRequest{ClientId: rid.ClientID(), RequestSeq: rid.seq,
			LowestPendingSeq: rid.Low(), SessionId: id, ApplyLockDelay: o.lockDelay}))
	})
	if err != nil {
		return apiErr(fmt.Sprintf("close session %d", id), err)
	}
	if o.lockDelay && !r.GetLockDelayApplied() {
		// A server of a build before rules 4 drops the field it does not
		// know and closes as a release does.
		return fmt.Errorf("close session %d: %w: the session is closed, but without the lock-delay asked for: the servers run a build "+
			"before rules 4, which ignores it, so every lock it held was handed on at once; upgrade them to close with a lock-delay",
			id, errors.ErrUnsupported)
	}
	return nil
}

// CloseOption changes what CloseSession asks.
type CloseOption func(*closeOptions)

type closeOptions struct{ lockDelay bool }

// WithoutLockDelay makes CloseSession hand every lock the session held on
// at once, as a release does, rather than keep a Mutex locked WithLockDelay
// from everyone for its lock-delay. Use it only when the process that kept
// the session is known to have stopped: otherwise it may still write beside
// the next holder.
func WithoutLockDelay() CloseOption { return func(o *closeOptions) { o.lockDelay = false } }
