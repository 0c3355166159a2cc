package runtime

// The request path: a command from the API to its shard's driver and back
// with its final answer, and how Dragonboat's errors read to a caller.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstepd/lockstep/core"
)

// ErrOverloaded wraps ErrUnavailable: this node holds too many requests
// (HTTP 429 or 503). Retry later.
var ErrOverloaded = fmt.Errorf("%w: this node holds too many requests", ErrUnavailable)

// Do proposes cmd and blocks until its final answer: for an acquire,
// campaign or barrier wait that queues, until granted or ended (the Result
// then says granted, released, or refused with a Reason). If ctx ends while
// queued, Do proposes OpCancel for the waiter and returns ctx.Err(). If cmd
// has no ClientID, Do assigns a node-local one and a Seq, so that its own
// retries after a leader loss are idempotent.
//
// A nil error means the Result is authoritative (Result.Err carries core's
// refusals; a command core.CheckCommand refuses, and the replicas' own ops
// (core.Op.Internal), are refused there before anything is proposed). A non-nil
// error is ErrUnavailable (no leader or quorum within the retry budget, or
// no leader known by ctx's deadline: HTTP 503; ErrOverloaded wraps it),
// ErrShuttingDown (ErrWaitKept for a wait left queued for the caller's
// resend elsewhere: shard.stopServing), ctx's error, or ErrWithdrawn for a
// wait its caller withdrew (WithWithdrawal).
//
// Do works on any member: on a follower, the command is forwarded to the
// leader through Dragonboat (see shard). With several shards, Do sends the
// command to its name's shard, and session commands to every shard (see
// route).
func (n *Node) Do(ctx context.Context, cmd core.Command) (core.Result, error) {
	return n.DoBy(ctx, cmd, time.Time{})
}

// DoBy is Do that also ends at deadline (the zero time: no deadline of its
// own), as Do under context.WithDeadline(ctx, deadline) would, with the
// same errors: a queued wait is cancelled through the log and DoBy returns
// context.DeadlineExceeded; no leader known by then is ErrUnavailable.
// The timer that bounds every request's wait enforces it, so that a
// request saves the context and the timer of its own that a deadline
// costs (the API gives each command one: its wait plus the request
// timeout).
func (n *Node) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if !n.enter() {
		return core.Result{}, ErrShuttingDown
	}
	defer n.leave()
	if cmd.Op.Internal() {
		return refused(fmt.Sprintf("op %s is the replicas' own: clients cannot send it", cmd.Op)), nil
	}
	if err := core.CheckCommand(machineLimits, &cmd); err != nil {
		return core.Result{Err: err}, nil // bad input costs no log entry
	}
	if holdsGrant(cmd.Op) {
		if err := n.holdGrants(ctx, deadline); err != nil {
			return core.Result{}, err
		}
	}
	if c := n.identify(&cmd); c != nil {
		defer n.clients.put(c)
	}
	return n.route(ctx, deadline, cmd)
}

// identify gives a command without a ClientID a node-local one and the next
// Seq, so that the runtime's own retries of it are idempotent. The client it
// returns (nil when cmd had its own) goes back to the pool once the
// command's answer is final, so that no other command shares its Seqs.
func (n *Node) identify(cmd *core.Command) *localClient {
	if cmd.ClientID != "" {
		return nil
	}
	c := n.clients.get()
	c.seq++
	cmd.ClientID, cmd.Seq = c.id, c.seq
	return c
}

func refused(msg string) core.Result {
	return core.Result{Err: &core.Error{Code: core.CodeInvalidArgument, Msg: msg}}
}

func retryable(err error) bool {
	return errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) ||
		errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrShardNotInitialized) ||
		errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrRejected)
}

func (n *Node) dragonboatErr(s *shard, err error) error {
	if errors.Is(err, dragonboat.ErrClosed) || errors.Is(err, dragonboat.ErrShardClosed) {
		return ErrShuttingDown
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if outOfTime(err) {
		// Dragonboat's words for a deadline within a tick, or past.
		return fmt.Errorf("%w: %s: the request ran out of time: %s", ErrUnavailable, s, n.leaderKnown(s))
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, s, err)
}

// noQuorumHere is what a member that knows no leader can say of its
// cluster: a member of a majority that reaches each other elects one
// within a few election timeouts.
const noQuorumHere = "no quorum (a majority of the members, up and reaching each other) is reachable from it"

// leaderKnown says what this member knows of s's leader, for an
// ErrUnavailable of a request that found no quorum: no leader, itself, or
// another member that did not answer.
func (n *Node) leaderKnown(s *shard) string {
	id, _, ok, err := n.nh.GetLeaderID(s.dbID)
	switch {
	case err != nil || !ok || id == 0:
		return "this member knows no leader: " + noQuorumHere
	case id == s.replicaID:
		return "this member leads, but a majority of the members did not confirm it in time"
	}
	return fmt.Sprintf("the leader this member knows, %s, did not confirm it in time: it may be down, or cut off from this member or from a majority", n.nodeName(id))
}
