// Package shards is the multi-shard policy of a Lockstep cluster, pure: which
// shard owns a name, which shards a command goes to, how the answers of a
// command sent to several shards become one answer, how reads of every
// shard merge into one answer, and where a watch of every shard stands. The
// production runtime (runtime/route.go) and the simulator's client both
// execute the commands' part, and the API (rpc/) the reads' and watches';
// none of them decides anything about shards on its own.
//
// Where each rule lives:
//
//   - fanout.go: Of (a name's shard), Targets, and Fanout, the step
//     function of a command over the shards; merge.go: how its answers
//     merge (the rules below).
//   - expiry.go: Expired, what the leader of a shard that applied a
//     session's expiry must do: close the session in every other shard,
//     as a failure (Cleanup.Close).
//   - reads.go: ListPage (the union of every shard's objects, in name then
//     kind order, filtered, cut into pages of at most MaxPage, with the
//     Cursor of the next), Session (a session read from every shard: lost
//     if missing in any, shard 0's lease, the earliest deadline, holds and
//     waits in name order) and OwnsOnlyIn (a session made for one grant
//     owns nothing in other shards). A read spanning shards has no one
//     applied index; the API answers shard 0's.
//   - watch.go: Positions (one next index per shard, where a prefix watch
//     resumes), WatchStart (a client's start_index or start_positions
//     checked against the shard count), Fill, EntryEnd and Marker (how a
//     position moves), OneIndex (one index for several shards is
//     ambiguous), and the rule of a merged stream, which runtime's
//     watchFrom executes with goroutines: order kept within a shard, and
//     one shard's stream ending ends it.
//
// It follows etcd raft's shape: a Fanout is a step function over explicit
// inputs. Start says what to send; Step takes the shards' answers and may
// say what to send next (a create's adopts go out once shard 0 has allocated
// the id); Outcome is the merged answer plus the effects the caller must
// still perform (close the session in these shards), returned as data. No
// goroutines, clock or I/O: the caller sends each wave at once, however it
// likes, and feeds the answers back.
//
// The rules, and why (docs/runtime.md, Shards; docs/design.md, Several shards):
//
//   - A name lives in one shard (Of). A session lives in every shard under
//     one id: shard 0 allocates it, the others adopt it, so that a lock in
//     any shard can name it.
//   - session_create: shard 0, then the adopt in every other shard. Any
//     shard unreachable: the error (the client retries with the same
//     (client_id, request_seq); shard 0's dedupe gives the same id and the
//     adopts complete). A shard refuses: the refusal, and close the copies
//     made. A copy whose lease ran out before another shard took the
//     session (an adopt slower than the TTL, a retry a TTL late): not_found,
//     and close the copies made.
//   - session_keepalive: every shard. Missing in any: not_found, and close
//     the copies left, so their holds do not outlive the session by a TTL.
//   - a session's expiry in one shard: its leader closes the session in
//     every other shard, with the lock-delay, so that an abandoned session
//     (no keepalive to learn it is lost) does not live on where a leader
//     change extended it.
//   - session_close: every shard. Done only when every shard answered done
//     or not_found (gone there counts as closed) and at least one said
//     done. A shard unreachable makes the close an error, never a success:
//     when a close answers done, every hold and wait of the session is gone
//     in every shard, as with one shard. Gone everywhere is not_found.
//   - cancel without a name: every shard (waiter ids are per shard, so the
//     session must be named); done if any shard had the wait.
//   - everything else: the name's shard alone, its answer unchanged.
package shards
