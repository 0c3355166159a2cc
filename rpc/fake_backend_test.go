package rpc_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime"
)

// fakeBackend is a one-replica stand-in for the runtime, for handler tests:
// a core.Machine applied under a mutex, time from the wall clock, a tick
// every 10 ms, and queued requests answered from the effects that end them.
// It is a test double only; the integration tests run the real binary.
type fakeBackend struct {
	mu        sync.Mutex
	m         *core.Machine
	index     uint64
	pending   map[core.WaiterID]chan core.Result
	watchers  map[chan runtime.Event]string
	unhealthy error // what Health answers: nil, serving
	degraded  error // what Degraded answers: nil, nothing to do
	stop      chan struct{}
	down      error // when set, Do and Read fail with it
	shards    int   // what Shards answers (the fake holds one machine whatever it says); 0: 1
	// watchStarts records the fromIndex of every WatchShards call.
	watchStarts [][]uint64
	// watchFeed, when set, is the stream the next WatchShards returns: a
	// test scripts events, entry boundaries and the stream's end.
	watchFeed chan runtime.Event
	// dos counts the commands Do was given: a test of bad input checks that
	// none reached the backend.
	dos int
	// ends are the SessionEnded subscriptions, ended on the session's
	// expiry or close.
	ends map[core.SessionID][]chan core.Reason
	// grants are the GrantsEnded subscriptions, sent the ends of their
	// session's grants while it lives (runtime.GrantEndOf), dropped when
	// full, as the runtime does.
	grants map[core.SessionID][]chan runtime.GrantEnd
	// closing, once closed, ends the queued waits as a closing runtime
	// node does: one with its caller's client id is left queued
	// (runtime.ErrWaitKept), any other withdrawn (runtime.ErrShuttingDown).
	closing chan struct{}
}

var errNoQuorum = fmt.Errorf("fake: %w", runtime.ErrUnavailable)

func newFakeBackend() *fakeBackend {
	m, err := core.New(core.DefaultLimits())
	if err != nil {
		panic(err)
	}
	f := &fakeBackend{m: m, pending: map[core.WaiterID]chan core.Result{}, watchers: map[chan runtime.Event]string{},
		stop: make(chan struct{})}
	// A leader's first entry, as the runtime's: its mark raises the rules
	// in force to this build's (a close may then apply the lock-delay).
	f.applyLocked([]core.Command{{Op: core.OpLeaderChange, Rules: core.RulesVersion}})
	go func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
				f.mu.Lock()
				f.applyLocked(nil)
				f.mu.Unlock()
			}
		}
	}()
	return f
}

func (f *fakeBackend) Close() { close(f.stop) }

// proposed is how many commands Do has been given.
func (f *fakeBackend) proposed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dos
}

// applyLocked applies one entry and routes its effects.
func (f *fakeBackend) applyLocked(cmds []core.Command) []core.Result {
	f.index++
	out := f.m.Apply(core.Entry{Index: f.index, Proposal: core.Proposal{Time: core.LogTime(time.Now().UnixMilli()), Commands: cmds}})
	results := append([]core.Result(nil), out.Results...)
	// Each watcher gets an entry's events together, the last marked
	// EntryEnd, as the runtime sends them; one that has no room for them
	// misses them (the fake's buffers are large enough for its tests).
	for ch, prefix := range f.watchers {
		var evs []runtime.Event
		for _, e := range out.Effects {
			if strings.HasPrefix(e.Name, prefix) {
				evs = append(evs, runtime.Event{Shard: f.ShardOf(e.Name), Index: out.Index, Time: out.Time, Effect: e})
			}
		}
		if len(evs) == 0 || len(ch)+len(evs) > cap(ch) {
			continue
		}
		evs[len(evs)-1].EntryEnd = true
		for _, ev := range evs {
			ch <- ev
		}
	}
	for _, e := range out.Effects {
		if g, ok := runtime.GrantEndOf(&e); ok {
			g.Index = out.Index
			for _, ch := range f.grants[e.Session] {
				select {
				case ch <- g:
				default:
				}
			}
		}
		if e.Kind == core.EffectSessionExpired || e.Kind == core.EffectSessionClosed {
			for _, ch := range f.ends[e.Session] {
				ch <- e.Reason
				close(ch)
			}
			delete(f.ends, e.Session)
		}
		if e.Waiter == 0 {
			continue
		}
		ch, ok := f.pending[e.Waiter]
		if !ok {
			continue
		}
		var r core.Result
		switch {
		case e.Kind == core.EffectGranted && e.Object == core.KindBarrier:
			r = core.Result{Outcome: core.OutcomeReleased, Session: e.Session, Waiter: e.Waiter, Generation: e.Generation}
		case e.Kind == core.EffectGranted:
			r = core.Result{Outcome: core.OutcomeGranted, Session: e.Session, Waiter: e.Waiter, Token: e.Token}
		case e.Kind == core.EffectWaitEnded:
			r = core.Result{Outcome: core.OutcomeRefused, Session: e.Session, Waiter: e.Waiter, Reason: e.Reason}
		default:
			continue
		}
		delete(f.pending, e.Waiter)
		ch <- r
	}
	return results
}

// DoBy is Do under ctx with deadline, as the runtime's DoBy behaves.
func (f *fakeBackend) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	return f.Do(ctx, cmd)
}

func (f *fakeBackend) Do(ctx context.Context, cmd core.Command) (core.Result, error) {
	f.mu.Lock()
	f.dos++
	if f.down != nil {
		f.mu.Unlock()
		return core.Result{}, f.down
	}
	r := f.applyLocked([]core.Command{cmd})[0]
	if r.Err != nil || r.Outcome != core.OutcomeQueued {
		f.mu.Unlock()
		return r, nil
	}
	ch := make(chan core.Result, 1)
	f.pending[r.Waiter] = ch
	closing := f.closing
	f.mu.Unlock()
	withdraw := runtime.NotifyQueued(ctx, r.Waiter)
	withdrawn := false
	for {
		select {
		case final := <-ch:
			if withdrawn && final.Outcome == core.OutcomeRefused && final.Reason == core.ReasonCancelled {
				return final, runtime.ErrWithdrawn
			}
			return final, nil
		case <-withdraw:
			// As the runtime: the cancel goes through the "log", and the
			// wait's end (or a grant before it) answers.
			withdraw, withdrawn = nil, true
			f.mu.Lock()
			f.applyLocked([]core.Command{{Op: core.OpCancel, Session: r.Session, Waiter: r.Waiter}})
			f.mu.Unlock()
		case <-ctx.Done():
			f.mu.Lock()
			delete(f.pending, r.Waiter)
			f.applyLocked([]core.Command{{Op: core.OpCancel, Session: r.Session, Waiter: r.Waiter}})
			f.mu.Unlock()
			return core.Result{}, ctx.Err()
		case <-closing:
			f.mu.Lock()
			delete(f.pending, r.Waiter)
			if cmd.ClientID != "" {
				f.mu.Unlock()
				return core.Result{}, runtime.ErrWaitKept
			}
			f.applyLocked([]core.Command{{Op: core.OpCancel, Session: r.Session, Waiter: r.Waiter}})
			f.mu.Unlock()
			return core.Result{}, runtime.ErrShuttingDown
		}
	}
}

func (f *fakeBackend) Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil && !stale {
		return 0, f.down
	}
	return f.index, fn(f.m)
}

func (f *fakeBackend) ReadAll(ctx context.Context, stale bool, fn func(shard uint64, m *core.Machine) error) ([]uint64, error) {
	idx, err := f.Read(ctx, "", stale, func(m *core.Machine) error { return fn(0, m) })
	if err != nil {
		return nil, err
	}
	// One machine stands for every shard: fn sees it once, and every shard
	// answers its index.
	out := make([]uint64, f.Shards())
	for i := range out {
		out[i] = idx
	}
	return out, nil
}

func (f *fakeBackend) Shards() int { return max(f.shards, 1) }

func (f *fakeBackend) ShardOf(name string) uint64 { return runtime.ShardOf(name, f.Shards()) }

func (f *fakeBackend) WatchShard(ctx context.Context, shard uint64, prefix string, fromIndex uint64, _ ...runtime.WatchOption) (<-chan runtime.Event, error) {
	return f.Watch(ctx, prefix, fromIndex)
}

func (f *fakeBackend) WatchShards(ctx context.Context, prefix string, fromIndex []uint64, _ ...runtime.WatchOption) (<-chan runtime.Event, error) {
	f.mu.Lock()
	f.watchStarts = append(f.watchStarts, slices.Clone(fromIndex))
	feed := f.watchFeed
	f.watchFeed = nil
	f.mu.Unlock()
	if feed != nil {
		return feed, nil
	}
	return f.Watch(ctx, prefix, 0)
}

func (f *fakeBackend) Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan runtime.Event, error) {
	ch := make(chan runtime.Event, 1024)
	f.mu.Lock()
	f.watchers[ch] = prefix
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		delete(f.watchers, ch)
		close(ch)
		f.mu.Unlock()
	}()
	return ch, nil
}

func (f *fakeBackend) Status(ctx context.Context) (runtime.ClusterStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return runtime.ClusterStatus{NodeID: "node-1", Shards: []runtime.ShardStatus{{ShardID: 1, LeaderID: "node-1", Role: "leader", Term: 2,
		AppliedIndex: f.index}},
		Members: []runtime.Member{{NodeID: "node-1", RaftAddress: "127.0.0.1:7001"}}}, nil
}

func (f *fakeBackend) Health() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.unhealthy
}

func (f *fakeBackend) Degraded() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.degraded
}

func (f *fakeBackend) AddNode(ctx context.Context, nodeID, raftAddress string) error { return nil }
func (f *fakeBackend) RemoveNode(ctx context.Context, nodeID string) error           { return nil }
func (f *fakeBackend) TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error {
	return nil
}

func (f *fakeBackend) SessionEnded(id core.SessionID) (<-chan core.Reason, func()) {
	ch := make(chan core.Reason, 1)
	f.mu.Lock()
	if f.ends == nil {
		f.ends = map[core.SessionID][]chan core.Reason{}
	}
	f.ends[id] = append(f.ends[id], ch)
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.ends[id] = slices.DeleteFunc(f.ends[id], func(c chan core.Reason) bool { return c == ch })
	}
}

func (f *fakeBackend) GrantsEnded(id core.SessionID) (<-chan runtime.GrantEnd, func()) {
	ch := make(chan runtime.GrantEnd, 16)
	f.mu.Lock()
	if f.grants == nil {
		f.grants = map[core.SessionID][]chan runtime.GrantEnd{}
	}
	f.grants[id] = append(f.grants[id], ch)
	f.mu.Unlock()
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.grants[id] = slices.DeleteFunc(f.grants[id], func(c chan runtime.GrantEnd) bool { return c == ch })
		if len(f.grants[id]) == 0 {
			delete(f.grants, id)
		}
	}
}
