package runtime

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/lockstepd/lockstep/core"
)

// Routing with several shards (consensus.shards > 1).
//
// A name lives in one shard, chosen by ShardOf. A session lives in every
// shard under one id, so that a lock in any shard can name it: shard 0
// allocates the id and the others adopt it (core's create with a Session).
// KeepAlive and Close go to every shard at once. Everything else names an
// object and goes to its shard alone; OpCancel names no object and goes to
// every shard (see route).

// ShardOf is the shard that owns name among count shards: FNV-1a 64 of the
// name, modulo count. "" (no name: sessions, reads of no object) is shard 0.
// The mapping depends on count, which is why a cluster's shard count never
// changes after its first start.
func ShardOf(name string, count int) uint64 {
	if count <= 1 || name == "" {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return h.Sum64() % uint64(count)
}

// Shards is the number of shards (consensus.shards).
func (n *Node) Shards() int { return len(n.shards) }

// ShardOf is the shard of this node that owns name.
func (n *Node) ShardOf(name string) uint64 { return ShardOf(name, len(n.shards)) }

// route sends a command that has its dedupe identity to the shard, or the
// shards, that must apply it. Every shard gets the same (ClientID, Seq):
// dedupe is per shard, so a retry is recognised in each.
func (n *Node) route(ctx context.Context, cmd core.Command) (core.Result, error) {
	if len(n.shards) == 1 {
		return n.shards[0].do(ctx, cmd)
	}
	switch cmd.Op {
	case core.OpSessionCreate:
		return n.sessionCreate(ctx, cmd)
	case core.OpSessionKeepAlive:
		return n.sessionKeepAlive(ctx, cmd)
	case core.OpSessionClose:
		return n.sessionClose(ctx, cmd)
	case core.OpCancel:
		return n.cancelAnywhere(ctx, cmd)
	}
	return n.shardFor(cmd.Name).do(ctx, cmd)
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
	return s.do(ctx, cmd)
}

// shardAnswer is one shard's answer to a command sent to several.
type shardAnswer struct {
	shard *shard
	r     core.Result
	err   error
}

// fanOut sends cmd to every shard in shards at once and waits for all.
func fanOut(ctx context.Context, shards []*shard, cmd core.Command) []shardAnswer {
	out := make([]shardAnswer, len(shards))
	var wg sync.WaitGroup
	for i, s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.do(ctx, cmd)
			out[i] = shardAnswer{shard: s, r: r, err: err}
		}()
	}
	wg.Wait()
	return out
}

// sessionCreate creates the session in shard 0, which allocates its id,
// then adopts that id in every other shard at once. The answer's deadline
// is the earliest of them.
//
// If an adopt fails for lack of a leader or quorum, the error is returned
// and the shards that have the session keep it until its TTL: a retry with
// the same (ClientID, Seq) gets the same id from shard 0's dedupe and
// completes the others. If a shard refuses it (a limit), the session is
// closed wherever it was made, best effort, and the refusal returned.
func (n *Node) sessionCreate(ctx context.Context, cmd core.Command) (core.Result, error) {
	first, err := n.shards[0].do(ctx, cmd)
	if err != nil || first.Err != nil {
		return first, err
	}
	adopt := cmd
	adopt.Session = first.Session
	answers := fanOut(ctx, n.shards[1:], adopt)
	res := first
	var made []*shard
	var refusal *core.Result
	for _, a := range answers {
		switch {
		case a.err != nil:
			err = errors.Join(err, a.err)
		case a.r.Err != nil:
			refusal = &a.r
		default:
			made = append(made, a.shard)
			res.Deadline = min(res.Deadline, a.r.Deadline)
			res.Duplicate = res.Duplicate && a.r.Duplicate
		}
	}
	if err != nil {
		return core.Result{}, firstError(err)
	}
	if refusal != nil {
		n.closeBestEffort(first.Session, append(made, n.shards[0]))
		r := *refusal
		r.Err = &core.Error{Code: r.Err.Code, Msg: fmt.Sprintf("session %d could not be made in every shard: %s", first.Session, r.Err.Msg)}
		return r, nil
	}
	return res, nil
}

// sessionKeepAlive renews the session in every shard at once and answers
// the earliest deadline. If any shard no longer has the session, it is
// lost: that answer is returned (the client must treat its session as gone)
// and the session is closed in the shards that still had it, best effort,
// so that its holds there do not outlive it by a TTL.
func (n *Node) sessionKeepAlive(ctx context.Context, cmd core.Command) (core.Result, error) {
	answers := fanOut(ctx, n.shards, cmd)
	var res core.Result
	var err error
	var lost *core.Result
	var refusal *core.Result
	var alive []*shard
	allDuplicate := true
	for i, a := range answers {
		switch {
		case a.err != nil:
			err = errors.Join(err, a.err)
		case a.r.Err != nil && a.r.Err.Code == core.CodeNotFound:
			lost = &answers[i].r
		case a.r.Err != nil:
			refusal = &answers[i].r
		default:
			alive = append(alive, a.shard)
			allDuplicate = allDuplicate && a.r.Duplicate
			if res.Session == 0 || a.r.Deadline < res.Deadline {
				res = a.r
			}
		}
	}
	switch {
	case lost != nil:
		if len(alive) > 0 {
			n.log.Info("session lost in a shard: closing it in the others", "session", cmd.Session)
			n.closeBestEffort(cmd.Session, alive)
		}
		return *lost, nil
	case refusal != nil:
		return *refusal, nil
	case err != nil:
		return core.Result{}, firstError(err)
	}
	res.Duplicate = allDuplicate
	return res, nil
}

// sessionClose closes the session in every shard at once. Closed in some
// and already gone in others counts as closed (an earlier, partly failed
// close); gone everywhere is not_found.
func (n *Node) sessionClose(ctx context.Context, cmd core.Command) (core.Result, error) {
	return firstDone(fanOut(ctx, n.shards, cmd))
}

// cancelAnywhere withdraws a queued request whose name the command does not
// say. Waiter ids are allocated per shard, so the same id may exist in two
// shards: the command must name the session (core then cancels only a wait
// of that session), and it goes to every shard.
func (n *Node) cancelAnywhere(ctx context.Context, cmd core.Command) (core.Result, error) {
	if cmd.Session == 0 && cmd.Waiter != 0 {
		return refused(fmt.Sprintf("cancel needs the session_id of the wait with %d shards: waiter ids are per shard", len(n.shards))), nil
	}
	return firstDone(fanOut(ctx, n.shards, cmd))
}

// firstDone answers a command sent to several shards where one success is
// enough: the first success, else the first error, else the first refusal.
func firstDone(answers []shardAnswer) (core.Result, error) {
	var err error
	var refusal *core.Result
	for i, a := range answers {
		switch {
		case a.err != nil:
			err = errors.Join(err, a.err)
		case a.r.Err != nil:
			if refusal == nil {
				refusal = &answers[i].r
			}
		default:
			return a.r, nil
		}
	}
	if err != nil {
		return core.Result{}, firstError(err)
	}
	return *refusal, nil
}

// firstError unwraps errors.Join's result to its first error, so that the
// caller's errors.Is sees ErrUnavailable, ErrShuttingDown or ctx's error.
func firstError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0]
	}
	return err
}

// closeBestEffort closes a session in the given shards, in the background,
// bounded by the retry budget. A failure leaves the session to its TTL.
func (n *Node) closeBestEffort(id core.SessionID, shards []*shard) {
	for _, s := range shards {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), n.retryBudget)
			defer cancel()
			if _, err := n.doOn(ctx, s, core.Command{Op: core.OpSessionClose, Session: id}); err != nil {
				s.log.Debug("could not close a lost session", "session", id, "err", err)
			}
		}()
	}
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
	if len(fromIndex) != len(n.shards) {
		return nil, fmt.Errorf("runtime: %d start indexes for %d shards: give one per shard", len(fromIndex), len(n.shards))
	}
	return n.watchFrom(ctx, prefix, fromIndex, watchOpts(opts).progress)
}

// watchAll merges every shard's events for prefix, from each shard's next
// entry on.
func (n *Node) watchAll(ctx context.Context, prefix string) (<-chan Event, error) {
	return n.watchFrom(ctx, prefix, make([]uint64, len(n.shards)), nil)
}

// watchFrom merges every shard's events for prefix, shard i's from
// fromIndex[i] on. Events of one shard keep their order (and an entry's
// events stay together); shards interleave as they apply. When one shard's
// stream ends (its consumer fell behind, a snapshot was installed, the
// node closes), the merged stream ends too, so that a gap is never silent.
// Each receive from progress (nil: none) asks every shard for a marker.
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
