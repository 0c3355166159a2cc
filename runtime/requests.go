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
	"github.com/lockstepd/lockstep/core/replica"
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
// refusals; a command core.CheckCommand refuses, and OpLeaderChange, which
// is the runtime's own, are refused there before anything is proposed). A non-nil
// error is ErrUnavailable (no leader or quorum within the retry budget: HTTP
// 503; ErrOverloaded wraps it), ErrShuttingDown, or ctx's error.
//
// Do works on any member: on a follower, the command is forwarded to the
// leader through Dragonboat (see shard). With several shards, Do sends the
// command to its name's shard, and session commands to every shard (see
// route).
func (n *Node) Do(ctx context.Context, cmd core.Command) (core.Result, error) {
	if !n.enter() {
		return core.Result{}, ErrShuttingDown
	}
	defer n.leave()
	if cmd.Op == core.OpLeaderChange {
		return refused("op leader_change is the runtime's own: clients cannot send it"), nil
	}
	if err := core.CheckCommand(machineLimits, &cmd); err != nil {
		return core.Result{Err: err}, nil // bad input costs no log entry
	}
	if c := n.identify(&cmd); c != nil {
		defer n.clients.put(c)
	}
	return n.route(ctx, cmd)
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

func (s *shard) do(ctx context.Context, cmd core.Command) (core.Result, error) {
	n := s.n
	start := time.Now()
	why := ""
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-n.closing:
				return core.Result{}, ErrShuttingDown
			default:
			}
			if time.Since(start) > n.retryBudget {
				return core.Result{}, fmt.Errorf("%w: %s: %s after %v", ErrUnavailable, s, why, time.Since(start).Round(time.Millisecond))
			}
		}
		p, err := s.submit(cmd)
		if errors.Is(err, errNoLeader) {
			why = "no leader is known"
			if err := s.waitLeader(ctx, start, n.retryBudget); err != nil {
				return core.Result{}, err
			}
			continue
		}
		if err != nil {
			return core.Result{}, err
		}
		rep, queued, err := s.await(ctx, p)
		if err != nil {
			return core.Result{}, err
		}
		if queued {
			start = time.Now() // it waited, healthy, until now: the budget counts from here
		}
		switch rep.Kind {
		case replica.ReplyResult, replica.ReplyGranted, replica.ReplyWaitEnded:
			return rep.Result, nil
		case replica.ReplyNotLeader:
			why = "leadership moved"
			if err := s.waitLeader(ctx, time.Now(), 10*time.Millisecond); err != nil && !errors.Is(err, ErrUnavailable) {
				return core.Result{}, err
			}
		case replica.ReplyUnknown:
			why = "the proposal was not confirmed (leader lost, or no quorum)"
		case replica.ReplyBusy:
			return core.Result{}, ErrOverloaded
		case replica.ReplyRejected:
			return refused("the runtime cannot propose this command"), nil
		default:
			return core.Result{}, fmt.Errorf("runtime: unexpected reply %v", rep.Kind)
		}
	}
}

// waitLeader waits for a leadership event, until budget has passed since
// start.
func (s *shard) waitLeader(ctx context.Context, start time.Time, budget time.Duration) error {
	left := budget - time.Since(start)
	if left <= 0 {
		return fmt.Errorf("%w: %s: no leader is known after %v", ErrUnavailable, s, budget)
	}
	_, _, _, changed := s.leadership()
	t := time.NewTimer(min(left, 20*time.Millisecond)) // the forwarder also waits for a first applied entry
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.n.stopped:
		return ErrShuttingDown
	}
	return nil
}

// await waits for p's final reply. A queued request keeps waiting until
// granted, ended, its ctx ends, or the node closes. Until it is queued (or
// answered), a request is bounded by the proposal timeout plus the retry
// budget, whatever ctx says: the drivers answer sooner when leadership is
// lost, but a request must not wait on a stuck pipeline forever.
func (s *shard) await(ctx context.Context, p *pending) (rep replica.Reply, queued bool, err error) {
	closing := s.n.closing
	stuck := time.NewTimer(s.n.proposalTimeout + s.n.retryBudget)
	defer stuck.Stop()
	stuckC := stuck.C
	for {
		select {
		case rep = <-p.ch:
			if rep.Kind != replica.ReplyQueued {
				return rep, queued, nil
			}
			if !queued {
				NotifyQueued(ctx, rep.Result.Waiter)
			}
			queued = true
			if closing == nil { // the node is closing: do not start a long wait
				s.withdraw(p)
				return replica.Reply{}, queued, ErrShuttingDown
			}
			stuckC = nil
		case <-ctx.Done():
			s.withdraw(p)
			return replica.Reply{}, queued, ctx.Err()
		case <-closing:
			if s.isBlocked(p) {
				s.withdraw(p)
				return replica.Reply{}, queued, ErrShuttingDown
			}
			closing = nil // let it finish: Close drains in-flight requests
		case <-stuckC:
			s.withdraw(p)
			return replica.Reply{}, queued, fmt.Errorf("%w: %s: no answer within %v (it may still apply)", ErrUnavailable, s,
				s.n.proposalTimeout+s.n.retryBudget)
		case <-s.n.stopped:
			s.withdraw(p)
			return replica.Reply{}, queued, ErrShuttingDown
		}
	}
}

// withdraw abandons p and makes sure a wait it holds in the machine is
// cancelled through the log.
func (s *shard) withdraw(p *pending) {
	waiter, session, proposed := s.abandon(p)
	if waiter == 0 || proposed {
		return
	}
	// The driver cannot propose now (no leader is known, or nothing is
	// applied yet): cancel through Do, which waits for a leader.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.n.retryBudget)
		defer cancel()
		// This shard's own: with several shards, waiter ids are per shard.
		if _, err := s.n.doOn(ctx, s, core.Command{Op: core.OpCancel, Waiter: waiter, Session: session}); err != nil {
			s.log.Debug("could not cancel an abandoned wait", "waiter", waiter, "err", err)
		}
	}()
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
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, s, err)
}
