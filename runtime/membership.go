package runtime

// Membership: adding and removing members in every shard, in bounded
// attempts, and moving a shard's leadership.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstepd/lockstep/config"
)

// AddNode adds a voting member. The new node then starts with cluster.join
// set; if nodeID was a member before and was removed, Raft refuses its old
// replica id, so it also needs the cluster.incarnation that AddNodeIncarnation
// reports (and the log names). Adding a current member at the same address
// succeeds and changes nothing (AddMember says when that was the case).
func (n *Node) AddNode(ctx context.Context, nodeID, raftAddress string) error {
	_, err := n.AddNodeIncarnation(ctx, nodeID, raftAddress)
	return err
}

// checkCertificateForPeers checks the certificate Raft presents to peers
// for what they need of it: the one in force (Options.RaftCredentials),
// which a reload replaces, or else the file, which Raft reads at each dial.
func (n *Node) checkCertificateForPeers() error {
	if n.raftCredentials == nil || n.cfg.Security.TLS == nil {
		return n.cfg.CheckCertificateForPeers()
	}
	cert, _ := n.raftCredentials()
	if cert == nil || len(cert.Certificate) == 0 {
		return errors.New("runtime: Options.RaftCredentials returned no certificate: pass the certificate in force (security.State.Credentials)")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("the certificate in force: %w", err)
		}
	}
	return n.cfg.CheckPeerCertificate(leaf)
}

// AddNodeIncarnation is AddNode, returning the incarnation the new node must
// start with (cluster.incarnation): 0 unless nodeID was removed before.
func (n *Node) AddNodeIncarnation(ctx context.Context, nodeID, raftAddress string) (int, error) {
	added, err := n.AddMember(ctx, nodeID, raftAddress)
	return added.Incarnation, err
}

// AddedMember is AddMember's answer.
type AddedMember struct {
	// Incarnation is the cluster.incarnation the node runs as: 0 unless
	// nodeID was removed before.
	Incarnation int
	// AlreadyMember says that nodeID was a member at that address in every
	// shard before the call, which changed nothing: the node may be
	// running already, and a second process must not be started for it.
	// A call whose attempt added it before a retry says false.
	AlreadyMember bool
	// Deployment is the Raft deployment the node must run under, 16 hex
	// digits (cluster.deployment), for a cluster restored from a backup;
	// "" for Lockstep's own, which a node runs under without being told.
	Deployment string
}

// AddMember is AddNode, answering the incarnation the node must start with
// and whether it was a member already.
func (n *Node) AddMember(ctx context.Context, nodeID, raftAddress string) (AddedMember, error) {
	if !n.enter() {
		return AddedMember{}, ErrShuttingDown
	}
	defer n.leave()
	if err := config.ValidNodeID(nodeID); err != nil {
		return AddedMember{}, fmt.Errorf("runtime: node id %w", err)
	}
	if err := config.ValidHostPort(raftAddress); err != nil {
		return AddedMember{}, fmt.Errorf("runtime: raft address: %w", err)
	}
	// A member started alone was not held to what peers need of its
	// certificate (config.Config.LoadMaterial); a cluster it cannot serve
	// would lose its quorum the moment the new member counts.
	if err := n.checkCertificateForPeers(); err != nil {
		return AddedMember{}, fmt.Errorf("runtime: this member cannot take a peer with its certificate: %w; reissue it, reload it (SIGHUP), and add %s again", err, nodeID)
	}
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	incarnation := -1
	// Set once any attempt in any shard finds nodeID missing: an attempt
	// that then failed may still have added it, so a later look that finds
	// it a member does not make it one from before the call.
	foundMissing := false
	for _, sh := range n.shards {
		err := n.membershipAttempts(ctx, sh, func(actx context.Context) error {
			mem, err := n.nh.SyncGetShardMembership(actx, sh.dbID)
			if err != nil {
				return err
			}
			logs, err := n.shards[0].sm.Lookup(logsQuery{})
			if err != nil {
				return err
			}
			inc, id, err := pickIncarnation(nodeID, raftAddress, mem, logs.(map[uint64]uint64), n.nodeName)
			if err != nil {
				return err
			}
			incarnation = inc
			if id == 0 {
				return nil // already a member (perhaps by an earlier attempt)
			}
			foundMissing = true
			if len(mem.Nodes) >= config.MaxMembers {
				return fmt.Errorf("%w: %s has %d voting members, the most a cluster may have (docs/operations.md): remove one first",
					ErrTooManyMembers, sh, len(mem.Nodes))
			}
			// The names first, so that every member (and the new one, from
			// the log or a snapshot) shows them: the new one's, and those
			// of the members this node knows, since the first members'
			// names are in their configurations (peers), not in the log,
			// and a member that joins has none.
			if _, err := n.nh.SyncPropose(actx, sh.session, encodeNames(n.memberNames(mem, id, nodeID))); err != nil {
				return err
			}
			if err := n.nh.SyncRequestAddReplica(actx, sh.dbID, id, raftAddress, mem.ConfigChangeID); err != nil {
				return err
			}
			// Every member logs "node added" at INFO as it applies the
			// change (logMembership); this one took the call.
			n.log.Debug("node added to a shard", "shard", sh.index, "added", nodeID, "raft_address", raftAddress,
				"replica_id", fmt.Sprintf("%x", id), "incarnation", inc)
			return nil
		})
		if err != nil {
			return AddedMember{}, fmt.Errorf("runtime: adding %s to %s: %w", nodeID, sh, err)
		}
	}
	added := AddedMember{Incarnation: incarnation, AlreadyMember: !foundMissing}
	if n.deployment != deploymentID {
		added.Deployment = fmt.Sprintf("%016x", n.deployment)
	}
	return added, nil
}

// pickIncarnation finds nodeID's replica id in mem: the current one (id 0
// returned: nothing to do), at whatever incarnation, or the first
// incarnation that was not removed: not by Raft (mem.Removed), nor in the
// replicated logs (log 0), which alone remember the removals of a cluster
// restored from a backup. (A restored member runs under the incarnation
// after its node id's removed ones, and was taken for an incarnation 0
// not yet added, at an address another member had: its own.) name maps a
// member's replica id to its node id for the error.
func pickIncarnation(nodeID, addr string, mem *dragonboat.Membership, logs map[uint64]uint64, name func(uint64) string) (int, uint64, error) {
	for inc := 0; inc <= config.MaxIncarnation; inc++ {
		if cur, ok := mem.Nodes[config.ReplicaID(nodeID, inc)]; ok {
			if cur != addr {
				return 0, 0, fmt.Errorf("%s is already a member at %s, not %s: remove it first", nodeID, cur, addr)
			}
			return inc, 0, nil
		}
	}
	for inc := 0; inc <= config.MaxIncarnation; inc++ {
		id := config.ReplicaID(nodeID, inc)
		if _, removed := mem.Removed[id]; removed {
			continue
		}
		if log, ok := logs[id]; ok && log == 0 {
			continue
		}
		for other, a := range mem.Nodes {
			if a == addr {
				return 0, 0, fmt.Errorf("%s is already the address of %s: remove it first, or give %s another address", addr, name(other), nodeID)
			}
		}
		return inc, id, nil
	}
	return 0, 0, fmt.Errorf("%s was removed %d times: use another node id", nodeID, config.MaxIncarnation+1)
}

// RemoveNode removes a member. Removing a node that is not a member
// succeeds and changes nothing.
func (n *Node) RemoveNode(ctx context.Context, nodeID string) error {
	_, err := n.RemoveMember(ctx, nodeID)
	return err
}

// RemovedMember is RemoveMember's answer.
type RemovedMember struct {
	// NotAMember says that nodeID was a member of no shard at any attempt
	// of the call, which changed nothing: it was removed before (by an
	// earlier call, or an earlier attempt of this one whose answer was
	// lost), or the members know it by another name (a member that
	// neither the log nor this member's cluster.peers names is known by
	// its replica id). Members are then shard 0's members, as named.
	NotAMember bool
	Members    []string
}

// RemoveMember removes nodeID from every shard, as RemoveNode, answering
// also whether it was a member when the call came: "removed", with the
// advice to delete the node's data directory, was the answer to a node
// that was not, though it may be running and voting under another name.
func (n *Node) RemoveMember(ctx context.Context, nodeID string) (RemovedMember, error) {
	if !n.enter() {
		return RemovedMember{}, ErrShuttingDown
	}
	defer n.leave()
	if nodeID == n.NodeID() {
		// Each replica of this member stops as it applies its own
		// removal, so the call could not finish the other shards nor
		// record the removal, and a leader that applied its own removal
		// left its shard's membership unreadable to the others for
		// seconds. Another member removes it whole (the Go client and the
		// CLI try the next endpoint on unavailable).
		return RemovedMember{}, fmt.Errorf("%w: %s cannot remove itself: send the removal to another member (lockstep cluster status lists them; "+
			"the CLI and the Go client do so when given more than one endpoint); nothing changed", ErrUnavailable, nodeID)
	}
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	found := false       // a member of some shard, at some attempt of this call
	var members []string // shard 0's, for the answer to a node id that names none
	for _, sh := range n.shards {
		err := n.membershipAttempts(ctx, sh, func(actx context.Context) error {
			mem, err := n.nh.SyncGetShardMembership(actx, sh.dbID)
			if err != nil {
				return err
			}
			if sh.index == 0 {
				members = members[:0]
				for id := range mem.Nodes {
					members = append(members, n.nodeName(id))
				}
			}
			id := n.memberID(nodeID, mem.Nodes)
			if id == 0 {
				return nil // not a member (perhaps no longer, by an earlier attempt)
			}
			found = true
			if len(mem.Nodes) == 1 {
				return fmt.Errorf("%s is the last member of %s: a cluster cannot remove its last node", nodeID, sh)
			}
			if err := n.nh.SyncRequestDeleteReplica(actx, sh.dbID, id, mem.ConfigChangeID); err != nil {
				return err
			}
			n.log.Debug("node removed from a shard", "shard", sh.index, "removed", nodeID, "replica_id", fmt.Sprintf("%x", id))
			return nil
		})
		if err != nil {
			return RemovedMember{}, fmt.Errorf("runtime: removing %s from %s: %w", nodeID, sh, err)
		}
	}
	slices.Sort(members)
	if !found && !n.wasMember(nodeID) {
		// A typo ("node3" for "node-3") was answered "removed", with the
		// advice to delete the data directory of a member still voting.
		return RemovedMember{}, fmt.Errorf("%w: %q is not a member of the cluster, and never was (its members: %s): nothing changed; "+
			"give a node id as lockstep cluster status lists them", ErrNotMember, nodeID, strings.Join(members, ", "))
	}
	// Recorded also when a retried call finds it removed by an earlier
	// attempt, whose own record may have failed.
	n.markRemoved(ctx)
	if !found {
		return RemovedMember{NotAMember: true, Members: members}, nil
	}
	return RemovedMember{}, nil
}

// wasMember says whether the log or the configuration's peers name a
// replica of nodeID: a member once, removed since (RemoveNode of it again
// changes nothing, and is no error: a retried call finds it removed by the
// first).
func (n *Node) wasMember(nodeID string) bool {
	sh := n.shards[0]
	sh.sm.mu.RLock()
	logged := slices.Contains(slices.Collect(maps.Values(sh.sm.names)), nodeID)
	sh.sm.mu.RUnlock()
	if logged {
		return true
	}
	n.namesMu.Lock()
	defer n.namesMu.Unlock()
	return slices.Contains(slices.Collect(maps.Values(n.names)), nodeID)
}

// markRemoved records, in shard 0, that the replicas its membership has
// removed are (log 0), so that every member tells one that still runs
// (runtime/peerlogs.go). Best effort: the removal stands without it, and a
// later removal records the ones missed.
func (n *Node) markRemoved(ctx context.Context) {
	sh := n.shards[0]
	err := n.membershipAttempts(ctx, sh, func(actx context.Context) error {
		mem, err := n.nh.SyncGetShardMembership(actx, sh.dbID)
		if err != nil {
			return err
		}
		logs, err := sh.sm.Lookup(logsQuery{})
		if err != nil {
			return err
		}
		marks := map[uint64]uint64{}
		for id := range mem.Removed {
			if log, ok := logs.(map[uint64]uint64)[id]; !ok || log != 0 {
				marks[id] = 0
			}
		}
		if len(marks) == 0 {
			return nil
		}
		_, err = n.nh.SyncPropose(actx, sh.session, encodeLogs(marks))
		return err
	})
	if err != nil {
		n.log.Warn("the removal is not recorded for the members to tell the removed one, if it runs; the next removal records it", "err", err)
	}
}

// membershipAttempts runs one membership step (read the membership, then
// change it) in attempts of a bounded length, again while Dragonboat's
// answer says a later attempt may succeed and ctx allows. Dragonboat never
// answers a request it dropped (sent while the shard had no leader, or to a
// leader that just died), so one attempt bounded only by ctx would wait all
// of it out; and each attempt reads the membership again, so a change an
// earlier attempt made after all is seen as done, not refused for its stale
// config change id.
//
// A change commits only through a leader, which needs a quorum: when the
// shard has had no leader known to this member for the retry budget (a
// leader cut off from a quorum steps down, and a member without one keeps
// campaigning), it answers ErrUnavailable at once, saying so, rather than
// at the end of ctx (docs/design.md, The API's rules: 503 no quorum).
func (n *Node) membershipAttempts(ctx context.Context, sh *shard, step func(context.Context) error) error {
	var leaderless time.Time // since when no leader is known; zero while one is
	for {
		if err := n.membershipLeader(sh, &leaderless); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, 2*n.proposalTimeout)
		err := step(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil || outOfTime(err):
			// Dragonboat refuses a request whose deadline has passed or is
			// within a tick ("invalid deadline", "specified timeout value
			// is too small"), before ctx itself reports it: ctx ran out.
			// Neither its words nor ctx's say why; what this member knows
			// of the leader does.
			return fmt.Errorf("%w: %s: the membership change was not confirmed in time: %s", ErrUnavailable, sh, n.leaderKnown(sh))
		case !retryable(err) && !errors.Is(err, context.DeadlineExceeded):
			if errors.Is(err, dragonboat.ErrClosed) || errors.Is(err, dragonboat.ErrShardClosed) {
				return ErrShuttingDown
			}
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// outOfTime says whether Dragonboat refused a request for its deadline:
// passed, or too near to send it.
func outOfTime(err error) bool {
	return errors.Is(err, dragonboat.ErrTimeoutTooSmall) || errors.Is(err, dragonboat.ErrInvalidDeadline)
}

// membershipLeader checks, before an attempt of a membership change,
// whether sh has a leader known to this member; *since is when it was
// first seen without one (zero while one is known). Without one for the
// retry budget it answers ErrUnavailable saying why and what to do.
func (n *Node) membershipLeader(sh *shard, since *time.Time) error {
	id, _, ok, err := n.nh.GetLeaderID(sh.dbID)
	if err != nil {
		return n.dragonboatErr(sh, err)
	}
	if ok && id != 0 {
		*since = time.Time{}
		return nil
	}
	if since.IsZero() {
		*since = time.Now()
	}
	if waited := time.Since(*since); waited >= n.retryBudget {
		return fmt.Errorf("%w: %s has had no leader for %v: fewer than a majority of its members are up and reach each other (no quorum), "+
			"so no membership change can commit; bring the members that are down back (lockstep cluster status shows which), then try again",
			ErrUnavailable, sh, waited.Round(time.Millisecond))
	}
	return nil
}

// shardMembers is the voting members of sh as this node knows them (none
// when it does not know sh); ok is false when the NodeHost is closed.
func (n *Node) shardMembers(sh *shard) (members map[uint64]string, ok bool) {
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return nil, false
	}
	for _, si := range info.ShardInfoList {
		if si.ShardID == sh.dbID {
			return si.Replicas, true
		}
	}
	return nil, true
}

// memberID finds nodeID among the members.
func (n *Node) memberID(nodeID string, members map[uint64]string) uint64 {
	for _, id := range slices.Sorted(maps.Keys(members)) {
		if n.nodeName(id) == nodeID {
			return id
		}
	}
	return 0
}

// TransferLeadership asks the leader of shardID to hand over to toNodeID
// and waits until toNodeID leads (or ctx ends; without a deadline, the
// node's retry budget bounds the wait).
func (n *Node) TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error {
	if !n.enter() {
		return ErrShuttingDown
	}
	defer n.leave()
	if shardID >= uint64(len(n.shards)) {
		return fmt.Errorf("runtime: there is no shard %d: shards are 0..%d", shardID, len(n.shards)-1)
	}
	sh := n.shards[shardID]
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	members, ok := n.shardMembers(sh)
	if !ok {
		return ErrShuttingDown
	}
	target := n.memberID(toNodeID, members)
	if target == 0 {
		return fmt.Errorf("runtime: %s is not a member of %s", toNodeID, sh)
	}
	for i := 0; ; i++ {
		leader, _, ok, err := n.nh.GetLeaderID(sh.dbID)
		if err != nil {
			return n.dragonboatErr(sh, err)
		}
		if ok && leader == target {
			return nil
		}
		// Ask again now and then: a transfer is dropped when the target
		// does not catch up within an election timeout.
		if ok && leader != 0 && i%25 == 0 {
			if err := n.nh.RequestLeaderTransfer(sh.dbID, target); err != nil && !retryable(err) {
				return n.dragonboatErr(sh, err)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errOpTimeout) {
				return fmt.Errorf("%w: %s: leadership did not move to %s within %v: it is down, cut off from the leader, or not caught up "+
					"(lockstep cluster status shows its applied index)", ErrUnavailable, sh, toNodeID, n.membershipTimeout())
			}
			return ctx.Err()
		case <-n.closing:
			return ErrShuttingDown
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errOpTimeout = errors.New("runtime: operation timed out")

// opContext bounds an operation whose ctx has no deadline by limit
// (Dragonboat's synchronous calls need one); the cause is then errOpTimeout.
func (n *Node) opContext(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, limit, errOpTimeout)
}

// membershipTimeout bounds a membership change whose ctx has no deadline.
func (n *Node) membershipTimeout() time.Duration { return 2*n.retryBudget + 2*n.proposalTimeout }

// memberNames is the names record AddNode writes: nodeID for the new
// replica id, and the node id of every member in mem whose name this node
// knows (from the log or its peers).
func (n *Node) memberNames(mem *dragonboat.Membership, id uint64, nodeID string) map[uint64]string {
	names := map[uint64]string{id: nodeID}
	for member := range mem.Nodes {
		if name, ok := n.knownName(member); ok {
			names[member] = name
		}
	}
	return names
}
