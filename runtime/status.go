package runtime

// What a node tells of the cluster: every shard's leader, term, applied
// index and members, node names for replica ids, and health.

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lni/dragonboat/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// Status reports the shards and members as this node sees them. It needs no
// quorum.
func (n *Node) Status(ctx context.Context) (ClusterStatus, error) {
	if !n.enter() {
		return ClusterStatus{}, ErrShuttingDown
	}
	defer n.leave()
	if err := ctx.Err(); err != nil {
		return ClusterStatus{}, err
	}
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return ClusterStatus{}, ErrShuttingDown
	}
	st := ClusterStatus{NodeID: n.cfg.Cluster.NodeID, Versions: n.versions, Consensus: n.cfg.Consensus.Settings()}
	// A member cut off is neither leader nor follower, whatever
	// Dragonboat remembers: it says why it is cut off, and knows no
	// leader (a removed member keeps its old leader id, which sends it
	// nothing), as lockstep_raft_has_leader says.
	cut := n.cut.role()
	var members map[uint64]string
	for _, sh := range n.shards {
		ss := ShardStatus{ShardID: sh.index, Role: RoleFollower, AppliedIndex: sh.sm.appliedIndex.Load()}
		for _, si := range info.ShardInfoList {
			if si.ShardID != sh.dbID {
				continue
			}
			if si.LeaderID != 0 {
				ss.LeaderID = n.nodeName(si.LeaderID)
			}
			if si.LeaderID != 0 && si.LeaderID == si.ReplicaID {
				ss.Role = RoleLeader
			}
			ss.Term = si.Term
			if members == nil {
				members = si.Replicas
			}
		}
		if cut != "" {
			ss.Role, ss.LeaderID = cut, ""
		}
		st.Shards = append(st.Shards, ss)
	}
	for id, addr := range members {
		st.Members = append(st.Members, Member{NodeID: n.nodeName(id), RaftAddress: addr})
	}
	slices.SortFunc(st.Members, func(a, b Member) int {
		if a.NodeID < b.NodeID {
			return -1
		}
		if a.NodeID > b.NodeID {
			return 1
		}
		return 0
	})
	return st, nil
}

// nodeName maps a replica id to its node id: from the names the log
// carries, then the config's peers, else the id in hex.
func (n *Node) nodeName(replicaID uint64) string {
	if name, ok := n.knownName(replicaID); ok {
		return name
	}
	return fmt.Sprintf("replica-%x", replicaID)
}

// knownName is replicaID's node id, when the log or the config's peers
// name it. A peer names its replica ids of every incarnation
// (config.ReplicaID keeps the node id's hash above the incarnation's
// byte): a cluster restored from a backup that had removed a peer's node
// id runs that peer under a later incarnation, which no entry of its log
// names, and its members showed it as replica-..., refused a transfer to
// it and an add of it at its own address.
func (n *Node) knownName(replicaID uint64) (string, bool) {
	sh := n.shards[0]
	sh.sm.mu.RLock()
	name, ok := sh.sm.names[replicaID]
	sh.sm.mu.RUnlock()
	if ok {
		return name, true
	}
	n.namesMu.Lock()
	name, ok = n.names[replicaID]
	n.namesMu.Unlock()
	if ok {
		return name, true
	}
	return peerName(n.cfg.Cluster.Peers, replicaID)
}

// peerName is the node id among peers whose replica ids replicaID is one
// of, at whatever incarnation.
func peerName(peers map[string]string, replicaID uint64) (string, bool) {
	for id := range peers {
		if config.ReplicaID(id, 0)&^0xff == replicaID&^0xff {
			return id, true
		}
	}
	return "", false
}

// shortName maps Dragonboat's short form of a replica id (its low five
// decimal digits) to a node id, when exactly one known replica has it.
func (n *Node) shortName(short uint64) (string, bool) {
	found, name := 0, ""
	seen := map[uint64]bool{}
	check := func(id uint64, nm string) {
		if id%100000 == short && !seen[id] {
			seen[id] = true
			found++
			name = nm
		}
	}
	if len(n.shards) > 0 {
		sh := n.shards[0]
		sh.sm.mu.RLock()
		for id, nm := range sh.sm.names {
			check(id, nm)
		}
		sh.sm.mu.RUnlock()
	}
	n.namesMu.Lock()
	for id, nm := range n.names {
		check(id, nm)
	}
	n.namesMu.Unlock()
	return name, found == 1
}

// Healthy reports whether this node can serve: Health answers nil.
func (n *Node) Healthy() bool { return n.Health() == nil }

// Health says whether this node can serve: nil when a leader is known for
// every shard and no peer refuses this member; else why not:
// ErrShuttingDown, ErrCutOff (wrapped with why its peers refuse it and
// what to do: such a member may still remember a leader, as a removed
// one does, but is sent nothing), ErrDataDir (wrapped with a data
// directory gone from under the member or taking no writes: dataDirWatch),
// or ErrUnavailable naming a shard with no leader known.
func (n *Node) Health() error {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrShuttingDown
	}
	if err := n.cut.err(); err != nil {
		return err
	}
	if err := n.dataDir.err(); err != nil {
		return err
	}
	for _, sh := range n.shards {
		id, _, ok, err := n.nh.GetLeaderID(sh.dbID)
		if err != nil || !ok || id == 0 {
			if down := n.logs.unreachablePeers(); len(down) > 0 {
				return fmt.Errorf("%w: shard %d has no leader known to this member, which cannot reach %s "+
					"(down, or a wrong address in cluster.peers; the log's \"peer unreachable\" lines say how it failed)",
					ErrUnavailable, sh.index, strings.Join(down, ", "))
			}
			return fmt.Errorf("%w: shard %d has no leader known to this member", ErrUnavailable, sh.index)
		}
	}
	return nil
}

// Degraded says why this node, which may serve (Health is apart), needs a
// person soon; nil while nothing does: ErrDataDirFull (wrapped with the
// room left and what to do) while its data directory's file system is
// nearly full (dataDirWatch). Such a member keeps serving and voting,
// since the others may need its vote, and says so loudly instead. A
// member restored from a backup says so while it holds grants back
// (restoreHold): its acquires wait, and an operator asks why.
func (n *Node) Degraded() error {
	if err := n.dataDir.fullErr(); err != nil {
		return err
	}
	return n.restore.holding()
}

// registerHealth adds lockstep_healthy to reg (nil: none): what /health
// answers, as a gauge an alert can watch. lockstep_raft_has_leader sees one
// cause of an unhealthy member only; a data directory gone or stalled, or
// a member its peers refuse, left it at 1.
func (n *Node) registerHealth(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, sh := range n.shards {
		// Each member's own progress, so that a member behind the others
		// (paused, its disk slow, cut off) shows as the gap to the
		// highest: an operator at 3am saw nothing move for a member stopped
		// for 20 s.
		if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_raft_applied_index",
			Help:        "The last log index this member applied in the shard: the gap to the highest among members is how far behind it is.",
			ConstLabels: prometheus.Labels{"shard": strconv.FormatUint(sh.index, 10)}},
			func() float64 { return float64(sh.sm.appliedIndex.Load()) })); err != nil {
			return err
		}
	}
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lockstep_healthy",
		Help: "1 while this member's /health answers 200; 0 while it answers 503, whose body says why (no leader known for a shard, refused by its peers, its data directory gone or its disk stalled)."},
		func() float64 {
			if n.Health() == nil {
				return 1
			}
			return 0
		}))
}

// Versions is what this node applies the log by, as its Raft hello names
// it (without the shard count): Compatibility(), or what a chaos node was
// told to claim (Options.WithCompatibility).
func (n *Node) Versions() string { return n.versions }

// Compatibility is what a member of this build applies the log by: core's
// versions (core.Compatibility()), and the runtime's records and snapshot
// header (a member that cannot read the others' snapshots must not take
// part).
func Compatibility() string {
	return fmt.Sprintf("%s, runtime %d", core.Compatibility(), runtimeVersion)
}
