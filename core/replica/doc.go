// Package replica is the pure per-replica driver that the simulator and the
// production runtime share. It sits between the network (client requests),
// the consensus library (leadership, committed entries) and the state machine
// (core), and decides what the replica should do next:
//
//   - while leader, stamp client commands with the replica's clock and pack
//     them into proposals (group commit, bounded per proposal and in flight);
//   - while another replica leads, forward: pack client commands the same
//     way, stamped with the log time this replica has applied (never ahead
//     of the leader's), for the consensus library to hand to the leader —
//     one driver per replica and shard, whose role (Role) follows the
//     leadership events. That log time is fresh only if the leader stamped
//     an entry lately: unless a tick it asked for (core.OpTickRequest)
//     followed its request in the log within the last tick interval, a
//     forwarder asks for one and holds its requests until it applies;
//   - hold its proposals while MaxUnconfirmed of them are neither confirmed
//     nor refused (the gate), so that requests arriving during a commit go
//     out packed into one entry;
//   - hold back, for at most RideAlongMs, a blocking acquire of an object
//     in whose queue one of its requests already waits: it can only join
//     that queue, so it rides in the next proposal instead of making one
//     (on a contended lock, the next release's);
//   - propose the leader-change entry first after becoming leader, then a
//     tick only when one is needed: a forwarder asked for one; a deadline
//     of the machine (core.Output.NextDeadline) came due after a quiet tick
//     interval; or something is timed and KeepTimeMs passed without a
//     proposal (log time may trail the leader's clock by at most core's
//     MaxClockStepMs while anything is timed). With nothing timed and
//     nobody asking, an idle leader proposes nothing at all;
//   - when an entry is applied, route each command's result to the requests
//     waiting for it on this replica (matched by ClientID and Seq, so a retry
//     and the original both learn the outcome), and route grants and ended
//     waits to the requests blocked on a waiter;
//   - when its role ends (leadership lost, a new leader or term to forward
//     to), fail what was not yet answered, saying whether it may have been
//     proposed, so that the client retries with the same
//     (ClientID, Seq) and the state machine's dedupe returns the outcome.
//
// Like etcd raft's RawNode, the driver does no I/O: Step feeds it one event,
// Ready hands back the actions (proposals to make, replies to send) as data,
// and the caller performs them. It reads no clock (time arrives in Tick
// events), draws no randomness, starts no goroutines and never lets map order
// reach its output, so the same events always give the same actions.
package replica
