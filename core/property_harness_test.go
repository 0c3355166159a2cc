package core

// The property tests' harness (property_test.go): it applies each entry to
// core, the model (model_test.go), a shadow restored from a snapshot and a
// twin, compares them, and checks the safety properties on core's own
// answers.

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"

	"pgregory.net/rapid"
)

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

func (h *propHarness) modelDeadline() LogTime {
	d, _ := h.model.nextDeadline()
	return d
}

func (h *propHarness) compareState() {
	t, m := h.t, h.model
	t.Helper()
	if h.core.Now() != m.now || h.core.Index() != m.index {
		t.Fatalf("clock: core index %d now %d, model index %d now %d", h.core.Index(), h.core.Now(), m.index, m.now)
	}
	if got, _ := h.core.NextDeadline(); got != h.modelDeadline() {
		t.Fatalf("next deadline: core %d, model %d", got, h.modelDeadline())
	}
	list, more, err := h.core.List(0, "", 0)
	if err != nil || more {
		t.Fatalf("List: %v more=%v", err, more)
	}
	h.compareGrants(list)
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

// compareGrants checks that Grant, the one-lookup read of a grant, answers
// what Status and SessionInfo show for every holder, and nothing for a
// token on the wrong object.
func (h *propHarness) compareGrants(list []Status) {
	t := h.t
	t.Helper()
	for _, st := range list {
		for _, x := range st.Holders {
			g, ok := h.core.Grant(st.Kind, st.Name, x.Token)
			info, err := h.core.SessionInfo(x.Session)
			if !ok || err != nil || !reflect.DeepEqual(g.Holder, x) || g.SessionOwner != info.Owner ||
				g.SessionHolds != len(info.Holds) || g.SessionWaits != len(info.Waits) {
				t.Fatalf("Grant(%v %q, %d) = %+v, %v; Status shows %+v, SessionInfo %+v (%v)", st.Kind, st.Name, x.Token, g, ok, x, info, err)
			}
			if _, ok := h.core.Grant(st.Kind, st.Name+"/other", x.Token); ok {
				t.Fatalf("Grant found token %d on %q, an object it is not on", x.Token, st.Name+"/other")
			}
		}
	}
}
