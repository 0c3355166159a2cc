package runtime

import (
	"context"
	"errors"

	"github.com/lockstepd/lockstep/core"
)

// impl is the node's state; the methods below are the API.
type impl struct{}

var errNotYet = errors.New("runtime: not implemented yet")

func start(ctx context.Context, opts Options) (*Node, error) { return nil, errNotYet }

// Do proposes cmd and blocks until its final answer: for an acquire,
// campaign or barrier wait that queues, until granted or ended (the Result
// then says granted, released, or refused with a Reason). If ctx ends while
// queued, Do proposes OpCancel for the waiter and returns ctx.Err(). If cmd
// has no ClientID, Do assigns a node-local one and a Seq, so that its own
// retries after a leader loss are idempotent.
//
// A nil error means the Result is authoritative (Result.Err carries core's
// refusals). A non-nil error is ErrUnavailable (no leader or quorum: HTTP
// 503), ErrShuttingDown, or ctx's error.
func (n *Node) Do(ctx context.Context, cmd core.Command) (core.Result, error) {
	return core.Result{}, errNotYet
}

// Read runs fn on the state machine of the shard that owns name (shard 0
// when name is ""), after a ReadIndex unless stale, and returns the applied
// index fn saw. fn must not keep the machine nor call back into the Node.
func (n *Node) Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	return 0, errNotYet
}

// Watch streams copies of the effects whose Name starts with prefix.
func (n *Node) Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan Event, error) {
	return nil, errNotYet
}

// Status reports the shards and members as this node sees them.
func (n *Node) Status(ctx context.Context) (ClusterStatus, error) { return ClusterStatus{}, errNotYet }

// Healthy reports whether a leader is known for every shard.
func (n *Node) Healthy() bool { return false }

// AddNode adds a voting member.
func (n *Node) AddNode(ctx context.Context, nodeID, raftAddress string) error { return errNotYet }

// RemoveNode removes a member.
func (n *Node) RemoveNode(ctx context.Context, nodeID string) error { return errNotYet }

// TransferLeadership asks the leader of shardID to hand over to toNodeID.
func (n *Node) TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error {
	return errNotYet
}

// Close drains in-flight requests, then closes NodeHost.
func (n *Node) Close() error { return nil }
