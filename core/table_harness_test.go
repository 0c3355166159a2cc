package core

// The harness of the table tests (*_table_test.go). It drives one Machine the
// way the replica driver would: entries with increasing indexes, stamped with
// log time, and it checks the machine's invariants after every entry.
//
// One naming scheme for both harnesses of this package: a harness is
// <prefix>Harness, made by new<Prefix>Harness, and its free helpers carry the
// prefix: tbl here (and c for the commands it builds), prop for the
// property tests (property_harness_test.go), ref for their model
// (model_test.go). Sharing one package, they must not collide.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// tblStart is the log time of a test machine's first entry.
const tblStart LogTime = 1_000

// tblHarness is a machine under test.
type tblHarness struct {
	t   testing.TB
	m   *Machine
	idx uint64 // the index of the last entry applied
}

// newTblHarness returns a machine with default limits, changed by tweak, whose
// clock was set to tblStart by a first tick.
func newTblHarness(t testing.TB, tweak ...func(*Limits)) *tblHarness {
	t.Helper()
	l := DefaultLimits()
	for _, f := range tweak {
		f(&l)
	}
	m, err := New(l)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &tblHarness{t: t, m: m}
	h.apply(tblStart)
	return h
}

// now is the machine's log time.
func (h *tblHarness) now() LogTime { return h.m.Now() }

// apply applies one entry stamped at, with the next index, checks the
// invariants and returns a copy of the output.
func (h *tblHarness) apply(at LogTime, cmds ...Command) Output {
	h.t.Helper()
	h.idx++
	out := tblCopy(h.m.Apply(Entry{Index: h.idx, Proposal: Proposal{Time: at, Commands: cmds}}))
	if err := h.m.CheckInvariants(); err != nil {
		h.t.Fatalf("after entry %d at %d: %v", h.idx, at, err)
	}
	if len(out.Results) != len(cmds) {
		h.t.Fatalf("entry %d: %d results for %d commands", h.idx, len(out.Results), len(cmds))
	}
	return out
}

// run applies cmds as one entry at the current time (the clock does not move).
func (h *tblHarness) run(cmds ...Command) Output {
	h.t.Helper()
	return h.apply(h.now(), cmds...)
}

// do applies one command at the current time.
func (h *tblHarness) do(c Command) Result {
	h.t.Helper()
	return h.run(c).Results[0]
}

// ok applies one command and fails the test if it errs.
func (h *tblHarness) ok(c Command) Result {
	h.t.Helper()
	r := h.do(c)
	if r.Err != nil {
		h.t.Fatalf("%v: unexpected error: %v", c.Op, r.Err)
	}
	return r
}

// advance moves log time forward by ms in ticks no longer than the clock
// step and returns the effects of all of them.
func (h *tblHarness) advance(ms int64) []Effect {
	h.t.Helper()
	target := h.now() + LogTime(ms)
	var effs []Effect
	for h.now() < target {
		next := h.now() + LogTime(h.m.limits.MaxClockStepMs)
		if next > target {
			next = target
		}
		effs = append(effs, h.apply(next).Effects...)
	}
	return effs
}

// session creates a session with the TTL.
func (h *tblHarness) session(ttl int64) SessionID {
	h.t.Helper()
	return h.ok(cCreate(ttl)).Session
}

// granted applies an acquire or campaign and expects a grant.
func (h *tblHarness) granted(c Command) FencingToken {
	h.t.Helper()
	r := h.ok(c)
	if r.Outcome != OutcomeGranted || r.Token == 0 {
		h.t.Fatalf("%v %q: want granted with a token, got %+v", c.Op, c.Name, r)
	}
	return r.Token
}

// queued applies an acquire, campaign or barrier wait and expects it to queue.
func (h *tblHarness) queued(c Command) WaiterID {
	h.t.Helper()
	r := h.ok(c)
	if r.Outcome != OutcomeQueued || r.Waiter == 0 {
		h.t.Fatalf("%v %q: want queued with a waiter, got %+v", c.Op, c.Name, r)
	}
	return r.Waiter
}

// twin returns an independent copy of the machine, through a snapshot.
func (h *tblHarness) twin() *tblHarness {
	h.t.Helper()
	m, err := Restore(h.m.Snapshot())
	if err != nil {
		h.t.Fatalf("Restore of a live machine's snapshot: %v", err)
	}
	return &tblHarness{t: h.t, m: m, idx: h.idx}
}

// fails applies c at the current time and expects it to fail with code and a
// message containing phrase (what to fix). It checks that the command changed
// nothing: the state equals that of a twin that applied an empty entry at the
// same index and time, and so do the effects (there are none from a command
// that failed; timers may fire in either).
func (h *tblHarness) fails(c Command, code Code, phrase string) *Error {
	h.t.Helper()
	out := h.failsEntry(h.now(), []Command{c})
	return tblWantErr(h.t, out.Results[0], code, phrase)
}

// failsEntry applies cmds as one entry at `at` and checks that, taken
// together, they changed nothing (see fails). The caller checks the results.
func (h *tblHarness) failsEntry(at LogTime, cmds []Command) Output {
	h.t.Helper()
	twin := h.twin()
	out := h.apply(at, cmds...)
	tick := twin.apply(at)
	if h.m.Hash() != twin.m.Hash() {
		h.t.Fatalf("an entry whose commands all failed changed the state: %+v", out.Results)
	}
	if a, b := tblEffects(out.Effects), tblEffects(tick.Effects); a != b {
		h.t.Fatalf("an entry whose commands all failed had effects of its own:\n%s\nan empty entry had:\n%s", a, b)
	}
	for i, r := range out.Results {
		if r.Err == nil {
			h.t.Fatalf("command %d (%v) did not fail: %+v", i, cmds[i].Op, r)
		}
	}
	return out
}

// tblWantErr checks that r failed with code and that its message contains
// phrase.
func tblWantErr(t testing.TB, r Result, code Code, phrase string) *Error {
	t.Helper()
	if r.Err == nil {
		t.Fatalf("want %v error mentioning %q, got success %+v", code, phrase, r)
	}
	if r.Err.Code != code {
		t.Fatalf("want code %v, got %v", code, r.Err)
	}
	if !strings.Contains(r.Err.Msg, phrase) {
		t.Fatalf("error %q does not say %q", r.Err.Msg, phrase)
	}
	if r.Outcome != 0 || r.Token != 0 || r.Waiter != 0 || r.Session != 0 || r.Duplicate {
		t.Fatalf("a failed result carries an answer: %+v", r)
	}
	return r.Err
}

// status reads an object's status and fails the test on an error.
func (h *tblHarness) status(kind Kind, name string) Status {
	h.t.Helper()
	st, err := h.m.Status(kind, name)
	if err != nil {
		h.t.Fatalf("Status(%v, %q): %v", kind, name, err)
	}
	return st
}

// fence reads CheckFence and fails the test on an error.
func (h *tblHarness) fence(kind Kind, name string, tok FencingToken) bool {
	h.t.Helper()
	ok, err := h.m.CheckFence(kind, name, tok)
	if err != nil {
		h.t.Fatalf("CheckFence(%v, %q, %d): %v", kind, name, tok, err)
	}
	return ok
}

// live says whether a session exists.
func (h *tblHarness) live(s SessionID) bool {
	_, err := h.m.SessionInfo(s)
	return err == nil
}

// holders lists the sessions holding an object, in grant order.
func (h *tblHarness) holders(kind Kind, name string) []SessionID {
	h.t.Helper()
	var ids []SessionID
	for _, x := range h.status(kind, name).Holders {
		ids = append(ids, x.Session)
	}
	return ids
}

// waiting lists the waiters queued on an object, in order.
func (h *tblHarness) waiting(kind Kind, name string) []WaiterID {
	h.t.Helper()
	var ids []WaiterID
	for _, x := range h.status(kind, name).Waiters {
		ids = append(ids, x.ID)
	}
	return ids
}

// tblCopy deep-copies an output, which the machine reuses.
func tblCopy(o *Output) Output {
	c := Output{Index: o.Index, Time: o.Time, NextDeadline: o.NextDeadline}
	c.Results = append([]Result(nil), o.Results...)
	for _, e := range o.Effects {
		e.Value = bytes.Clone(e.Value)
		c.Effects = append(c.Effects, e)
	}
	return c
}

// tblEffects renders effects one a line, for comparisons that print well.
func tblEffects(effs []Effect) string {
	var b strings.Builder
	for _, e := range effs {
		fmt.Fprintf(&b, "%v reason=%v %v/%q session=%d waiter=%d token=%d gen=%d value=%q\n",
			e.Kind, e.Reason, e.Object, e.Name, e.Session, e.Waiter, e.Token, e.Generation, e.Value)
	}
	return b.String()
}

// tblFind returns the effects of one kind.
func tblFind(effs []Effect, kind EffectKind) []Effect {
	var out []Effect
	for _, e := range effs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// tblOne returns the only effect of a kind, failing the test otherwise.
func tblOne(t testing.TB, effs []Effect, kind EffectKind) Effect {
	t.Helper()
	found := tblFind(effs, kind)
	if len(found) != 1 {
		t.Fatalf("want one %v effect, got %d in:\n%s", kind, len(found), tblEffects(effs))
	}
	return found[0]
}

// Command builders, one per request shape.

func cCreate(ttl int64) Command { return Command{Op: OpSessionCreate, TTLMs: ttl} }
func cKeep(s SessionID) Command { return Command{Op: OpSessionKeepAlive, Session: s} }
func cClose(s SessionID) Command {
	return Command{Op: OpSessionClose, Session: s}
}
func cLeader() Command { return Command{Op: OpLeaderChange} }

func cMutex(name string, s SessionID, wait int64) Command {
	return Command{Op: OpAcquire, Kind: KindMutex, Name: name, Session: s, WaitMs: wait}
}

func cSem(name string, s SessionID, limit, permits, wait int64) Command {
	return Command{Op: OpAcquire, Kind: KindSemaphore, Name: name, Session: s, Limit: limit, Permits: permits, WaitMs: wait}
}

func cRW(name string, s SessionID, mode Mode, wait int64) Command {
	return Command{Op: OpAcquire, Kind: KindRWLock, Name: name, Session: s, Mode: mode, WaitMs: wait}
}

func cRelease(kind Kind, name string, s SessionID, tok FencingToken) Command {
	return Command{Op: OpRelease, Kind: kind, Name: name, Session: s, Token: tok}
}

func cCancel(s SessionID, w WaiterID) Command { return Command{Op: OpCancel, Session: s, Waiter: w} }

func cArrive(name string, s SessionID, parties int64, participant string, wait int64) Command {
	return Command{Op: OpBarrierWait, Name: name, Session: s, Parties: parties, Participant: participant, WaitMs: wait}
}

func cSet(name string, s SessionID) Command { return Command{Op: OpBarrierSet, Name: name, Session: s} }
func cRemove(name string) Command           { return Command{Op: OpBarrierRemove, Name: name} }

func cCampaign(name string, s SessionID, value string, wait int64) Command {
	return Command{Op: OpCampaign, Name: name, Session: s, Value: []byte(value), WaitMs: wait}
}

func cProclaim(name string, s SessionID, tok FencingToken, value string) Command {
	return Command{Op: OpProclaim, Name: name, Session: s, Token: tok, Value: []byte(value)}
}

func cResign(name string, s SessionID, tok FencingToken) Command {
	return Command{Op: OpResign, Name: name, Session: s, Token: tok}
}

// with returns c carrying a dedupe key.
func with(c Command, client string, seq uint64) Command {
	c.ClientID, c.Seq = client, seq
	return c
}

// TestTableHarness checks the harness itself: an unchanged-state check that
// could never fail would make every error-path test vacuous.
func TestTableHarness(t *testing.T) {
	h := newTblHarness(t)
	if h.now() != tblStart || h.idx != 1 {
		t.Fatalf("first tick: now %d index %d", h.now(), h.idx)
	}
	s := h.session(5_000)
	twin := h.twin()
	h.ok(cMutex("a", s, 0))
	twin.apply(h.now())
	if h.m.Hash() == twin.m.Hash() {
		t.Fatal("a grant did not change the hash: the unchanged-state check would prove nothing")
	}
	if effs := h.advance(5_000); len(tblFind(effs, EffectSessionExpired)) != 1 || h.now() != tblStart+5_000 {
		t.Fatalf("advance: now %d, effects\n%s", h.now(), tblEffects(effs))
	}
}

// heardless is m's state without what records who heard of its grants
// (hold.shared, waiter.joined): a snapshot as version 5 wrote it. A
// request answered a grant or wait it had already changes only that.
func heardless(m *Machine) [32]byte {
	return sha256.Sum256(m.appendSnapshotAs(nil, snapshotVersionShared-1))
}
