package runtime

// Reads: linearizable (ReadIndex) or stale reads of one name's shard, and
// the watch of one shard.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
)

// Read runs fn on the state machine of the shard that owns name (shard 0
// when name is ""), after a ReadIndex unless stale, and returns the applied
// index fn saw. fn runs under the machine's read lock: it must be quick, must
// not keep the machine, and must not call back into the Node. Without a
// deadline on ctx, the ReadIndex is bounded by the node's retry budget.
//
// A linearizable read needs a leader and a quorum; it fails with
// ErrUnavailable when there is none (also when ctx's deadline passes
// first: the error says what this member knows of the leader). A stale
// read answers from this replica's state, however old.
func (n *Node) Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	if !n.enter() {
		return 0, ErrShuttingDown
	}
	defer n.leave()
	return n.readShard(ctx, n.shardFor(name), stale, fn)
}

// readIndex retries SyncRead while the shard has no leader, within ctx or,
// when ctx has no deadline, the retry budget.
func (n *Node) readIndex(ctx context.Context, s *shard, q readQuery) (any, error) {
	parent := ctx
	budget := n.retryBudget
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	ctx, cancel := n.opContext(ctx, n.retryBudget)
	defer cancel()
	start := time.Now()
	for {
		if _, leader, _, _ := s.leadership(); leader == 0 {
			// No leader known: a ReadIndex would be dropped unanswered.
			// Wait for one within the retry budget, as a command does,
			// whatever the caller's deadline: a status read without a
			// quorum answered only when the caller's time ran out (15 s
			// over REST) where a write said so after the budget.
			if err := s.waitLeader(ctx, time.Time{}, start, n.retryBudget); err != nil {
				if errors.Is(parent.Err(), context.Canceled) {
					return nil, parent.Err()
				}
				return nil, err
			}
			continue
		}
		// Each attempt is bounded by a few election timeouts: a ReadIndex
		// sent to a leader that died is never answered, and only a new
		// attempt reaches the next leader.
		attempt, cancelAttempt := context.WithTimeout(ctx, n.readAttempt)
		v, err := n.nh.SyncRead(attempt, s.dbID, q)
		attemptExpired := attempt.Err() != nil
		cancelAttempt()
		if err == nil {
			return v, nil
		}
		if errors.Is(parent.Err(), context.Canceled) {
			return nil, parent.Err()
		}
		if ctx.Err() != nil || outOfTime(err) {
			// The read's time ran out, the caller's deadline or the retry
			// budget, with no read confirmed: what stopped it is what this
			// member knows of the leader, not the deadline. Dragonboat
			// refuses an attempt whose deadline is within a tick, or past,
			// before ctx says so ("specified timeout value is too small",
			// "invalid deadline"): that is the same end, and its words mean
			// nothing to a caller.
			return nil, fmt.Errorf("%w: %s: no read could be confirmed within %v: %s",
				ErrUnavailable, s, roundWait(budget), n.leaderKnown(s))
		}
		if !retryable(err) && !attemptExpired {
			return nil, n.dragonboatErr(s, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Watch streams copies of the effects whose Name starts with prefix ("" for
// all), from the next applied entry on when fromIndex is 0, or from the
// entry fromIndex on (ErrCompacted when this node no longer keeps it: it
// keeps the last few thousand events, since its start or its last snapshot
// install). The channel closes when ctx ends, when the node closes, or when
// the consumer falls behind by more than the stream's buffer; resume with
// the last Index received plus one.
func (n *Node) Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan Event, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	if len(n.shards) == 1 {
		return n.shards[0].watch.subscribe(ctx, prefix, fromIndex, nil)
	}
	if err := shards.OneIndex(fromIndex, len(n.shards)); err != nil {
		return nil, err
	}
	return n.watchAll(ctx, prefix)
}

// roundWait is d as an error says how long something waited: to the
// tenth of a second from a second on (a caller's deadline, sent ahead,
// arrives a little short: 2s, not 1.999s), else to the millisecond.
func roundWait(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
