// Package runtime is the production shell around core: a Dragonboat v4
// NodeHost with its Pebble log storage, one Raft shard (or several) whose state machine
// is a core.Machine, and the node logic of core/replica driving it. rpc/
// and cmd/lockstep use it through Start and the methods of Node; nothing
// here knows about HTTP.
//
// # Shape
//
//	Do ──► shard.submit ──► replica.Driver (leader: this node leads;
//	                                        forwarder: another node leads)
//	                          │ Ready: proposals, replies
//	shard.step                ┴─► NodeHost.Propose ──► Raft ──► stateMachine.Update
//	                                                              │ core.Machine.Apply
//	                          replica.AppliedEvent to the driver ◄┘ effects ─► Watch
//
// shard.step feeds the shard's one driver the clock, takes its Ready, hands
// replies to the waiting Do calls and proposals to Dragonboat, in order,
// and reports each proposal's fate. One goroutine per shard (shard.run)
// steps on ticks and when kicked; a request's submit, the apply and a
// proposal's confirmation step on their own goroutine when no one else is
// stepping (shard.stepNow), which saves a wake-up on the way in and out.
// Dragonboat's apply goroutine runs the state machine and tells the driver
// what each entry answered. Dragonboat's leader reports (a
// RaftEventListener) become the driver's leadership events.
//
// # Files
//
// node.go starts and closes a Node (NodeHost, shards, drain); requests.go
// is the request path's entry (Do, identities, errors); reads.go
// reads a name's shard (ReadIndex or stale) and watches one shard;
// route.go executes core/shards' multi-shard policy; watch.go keeps each
// shard's event ring; membership.go adds and removes members and moves
// leadership; status.go answers cluster status and health; shard.go runs
// a shard's driver and a request's submit, wait and withdrawal; statemachine.go is Dragonboat's side of core.Machine;
// balance.go pulls leadership to preferred members; logger.go and
// metrics.go are what an operator reads.
//
// # Decisions
//
// State machine: an IConcurrentStateMachine (statemachine.go). core keeps
// its state in memory, so an on-disk state machine does not fit; the
// concurrent kind lets Dragonboat write a snapshot to disk while entries keep
// applying (only the encoding pauses them). Snapshots and log compaction
// follow consensus.snapshot_entries and consensus.compaction_overhead. A
// restart replays the last snapshot and the log after it; a member that fell
// behind the compacted log, or joined empty, receives a snapshot.
//
// Followers: Do works on every member. On a follower the shard's driver is
// a forwarder (replica.RoleForwarder): it packs a request like the leader's
// would and proposes it through Dragonboat, which hands a follower's
// proposal to the leader. A leader stamps proposals with its clock; a
// forwarder stamps them with the log time this follower has applied
// instead, which is never ahead of the leader's, so the machine's max()
// leaves log time where the leader put it: only the leader moves time, and
// a follower with a fast clock cannot expire sessions. (A command forwarded
// this way is applied at the log time of the moment, as any command is;
// its stamp only matters as an upper bound.) The driver forwards only once
// this node has applied an entry, so that a stamp of 0 never becomes the
// machine's first clock reading, and a forwarder proposes no ticks and no
// leader-change marks. If the forward fails (leader lost, no quorum within
// the proposal timeout), Do retries with the same (ClientID, Seq), and the
// machine's dedupe makes the retry safe. The simulator runs the same driver
// in the same roles (docs/simulation.md).
//
// Group commit: the driver's gate (replica.Config's MaxUnconfirmed, 2)
// holds its proposals while two of them are unconfirmed by Dragonboat, so
// requests that arrive during a commit are packed into the next entry (up to
// consensus.max_batch commands). lockstep_commands_applied_total divided by
// lockstep_raft_entries_applied_total shows the packing.
//
// Identity: node ids map to replica ids by hashing (config.ReplicaID), so
// every member computes the same id without coordination. Raft never reuses
// a removed replica id, so a node added again after its removal gets the
// next incarnation (AddNodeIncarnation says which; the node starts with
// cluster.incarnation set). The replica id → node id names travel in the
// log as runtime records (and in snapshots), so every member, including one
// that joined later, reports node ids.
//
// Shards (route.go, balance.go): consensus.shards Raft groups, names spread
// by FNV-1a (ShardOf). A session lives in every shard under one id (shard 0
// allocates it, the others adopt it), so that a lock in any shard sees it;
// Do sends session create, keepalive and close to every shard, and the rest
// to the name's shard. The policy (where a command goes, how the shards'
// answers merge, which copies to close) is core/shards, pure and shared
// with the simulator; route.go only executes it. ReadAll and the merged
// Watch span shards: how their answers merge (List's pages, a session's
// reads, a prefix watch's per-shard positions, when one index is
// ambiguous, and that one shard's stream ending ends the merged stream) is
// core/shards too; route.go runs the reads and the streams. The
// preferred member of each shard pulls its leadership (balance.go). The
// count is recorded in the data directory and cannot change (shardcount.go).
//
// Dedupe: a command without a ClientID gets one of a pool of node-local
// identities (one request at a time each, so the machine's per-client window
// never overflows), with a random per-process prefix so that a restarted
// node never repeats a (client, seq) the machine remembers.
//
// # Time
//
// Options.Clock (default time.Now) and Options.Monotonic (default Go's
// monotonic clock) are read only by the drivers, in milliseconds: a leader
// starts each term's log time at its wall clock and carries it forward by
// the monotonic one, so a wall clock stepped while it leads moves no log
// time (core/replica's clockAnchor). Tests inject a clock they move by hand.
//
// # Errors
//
// Do, Read and the membership calls return ErrUnavailable (wrapped, with the
// reason) when no leader or quorum answers within the retry budget (five
// election timeouts, at least 1 s; a proposal may take four election
// timeouts, at least 2 s; a read, until ctx's deadline when it has one),
// ErrShuttingDown once Close began, or the ctx's error. core's refusals
// come back inside core.Result.Err, never as errors.
package runtime
