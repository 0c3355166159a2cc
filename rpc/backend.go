package rpc

import (
	"context"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime"
)

var _ Backend = (*runtime.Node)(nil)

// Backend is what the API needs from a node: the runtime's *Node in
// production, a double in the handler tests. Handlers know nothing else of Raft, Dragonboat or the disk, which keeps
// them testable with a double and keeps the dependency pointing down.
type Backend interface {
	// DoBy proposes one command and blocks until its final answer: a
	// queued acquire, campaign or barrier wait returns when granted or
	// ended. When ctx ends or deadline passes (the zero time: no deadline
	// of its own) while the request is queued, the wait is cancelled
	// through the log and DoBy returns ctx.Err(), or
	// context.DeadlineExceeded for the deadline: the deadline is ctx's
	// with another deadline, in every way but its cost (runtime.Node.DoBy).
	// Result.Err carries core's refusals.
	DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error)
	// Read runs fn on the state machine of the shard that owns name, after
	// a ReadIndex unless stale, and answers the applied index fn saw. A
	// stale read does not wait, and needs no deadline.
	Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error)
	// ReadAll runs fn on the state machine of every shard (never two at
	// once), after a ReadIndex each unless stale, and answers the applied
	// index each read saw, by shard: for reads that span shards (a
	// session's holds, List by prefix).
	ReadAll(ctx context.Context, stale bool, fn func(shard uint64, m *core.Machine) error) ([]uint64, error)
	// Watch streams the effects of the entries from fromIndex on, for names
	// starting with prefix. The channel closes when ctx ends or the node
	// stops. A fromIndex older than the node keeps fails with
	// runtime.ErrCompacted. With several shards it merges every shard's
	// events and takes fromIndex 0 only (runtime.ErrAmbiguousIndex).
	Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan runtime.Event, error)
	// WatchShard is Watch on one shard, fromIndex in that shard's log.
	// runtime.WithProgress asks it for progress markers.
	WatchShard(ctx context.Context, shard uint64, prefix string, fromIndex uint64, opts ...runtime.WatchOption) (<-chan runtime.Event, error)
	// WatchShards merges every shard's events for prefix, shard i's from
	// fromIndex[i] on (len(fromIndex) == Shards()). Within a shard an
	// entry's events come together, the last marked EntryEnd.
	WatchShards(ctx context.Context, prefix string, fromIndex []uint64, opts ...runtime.WatchOption) (<-chan runtime.Event, error)
	// SessionEnded answers a channel that yields why session id ended
	// (core.ReasonSessionExpired, or core.ReasonSessionClosed by any caller)
	// when this node applies its end, then closes; and the function that
	// drops the subscription.
	SessionEnded(id core.SessionID) (<-chan core.Reason, func())
	// GrantsEnded answers a channel that yields each grant of session id
	// that ends while the session lives on (runtime.GrantEndOf), when this
	// node applies it, and the function that drops the subscription. The
	// channel is bounded and never closed: an end that finds it full is
	// dropped rather than hold up the apply path.
	GrantsEnded(id core.SessionID) (<-chan runtime.GrantEnd, func())
	// Shards is the number of shards; ShardOf the one that owns a name.
	Shards() int
	ShardOf(name string) uint64
	// Status answers this node's view of its shards.
	Status(ctx context.Context) (runtime.ClusterStatus, error)
	// Health is nil when this node can serve (every shard has a leader
	// and no peer refuses this member), else why not: runtime.ErrCutOff
	// (wrapped with the reason and what to do) for a member its peers
	// refuse, or another error.
	Health() error
	// Degraded is nil unless this node, serving or not, needs a person
	// soon; then why and what to do: runtime.ErrDataDirFull for a data
	// directory whose file system is nearly full. /health answers it as
	// "degraded", 200 while Health is nil: the node still serves.
	Degraded() error
	AddNode(ctx context.Context, nodeID, raftAddress string) error
	RemoveNode(ctx context.Context, nodeID string) error
	TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error
}
