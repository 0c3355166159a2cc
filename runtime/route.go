package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
)

// Routing with several shards (consensus.shards > 1) is core/shards'
// policy: which shard owns a name, which shards a command goes to, and how
// their answers merge into one (docs/runtime.md, Shards). This file only
// executes it: each wave of sends at once, one goroutine per shard, and the
// cleanups it returns in the background.

// ShardOf is the shard that owns name among count shards (shards.Of).
func ShardOf(name string, count int) uint64 { return shards.Of(name, count) }

// Shards is the number of shards (consensus.shards).
func (n *Node) Shards() int { return len(n.shards) }

// ShardOf is the shard of this node that owns name.
func (n *Node) ShardOf(name string) uint64 { return shards.Of(name, len(n.shards)) }

// route sends a command that has its dedupe identity where core/shards
// says, and answers what it merges. Every shard gets the same (ClientID,
// Seq): dedupe is per shard, so a retry is recognised in each. Every send
// ends by deadline too (the zero time: none; DoBy).
func (n *Node) route(ctx context.Context, deadline time.Time, cmd core.Command) (core.Result, error) {
	if len(n.shards) == 1 {
		// core/shards' route among one shard is the command to shard 0,
		// answered as that shard answers, whatever it is (Start, single;
		// its TestOneShardAnswersUnchanged): sent here without a Fanout,
		// which was a tenth of the leader's allocated bytes (a copy of
		// the command and of its answer, per request).
		return n.shards[0].do(ctx, deadline, cmd)
	}
	f := shards.Start(cmd, len(n.shards))
	var one [1]shards.Answer // a wave of one send's answer, without an allocation
	for sends := f.Sends(); len(sends) > 0; sends = f.Sends() {
		if err := f.Step(n.sendAll(ctx, deadline, sends, one[:])); err != nil {
			return core.Result{}, fmt.Errorf("runtime: routing %v: %w", cmd.Op, err)
		}
	}
	out := f.Outcome()
	if c := out.Cleanup; c != nil {
		n.log.Info("closing a session that is lost or refused elsewhere in the shards where it remains", "session", c.Session, "shards", c.Shards)
		n.closeBestEffort(c)
	}
	return out.Result, out.Err
}

// sendAll sends every command of one wave at once and waits for all. One
// send (a command for one name, the single-shard case) runs on the caller's
// goroutine, and its answer goes in one.
func (n *Node) sendAll(ctx context.Context, deadline time.Time, sends []shards.Send, one []shards.Answer) []shards.Answer {
	if len(sends) == 1 {
		out := one[:1]
		r, err := n.shards[sends[0].Shard].do(ctx, deadline, sends[0].Cmd)
		out[0] = shards.Answer{Shard: sends[0].Shard, Result: r, Err: err}
		return out
	}
	out := make([]shards.Answer, len(sends))
	var wg sync.WaitGroup
	for i, s := range sends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.shards[s.Shard].do(ctx, deadline, s.Cmd)
			out[i] = shards.Answer{Shard: s.Shard, Result: r, Err: err}
		}()
	}
	wg.Wait()
	return out
}

// doOn is Do on one given shard: the identity Do would give, then that
// shard alone.
func (n *Node) doOn(ctx context.Context, s *shard, cmd core.Command) (core.Result, error) {
	if !n.enter() {
		return core.Result{}, ErrShuttingDown
	}
	defer n.leave()
	if c := n.identify(&cmd); c != nil {
		defer n.clients.put(c)
	}
	return s.do(ctx, time.Time{}, cmd)
}

// closeBestEffort closes a session in the shards a cleanup names, in the
// background, each bounded by the retry budget, with the cleanup's command
// (shards.Cleanup.Close: as a failure, with the lock-delay). A failure or
// a refusal leaves the copy to its TTL.
func (n *Node) closeBestEffort(c *shards.Cleanup) {
	for _, i := range c.Shards {
		s := n.shards[i]
		go func() {
			if n.goneHere(s, c.Session) {
				return // its own expiry or another close ended it already
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.retryBudget)
			defer cancel()
			r, err := n.doOn(ctx, s, c.Close())
			if err == nil && r.Err != nil {
				err = r.Err
			}
			if err != nil {
				s.log.Debug("could not close a lost session", "session", c.Session, "err", err)
			}
		}()
	}
}

// goneHere says whether this node's copy of shard s, as far as it has
// applied, no longer has session id. A session never comes back and its id
// is never reused, so a copy gone in the applied prefix is gone for good,
// and a close sent there would only be answered not_found: every shard's
// leader that applies the same session's expiry (shards.Expired) would
// otherwise send a close to every other shard.
func (n *Node) goneHere(s *shard, id core.SessionID) bool {
	gone := false
	_, err := n.readShard(context.Background(), s, true, func(m *core.Machine) error {
		_, err := m.SessionInfo(id)
		gone = core.CodeOf(err) == core.CodeNotFound
		return nil
	})
	return err == nil && gone
}

// ReadAll runs fn on the state machine of every shard (after a ReadIndex
// each, unless stale), and answers the applied index each read saw, by
// shard. The reads run at once; fn is called once per shard, never
// concurrently, under that shard's read lock (the rules of Read apply).
// Each shard's read is linearizable on its own; together they are not one
// snapshot: an object never moves between shards, but a session's holds in
// two shards may be read at slightly different moments.
func (n *Node) ReadAll(ctx context.Context, stale bool, fn func(shard uint64, m *core.Machine) error) ([]uint64, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	var mu sync.Mutex
	idx := make([]uint64, len(n.shards))
	errs := make([]error, len(n.shards))
	var wg sync.WaitGroup
	for i, s := range n.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx[i], errs[i] = n.readShard(ctx, s, stale, func(m *core.Machine) error {
				mu.Lock()
				defer mu.Unlock()
				return fn(s.index, m)
			})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return idx, nil
}

// WatchShard is Watch on one shard's events, with fromIndex in that shard's
// log: a watch of one name (all its events are in ShardOf(name)) resumes
// from an index this way.
func (n *Node) WatchShard(ctx context.Context, shard uint64, prefix string, fromIndex uint64, opts ...WatchOption) (<-chan Event, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	if shard >= uint64(len(n.shards)) {
		return nil, fmt.Errorf("runtime: there is no shard %d: shards are 0..%d", shard, len(n.shards)-1)
	}
	return n.shards[shard].watch.subscribe(ctx, prefix, fromIndex, watchOpts(opts).progress)
}

// WatchShards merges every shard's events for prefix, each shard from its
// own index: fromIndex[i] is shard i's (len(fromIndex) must be Shards()),
// 0 for its next entry. This is how a prefix watch resumes across shards:
// each shard's index is where that shard's stream stopped.
func (n *Node) WatchShards(ctx context.Context, prefix string, fromIndex []uint64, opts ...WatchOption) (<-chan Event, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	if err := shards.Positions(fromIndex).Check(len(n.shards)); err != nil {
		return nil, err
	}
	return n.watchFrom(ctx, prefix, fromIndex, watchOpts(opts).progress)
}

// watchAll merges every shard's events for prefix, from each shard's next
// entry on.
func (n *Node) watchAll(ctx context.Context, prefix string) (<-chan Event, error) {
	return n.watchFrom(ctx, prefix, make([]uint64, len(n.shards)), nil)
}

// watchFrom merges every shard's events for prefix, shard i's from
// fromIndex[i] on, under core/shards' rule for a merged stream (watch.go
// there): events of one shard keep their order (and an entry's events stay
// together), shards interleave as they apply, one shard's stream ending
// (its consumer fell behind, a snapshot was installed, the node closes)
// ends the merged stream, so that a gap is never silent, and each receive
// from progress (nil: none) asks every shard for a marker. This is the
// execution: a goroutine per shard and channels.
func (n *Node) watchFrom(ctx context.Context, prefix string, fromIndex []uint64, progress <-chan struct{}) (<-chan Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	subs := make([]<-chan Event, 0, len(n.shards))
	var asks []chan struct{}
	for i, s := range n.shards {
		var ask chan struct{}
		if progress != nil {
			ask = make(chan struct{}, 1)
			asks = append(asks, ask)
		}
		ch, err := s.watch.subscribe(ctx, prefix, fromIndex[i], ask)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("shard %d: %w", i, err)
		}
		subs = append(subs, ch)
	}
	if progress != nil {
		// One request asks every shard; a shard already asked and not yet
		// answered is not asked twice.
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-progress:
					for _, a := range asks {
						select {
						case a <- struct{}{}:
						default:
						}
					}
				}
			}
		}()
	}
	out := make(chan Event, watchStreamBuffer)
	var wg sync.WaitGroup
	for _, ch := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel() // one stream ended: end them all
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						return
					}
					select {
					case out <- ev:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out, nil
}

// readShard is Read on one shard.
func (n *Node) readShard(ctx context.Context, s *shard, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	q := readQuery{fn: fn}
	var v any
	var err error
	if stale {
		v, err = n.nh.StaleRead(s.dbID, q)
		if err != nil {
			err = n.dragonboatErr(s, err)
		}
	} else {
		v, err = n.readIndex(ctx, s, q)
	}
	if err != nil {
		return 0, err
	}
	r := v.(readResult)
	return r.index, r.err
}

// SessionEnded answers a channel that yields why session id ended
// (core.ReasonSessionExpired or core.ReasonSessionClosed, a close by any
// caller) when this node first applies its end in any shard, and then
// closes; and the function that drops the subscription (call it when done;
// it is safe after the end). A session whose end this node skipped by
// restoring a snapshot ends without it: a keepalive answers not_found.
func (n *Node) SessionEnded(id core.SessionID) (<-chan core.Reason, func()) {
	e := newSessionEnd()
	for _, s := range n.shards {
		s.watch.watchEnd(id, e)
	}
	return e.ch, func() {
		for _, s := range n.shards {
			s.watch.unwatchEnd(id, e)
		}
	}
}

// GrantsEnded answers a channel that yields each grant of session id that
// ends while the session lives on (GrantEndOf: released by any caller,
// its max hold passed), as this node applies it in any shard, and the
// function that drops the subscription (call it when done, typically
// once SessionEnded yields). The channel holds grantEndBuffer ends unread
// and is never closed: the apply path does not wait for its reader, and
// an end that finds it full is dropped (lockstep_session_pushes_dropped_total).
// Nothing is sent for the grants of a session's own end: SessionEnded
// says it.
func (n *Node) GrantsEnded(id core.SessionID) (<-chan GrantEnd, func()) {
	e := &grantEnds{ch: make(chan GrantEnd, grantEndBuffer)}
	for _, s := range n.shards {
		s.watch.watchGrants(id, e)
	}
	return e.ch, func() {
		for _, s := range n.shards {
			s.watch.unwatchGrants(id, e)
		}
	}
}
