package sim

import (
	"bytes"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	"github.com/lockstepd/lockstep/model"
)

// history records what clients asked of mutexes, semaphores, RW locks and
// elections and what they were told, for porcupine to check against a
// sequential model of each name. Operations a client never heard back from
// (it died, or the run ended) are resolved from the committed log: if the
// command took effect, it did so by the time its entry was first applied.
// Grants the machine ended on its own (session expiry or close, maximum
// hold) enter the history as operations of a "system" client, placed
// between the first append of their entry and its first application.
type history struct {
	ops     []histOp
	verdict string
	html    []byte
}

type histOp struct {
	client   int
	in       model.Input
	out      model.Output
	call     time.Duration
	ret      time.Duration
	done     bool
	read     bool
	clientID string
	seq      uint64
}

// model is the key as the porcupine model names objects.
func (k objKey) model() model.Key { return model.Key{Kind: k.kind, Name: k.name} }

func newHistory() *history { return &history{verdict: "not checked"} }

func (h *history) count() int { return len(h.ops) }

func modeled(k core.Kind) bool {
	return k == core.KindMutex || k == core.KindSemaphore || k == core.KindRWLock || k == core.KindElection
}

// begin records a command a client sends, when a model covers it.
func (h *history) begin(c *client, st step, cmd core.Command) int {
	in := model.Input{Key: st.key.model(), Session: cmd.Session, Token: cmd.Token, Permits: cmd.Permits, Limit: cmd.Limit,
		Mode: cmd.Mode, Value: string(cmd.Value), Try: cmd.WaitMs == 0}
	if in.Key.Kind == core.KindSemaphore && in.Permits == 0 {
		in.Permits = 1
	}
	switch cmd.Op {
	case core.OpAcquire, core.OpCampaign:
		in.Op = model.Acquire
	case core.OpRelease, core.OpResign:
		in.Op = model.Release
	case core.OpProclaim:
		in.Op = model.Proclaim
	default:
		return -1
	}
	if !modeled(in.Key.Kind) {
		return -1
	}
	h.ops = append(h.ops, histOp{client: c.idx, in: in, call: c.w.now, clientID: cmd.ClientID, seq: cmd.Seq})
	return len(h.ops) - 1
}

func (h *history) beginRead(c *client, st step) int {
	if !modeled(st.key.kind) {
		return -1
	}
	h.ops = append(h.ops, histOp{client: c.idx, in: model.Input{Op: model.Status, Key: st.key.model()}, call: c.w.now, read: true})
	return len(h.ops) - 1
}

func outputOf(in model.Input, r core.Result) model.Output {
	if r.Err != nil {
		return model.Output{Kind: model.Failed}
	}
	switch in.Op {
	case model.Acquire:
		switch {
		case r.Outcome == core.OutcomeGranted:
			return model.Output{Kind: model.Granted, Token: r.Token}
		case r.Outcome == core.OutcomeRefused && r.Reason == core.ReasonNone:
			return model.Output{Kind: model.Refused}
		default:
			return model.Output{Kind: model.Ended}
		}
	}
	return model.Output{Kind: model.OK}
}

func (h *history) end(i int, r core.Result, now time.Duration) {
	if i < 0 {
		return
	}
	op := &h.ops[i]
	op.out = outputOf(op.in, r)
	op.ret = now
	op.done = true
}

func (h *history) endRead(i int, r readResult, now time.Duration) {
	if i < 0 {
		return
	}
	op := &h.ops[i]
	op.done = true
	op.ret = now
	if r.err != nil {
		op.out = model.Output{Kind: model.Failed}
		return
	}
	out := model.Output{Kind: model.Holders}
	for _, x := range r.status.Holders {
		out.Holders = append(out.Holders, model.Holder{Session: x.Session, Token: x.Token, Permits: x.Permits, Mode: x.Mode})
	}
	sort.Slice(out.Holders, func(i, j int) bool { return out.Holders[i].Token < out.Holders[j].Token })
	if op.in.Key.Kind == core.KindElection && len(r.status.Holders) > 0 {
		out.Value = string(r.status.Holders[0].Value)
	}
	op.out = out
}

// check resolves open operations, adds the machine's own, and runs
// porcupine on every name.
func (h *history) check(w *world) {
	if w.cfg.SkipPorcupine {
		h.verdict = "skipped"
		return
	}
	var ops []porcupine.Operation
	system := len(w.clients)
	for i := range h.ops {
		op := h.ops[i]
		if !op.done {
			if op.read {
				continue
			}
			// A name's operations are in its shard's log alone.
			shard := shards.Of(op.in.Key.Name, len(w.chk.logs))
			led := w.chk.logs[shard].led
			kr, ok := led.results[dedupeKey{op.clientID, op.seq}]
			if !ok {
				continue // never took effect
			}
			r, idx := kr.result, kr.index
			if r.Err == nil && r.Outcome == core.OutcomeQueued {
				we, ok := led.waitEnds[r.Waiter]
				if !ok || !we.granted {
					continue // queued and never granted: changed nothing
				}
				r, idx = core.Result{Outcome: core.OutcomeGranted, Token: we.token}, we.index
			}
			at, ok := w.chk.firstApplied(shard, idx)
			if !ok {
				continue
			}
			op.out, op.ret = outputOf(op.in, r), at
		}
		if op.in.Op == model.Acquire {
			// The rules in force where the log applied it (a campaign
			// again sets the value from rules 4 and keeps it under 3).
			led := w.chk.logs[shards.Of(op.in.Key.Name, len(w.chk.logs))].led
			if kr, ok := led.results[dedupeKey{op.clientID, op.seq}]; ok {
				op.in.Rules = led.rulesAt(kr.index)
			}
		}
		ops = append(ops, porcupine.Operation{ClientId: op.client, Input: op.in, Output: op.out,
			Call: int64(op.call), Return: int64(op.ret)})
	}
	for shard, l := range w.chk.logs {
		for _, s := range l.led.sysOps {
			if !modeled(s.key.kind) {
				continue
			}
			from := l.appendedAt[s.index]
			to, _ := w.chk.firstApplied(uint64(shard), s.index)
			ops = append(ops, porcupine.Operation{ClientId: system,
				Input:  model.Input{Op: model.End, Key: s.key.model(), Session: s.session, Token: s.token, Reason: s.reason, Delayed: s.delayed},
				Output: model.Output{Kind: model.OK}, Call: int64(from), Return: int64(to)})
		}
	}
	res, info := porcupine.CheckOperationsVerbose(model.Lock, ops, 60*time.Second)
	switch res {
	case porcupine.Ok:
		h.verdict = "ok"
	case porcupine.Unknown:
		h.verdict = "unknown (porcupine timed out)"
	case porcupine.Illegal:
		h.verdict = "illegal"
		w.chk.fail(Safety, "linearizability", "the history of %s is not linearizable (%d operations checked)",
			model.IllegalNames(ops), len(ops))
	}
	if w.cfg.Visualize {
		var buf bytes.Buffer
		if err := porcupine.Visualize(model.Lock, info, &buf); err == nil {
			h.html = buf.Bytes()
		}
	}
}
