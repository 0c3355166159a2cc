package runtime

// Whether this member's peers refuse it, and why: Health fails and Status
// names it for such a member, whatever Dragonboat still remembers (a
// removed member keeps its old leader id).

import (
	"fmt"
	"sync"

	"github.com/lockstepd/lockstep/runtime/transport"
)

// Roles a member reports for a shard (ShardStatus.Role). The last three
// are a member cut off, whatever Dragonboat says of it: one per reason it
// is cut off for.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
	// RoleLostLog: its peers refuse it as a member that lost its log.
	RoleLostLog = "lost-log"
	// RoleRemoved: it was removed from the cluster.
	RoleRemoved = "removed"
	// RoleOtherReplica: a peer expects another replica at its Raft
	// address (another incarnation, or another member's address).
	RoleOtherReplica = "other-replica"
)

// lostLogRemedy is what a member refused as one that lost its log does, as
// its health and its log say it. A second process started with a running
// member's node id meets the same refusal, and removing the node id would
// remove the member that runs: it comes first.
const lostLogRemedy = "first make sure it is not a second process with the node id of a member that runs (the same " +
	"cluster.node_id, another data directory): then stop this one and leave the cluster alone, since removing the node id " +
	"would remove the member that runs; else replace it: lockstep cluster remove, wipe cluster.data_dir, lockstep cluster add, " +
	"then start it with --join and the incarnation add answers (docs/operations.md, Membership changes)"

// cutOffs says, for each reason a member is cut off
// (transport.CutLostLog, CutRemoved, CutOtherReplica), its role and what
// Health says of it.
var cutOffs = map[string]struct{ role, health string }{
	transport.CutLostLog: {RoleLostLog, "it lost its log (its data directory was wiped, or is not its own), and its peers refuse it: " +
		lostLogRemedy},
	transport.CutRemoved: {RoleRemoved, "it was removed from the cluster (lockstep cluster remove), and a removed replica never " +
		"takes part again: stop it, or add it back: lockstep cluster add, then start it on an empty cluster.data_dir with --join " +
		"and the incarnation add answers (docs/operations.md, Membership changes)"},
	transport.CutOtherReplica: {RoleOtherReplica, "a peer expects another replica at its Raft address (it runs under another " +
		"incarnation than the cluster added it as, or on another member's raft_address), and it takes no part; its log says " +
		"what to do (docs/operations.md, Membership changes)"},
}

// cutOff records that this member is cut off, and why: set where the
// gauges lockstep_raft_lost_log and lockstep_raft_removed are (the Raft
// transport's refusals of this member, raftTraffic.CutOff with ours; its
// own removal, noticeRemoval), and read by Health and Status.
//
// Lost log and removed hold for the process's life: a member that lost
// its log takes part again only once replaced (removed, added back as a
// new incarnation, and started with --join on an empty directory: another
// process), and Raft never takes a removed replica id back. Neither is
// cleared, nor replaced by another reason. Other replica may be a peer's
// stale view (down while this member was replaced, it expects the old
// incarnation here), so either of the others replaces it, and it clears
// once this member finds itself in the membership (member): the
// transport refuses that way only a member that is not one in its own
// view.
type cutOff struct {
	mu  sync.Mutex
	why string // "" while no peer refuses this member; else a key of cutOffs
	// changed runs after why changed (outside mu): set once, before the
	// transport runs, to show it in lockstep_raft_has_leader.
	changed func()
}

// set records that this member is cut off for why (a key of cutOffs).
func (c *cutOff) set(why string) {
	if _, ok := cutOffs[why]; !ok {
		return
	}
	c.mu.Lock()
	was := c.why
	if c.why == "" || c.why == transport.CutOtherReplica {
		c.why = why
	}
	c.tell(was)
}

// tell unlocks mu, and runs changed when why is no longer was.
func (c *cutOff) tell(was string) {
	now := c.why
	c.mu.Unlock()
	if now != was && c.changed != nil {
		c.changed()
	}
}

// member says that this member found itself in shard 0's membership: a
// peer that expected another replica at its address had a stale view.
func (c *cutOff) member() {
	c.mu.Lock()
	was := c.why
	if c.why == transport.CutOtherReplica {
		c.why = ""
	}
	c.tell(was)
}

// reason is why this member is cut off, "" when it is not.
func (c *cutOff) reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.why
}

// err is Health's answer for a member cut off, nil for one that is not.
func (c *cutOff) err() error {
	why := c.reason()
	if why == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrCutOff, cutOffs[why].health)
}

// role is the role Status reports for every shard of a member cut off,
// "" for one that is not.
func (c *cutOff) role() string {
	return cutOffs[c.reason()].role
}
