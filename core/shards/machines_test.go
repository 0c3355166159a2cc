package shards

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// The fan-out over real machines: one core.Machine per shard, clients that
// create sessions, acquire names in several shards, keep alive and close,
// each through a Fanout, and a network that fails sends. A failed send may
// never arrive, may have been applied with its answer lost, or may be
// applied later (a proposal that commits after its sender gave up), so
// every rule meets unknown outcomes, retries with the same (ClientID, Seq)
// and late duplicates. After every applied entry the test checks the rule
// of issue 18 (docs/runtime.md, Shards): a session whose close answered
// done lives in no shard, so it holds and waits nowhere and can never hold
// again. It is seeded and single-threaded: a failing seed replays.

const (
	modelShards      = 4
	modelClients     = 6
	modelRounds      = 400 // client steps per seed
	modelSeeds       = 40
	modelMaxAttempts = 40 // retries of one request before the client gives up on it
	modelTTLMs       = 1500
	modelStepMs      = 10 // log time per applied entry
)

type modelWorld struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	ms     []*core.Machine
	index  []uint64
	now    core.LogTime
	late   []Send                   // sends that failed and will be applied later
	closed map[core.SessionID]int64 // sessions whose close answered done, and at which step
	steps  int64
	// counts, to prove the run met what it is meant to.
	closedDone, closeErrors, cleanups, cleanupClosed, lateApplied int
}

func newModelWorld(t *testing.T, seed uint64) *modelWorld {
	w := &modelWorld{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5a4d)), closed: map[core.SessionID]int64{}}
	for range modelShards {
		m, err := core.New(core.DefaultLimits())
		if err != nil {
			t.Fatal(err)
		}
		w.ms = append(w.ms, m)
		w.index = append(w.index, 0)
		// Each shard's first leader of this build marks its rules, as in
		// production: a cleanup's close asks for the lock-delay, which
		// rules 3 refuse.
		w.apply(uint64(len(w.ms)-1), core.Command{Op: core.OpLeaderChange, Rules: core.RulesVersion})
	}
	return w
}

// apply commits cmd in shard k and checks the rule.
func (w *modelWorld) apply(k uint64, cmd core.Command) core.Result {
	w.index[k]++
	w.now += modelStepMs
	w.steps++
	out := w.ms[k].Apply(core.Entry{Index: w.index[k], Proposal: core.Proposal{Time: w.now, Commands: []core.Command{cmd}}})
	if err := w.ms[k].CheckInvariants(); err != nil {
		w.t.Fatalf("seed %d: shard %d: %v", w.seed, k, err)
	}
	w.check()
	return out.Results[0]
}

// check: a session whose close answered done is in no shard.
func (w *modelWorld) check() {
	for id, at := range w.closed {
		for k, m := range w.ms {
			if info, err := m.SessionInfo(id); err == nil {
				w.t.Fatalf("seed %d: session %d is live in shard %d (holding %d, waiting %d) after its close answered done at step %d (now step %d)",
					w.seed, id, k, len(info.Holds), len(info.Waits), at, w.steps)
			}
		}
	}
}

// deliver sends one command to its shard through a failing network.
func (w *modelWorld) deliver(s Send) Answer {
	switch r := w.rng.IntN(100); {
	case r < 10: // lost now, committed later
		w.late = append(w.late, s)
		return Answer{Shard: s.Shard, Err: errUnavailable}
	case r < 20: // never arrives
		return Answer{Shard: s.Shard, Err: errUnavailable}
	case r < 28: // applied, the answer lost
		w.apply(s.Shard, s.Cmd)
		return Answer{Shard: s.Shard, Err: errUnavailable}
	}
	return Answer{Shard: s.Shard, Result: w.apply(s.Shard, s.Cmd)}
}

// maybeLate applies one late send now and then.
func (w *modelWorld) maybeLate() {
	if len(w.late) > 0 && w.rng.IntN(4) == 0 {
		i := w.rng.IntN(len(w.late))
		s := w.late[i]
		w.late = append(w.late[:i], w.late[i+1:]...)
		w.apply(s.Shard, s.Cmd)
		w.lateApplied++
	}
}

// do runs one command through a Fanout and performs its cleanup (best
// effort: its sends may fail too).
func (w *modelWorld) do(cmd core.Command) Outcome {
	f := Start(cmd, modelShards)
	for len(f.Sends()) > 0 {
		var answers []Answer
		for _, s := range f.Sends() {
			answers = append(answers, w.deliver(s))
		}
		if err := f.Step(answers); err != nil {
			w.t.Fatal(err)
		}
		w.maybeLate()
	}
	o := f.Outcome()
	if c := o.Cleanup; c != nil {
		w.cleanups++
		for _, k := range c.Shards {
			if a := w.deliver(Send{Shard: k, Cmd: c.Close()}); a.Err == nil && a.Result.Err == nil {
				w.cleanupClosed++
			}
		}
	}
	return o
}

// modelClient walks through create, a few acquires, keepalives and a
// close, one request per step, retrying each with its own identity.
type modelClient struct {
	id      string
	seq     uint64
	session core.SessionID
	acqLeft int
}

// retry sends cmd under one new seq until an answer that is not an error,
// or the attempts run out (the outcome then stays unknown).
func (w *modelWorld) retry(c *modelClient, cmd core.Command) (core.Result, bool) {
	c.seq++
	cmd.ClientID, cmd.Seq = c.id, c.seq
	for range modelMaxAttempts {
		if o := w.do(cmd); o.Err == nil {
			return o.Result, true
		}
		w.closeErrorsIf(cmd)
	}
	return core.Result{}, false
}

func (w *modelWorld) closeErrorsIf(cmd core.Command) {
	if cmd.Op == core.OpSessionClose {
		w.closeErrors++
	}
}

func (w *modelWorld) step(c *modelClient) {
	switch {
	case c.session == 0:
		r, ok := w.retry(c, core.Command{Op: core.OpSessionCreate, TTLMs: modelTTLMs, Owner: c.id})
		if ok && r.Err == nil {
			c.session, c.acqLeft = r.Session, 1+w.rng.IntN(6)
		}
	case c.acqLeft > 0:
		c.acqLeft--
		name := fmt.Sprintf("n%d", w.rng.IntN(12))
		w.retry(c, core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: name, Session: c.session})
	case w.rng.IntN(3) == 0:
		r, ok := w.retry(c, core.Command{Op: core.OpSessionKeepAlive, Session: c.session})
		if ok && r.Err != nil {
			c.session = 0 // lost
		}
	default:
		r, ok := w.retry(c, core.Command{Op: core.OpSessionClose, Session: c.session})
		if !ok {
			return // unknown: close again next step
		}
		if r.Err == nil {
			w.closed[c.session] = w.steps
			w.closedDone++
			w.check()
		}
		c.session = 0
	}
}

func TestFanoutOverMachines(t *testing.T) {
	var closedDone, closeErrors, cleanups, cleanupClosed, late int
	for seed := uint64(1); seed <= modelSeeds; seed++ {
		w := newModelWorld(t, seed)
		clients := make([]*modelClient, modelClients)
		for i := range clients {
			clients[i] = &modelClient{id: fmt.Sprintf("c%d", i)}
		}
		for range modelRounds {
			w.step(clients[w.rng.IntN(len(clients))])
		}
		for len(w.late) > 0 { // every late send lands in the end
			w.maybeLate()
		}
		closedDone += w.closedDone
		closeErrors += w.closeErrors
		cleanups += w.cleanups
		cleanupClosed += w.cleanupClosed
		late += w.lateApplied
	}
	t.Logf("%d seeds: %d closes answered done, %d close attempts answered an error, %d cleanups (%d copies closed by them), %d late sends applied",
		modelSeeds, closedDone, closeErrors, cleanups, cleanupClosed, late)
	// The run must have met what it checks: closes that succeeded, closes
	// that could not reach every shard, late duplicates, and sessions lost
	// in one shard (expired there first: each shard's clock moves only
	// with its own entries) and closed in the others.
	if closedDone < modelSeeds || closeErrors < modelSeeds || late < modelSeeds || cleanups == 0 || cleanupClosed == 0 {
		t.Errorf("too little exercised: %d closes done, %d close errors, %d late sends, %d cleanups (%d copies closed)",
			closedDone, closeErrors, late, cleanups, cleanupClosed)
	}
}
