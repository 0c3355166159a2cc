package sim

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
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

type opKind uint8

const (
	opAcquire opKind = iota + 1
	opRelease
	opProclaim
	opStatus
	opEnd // the machine ended a grant
)

type outKind uint8

const (
	outGranted outKind = iota + 1
	outRefused         // try-once and not free
	outEnded           // a wait ended without a grant
	outOK
	outErr
	outHolders
)

type opInput struct {
	op      opKind
	key     objKey
	session core.SessionID
	token   core.FencingToken
	permits int64
	limit   int64
	mode    core.Mode
	value   string
	try     bool
	reason  core.Reason // opEnd
}

type opOutput struct {
	kind    outKind
	token   core.FencingToken
	holders []hview
	value   string
}

type hview struct {
	session core.SessionID
	token   core.FencingToken
	permits int64
	mode    core.Mode
}

type histOp struct {
	client   int
	in       opInput
	out      opOutput
	call     time.Duration
	ret      time.Duration
	done     bool
	read     bool
	clientID string
	seq      uint64
}

func newHistory() *history { return &history{verdict: "not checked"} }

func (h *history) count() int { return len(h.ops) }

func modeled(k core.Kind) bool {
	return k == core.KindMutex || k == core.KindSemaphore || k == core.KindRWLock || k == core.KindElection
}

// begin records a command a client sends, when a model covers it.
func (h *history) begin(c *client, st step, cmd core.Command) int {
	in := opInput{key: st.key, session: cmd.Session, token: cmd.Token, permits: cmd.Permits, limit: cmd.Limit,
		mode: cmd.Mode, value: string(cmd.Value), try: cmd.WaitMs == 0}
	if in.key.kind == core.KindSemaphore && in.permits == 0 {
		in.permits = 1
	}
	switch cmd.Op {
	case core.OpAcquire, core.OpCampaign:
		in.op = opAcquire
	case core.OpRelease, core.OpResign:
		in.op = opRelease
	case core.OpProclaim:
		in.op = opProclaim
	default:
		return -1
	}
	if !modeled(in.key.kind) {
		return -1
	}
	h.ops = append(h.ops, histOp{client: c.idx, in: in, call: c.w.now, clientID: cmd.ClientID, seq: cmd.Seq})
	return len(h.ops) - 1
}

func (h *history) beginRead(c *client, st step) int {
	if !modeled(st.key.kind) {
		return -1
	}
	h.ops = append(h.ops, histOp{client: c.idx, in: opInput{op: opStatus, key: st.key}, call: c.w.now, read: true})
	return len(h.ops) - 1
}

func outputOf(in opInput, r core.Result) opOutput {
	if r.Err != nil {
		return opOutput{kind: outErr}
	}
	switch in.op {
	case opAcquire:
		switch {
		case r.Outcome == core.OutcomeGranted:
			return opOutput{kind: outGranted, token: r.Token}
		case r.Outcome == core.OutcomeRefused && r.Reason == core.ReasonNone:
			return opOutput{kind: outRefused}
		default:
			return opOutput{kind: outEnded}
		}
	}
	return opOutput{kind: outOK}
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
		op.out = opOutput{kind: outErr}
		return
	}
	out := opOutput{kind: outHolders}
	for _, x := range r.status.Holders {
		out.holders = append(out.holders, hview{session: x.Session, token: x.Token, permits: x.Permits, mode: x.Mode})
	}
	sort.Slice(out.holders, func(i, j int) bool { return out.holders[i].token < out.holders[j].token })
	if op.in.key.kind == core.KindElection && len(r.status.Holders) > 0 {
		out.value = string(r.status.Holders[0].Value)
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
			shard := shards.Of(op.in.key.name, len(w.chk.logs))
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
				Input:  opInput{op: opEnd, key: s.key, session: s.session, token: s.token, reason: s.reason},
				Output: opOutput{kind: outOK}, Call: int64(from), Return: int64(to)})
		}
	}
	res, info := porcupine.CheckOperationsVerbose(lockModel, ops, 60*time.Second)
	switch res {
	case porcupine.Ok:
		h.verdict = "ok"
	case porcupine.Unknown:
		h.verdict = "unknown (porcupine timed out)"
	case porcupine.Illegal:
		h.verdict = "illegal"
		w.chk.fail(Safety, "linearizability", "the history of %s is not linearizable (%d operations checked)",
			illegalNames(ops), len(ops))
	}
	if w.cfg.Visualize {
		var buf bytes.Buffer
		if err := porcupine.Visualize(lockModel, info, &buf); err == nil {
			h.html = buf.Bytes()
		}
	}
}

// illegalNames lists the names whose partition fails, for the message.
func illegalNames(ops []porcupine.Operation) string {
	var bad []string
	for _, part := range partitionOps(ops) {
		if !porcupine.CheckOperations(lockModel, part) {
			k := part[0].Input.(opInput).key
			bad = append(bad, fmt.Sprintf("%s %q", k.kind, k.name))
		}
	}
	return strings.Join(bad, ", ")
}

// partitionOps splits a history by object, in a fixed order.
func partitionOps(ops []porcupine.Operation) [][]porcupine.Operation {
	by := map[objKey][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(opInput).key
		by[k] = append(by[k], op)
	}
	keys := make([]objKey, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].kind != keys[j].kind {
			return keys[i].kind < keys[j].kind
		}
		return keys[i].name < keys[j].name
	})
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, by[k])
	}
	return out
}

// lockState is one object as the model sees it: its holders in token order,
// an election's value, and the highest token ever granted on it (a grant
// must exceed it: tokens strictly increase per name).
type lockState struct {
	holders  []hview
	value    string
	maxToken core.FencingToken
}

func (s lockState) find(session core.SessionID) int {
	for i, h := range s.holders {
		if h.session == session {
			return i
		}
	}
	return -1
}

func (s lockState) findToken(t core.FencingToken) int {
	for i, h := range s.holders {
		if h.token == t {
			return i
		}
	}
	return -1
}

func (s lockState) used() int64 {
	n := int64(0)
	for _, h := range s.holders {
		n += h.permits
	}
	return n
}

func (s lockState) writer() bool {
	for _, h := range s.holders {
		if h.mode == core.ModeWrite {
			return true
		}
	}
	return false
}

func (s lockState) canGrant(in opInput) bool {
	switch in.key.kind {
	case core.KindSemaphore:
		return s.used()+in.permits <= in.limit
	case core.KindRWLock:
		if in.mode == core.ModeWrite {
			return len(s.holders) == 0
		}
		return !s.writer()
	}
	return len(s.holders) == 0
}

// refusable says whether a try-once request may be refused: someone else
// holds what it needs (a queue is only ever non-empty behind holders).
func (s lockState) refusable(in opInput) bool {
	if in.key.kind == core.KindSemaphore {
		return s.used()+in.permits > in.limit
	}
	return len(s.holders) > 0
}

func (s lockState) without(i int) lockState {
	n := s
	n.holders = slices.Delete(slices.Clone(s.holders), i, i+1)
	if len(n.holders) == 0 {
		n.value = ""
	}
	return n
}

func stepLock(state, input, output any) (bool, any) {
	s := state.(lockState)
	in := input.(opInput)
	out := output.(opOutput)
	switch in.op {
	case opAcquire:
		i := s.find(in.session)
		switch out.kind {
		case outGranted:
			if i >= 0 {
				return s.holders[i].token == out.token, s
			}
			if out.token <= s.maxToken || !s.canGrant(in) {
				return false, s
			}
			n := s
			n.holders = append(slices.Clone(s.holders), hview{session: in.session, token: out.token, permits: in.permits, mode: in.mode})
			n.maxToken = out.token
			if in.key.kind == core.KindElection {
				n.value = in.value
			}
			return true, n
		case outRefused:
			return i < 0 && s.refusable(in), s
		default:
			return true, s
		}
	case opRelease:
		i := s.findToken(in.token)
		held := i >= 0 && s.holders[i].session == in.session
		if out.kind == outOK {
			if !held {
				return false, s
			}
			return true, s.without(i)
		}
		return !held, s
	case opProclaim:
		leader := len(s.holders) > 0 && s.holders[0].session == in.session && s.holders[0].token == in.token
		if out.kind == outOK {
			if !leader {
				return false, s
			}
			n := s
			n.value = in.value
			return true, n
		}
		return !leader, s
	case opStatus:
		if out.kind == outErr {
			return true, s
		}
		if len(out.holders) != len(s.holders) {
			return false, s
		}
		for i := range out.holders {
			if out.holders[i].session != s.holders[i].session || out.holders[i].token != s.holders[i].token {
				return false, s
			}
		}
		return in.key.kind != core.KindElection || out.value == s.value, s
	case opEnd:
		i := s.findToken(in.token)
		if i < 0 {
			return false, s
		}
		return true, s.without(i)
	}
	return false, s
}

func equalLock(a, b any) bool {
	x, y := a.(lockState), b.(lockState)
	return x.maxToken == y.maxToken && x.value == y.value && slices.Equal(x.holders, y.holders)
}

var lockModel = porcupine.Model{
	Partition: partitionOps,
	Init:      func() any { return lockState{} },
	Step:      stepLock,
	Equal:     equalLock,
	DescribeOperation: func(input, output any) string {
		in, out := input.(opInput), output.(opOutput)
		return describeOp(in) + " → " + describeOut(out)
	},
	DescribeState: func(state any) string {
		s := state.(lockState)
		var parts []string
		for _, h := range s.holders {
			parts = append(parts, fmt.Sprintf("s%d:t%d", h.session, h.token))
		}
		d := "{" + strings.Join(parts, " ") + "}"
		if s.value != "" {
			d += " value=" + s.value
		}
		return d
	},
}

func describeOp(in opInput) string {
	switch in.op {
	case opAcquire:
		d := fmt.Sprintf("acquire(%s %s, s%d", in.key.kind, in.key.name, in.session)
		if in.mode != 0 {
			d += " " + in.mode.String()
		}
		if in.try {
			d += " try"
		}
		return d + ")"
	case opRelease:
		return fmt.Sprintf("release(s%d, t%d)", in.session, in.token)
	case opProclaim:
		return fmt.Sprintf("proclaim(s%d, t%d, %s)", in.session, in.token, in.value)
	case opStatus:
		return fmt.Sprintf("status(%s %s)", in.key.kind, in.key.name)
	case opEnd:
		return fmt.Sprintf("machine ends t%d of s%d (%s)", in.token, in.session, in.reason)
	}
	return "?"
}

func describeOut(out opOutput) string {
	switch out.kind {
	case outGranted:
		return fmt.Sprintf("granted t%d", out.token)
	case outRefused:
		return "refused"
	case outEnded:
		return "wait ended"
	case outOK:
		return "ok"
	case outErr:
		return "error"
	case outHolders:
		var parts []string
		for _, h := range out.holders {
			parts = append(parts, fmt.Sprintf("s%d:t%d", h.session, h.token))
		}
		d := "[" + strings.Join(parts, " ") + "]"
		if out.value != "" {
			d += " value=" + out.value
		}
		return d
	}
	return "?"
}
