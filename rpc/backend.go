package rpc

import (
	"context"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime"
)

var _ Backend = (*runtime.Node)(nil)

// Backend is what the API needs from a node: the runtime's *Node in
// production, a double in the handler tests. Handlers know nothing else of Raft, Dragonboat or the disk, which keeps
// them testable with a double and keeps the dependency pointing down.
type Backend interface {
	// Do proposes one command and blocks until its final answer: a queued
	// acquire, campaign or barrier wait returns when granted or ended. When
	// ctx ends while the request is queued, the wait is cancelled through
	// the log and Do returns ctx.Err(). Result.Err carries core's refusals.
	Do(ctx context.Context, cmd core.Command) (core.Result, error)
	// Read runs fn on the state machine of the shard that owns name, after
	// a ReadIndex unless stale, and answers the applied index fn saw.
	Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error)
	// Watch streams the effects of the entries from fromIndex on, for names
	// starting with prefix. The channel closes when ctx ends or the node
	// stops. A fromIndex older than the node keeps fails with
	// runtime.ErrCompacted.
	Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan runtime.Event, error)
	// Status answers this node's view of its shards.
	Status(ctx context.Context) (runtime.ClusterStatus, error)
	// Healthy says whether every shard of this node has a leader.
	Healthy() bool
	AddNode(ctx context.Context, nodeID, raftAddress string) error
	RemoveNode(ctx context.Context, nodeID string) error
	TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error
}
