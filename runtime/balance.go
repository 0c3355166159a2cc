package runtime

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Leader balancing (consensus.shards > 1). Every shard's leader serves
// that shard's writes, so leaders piled on one node make it the cluster's
// bottleneck. Rule: shard i prefers the member at position i mod members,
// members sorted by node id. Each node looks after the shards that prefer
// it: when another node has led such a shard for a while, it checks that it
// has caught up with the leader (a ReadIndex through it returns only once
// it has applied the leader's commit index), then asks Raft to hand it the
// leadership (Dragonboat forwards the request to the leader, which sends
// TimeoutNow once the target's log matches its own).
//
// The preferred node asks, rather than the leader pushing, so that a node
// that is down or behind never becomes a transfer's target: a leader stops
// taking proposals while it transfers (until the target takes over, or an
// election timeout passes), and a transfer to a dead node would cost that
// pause every time. Requests are paced: a leader must have led for `settle`
// before it is asked, and a node asks for one shard at most once per
// `backoff`, so leaders settle instead of flapping. With one shard there is
// nothing to balance and the loop does not run.

// balanceTimes pace the balancer.
type balanceTimes struct {
	every   time.Duration // how often a node looks
	settle  time.Duration // how long a leader leads before it may be asked to hand over
	backoff time.Duration // between two requests for one shard
}

func newBalanceTimes(electionTimeoutMs int) balanceTimes {
	el := time.Duration(electionTimeoutMs) * time.Millisecond
	return balanceTimes{every: max(250*time.Millisecond, el), settle: max(2*time.Second, 10*el), backoff: max(4*time.Second, 20*el)}
}

// balance runs until the node starts closing.
func (n *Node) balance(bt balanceTimes) {
	t := time.NewTicker(bt.every)
	defer t.Stop()
	asked := make([]time.Time, len(n.shards))
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
		for _, sh := range n.shards {
			if n.shouldAskToLead(sh, bt, asked[sh.index]) {
				asked[sh.index] = time.Now()
				n.askToLead(sh, bt)
			}
		}
	}
}

// preferredLeader is the node id that shard index prefers among the voting
// members (replica id → address), or "" when there are none.
func (n *Node) preferredLeader(index uint64, members map[uint64]string) string {
	names := make([]string, 0, len(members))
	for id := range members {
		names = append(names, n.nodeName(id))
	}
	if len(names) == 0 {
		return ""
	}
	slices.SortFunc(names, cmp.Compare[string])
	return names[index%uint64(len(names))]
}

func (n *Node) shouldAskToLead(sh *shard, bt balanceTimes, lastAsked time.Time) bool {
	if time.Since(lastAsked) < bt.backoff {
		return false
	}
	isLeader, leaderID, _, since := sh.leaderState()
	if isLeader || leaderID == 0 || time.Since(since) < bt.settle {
		return false
	}
	mem, _ := n.shardMembers(sh)
	if _, voting := mem[n.replicaID]; !voting {
		return false
	}
	return n.preferredLeader(sh.index, mem) == n.cfg.Cluster.NodeID
}

// askToLead checks that this node has caught up with sh's leader, then
// asks for the leadership. Bounded by the settle time. One request: when
// it is lost (this node skips the campaign while it has committed entries
// to apply), the leader has paused the shard's writes for an election
// timeout, and asking again at once, as Close's hand-off does, would risk
// another pause for a balance that can wait for the next backoff.
func (n *Node) askToLead(sh *shard, bt balanceTimes) {
	ctx, cancel := context.WithTimeout(context.Background(), min(bt.settle, n.retryBudget))
	defer cancel()
	go cancelOnClose(ctx, cancel, n.closing)
	if _, err := n.nh.SyncRead(ctx, sh.dbID, namesQuery{}); err != nil {
		sh.log.Debug("leader balance: not caught up, not asking to lead", "err", err)
		return
	}
	_, leaderID, term, _ := sh.leaderState()
	if leaderID == 0 || leaderID == n.replicaID {
		return
	}
	if err := n.nh.RequestLeaderTransfer(sh.dbID, n.replicaID); err != nil {
		sh.log.Debug("leader balance: the request failed", "err", err)
		return
	}
	sh.log.Info("leader balance: asking to lead this shard, its preferred leader", "term", term,
		"leader", n.nodeName(leaderID))
}
