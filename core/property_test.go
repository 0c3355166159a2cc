package core

// Property tests: random command sequences run against core and against the
// reference model in model_test.go. After every entry the results and the
// visible state must agree, CheckInvariants must pass, and the safety
// properties are checked on core's own answers (independently of the model):
// mutual exclusion, semaphore capacity, tokens strictly increasing per name,
// FIFO grants, no holds or waits of dead sessions, commands that fail or
// are retried change nothing, a restored machine is the same machine.
//
// Runs: go test ./core -run Property (100 runs each; -rapid.checks=N for
// more, -rapid.seed=S to replay; a failure writes a fail file under
// core/testdata/rapid/ and prints the command that replays it).

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// propLimits are small, so that every limit is reached in short runs.
func propLimits() Limits {
	l := DefaultLimits()
	l.MaxNameBytes = 8
	l.MaxObjects = 8
	l.MaxSessions = 5
	l.MaxWaitersPerObject = 3
	l.MaxWaiters = 6
	l.MaxHoldsPerSession = 4
	l.MaxOwnerBytes = 6
	l.MaxValueBytes = 6
	l.MaxParties = 4
	l.MaxSemaphoreLimit = 4
	l.MinTTLMs = 10
	l.MaxTTLMs = 10_000
	l.MaxWaitMs = 5_000
	l.MaxHoldMs = 5_000
	l.MaxLockDelayMs = 1_000
	l.MaxClockStepMs = 2_000
	l.MaxCommandsPerEntry = 5
	l.MaxClients = 3
	l.DedupeWindow = 3
	l.DedupeRetentionMs = 8_000
	return l
}

var (
	propNames   = []string{"a", "b"}
	propClients = []string{"", "", "c1", "c2", "c3", "c4"} // one more than MaxClients
	propKinds   = []Kind{KindMutex, KindSemaphore, KindRWLock, KindBarrier, KindElection}
)

// propRoomyLimits leave room for longer queues, more sessions and clients.
func propRoomyLimits() Limits {
	l := propLimits()
	l.MaxObjects = 20
	l.MaxSessions = 8
	l.MaxWaitersPerObject = 6
	l.MaxWaiters = 20
	l.MaxHoldsPerSession = 10
	l.MaxClients = 8
	l.DedupeWindow = 6
	return l
}

// TestPropertyModel runs random entries against core and the model.
func TestPropertyModel(t *testing.T) {
	propStats = map[string]int{}
	defer logPropStats(t)
	rapid.Check(t, func(rt *rapid.T) {
		l := propLimits()
		if rapid.Bool().Draw(rt, "roomy") {
			l = propRoomyLimits()
		}
		h := newPropHarness(rt, rt, l, true)
		n := 10 + uniform(rt, "entries", 141)
		for i := 0; i < n; i++ {
			h.step()
		}
	})
}

// TestPropertyDeterminism feeds the same entries to two machines: their
// hashes and outputs must agree after every entry.
func TestPropertyDeterminism(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newPropHarness(rt, rt, propLimits(), false)
		h.twin, _ = New(h.lim)
		n := 10 + uniform(rt, "entries", 141)
		for i := 0; i < n; i++ {
			h.step()
		}
	})
}

// propT is what the harness reports to: a *rapid.T while generating, a
// *testing.T when replaying a fixed scenario.
type propT interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// TestPropertyScenarios replays fixed scenarios, each once found by the
// generator, through the same checks.
func TestPropertyScenarios(t *testing.T) {
	// A set barrier whose setter's session expires while deadlines fire must
	// not release a waiter that is no longer eligible at that log time: one
	// whose session expired in the same step (here at the same instant, the
	// setter's session firing first by id), or whose wait deadline had
	// passed. Each ends with its own reason, as a lock's waiter would.
	t.Run("barrier lowered by an expiry does not release dead waiters", func(t *testing.T) {
		for _, c := range []struct {
			name    string
			waitTTL int64
			waitMs  int64
			wantWhy Reason
		}{
			{"waiter's session expires at the same instant", 100, WaitForever, ReasonSessionExpired},
			{"waiter's session expires later in the step", 150, WaitForever, ReasonSessionExpired},
			{"waiter's deadline passes later in the step", 5000, 200, ReasonTimeout},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := newPropHarness(t, nil, propLimits(), true)
				h.apply(Entry{Index: 1, Proposal: Proposal{Time: 1000, Commands: []Command{
					{Op: OpSessionCreate, TTLMs: 100}, {Op: OpSessionCreate, TTLMs: c.waitTTL}}}})
				setter, waiter := h.sessionsSeen[0], h.sessionsSeen[1]
				wait := Command{Op: OpBarrierWait, Name: "a", Session: waiter, WaitMs: c.waitMs, ClientID: "c", Seq: 1}
				h.apply(Entry{Index: 2, Proposal: Proposal{Time: 1000, Commands: []Command{
					{Op: OpBarrierSet, Name: "a", Session: setter}, wait}}})
				h.apply(Entry{Index: 3, Proposal: Proposal{Time: 1500}})
				h.apply(Entry{Index: 4, Proposal: Proposal{Time: 1500, Commands: []Command{wait}}})
				if r := h.lastOut.Results[0]; !r.Duplicate || r.Outcome != OutcomeRefused || r.Reason != c.wantWhy {
					t.Fatalf("retry of the wait answers %s; want refused, reason %s", fmtResult(r), c.wantWhy)
				}
			})
		}
	})
}

type propHarness struct {
	t       propT
	rt      *rapid.T // draws; nil when replaying a fixed scenario
	lim     Limits
	core    *Machine
	shadow  *Machine // the machine the last restore replaced: it must keep answering exactly like core
	twin    *Machine // fed the same entries, never restored (determinism)
	model   *refModel
	compare bool // compare core with the model (the model always drives generation)

	index uint64
	stamp LogTime
	seqs  map[string]uint64
	sent  []Command // commands sent with a client id, for retries

	sessionsSeen []SessionID
	tokensSeen   map[FencingToken]objectKey
	tokenList    []FencingToken
	waitersSeen  []WaiterID
	lastToken    map[objectKey]FencingToken // the newest grant ever made per object
	lastOut      Output                     // what core answered to the last entry
}

func newPropHarness(t propT, rt *rapid.T, l Limits, compare bool) *propHarness {
	m, err := New(l)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h := &propHarness{t: t, rt: rt, lim: l, core: m, model: newRefModel(l), compare: compare,
		seqs: map[string]uint64{}, tokensSeen: map[FencingToken]objectKey{}, lastToken: map[objectKey]FencingToken{}}
	if rt != nil {
		h.stamp = LogTime(pick(rt, "start", []int64{0, 0, 1000, 5_000_000}))
	}
	return h
}

// ---- one entry ----

// step draws an entry (sometimes restoring core from its snapshot first)
// and applies it.
func (h *propHarness) step() {
	if h.index > 0 && uniform(h.rt, "restore", 15) == 0 {
		h.restore()
	}
	h.apply(h.drawEntry())
}

// apply applies one entry to core (and the shadow, twin and model) and
// checks everything.
func (h *propHarness) apply(e Entry) {
	t := h.t
	t.Helper()
	h.index = e.Index
	pre := h.core.Snapshot()
	out := copyOutput(h.core.Apply(e))
	t.Logf("entry %d time %d -> now %d", e.Index, e.Time, out.Time)
	for i := range e.Commands {
		t.Logf("  %s\n    => %s", fmtCommand(&e.Commands[i]), fmtResult(out.Results[i]))
	}
	for _, eff := range out.Effects {
		t.Logf("  effect %s", fmtEffect(eff))
	}

	if h.shadow != nil {
		so := copyOutput(h.shadow.Apply(e))
		if !reflect.DeepEqual(out, so) {
			t.Fatalf("restored machine answered entry %d differently from the original:\nrestored %+v\noriginal %+v", e.Index, out, so)
		}
		if h.shadow.Hash() != h.core.Hash() {
			t.Fatalf("restored machine's hash differs from the original's after entry %d", e.Index)
		}
	}
	if h.twin != nil {
		to := copyOutput(h.twin.Apply(e))
		if !reflect.DeepEqual(out, to) {
			t.Fatalf("nondeterminism: two machines answered entry %d differently:\n%+v\n%+v", e.Index, out, to)
		}
		if h.twin.Hash() != h.core.Hash() {
			t.Fatalf("nondeterminism: two machines fed the same entries have different hashes after entry %d", e.Index)
		}
	}

	want, modelErr := h.model.apply(e, out.Effects)

	// Properties of core's own answers first, then its invariants, then
	// agreement with the model.
	h.checkSafety(&out)
	h.checkNoOps(e, pre, &out)
	if err := h.core.CheckInvariants(); err != nil {
		t.Fatalf("after entry %d: %v", e.Index, err)
	}
	if h.compare {
		if modelErr != nil {
			t.Fatalf("entry %d: %v", e.Index, modelErr)
		}
		for i := range e.Commands {
			if !sameResult(out.Results[i], want[i]) {
				t.Fatalf("entry %d command %d (%s):\ncore  %s\nmodel %s", e.Index, i, fmtCommand(&e.Commands[i]),
					fmtResult(out.Results[i]), fmtResult(want[i]))
			}
		}
		h.compareEndings(&out)
		h.compareState()
	} else if modelErr != nil {
		// The model only drives generation here: rebuild it after learn.
		h.model = nil
	}
	h.count(e, &out)
	h.learn(&out)
	h.lastOut = out
	if h.model == nil {
		h.resyncModel()
	}
}

// restore replaces core by a machine restored from its snapshot, which must
// be the same machine; the original keeps running beside it as the shadow.
func (h *propHarness) restore() {
	snap := h.core.Snapshot()
	r, err := Restore(snap)
	if err != nil {
		h.t.Fatalf("Restore of a snapshot taken at index %d: %v", h.core.Index(), err)
	}
	if r.Hash() != h.core.Hash() || !bytes.Equal(r.Snapshot(), snap) {
		h.t.Fatalf("restored machine's hash or snapshot differs from the original at index %d", h.core.Index())
	}
	h.t.Logf("snapshot + restore at index %d; continuing on the restored machine", h.core.Index())
	h.shadow, h.core = h.core, r
}

// resyncModel is only used without comparison (the determinism test): a
// model that disagreed with core is rebuilt empty, and generation goes on
// from core's sessions.
func (h *propHarness) resyncModel() {
	h.model = newRefModel(h.lim)
	h.model.index, h.model.now, h.model.started = h.core.Index(), h.core.Now(), true
}

// ---- comparisons with the model ----

func sameResult(a, b Result) bool {
	code := func(e *Error) int {
		if e == nil {
			return -1
		}
		return int(e.Code)
	}
	if code(a.Err) != code(b.Err) {
		return false
	}
	a.Err, b.Err = nil, nil
	return a == b
}

func (h *propHarness) compareState() {
	t, m := h.t, h.model
	t.Helper()
	if h.core.Now() != m.now || h.core.Index() != m.index {
		t.Fatalf("clock: core index %d now %d, model index %d now %d", h.core.Index(), h.core.Now(), m.index, m.now)
	}
	list, more, err := h.core.List(0, "", 0)
	if err != nil || more {
		t.Fatalf("List: %v more=%v", err, more)
	}
	var want []Status
	for _, k := range m.keys() {
		want = append(want, m.status(k))
	}
	if len(list) != len(want) {
		t.Fatalf("live objects: core %s, model %s", fmtKeys(list), fmtKeys(want))
	}
	for i := range list {
		if !reflect.DeepEqual(normStatus(list[i]), normStatus(want[i])) {
			t.Fatalf("status of %s %q:\ncore  %s\nmodel %s", list[i].Kind, list[i].Name, fmtStatus(list[i]), fmtStatus(want[i]))
		}
	}
	for _, k := range propKinds {
		for _, n := range propNames {
			st, err := h.core.Status(k, n)
			if err != nil {
				t.Fatalf("Status(%s, %q): %v", k, n, err)
			}
			if w := m.status(objectKey{k, n}); !reflect.DeepEqual(normStatus(st), normStatus(w)) {
				t.Fatalf("status of %s %q:\ncore  %s\nmodel %s", k, n, fmtStatus(st), fmtStatus(w))
			}
		}
	}
	ids := append([]SessionID(nil), h.sessionsSeen...)
	for _, s := range m.sessions {
		ids = append(ids, s.id)
	}
	for _, id := range ids {
		got, err := h.core.SessionInfo(id)
		w, ok := m.sessionInfo(id)
		if (err == nil) != ok {
			t.Fatalf("session %d: core says %v, model says live=%v", id, err, ok)
		}
		if ok && !reflect.DeepEqual(got, w) {
			t.Fatalf("session %d:\ncore  %+v\nmodel %+v", id, got, w)
		}
		if !ok && CodeOf(err) != CodeNotFound {
			t.Fatalf("SessionInfo(%d) of a dead session: %v, want not_found", id, err)
		}
	}
	if c, w := h.core.Counts(), m.counts(); c != w {
		t.Fatalf("counts: core %+v, model %+v", c, w)
	}
	for _, tok := range h.tokenList {
		k := h.tokensSeen[tok]
		got, err := h.core.CheckFence(k.kind, k.name, tok)
		hold := m.holdByToken(tok)
		if err != nil || got != (hold != nil && hold.key == k) {
			t.Fatalf("CheckFence(%s %q, %d) = %v, %v; model holds it: %v", k.kind, k.name, tok, got, err, hold != nil)
		}
		other := objectKey{k.kind, k.name + "x"}
		if got, _ := h.core.CheckFence(other.kind, other.name, tok); got {
			t.Fatalf("CheckFence accepts token %d of %s %q for %q", tok, k.kind, k.name, other.name)
		}
	}
}

// compareEndings compares how waits, grants and sessions ended in this entry,
// as sets: core reports them as effects.
func (h *propHarness) compareEndings(out *Output) {
	got := refEndings{waits: map[WaiterID]string{}, holds: map[FencingToken]Reason{}, sessions: map[SessionID]bool{}}
	for _, e := range out.Effects {
		switch {
		case e.Kind == EffectGranted && e.Waiter != 0 && e.Object == KindBarrier:
			got.wait(e.Waiter, "released")
		case e.Kind == EffectGranted && e.Waiter != 0:
			got.wait(e.Waiter, "granted")
		case e.Kind == EffectWaitEnded:
			got.wait(e.Waiter, "refused "+e.Reason.String())
		case e.Kind == EffectReleased:
			got.holds[e.Token] = e.Reason
		case e.Kind == EffectSessionExpired:
			got.sessions[e.Session] = true
		}
	}
	want := h.model.endings
	if !reflect.DeepEqual(got.waits, want.waits) {
		h.t.Fatalf("entry %d: waits ended:\ncore  %v\nmodel %v", out.Index, got.waits, want.waits)
	}
	if !reflect.DeepEqual(got.holds, want.holds) {
		h.t.Fatalf("entry %d: grants ended (token: reason):\ncore  %v\nmodel %v", out.Index, got.holds, want.holds)
	}
	if !reflect.DeepEqual(got.sessions, want.sessions) {
		h.t.Fatalf("entry %d: sessions expired:\ncore  %v\nmodel %v", out.Index, got.sessions, want.sessions)
	}
}

// ---- properties checked on core's own answers ----

func (h *propHarness) checkSafety(out *Output) {
	t := h.t
	t.Helper()
	now := h.core.Now()
	list, _, _ := h.core.List(0, "", 0)
	live := func(id SessionID) bool {
		info, err := h.core.SessionInfo(id)
		return err == nil && info.Deadline > now
	}
	for _, st := range list {
		var used int64
		writers := 0
		for i, hd := range st.Holders {
			used += hd.Permits
			if hd.Mode == ModeWrite {
				writers++
			}
			if !live(hd.Session) {
				t.Fatalf("%s %q is held by session %d, which is not live at %d", st.Kind, st.Name, hd.Session, now)
			}
			if i > 0 && st.Holders[i-1].Token >= hd.Token {
				t.Fatalf("%s %q: holders out of grant order", st.Kind, st.Name)
			}
			if _, ok := h.tokensSeen[hd.Token]; !ok && !h.announced(out, hd.Token) {
				t.Fatalf("%s %q: holder token %d was never announced by a grant", st.Kind, st.Name, hd.Token)
			}
		}
		for _, w := range st.Waiters {
			if !live(w.Session) {
				t.Fatalf("%s %q has a waiter %d of session %d, which is not live at %d", st.Kind, st.Name, w.ID, w.Session, now)
			}
			if w.Deadline != 0 && w.Deadline <= now {
				t.Fatalf("%s %q: waiter %d is past its deadline %d at %d", st.Kind, st.Name, w.ID, w.Deadline, now)
			}
		}
		switch st.Kind {
		case KindMutex, KindElection:
			if len(st.Holders) > 1 {
				t.Fatalf("mutual exclusion: %s %q has %d holders", st.Kind, st.Name, len(st.Holders))
			}
		case KindSemaphore:
			if used > st.Limit || used != st.Used {
				t.Fatalf("semaphore %q: %d permits held (Used %d) of limit %d", st.Name, used, st.Used, st.Limit)
			}
		case KindRWLock:
			if writers > 0 && len(st.Holders) > 1 {
				t.Fatalf("rwlock %q: a writer holds beside %d others", st.Name, len(st.Holders)-1)
			}
		}
	}
	for _, e := range out.Effects {
		if e.Kind != EffectGranted || e.Token == 0 {
			continue
		}
		k := objectKey{e.Object, e.Name}
		if last := h.lastToken[k]; e.Token <= last {
			t.Fatalf("tokens: %s %q granted token %d after token %d", e.Object, e.Name, e.Token, last)
		}
		h.lastToken[k] = e.Token
		if e.Object == KindBarrier {
			continue
		}
		// The grant went to a request made at e.Waiter (queued) or at e.Token
		// (granted at once); identifiers grow, so a waiter with a smaller id
		// asked earlier and must not still be waiting.
		asked := uint64(e.Token)
		if e.Waiter != 0 {
			asked = uint64(e.Waiter)
		}
		st, _ := h.core.Status(e.Object, e.Name)
		for _, w := range st.Waiters {
			if uint64(w.ID) < asked {
				t.Fatalf("FIFO: %s %q granted token %d to session %d (asked at %d) while waiter %d, which asked earlier, still waits",
					e.Object, e.Name, e.Token, e.Session, asked, w.ID)
			}
		}
	}
}

func (h *propHarness) announced(out *Output, tok FencingToken) bool {
	for _, e := range out.Effects {
		if e.Kind == EffectGranted && e.Token == tok {
			return true
		}
	}
	return false
}

// checkNoOps: a command that fails (an invalid one included) or is a retry
// changes nothing, so the entry without it leaves the same state.
func (h *propHarness) checkNoOps(e Entry, pre []byte, out *Output) {
	var kept []Command
	var dropped []string
	for i, r := range out.Results {
		switch {
		case r.Duplicate:
			dropped = append(dropped, fmt.Sprintf("duplicate retry %d", i))
		case r.Err != nil && r.Err.Code == CodeInvalidArgument:
			dropped = append(dropped, fmt.Sprintf("invalid command %d", i))
		case r.Err != nil:
			dropped = append(dropped, fmt.Sprintf("failed command %d (%s)", i, r.Err.Code))
		default:
			kept = append(kept, e.Commands[i])
		}
	}
	if len(dropped) == 0 {
		return
	}
	alt, err := Restore(pre)
	if err != nil {
		h.t.Fatalf("Restore before entry %d: %v", e.Index, err)
	}
	alt.Apply(Entry{Index: e.Index, Proposal: Proposal{Time: e.Time, Commands: kept}})
	if alt.Hash() != h.core.Hash() {
		h.t.Fatalf("entry %d: %s changed the state (the entry without it leaves a different hash)",
			e.Index, strings.Join(dropped, ", "))
	}
}

// learn remembers the identifiers core handed out, for later commands.
func (h *propHarness) learn(out *Output) {
	for _, r := range out.Results {
		if r.Session != 0 && !containsID(h.sessionsSeen, r.Session) {
			h.sessionsSeen = append(h.sessionsSeen, r.Session)
		}
		if r.Waiter != 0 && !containsID(h.waitersSeen, r.Waiter) {
			h.waitersSeen = append(h.waitersSeen, r.Waiter)
		}
	}
	for _, e := range out.Effects {
		if e.Kind == EffectGranted && e.Token != 0 {
			if _, ok := h.tokensSeen[e.Token]; !ok {
				h.tokensSeen[e.Token] = objectKey{e.Object, e.Name}
				h.tokenList = append(h.tokenList, e.Token)
			}
		}
	}
}

func containsID[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// ---- coverage: what the runs reached (go test -v prints it) ----

var propStats map[string]int

func (h *propHarness) count(e Entry, out *Output) {
	if propStats == nil {
		return
	}
	propStats["entries"]++
	for i, r := range out.Results {
		k := e.Commands[i].Op.String() + " "
		switch {
		case r.Duplicate:
			k += "duplicate"
		case r.Err != nil:
			k += r.Err.Code.String()
		default:
			k += r.Outcome.String()
		}
		propStats[k]++
	}
	for _, eff := range out.Effects {
		propStats["effect "+eff.Kind.String()+" "+eff.Reason.String()]++
	}
	if h.shadow != nil {
		propStats["entries on a restored machine"]++
	}
}

func logPropStats(t *testing.T) {
	var keys []string
	for k := range propStats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-40s %d", k, propStats[k])
	}
	t.Logf("coverage over all runs (shrinking included):%s", b.String())
	propStats = nil
}

// ---- generation ----

// uniform draws 0..n-1 evenly. rapid's integer generators lean towards
// small values, which would turn every weighted choice below into "mostly
// the first option"; fair coin flips do not, and still shrink towards 0.
func uniform(t *rapid.T, label string, n int) int {
	if n == 1 {
		return 0
	}
	return rapid.Custom(func(t *rapid.T) int {
		for {
			u := 0
			for b := 0; 1<<b < n; b++ {
				if rapid.Bool().Draw(t, "bit") {
					u |= 1 << b
				}
			}
			if u < n {
				return u
			}
		}
	}).Draw(t, label)
}

// pick draws one element evenly.
func pick[E any](t *rapid.T, label string, s []E) E { return s[uniform(t, label, len(s))] }

func pickWeighted(t *rapid.T, label string, weights ...int) int {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	r := uniform(t, label, sum)
	for i, w := range weights {
		if r < w {
			return i
		}
		r -= w
	}
	panic("unreachable")
}

func (h *propHarness) drawEntry() Entry {
	t := h.rt
	h.index++
	if uniform(t, "indexGap", 10) == 0 {
		h.index += 2 // the log carries entries the machine never sees
	}
	var dt int64
	switch pickWeighted(t, "dtClass", 5, 10, 4, 1, 1, 1) {
	case 1:
		dt = rapid.Int64Range(1, 40).Draw(t, "dt")
	case 2:
		dt = rapid.Int64Range(41, 700).Draw(t, "dt")
	case 3:
		dt = rapid.Int64Range(701, 2600).Draw(t, "dt")
	case 4: // a proposer's clock jumps: the step is capped
		dt = rapid.Int64Range(2601, 200_000).Draw(t, "dt")
	case 5: // a proposer whose clock is behind
		dt = -rapid.Int64Range(1, 1000).Draw(t, "dt")
	}
	h.stamp += LogTime(dt)
	var n int
	switch pickWeighted(t, "nCommands", 6, 16, 8, 4, 4, 1) {
	case 1:
		n = 1
	case 2:
		n = 2
	case 3:
		n = 3
	case 4:
		n = h.lim.MaxCommandsPerEntry
	case 5:
		n = h.lim.MaxCommandsPerEntry + 1 // too many: all refused
	}
	e := Entry{Index: h.index, Proposal: Proposal{Time: h.stamp}}
	for i := 0; i < n; i++ {
		e.Commands = append(e.Commands, h.drawCommand())
	}
	return e
}

const (
	genCreate = iota
	genKeepAlive
	genClose
	genAcquire
	genRelease
	genCancel
	genBarrierWait
	genBarrierSet
	genBarrierRemove
	genCampaign
	genProclaim
	genResign
	genLeaderChange
	genInvalid
	genRetry
)

func (h *propHarness) drawCommand() Command {
	t := h.rt
	op := pickWeighted(t, "op", 12, 12, 3, 22, 10, 4, 8, 3, 3, 7, 3, 3, 3, 6, 7)
	if len(h.model.sessions) == 0 && uniform(t, "needSession", 4) > 0 {
		op = genCreate // most commands need a live session
	}
	if op == genRetry {
		if len(h.sent) == 0 {
			op = genCreate
		} else {
			c := pick(t, "retry", h.sent)
			return c
		}
	}
	invalid := op == genInvalid
	if invalid {
		op = pickWeighted(t, "invalidBase", 1, 1, 1, 4, 1, 1, 2, 1, 1, 2, 1, 1, 1)
	}
	c := h.drawValid(op)
	if op != genLeaderChange {
		h.assignClient(&c)
	}
	if invalid {
		h.corrupt(&c)
	}
	if c.ClientID != "" {
		h.sent = append(h.sent, c)
		if len(h.sent) > 40 {
			h.sent = h.sent[1:]
		}
	}
	return c
}

func (h *propHarness) assignClient(c *Command) {
	t := h.rt
	id := pick(t, "client", propClients)
	if id == "" {
		return
	}
	cur := h.seqs[id]
	seq := cur + 1
	switch pickWeighted(t, "seqKind", 14, 2, 3) {
	case 1: // skip one: a later command arrives first
		seq = cur + 2
	case 2: // an earlier seq: fills a gap, repeats a stored one, or is too old
		if cur > 0 {
			seq = rapid.Uint64Range(1, cur).Draw(t, "oldSeq")
		}
	}
	if seq > cur {
		h.seqs[id] = seq
	}
	c.ClientID, c.Seq = id, seq
}

func (h *propHarness) drawSession(label string) SessionID {
	t := h.rt
	var live []SessionID
	for _, s := range h.model.sessions {
		live = append(live, s.id)
	}
	switch r := uniform(t, label+"From", 20); {
	case r < 16 && len(live) > 0:
		return pick(t, label, live)
	case r < 19 && len(h.sessionsSeen) > 0:
		return pick(t, label, h.sessionsSeen)
	}
	return SessionID(77) // never allocated: entry indexes start at 1
}

func (h *propHarness) drawWait() int64 {
	return pick(h.rt, "wait", []int64{0, 0, WaitForever, 30, 300, 1500, 4000})
}

func (h *propHarness) drawOwnerValue(c *Command) {
	c.Owner = pick(h.rt, "owner", []string{"", "", "own"})
	c.Value = pick(h.rt, "value", [][]byte{nil, nil, []byte("v1"), []byte("v22")})
}

// drawHold picks a current grant of one of the kinds (most of the time), a
// grant that ended, or a token never given.
func (h *propHarness) drawHold(kinds ...Kind) (objectKey, FencingToken, SessionID) {
	t := h.rt
	var cur []*refHold
	for _, hd := range h.model.holds {
		for _, k := range kinds {
			if hd.key.kind == k {
				cur = append(cur, hd)
			}
		}
	}
	switch r := uniform(t, "holdFrom", 20); {
	case r < 15 && len(cur) > 0:
		hd := pick(t, "hold", cur)
		return hd.key, hd.token, hd.session
	case r < 18 && len(h.tokenList) > 0:
		tok := pick(t, "staleToken", h.tokenList)
		k := h.tokensSeen[tok]
		return objectKey{kinds[0], k.name}, tok, h.drawSession("staleHolder")
	}
	return objectKey{kinds[0], pick(t, "name", propNames)}, FencingToken(99), h.drawSession("holder")
}

func (h *propHarness) drawValid(op int) Command {
	t := h.rt
	name := func() string { return pick(t, "name", []string{"a", "a", "a", "b"}) }
	ttl := func() int64 { return pick(t, "ttl", []int64{50, 400, 1000, 3000, 3000, 8000, 8000}) }
	switch op {
	case genCreate:
		c := Command{Op: OpSessionCreate, TTLMs: ttl()}
		c.Owner = pick(t, "owner", []string{"", "own"})
		// Now and then adopt an id, as a shard mirroring a session does: a
		// live one (same or other TTL and owner), an ended one, or a fresh one.
		if uniform(t, "adopt", 8) == 0 {
			c.Session = pick(t, "adoptID", []SessionID{h.drawSession("adoptSession"), SessionID(5<<SlotBits | 9)})
		}
		return c
	case genKeepAlive:
		c := Command{Op: OpSessionKeepAlive, Session: h.drawSession("session")}
		if rapid.Bool().Draw(t, "newTTL") {
			c.TTLMs = ttl()
		}
		return c
	case genClose:
		return Command{Op: OpSessionClose, Session: h.drawSession("session")}
	case genAcquire:
		c := Command{Op: OpAcquire, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait()}
		c.Kind = pick(t, "kind", []Kind{KindMutex, KindMutex, KindSemaphore, KindRWLock})
		switch c.Kind {
		case KindMutex:
			c.LockDelayMs = pick(t, "lockDelay", []int64{0, 0, 100, 900})
		case KindSemaphore:
			c.Limit = pick(t, "limit", []int64{2, 2, 2, 3, 1})
			c.Permits = rapid.Int64Range(0, c.Limit).Draw(t, "permits")
		case KindRWLock:
			c.Mode = pick(t, "mode", []Mode{ModeRead, ModeRead, ModeWrite})
		}
		c.MaxHoldMs = pick(t, "maxHold", []int64{0, 0, 0, 120, 1500})
		h.drawOwnerValue(&c)
		return c
	case genRelease:
		k, tok, s := h.drawHold(KindMutex, KindSemaphore, KindRWLock)
		c := Command{Op: OpRelease, Kind: k.kind, Name: k.name, Token: tok}
		switch uniform(t, "releaseBy", 6) {
		case 0, 1, 2:
			c.Session = s
		case 3:
			c.Session = h.drawSession("otherSession")
		}
		return c
	case genCancel:
		c := Command{Op: OpCancel}
		var cur []*refWait
		cur = append(cur, h.model.waits...)
		switch r := uniform(t, "waiterFrom", 10); {
		case r < 7 && len(cur) > 0:
			w := pick(t, "waiter", cur)
			c.Waiter = w.id
			if uniform(t, "cancelBy", 4) < 3 {
				c.Session = w.session
			} else {
				c.Session = h.drawSession("otherSession")
			}
		case r < 9 && len(h.waitersSeen) > 0:
			c.Waiter = pick(t, "staleWaiter", h.waitersSeen)
		default:
			c.Waiter = 88
		}
		return c
	case genBarrierWait:
		return Command{Op: OpBarrierWait, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait(),
			Parties:     pick(t, "parties", []int64{0, 2, 3, 3}),
			Participant: pick(t, "participant", []string{"", "", "p"})}
	case genBarrierSet:
		return Command{Op: OpBarrierSet, Name: name(), Session: h.drawSession("session")}
	case genBarrierRemove:
		return Command{Op: OpBarrierRemove, Name: name()}
	case genCampaign:
		c := Command{Op: OpCampaign, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait()}
		h.drawOwnerValue(&c)
		return c
	case genProclaim, genResign:
		k, tok, s := h.drawHold(KindElection)
		if uniform(t, "wrongSession", 6) == 0 {
			s = h.drawSession("otherSession")
		}
		c := Command{Op: OpResign, Name: k.name, Session: s, Token: tok}
		if op == genProclaim {
			c.Op = OpProclaim
			c.Value = pick(t, "value", [][]byte{nil, []byte("p1"), []byte("p22")})
		}
		return c
	case genLeaderChange:
		return Command{Op: OpLeaderChange}
	}
	panic("unreachable")
}

// corrupt breaks one stateless rule (most of the time: the model decides).
func (h *propHarness) corrupt(c *Command) {
	t := h.rt
	switch uniform(t, "corruption", 17) {
	case 0:
		c.Op = pick(t, "badOp", []Op{0, opCount, 200})
	case 1: // a field the op does not take
		switch uniform(t, "extraField", 6) {
		case 0:
			c.Token = 5
		case 1:
			c.Waiter = 5
		case 2:
			c.Participant = "x"
		case 3:
			c.TTLMs = 100
		case 4:
			c.Kind = KindMutex
		case 5:
			c.Value = []byte("x")
		}
	case 2:
		c.Name = pick(t, "badName", []string{"", "\x01a", "nine-byte", "\xffa", "a\u200bb", " "})
	case 3:
		c.TTLMs = pick(t, "badTTL", []int64{-1, 1, 9, 10_001})
	case 4:
		c.WaitMs = pick(t, "badWait", []int64{-2, 5_001, -1 << 40})
	case 5:
		if c.ClientID != "" {
			c.Seq = 0
		} else {
			c.Seq = 3
		}
	case 6:
		c.Owner = pick(t, "badOwner", []string{"seven77", "\xff"})
	case 7:
		c.Value = []byte("seven77")
	case 8:
		c.Parties = pick(t, "badParties", []int64{1, 5, -2})
	case 9:
		c.Permits = c.Limit + 1
	case 10:
		c.Limit = pick(t, "badLimit", []int64{0, 5, -1})
	case 11:
		c.Mode = 3
	case 12:
		c.LockDelayMs = pick(t, "badLockDelay", []int64{-1, 1_001, 50})
	case 13:
		c.MaxHoldMs = pick(t, "badMaxHold", []int64{-1, 5_001})
	case 14:
		c.Kind = pick(t, "badKind", []Kind{KindBarrier, KindElection, 0, 9})
	case 15:
		c.ClientID, c.Seq = strings.Repeat("c", MaxClientIDBytes+1), 1
	case 16: // the zero value of a required field
		c.Session, c.Token, c.Waiter = 0, 0, 0
	}
}

// ---- copying and printing ----

func copyOutput(o *Output) Output {
	c := Output{Index: o.Index, Time: o.Time}
	for _, r := range o.Results {
		if r.Err != nil {
			e := *r.Err
			r.Err = &e
		}
		c.Results = append(c.Results, r)
	}
	for _, e := range o.Effects {
		e.Value = normBytes(e.Value)
		c.Effects = append(c.Effects, e)
	}
	return c
}

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func normStatus(s Status) Status {
	var hs []Holder
	for _, h := range s.Holders {
		h.Value = normBytes(h.Value)
		hs = append(hs, h)
	}
	s.Holders = hs
	return s
}

func fmtKeys(l []Status) string {
	var s []string
	for _, st := range l {
		s = append(s, st.Kind.String()+":"+st.Name)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func fmtStatus(s Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "limit=%d used=%d parties=%d lockDelayUntil=%d holders=[", s.Limit, s.Used, s.Parties, s.LockDelayUntil)
	for _, h := range s.Holders {
		fmt.Fprintf(&b, " {s%d tok%d %s perm%d %s %q acq%d exp%d}", h.Session, h.Token, h.Mode, h.Permits, h.Owner, h.Value,
			h.AcquiredAt, h.ExpiresAt)
	}
	b.WriteString(" ] waiters=[")
	for _, w := range s.Waiters {
		fmt.Fprintf(&b, " {w%d s%d %s perm%d %q %q enq%d dl%d}", w.ID, w.Session, w.Mode, w.Permits, w.Owner, w.Participant,
			w.EnqueuedAt, w.Deadline)
	}
	b.WriteString(" ]")
	return b.String()
}

func fmtCommand(c *Command) string {
	var b strings.Builder
	b.WriteString(c.Op.String())
	add := func(ok bool, format string, v any) {
		if ok {
			fmt.Fprintf(&b, " "+format, v)
		}
	}
	add(c.ClientID != "", "client=%q", c.ClientID)
	add(c.Seq != 0, "seq=%d", c.Seq)
	add(c.Kind != 0, "kind=%s", c.Kind)
	add(c.Name != "", "name=%q", c.Name)
	add(c.Session != 0, "session=%d", c.Session)
	add(c.Token != 0, "token=%d", c.Token)
	add(c.Waiter != 0, "waiter=%d", c.Waiter)
	add(c.TTLMs != 0, "ttl=%d", c.TTLMs)
	add(c.WaitMs != 0, "wait=%d", c.WaitMs)
	add(c.LockDelayMs != 0, "lockDelay=%d", c.LockDelayMs)
	add(c.MaxHoldMs != 0, "maxHold=%d", c.MaxHoldMs)
	add(c.Limit != 0, "limit=%d", c.Limit)
	add(c.Permits != 0, "permits=%d", c.Permits)
	add(c.Mode != 0, "mode=%s", c.Mode)
	add(c.Parties != 0, "parties=%d", c.Parties)
	add(c.Participant != "", "participant=%q", c.Participant)
	add(c.Owner != "", "owner=%q", c.Owner)
	add(len(c.Value) != 0, "value=%q", c.Value)
	return b.String()
}

func fmtResult(r Result) string {
	if r.Err != nil {
		return "error " + r.Err.Code.String() + ": " + r.Err.Msg
	}
	s := fmt.Sprintf("%s session=%d", r.Outcome, r.Session)
	if r.Token != 0 {
		s += fmt.Sprintf(" token=%d", r.Token)
	}
	if r.Waiter != 0 {
		s += fmt.Sprintf(" waiter=%d", r.Waiter)
	}
	if r.Deadline != 0 {
		s += fmt.Sprintf(" deadline=%d", r.Deadline)
	}
	if r.Generation != 0 {
		s += fmt.Sprintf(" generation=%d", r.Generation)
	}
	if r.Reason != 0 {
		s += " reason=" + r.Reason.String()
	}
	if r.Duplicate {
		s += " duplicate"
	}
	return s
}

func fmtEffect(e Effect) string {
	s := fmt.Sprintf("%s %s %q session=%d", e.Kind, e.Object, e.Name, e.Session)
	if e.Reason != 0 {
		s += " reason=" + e.Reason.String()
	}
	if e.Waiter != 0 {
		s += fmt.Sprintf(" waiter=%d", e.Waiter)
	}
	if e.Token != 0 {
		s += fmt.Sprintf(" token=%d", e.Token)
	}
	if e.Generation != 0 {
		s += fmt.Sprintf(" generation=%d", e.Generation)
	}
	return s
}
