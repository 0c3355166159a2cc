package core

import "fmt"

// RulesVersion numbers how entries apply: what a command does to the
// state, how log time advances, what expires when. Two replicas that apply
// one log by different rules end in different states, silently, and then
// disagree on who holds a lock. So the members of a cluster must share it,
// with ProposalVersion (how an entry is encoded) and SnapshotVersion (how
// the state is); the Raft transport refuses a peer whose versions differ
// (Compatibility, runtime/transport's hello).
//
// Bump it with any change to what Apply does with a given log, however
// small, and with anything new an entry can say (an op, a kind, a mode, a
// command field), which a build without it would refuse or decode
// differently. TestRulesGolden holds this promise: it compares what an
// entry can say, and the states and results of a recorded log, with what
// was recorded for these versions, and fails until a change that alters
// them comes with a bump.
//
// The rules live in the log and in the state, not only in the build. The
// state carries the rules in force (Machine.Rules, snapshotted since
// SnapshotVersion 5), and a leader-change mark carries its proposer's
// RulesVersion (Command.Rules) and raises the rules in force to it, never
// lowering them; Apply branches on the rules in force wherever rules
// differ, and keeps every older rule this build's marks may follow. So a
// member restarted on a new build replays the entries after its snapshot
// by the rules they were written under (its snapshot says which; one of a
// build before, without the field, restores as rulesUnmarked, and a log
// from its start begins there too), and moves to the new rules at the
// same index as every other member: the first mark a leader of the new
// build proposes. The Raft hello still refuses a peer of other versions,
// which is what guarantees that every member it reaches can apply a mark's
// rules. Versions 1 and 2 were never carried: version 2 did not need it,
// as no build of version 1 was released, and version 3 changed only what a
// request is answered, never the state (a retry answered from the dedupe
// table changed nothing, and its refusal changes nothing), and a log
// replayed on restart answers no one, so a log of rules 2 replays by the
// rules 3 it starts under to the same state.
//
// No member goes back to older rules, and none applies a log by rules
// other than its writers'. An entry carrying a mark of rules newer than
// this build's stops Apply with a panic, before it changes anything
// ("entry N carries a leader mark of rules R, newer than this build's
// rules 5: ... run a build of rules R or later"): a member downgraded
// under a newer build's log stops there, at every restart, rather than
// decide another state than the members that wrote it. Restore likewise
// refuses a snapshot of newer rules. The build before rules were carried
// (rules 3, snapshots 4) has no such stop: it refuses a version 5 snapshot (it reads 1..4), but it cannot
// decode a mark with Rules or a close with ApplyLockDelay (their bits in
// the presence mask are unknown to it), and its runtime skips an entry
// that does not decode with an error log ("skipping an entry that does
// not decode") and applies the rest by rules 3. So a downgrade to it is
// unsupported and must not be done.
//
// So a change of rules bumps RulesVersion, names the first rules it holds
// under (as rulesCloseLockDelay does), keeps the old behaviour where
// m.rules is below them (or refuses what the old rules could not say), and
// records a log for the new rules (go test ./core -run TestRulesGolden
// -record-rules writes log-pP-rR.bin, opened by a mark of the new rules),
// while every older log must still apply as it was recorded.
//
//	1: the rules before versions were numbered.
//	2: a leader-change entry takes its stamp whole and moves every deadline
//	   and every remembered client's last use by the jump (before, it moved
//	   log time by at most MaxClockStepMs, and the entries after it caught
//	   up the rest).
//	3: a request whose (client_id, request_seq) already answered another
//	   request (another op, object or argument: requestPrint) is refused
//	   (failed_precondition) instead of being answered with the other's
//	   result, which took a grant of another name for its own.
//	4: a session_close may ask for the lock-delay (ApplyLockDelay): the
//	   holds it ends are treated as a failure, and a mutex hold's
//	   lock_delay_ms applies, as on expiry (Consul's lock-delay on a
//	   session's destruction). Under rules 3 such a close is refused
//	   (rulesCloseLockDelay). The first rules carried in the log.
//	   And a campaign of a session that already leads the election, or
//	   waits for it, with another value sets that value (an
//	   EffectValueChanged, as Proclaim's) or the waiting request's, as
//	   etcd's Campaign does; under rules 3 it keeps the old value
//	   (rulesCampaignValue).
//	5: a release or resign may be a replica's unheard release (Unheard):
//	   it ends the grant only if no request but the one that asked for it
//	   was answered it (hold.shared), and is refused otherwise. Under
//	   rules 4 such a release is refused (rulesUnheardRelease). A cancel
//	   may be unheard too (a replica's withdrawal of a gone requester's
//	   wait): refused when another request joined the wait, which stays
//	   queued for it; under rules 4 it is a plain cancel.
//	   And a retry of a request that joined another's wait, once that
//	   wait has ended, is answered what its session holds now (the
//	   grant, or a refusal), where rules 4 answered the wait, gone
//	   (rulesJoinedWaitEnd).
const RulesVersion = 5

// rulesCloseLockDelay is the first rules under which a close may ask for the
// lock-delay.
const rulesCloseLockDelay = 4

// rulesCampaignValue is the first rules under which a campaign of a
// session that leads or waits sets its value.
const rulesCampaignValue = 4

// rulesUnheardRelease is the first rules under which a release or resign
// may be a replica's unheard release.
const rulesUnheardRelease = 5

// rulesJoinedWaitEnd is the first rules under which a retry of a request
// that joined an ended wait is answered what its session holds now.
const rulesJoinedWaitEnd = 5

// rulesUnmarked is the rules in force before any mark carried rules: what a
// fresh machine starts under, what a snapshot without the field restores
// as, and what a mark without Rules (a build before them) leaves in force.
const rulesUnmarked = 3

// ClientKeysVersion numbers how the API files a request's client_id in the
// dedupe table (rpc's service.clientKey). Every member must file alike: a
// retry, an abandon or a release's memory is looked up by the key the
// member that took the request wrote, and a member filing otherwise would
// miss it (a request applied twice, an abandon that cancels nothing).
//
//	1: the client_id as sent.
//	2: under authentication, in the caller's principal's namespace
//	   (principal/client_id), so that one principal cannot act on
//	   another's requests by naming its client_id.
const ClientKeysVersion = 2

// Compatibility names the versions a member must share with every other
// member of its cluster, in words an operator reads in a refusal. Members
// whose Compatibility differs do not exchange Raft traffic.
func Compatibility() string {
	return fmt.Sprintf("rules %d, entries %d, snapshots %d, client keys %d", RulesVersion, ProposalVersion, SnapshotVersion, ClientKeysVersion)
}
