package chaos

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// outcome is what a worker was told, before the log completes it.
type outcome uint8

const (
	answerGranted outcome = iota + 1
	answerRefused         // a try-once acquire found it held
	answerOK              // a release succeeded
	answerNotHeld         // a release the servers refused: the grant was gone
	answerUnknown         // no answer, or an error that does not say what happened
)

// op is one operation a worker called, with its wall times as offsets
// from the run's start.
type op struct {
	worker    int
	in        model.Input
	answer    outcome
	token     uint64
	call, ret time.Duration
}

// history is what the workers asked and were told, and what the log says
// happened, read through a Watch of every name of the run.
type history struct {
	start time.Time

	mu  sync.Mutex
	ops []op
	// From the watch: grants and releases by (kind, name, token), with
	// when the watch delivered them (after they were applied).
	granted  map[grantKey]logEvent
	released map[grantKey]logEvent
	events   int
	watchErr error
	// expired: each session's SESSION_EXPIRED (the first of any shard's).
	expired map[uint64]expiry
	// shut: when the watch first delivered each session's SESSION_CLOSED.
	shut map[uint64]time.Duration
	// stream: every event under chaos/ in the order delivered, per shard,
	// and where the watch stood last (each shard's next index), for the
	// watcher's check (watcher.go).
	stream map[uint64][]eventID
	end    map[uint64]uint64
	// barriers: the generations the log released, per barrier name.
	barriers map[string]map[uint64]time.Duration
	// sessions the workload opened, by id (sessions.go).
	sessions map[uint64]*sessionRec
	// watchEnd is when the watch stopped reading.
	watchEnd time.Duration
}

// expiry is when a session expired: when the watch delivered it, and the
// log time of the entry that expired it, on the wall clock's scale (the
// leader's clock stamps log time; all members run on this machine).
type expiry struct {
	delivered, log time.Duration
	shard          uint64 // the shard whose expiry was delivered first (a session lives in every shard)
}

// eventID is what two watches of the same log must agree on for an event.
type eventID struct {
	index            uint64
	typ              pb.EventType
	kind             pb.Kind
	name             string
	session, token   uint64
	generation, wait uint64
}

func idOf(e *pb.Event) eventID {
	return eventID{e.Index, e.Type, e.Kind, e.Name, e.SessionId, e.FencingToken, e.Generation, e.WaiterId}
}

// lockKinds are the kinds whose grants the porcupine model checks.
func lockKind(k pb.Kind) bool {
	return k == pb.Kind_KIND_MUTEX || k == pb.Kind_KIND_SEMAPHORE || k == pb.Kind_KIND_RWLOCK || k == pb.Kind_KIND_ELECTION
}

type grantKey struct {
	key   model.Key
	token uint64
}

type logEvent struct {
	session uint64
	reason  pb.Reason
	at      time.Duration
}

func newHistory(start time.Time) *history {
	return &history{start: start, granted: map[grantKey]logEvent{}, released: map[grantKey]logEvent{},
		expired: map[uint64]expiry{}, shut: map[uint64]time.Duration{}, stream: map[uint64][]eventID{}, end: map[uint64]uint64{},
		barriers: map[string]map[uint64]time.Duration{}, sessions: map[uint64]*sessionRec{}}
}

func (h *history) now() time.Duration { return time.Since(h.start) }

// add records a finished operation.
func (h *history) add(o op) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *history) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

func kindOf(k pb.Kind) core.Kind {
	switch k {
	case pb.Kind_KIND_MUTEX:
		return core.KindMutex
	case pb.Kind_KIND_SEMAPHORE:
		return core.KindSemaphore
	case pb.Kind_KIND_RWLOCK:
		return core.KindRWLock
	case pb.Kind_KIND_ELECTION:
		return core.KindElection
	}
	return 0
}

// runPrefix is where every name of a run lives.
const runPrefix = "chaos/"

// watch reads every event of the cluster until ctx ends: the grants and
// releases of the run's names, the sessions' expiries and closes (which
// have no name) and the barriers' releases.
func (h *history) watch(ctx context.Context, c *client.Client) {
	defer func() {
		h.mu.Lock()
		h.watchEnd = h.now()
		h.mu.Unlock()
	}()
	for resp := range c.Watch(ctx, "") {
		at := h.now()
		h.mu.Lock()
		if resp.Err != nil && ctx.Err() == nil {
			h.watchErr = resp.Err
		}
		for _, p := range resp.Positions {
			h.end[p.ShardId] = p.NextIndex
		}
		for _, e := range resp.Events {
			if e.Type == pb.EventType_EVENT_TYPE_SESSION_EXPIRED {
				x := expiry{delivered: at, log: time.UnixMilli(e.AtMs).Sub(h.start), shard: e.ShardId}
				if old, dup := h.expired[e.SessionId]; dup {
					x = expiry{delivered: min(old.delivered, x.delivered), log: min(old.log, x.log), shard: old.shard}
				}
				h.expired[e.SessionId] = x
				continue
			}
			if e.Type == pb.EventType_EVENT_TYPE_SESSION_CLOSED {
				if _, dup := h.shut[e.SessionId]; !dup {
					h.shut[e.SessionId] = at
				}
				continue
			}
			if !strings.HasPrefix(e.Name, runPrefix) {
				continue
			}
			h.stream[e.ShardId] = append(h.stream[e.ShardId], idOf(e))
			if e.Type == pb.EventType_EVENT_TYPE_BARRIER_RELEASED {
				if h.barriers[e.Name] == nil {
					h.barriers[e.Name] = map[uint64]time.Duration{}
				}
				if _, dup := h.barriers[e.Name][e.Generation]; !dup {
					h.barriers[e.Name][e.Generation] = at
				}
			}
			if !lockKind(e.Kind) {
				continue
			}
			h.events++
			k := grantKey{model.Key{Kind: kindOf(e.Kind), Name: e.Name}, e.FencingToken}
			ev := logEvent{session: e.SessionId, reason: e.Reason, at: at}
			switch e.Type {
			case pb.EventType_EVENT_TYPE_GRANTED:
				if _, dup := h.granted[k]; !dup {
					h.granted[k] = ev
				}
			case pb.EventType_EVENT_TYPE_RELEASED:
				if _, dup := h.released[k]; !dup {
					h.released[k] = ev
				}
			}
		}
		h.mu.Unlock()
	}
}

func (h *history) sawGrant(k model.Key, token uint64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.granted[grantKey{k, token}]
	return ok
}

// releasedBefore reports whether the watch had delivered the end of the
// grant (key, token) by at.
func (h *history) releasedBefore(k model.Key, token uint64, at time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.released[grantKey{k, token}]
	return ok && e.at < at
}

// waitReleased waits up to limit for the watch to deliver the end of a
// grant.
func (h *history) waitReleased(ctx context.Context, k model.Key, token uint64, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if h.releasedBefore(k, token, h.now()) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// settle waits, up to limit, until the watch has delivered the end of
// every grant it delivered: after the workers closed their sessions (and
// the sleeper's expired), that is the whole log of the run.
func (h *history) settle(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		open := 0
		for k := range h.granted {
			if _, ok := h.released[k]; !ok {
				open++
			}
		}
		h.mu.Unlock()
		if open == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// complete turns the workers' operations and the log's events into a
// porcupine history, and returns the violations the matching itself finds:
// a grant a worker was told of that the log does not have, and a grant in
// the log no worker asked for.
//
//   - an acquire answered granted must match the log's grant of that token
//     to that session;
//   - an acquire without an answer took effect if and only if the log
//     granted its name to its session after it was called and no answered
//     acquire claims that grant: it is then granted, returning when the
//     watch delivered the grant (by then it had happened);
//   - a release without an answer is dropped: if it took effect, the log's
//     release enters instead;
//   - every release in the log that no successful release explains enters
//     as an operation of the machine (session expiry, an abandoned wait's
//     grant given back, an unanswered release), between the call of the
//     acquire that got the grant and the moment the watch delivered it.
func (h *history) complete() ([]porcupine.Operation, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var bad []string
	ops := append([]op(nil), h.ops...)
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].call < ops[j].call })
	claimed := map[grantKey]bool{}
	grantCall := map[grantKey]time.Duration{}
	releasedOK := map[grantKey]bool{}
	for _, o := range ops {
		if o.in.Op != model.Acquire || o.answer != answerGranted {
			continue
		}
		k := grantKey{o.in.Key, o.token}
		e, ok := h.granted[k]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("worker %d was told %s %q was granted to session %d with token %d, which the log never granted",
				o.worker, o.in.Key.Kind, o.in.Key.Name, o.in.Session, o.token))
		case e.session != uint64(o.in.Session):
			bad = append(bad, fmt.Sprintf("worker %d was told %s %q was granted to session %d with token %d; the log granted that token to session %d",
				o.worker, o.in.Key.Kind, o.in.Key.Name, o.in.Session, o.token, e.session))
		}
		claimed[k] = true
		if c, seen := grantCall[k]; !seen || o.call < c {
			grantCall[k] = o.call
		}
	}
	// Unanswered acquires take the log's unclaimed grants of their name and
	// session, the latest call first.
	var out []porcupine.Operation
	for k, e := range h.granted {
		if claimed[k] {
			continue
		}
		best := -1
		for i, o := range ops {
			if o.in.Op == model.Acquire && o.answer == answerUnknown && o.in.Key == k.key &&
				uint64(o.in.Session) == e.session && o.call <= e.at && (best < 0 || o.call > ops[best].call) {
				best = i
			}
		}
		if best < 0 {
			bad = append(bad, fmt.Sprintf("the log granted %s %q to session %d with token %d, which no worker asked for",
				k.key.Kind, k.key.Name, e.session, k.token))
			continue
		}
		ops[best].answer, ops[best].token, ops[best].ret = answerGranted, k.token, e.at
		claimed[k] = true
		grantCall[k] = ops[best].call
	}
	for _, o := range ops {
		if o.in.Op == model.Release && o.answer == answerOK {
			releasedOK[grantKey{o.in.Key, uint64(o.in.Token)}] = true
		}
	}
	for _, o := range ops {
		var res model.Output
		switch o.answer {
		case answerGranted:
			res = model.Output{Kind: model.Granted, Token: core.FencingToken(o.token)}
		case answerRefused:
			res = model.Output{Kind: model.Refused}
		case answerOK:
			res = model.Output{Kind: model.OK}
		case answerNotHeld:
			res = model.Output{Kind: model.Failed}
		default:
			continue // never took effect, or its effect enters from the log
		}
		out = append(out, porcupine.Operation{ClientId: o.worker, Input: o.in, Output: res,
			Call: int64(o.call), Return: int64(max(o.ret, o.call))})
	}
	system := 1 << 20
	for k, e := range h.released {
		if releasedOK[k] {
			continue
		}
		call, ok := grantCall[k]
		if !ok {
			continue // a grant no worker asked for: reported above
		}
		out = append(out, porcupine.Operation{ClientId: system,
			Input:  model.Input{Op: model.End, Key: k.key, Session: core.SessionID(e.session), Token: core.FencingToken(k.token)},
			Output: model.Output{Kind: model.OK}, Call: int64(call), Return: int64(max(e.at, call))})
		system++
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i] < bad[j] })
	return out, bad
}

// checkLinearizable runs porcupine on every name; on failure it returns
// the names and porcupine's visualization.
func checkLinearizable(ops []porcupine.Operation, limit time.Duration) (verdict string, names string, html []byte) {
	res, info := porcupine.CheckOperationsVerbose(model.Lock, ops, limit)
	switch res {
	case porcupine.Ok:
		return "ok", "", nil
	case porcupine.Unknown:
		return "unknown (porcupine timed out)", "", nil
	}
	var buf bytes.Buffer
	if err := porcupine.Visualize(model.Lock, info, &buf); err == nil {
		html = buf.Bytes()
	}
	return "illegal", model.IllegalNames(ops), html
}
