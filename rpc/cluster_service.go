package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// ClusterHandler serves lockstep.v1.ClusterService, and answers the gRPC
// health protocol (grpc.health.v1) with the same verdict as /health.
type ClusterHandler struct{ *service }

// memberError is apiError for membership calls: the runtime's plain errors
// there are refusals of the request (not a member, the last member, an
// address taken), so they answer failed_precondition with the runtime's
// message rather than internal.
func (h ClusterHandler) memberError(err error) error {
	if errors.Is(err, runtime.ErrNotMember) {
		return connect.NewError(connect.CodeNotFound, errors.New(strings.TrimPrefix(err.Error(), runtime.ErrNotMember.Error()+": ")))
	}
	err = h.apiError(err)
	if connect.CodeOf(err) == connect.CodeInternal {
		var cerr *connect.Error
		if errors.As(err, &cerr) {
			return connect.NewError(connect.CodeFailedPrecondition, errors.New(cerr.Message()))
		}
	}
	return err
}

var (
	errNotServing = errors.New("this node cannot serve: some shard has no leader it can reach (no quorum, or still electing); try another node")
	errStopping   = errors.New("this node is shutting down: it drains (SIGTERM or SIGINT) and takes no new requests; try another node")
)

// Health answers 200 "serving" when this node can serve, or "degraded"
// with the reason when it can but needs a person soon (Backend.Degraded).
// It answers unavailable (503) when this node cannot serve: saying
// why and what to do for a member its peers refuse (runtime.ErrCutOff)
// or whose data directory went or takes no writes (runtime.ErrDataDir),
// which no wait will cure, errStopping for one that drains (it said it
// had no leader), and errNotServing otherwise.
func (h ClusterHandler) Health(ctx context.Context, _ *connect.Request[pb.HealthRequest]) (*connect.Response[pb.HealthResponse], error) {
	if err := h.b.Health(); err != nil {
		switch {
		case errors.Is(err, runtime.ErrCutOff), errors.Is(err, runtime.ErrDataDir):
			return nil, connect.NewError(connect.CodeUnavailable, err)
		case errors.Is(err, runtime.ErrShuttingDown):
			return nil, connect.NewError(connect.CodeUnavailable, errStopping)
		}
		e := connect.NewError(connect.CodeUnavailable, errNotServing)
		if detail, ok := unavailableDetail(err); ok && detail != "" {
			// What the member knows: which shard, and the peers it cannot
			// reach (a member down, or a mistyped cluster.peers address).
			e = connect.NewError(connect.CodeUnavailable, fmt.Errorf("this node cannot serve: %s; try another node", detail))
		}
		e.Meta().Set("Retry-After", retryAfterSeconds) // an election settles within a second or two
		return nil, e
	}
	if err := h.b.Degraded(); err != nil {
		// It serves (a load balancer keeps it; the others may need its
		// vote), but an operator must act soon: said in the body, and by
		// the metric the condition has (lockstep_data_dir_full).
		return connect.NewResponse(&pb.HealthResponse{Status: "degraded", NodeId: h.opts.NodeID, Reason: err.Error()}), nil
	}
	return connect.NewResponse(&pb.HealthResponse{Status: "serving", NodeId: h.opts.NodeID}), nil
}

func (h ClusterHandler) Status(ctx context.Context, _ *connect.Request[pb.ClusterStatusRequest]) (*connect.Response[pb.ClusterStatusResponse], error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
	defer cancel()
	st, err := h.b.Status(ctx)
	if err != nil {
		return nil, h.apiError(err)
	}
	out := &pb.ClusterStatusResponse{NodeId: st.NodeID, Version: Version(), Versions: st.Versions, Consensus: st.Consensus}
	if err := h.b.Degraded(); err != nil {
		// What /health answers with "degraded": a restored member holds
		// its grants back, or its disk fills, while it serves and looks
		// well in every row of cluster status, which an operator reads
		// first when acquires wait.
		out.DegradedReason = err.Error()
	}
	// Every shard has the same members (membership changes apply to all).
	var members []*pb.Member
	for _, m := range st.Members {
		members = append(members, &pb.Member{NodeId: m.NodeID, RaftAddress: m.RaftAddress})
	}
	for _, s := range st.Shards {
		out.Shards = append(out.Shards, &pb.ShardStatus{ShardId: s.ShardID, LeaderId: s.LeaderID, Role: s.Role, Term: s.Term,
			AppliedIndex: s.AppliedIndex, Members: members})
	}
	return connect.NewResponse(out), nil
}

// memberAdder is a backend that says which cluster.incarnation a node
// added back after a removal must start with (Raft never reuses a removed
// replica id), and whether the node was a member already.
type memberAdder interface {
	AddMember(ctx context.Context, nodeID, raftAddress string) (runtime.AddedMember, error)
}

// IncarnationHeader carries, in AddNode's answer, the cluster.incarnation
// the added node must start with (--incarnation): 0 for a node id never
// removed before. AddNodeResponse has no field for it yet.
const IncarnationHeader = "Lockstep-Incarnation"

// AlreadyMemberHeader is "true" in AddNode's answer when the node was a
// member at that address before the call, which changed nothing: the node
// may be running, and the advice to start it with --join would start a
// second process for it. Absent otherwise (and from older servers).
const AlreadyMemberHeader = "Lockstep-Already-Member"

// DeploymentHeader carries, in AddNode's answer, the Raft deployment the
// added node must start with (--deployment) when the cluster was
// restored from a backup and runs under one of its own. Absent otherwise.
const DeploymentHeader = "Lockstep-Deployment"

func (h ClusterHandler) AddNode(ctx context.Context, req *connect.Request[pb.AddNodeRequest]) (*connect.Response[pb.AddNodeResponse], error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
	defer cancel()
	resp := connect.NewResponse(&pb.AddNodeResponse{})
	if a, ok := h.b.(memberAdder); ok {
		added, err := a.AddMember(ctx, req.Msg.NodeId, req.Msg.RaftAddress)
		if err != nil {
			return nil, h.memberError(err)
		}
		resp.Header().Set(IncarnationHeader, strconv.Itoa(added.Incarnation))
		if added.AlreadyMember {
			resp.Header().Set(AlreadyMemberHeader, "true")
		}
		if added.Deployment != "" {
			resp.Header().Set(DeploymentHeader, added.Deployment)
		}
		return resp, nil
	}
	if err := h.b.AddNode(ctx, req.Msg.NodeId, req.Msg.RaftAddress); err != nil {
		return nil, h.memberError(err)
	}
	return resp, nil
}

// memberRemover is a backend that says whether RemoveNode found the node
// a member (runtime.Node).
type memberRemover interface {
	RemoveMember(ctx context.Context, nodeID string) (runtime.RemovedMember, error)
}

// NotAMemberHeader is "true" in RemoveNode's answer when the node was a
// member of no shard when the call came, which changed nothing: removed
// before, or known to the members by another name; MembersHeader then
// lists shard 0's members as named, comma-separated. Absent otherwise
// (and from older servers).
const (
	NotAMemberHeader = "Lockstep-Not-A-Member"
	MembersHeader    = "Lockstep-Members"
)

func (h ClusterHandler) RemoveNode(ctx context.Context, req *connect.Request[pb.RemoveNodeRequest]) (*connect.Response[pb.RemoveNodeResponse], error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
	defer cancel()
	resp := connect.NewResponse(&pb.RemoveNodeResponse{})
	if r, ok := h.b.(memberRemover); ok {
		removed, err := r.RemoveMember(ctx, req.Msg.NodeId)
		if err != nil {
			return nil, h.memberError(err)
		}
		if removed.NotAMember {
			resp.Header().Set(NotAMemberHeader, "true")
			resp.Header().Set(MembersHeader, strings.Join(removed.Members, ","))
		}
		return resp, nil
	}
	if err := h.b.RemoveNode(ctx, req.Msg.NodeId); err != nil {
		return nil, h.memberError(err)
	}
	return resp, nil
}

func (h ClusterHandler) TransferLeadership(ctx context.Context, req *connect.Request[pb.TransferLeadershipRequest]) (*connect.Response[pb.TransferLeadershipResponse], error) {
	if err := h.b.TransferLeadership(ctx, req.Msg.ShardId, req.Msg.TargetNodeId); err != nil {
		return nil, h.memberError(err)
	}
	return connect.NewResponse(&pb.TransferLeadershipResponse{}), nil
}

// Check answers grpc.health.v1.Health/Check: SERVING when this node can
// serve, for the whole server ("") and for each lockstep.v1 service; as
// Health, NOT_SERVING while the audit log cannot be written, when every
// other request is refused.
func (h ClusterHandler) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && !isService(req.Service) {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("unknown service "+req.Service))
	}
	if h.b.Health() == nil && (audit{h.opts.Auditor}).healthy() == nil {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
}

// backupTaker is a backend that writes a backup of its whole state
// (runtime.Node.Backup).
type backupTaker interface {
	Backup(ctx context.Context, w io.Writer, stale bool) (runtime.BackupManifest, error)
}

// backupChunkBytes is the most a BackupChunk carries: small against the
// 4 MiB a gRPC client reads in one message by default.
const backupChunkBytes = 1 << 20

// Backup streams the backend's backup in chunks as it is written.
func (h ClusterHandler) Backup(ctx context.Context, req *connect.Request[pb.BackupRequest], stream *connect.ServerStream[pb.BackupChunk]) error {
	b, ok := h.b.(backupTaker)
	if !ok {
		return connect.NewError(connect.CodeUnimplemented, errors.New("this node cannot take a backup"))
	}
	w := &chunkWriter{stream: stream, buf: make([]byte, 0, backupChunkBytes)}
	if _, err := b.Backup(ctx, w, req.Msg.Stale); err != nil {
		if w.err != nil {
			return w.err
		}
		return h.apiError(err)
	}
	return w.flush()
}

// chunkWriter sends what is written to it as BackupChunks of
// backupChunkBytes, the last one at flush.
type chunkWriter struct {
	stream *connect.ServerStream[pb.BackupChunk]
	buf    []byte
	err    error // the first send that failed: the client went away
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.err != nil {
			return 0, w.err
		}
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			w.err = w.flush()
		}
	}
	return n, w.err
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.stream.Send(&pb.BackupChunk{Data: w.buf})
	w.buf = w.buf[:0]
	return err
}
