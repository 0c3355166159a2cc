package core

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tblRich builds a machine with something of everything: holders with
// owners, values, max holds and lock-delays; queues with and without
// deadlines; a semaphore, an RW lock, both barriers, an election; a mutex in
// its lock-delay; stale timers left by keepalives; remembered client
// results, one of them a queued request. Snapshot tests and the fuzz seed
// corpus start from it.
func tblRich(t testing.TB, tweak ...func(*Limits)) *tblHarness {
	h := newTblHarness(t, tweak...)
	a := h.ok(Command{Op: OpSessionCreate, TTLMs: 30_000, Owner: "alice"}).Session
	b := h.ok(with(Command{Op: OpSessionCreate, TTLMs: 20_000, Owner: "bob"}, "cb", 1)).Session
	c := h.session(10_000)
	d := h.session(3_000)

	m := Command{Op: OpAcquire, Kind: KindMutex, Name: "mx", Session: d, LockDelayMs: 2_000, Owner: "dave", Value: []byte("v")}
	h.granted(m)
	h.ok(with(cMutex("mx", a, 8_000), "ca", 1))
	h.queued(cMutex("mx", b, WaitForever))
	mh := cMutex("held", c, 0)
	mh.MaxHoldMs = 5_000
	h.granted(mh)

	h.granted(cSem("sem", a, 3, 2, 0))
	h.queued(with(cSem("sem", b, 3, 2, 4_000), "cb", 2))

	h.granted(cRW("rw", a, ModeRead, 0))
	h.granted(cRW("rw", b, ModeRead, 0))
	h.queued(cRW("rw", c, ModeWrite, 6_000))

	h.queued(cArrive("party", a, 3, "p1", 7_000))
	h.queued(cArrive("party", b, 3, "p2", WaitForever))
	h.ok(cSet("gate", c))
	h.queued(cArrive("gate", a, 0, "", WaitForever))

	h.granted(cCampaign("lead", b, "b-addr", 0))
	h.queued(with(cCampaign("lead", a, "a-addr", WaitForever), "ca", 2))

	h.advance(500)
	h.ok(cKeep(a))
	h.ok(cKeep(b))

	e := h.session(100)
	ld := cMutex("delayed", e, 0)
	ld.LockDelayMs = 20_000
	h.granted(ld)
	h.advance(100)

	for seq := uint64(3); seq <= 5; seq++ {
		h.ok(with(cKeep(a), "ca", seq))
	}
	return h
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := tblRich(t)
	snap := h.m.Snapshot()
	m, err := Restore(snap)
	if err != nil {
		t.Fatal(err)
	}
	if m.Hash() != h.m.Hash() || !bytes.Equal(m.Snapshot(), snap) {
		t.Fatal("a restored machine differs")
	}
	if m.Limits() != h.m.Limits() || m.Counts() != h.m.Counts() || m.Now() != h.now() || m.Index() != h.m.Index() {
		t.Fatalf("restored %+v %+v, want %+v %+v", m.Limits(), m.Counts(), h.m.Limits(), h.m.Counts())
	}
	la, _, _ := h.m.List(0, "", 0)
	lb, _, _ := m.List(0, "", 0)
	if fmt.Sprintf("%+v", la) != fmt.Sprintf("%+v", lb) {
		t.Fatalf("List differs:\n%+v\n%+v", la, lb)
	}
	// A machine with custom limits keeps them.
	h2 := newTblHarness(t, func(l *Limits) { l.MaxObjects, l.DedupeWindow, l.MaxClockStepMs = 7, 3, 500 })
	m2, err := Restore(h2.m.Snapshot())
	if err != nil || m2.Limits() != h2.m.Limits() {
		t.Fatalf("limits %+v, %v", m2.Limits(), err)
	}
	// An empty, never-started machine round-trips too.
	m3, _ := New(DefaultLimits())
	m4, err := Restore(m3.Snapshot())
	if err != nil || m4.Hash() != m3.Hash() {
		t.Fatalf("empty machine: %v", err)
	}
	if out := m4.Apply(Entry{Index: 1, Proposal: Proposal{Time: 1 << 40}}); out.Time != 1<<40 {
		t.Fatal("a restored unstarted machine did not let its first entry set the clock")
	}
}

func TestSnapshotDeterministic(t *testing.T) {
	a, b := tblRich(t), tblRich(t)
	if !bytes.Equal(a.m.Snapshot(), b.m.Snapshot()) || a.m.Hash() != b.m.Hash() {
		t.Fatal("two machines that applied the same entries wrote different snapshots")
	}
	if !bytes.Equal(a.m.Snapshot(), a.m.Snapshot()) {
		t.Fatal("Snapshot is not stable")
	}
	a.advance(1)
	if a.m.Hash() == b.m.Hash() {
		t.Fatal("the hash ignores log time")
	}
}

// TestSnapshotBehaviour restores the rich machine and drives the original
// and the copy through the same entries: every timer the original holds,
// stale or live, must fire alike; every output and hash must agree.
func TestSnapshotBehaviour(t *testing.T) {
	for _, at := range []int{0, 3, 9} { // snapshot after this many script steps
		t.Run(fmt.Sprint("after step ", at), func(t *testing.T) {
			h := tblRich(t)
			steps := tblScript(h)
			for i := 0; i < at; i++ {
				h.apply(h.now()+steps[i].dt, steps[i].cmds(h)...)
			}
			r := h.twin()
			for i := at; i < len(steps); i++ {
				cmds := steps[i].cmds(h)
				a := h.apply(h.now()+steps[i].dt, cmds...)
				b := r.apply(r.now()+steps[i].dt, cmds...)
				if fmt.Sprintf("%+v", a.Results) != fmt.Sprintf("%+v", b.Results) || tblEffects(a.Effects) != tblEffects(b.Effects) ||
					a.Time != b.Time || a.Index != b.Index {
					t.Fatalf("step %d differs:\n%+v\n%s\nrestored:\n%+v\n%s", i, a.Results, tblEffects(a.Effects), b.Results, tblEffects(b.Effects))
				}
				if h.m.Hash() != r.m.Hash() {
					t.Fatalf("step %d: hashes differ", i)
				}
			}
		})
	}
}

type tblStep struct {
	dt   LogTime
	cmds func(h *tblHarness) []Command
}

// tblScript is what happens to the rich machine next. Commands are derived
// from the machine's state when the step runs, so a twin gets the same ones.
func tblScript(h *tblHarness) []tblStep {
	holder := func(h *tblHarness, k Kind, name string) (SessionID, FencingToken) {
		st := h.status(k, name)
		if len(st.Holders) == 0 {
			return 0, 1
		}
		return st.Holders[0].Session, st.Holders[0].Token
	}
	none := func(*tblHarness) []Command { return nil }
	return []tblStep{
		{1_000, none},
		{500, func(h *tblHarness) []Command {
			s, tok := holder(h, KindSemaphore, "sem")
			return []Command{cRelease(KindSemaphore, "sem", s, tok), with(cCreate(4_000), "cn", 1)}
		}},
		{0, func(h *tblHarness) []Command { return []Command{with(cCreate(4_000), "cn", 1), cLeader()} }},
		{2_000, func(h *tblHarness) []Command {
			s, tok := holder(h, KindElection, "lead")
			return []Command{cProclaim("lead", s, tok, "new"), cRemove("gate")}
		}},
		{2_000, none},
		{2_000, func(h *tblHarness) []Command {
			s, tok := holder(h, KindElection, "lead")
			return []Command{cResign("lead", s, tok)}
		}},
		{1_500, func(h *tblHarness) []Command {
			s, _ := holder(h, KindRWLock, "rw")
			return []Command{cRW("rw", s, ModeRead, 0), cMutex("fresh", s, 3_000)}
		}},
		{2_000, none},
		{2_000, none},
		{2_000, func(h *tblHarness) []Command { return []Command{cLeader()} }},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
		{2_000, none},
	}
}

func TestRestoreRefusesTable(t *testing.T) {
	good := tblRich(t).m.Snapshot()
	version := len(snapshotMagic)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name   string
		b      []byte
		phrase string
	}{
		{"nothing", nil, "not a Lockstep snapshot"},
		{"the magic alone", []byte(snapshotMagic), "not a Lockstep snapshot"},
		{"another magic", mod(func(b []byte) []byte { b[0] = 'X'; return b }), "not a Lockstep snapshot"},
		{"a proposal", EncodeProposal(Proposal{Time: 5, Commands: []Command{cCreate(1_000)}}), "not a Lockstep snapshot"},
		{"version 0", mod(func(b []byte) []byte { b[version] = 0; return b }), "snapshot version 0 is not known (this build reads versions 1..6)"},
		{"version 7", mod(func(b []byte) []byte { b[version] = 7; return b }), "snapshot version 7 is not known"},
		{"a trailing byte", append(bytes.Clone(good), 0), "malformed snapshot: trailing bytes"},
		{"garbage", []byte(snapshotMagic + "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"), "malformed snapshot"},
		{"unusable limits", func() []byte {
			e := encoder{b: []byte(snapshotMagic)}
			e.byte(SnapshotVersion)
			l := DefaultLimits()
			l.MaxObjects = 0
			e.limits(&l)
			return e.b
		}(), "limits: MaxObjects must be at least 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Restore(tc.b)
			if m != nil || CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tc.phrase) {
				t.Fatalf("Restore: %v, want an error saying %q", err, tc.phrase)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for n := 0; n < len(good); n++ {
			if m, err := Restore(good[:n]); err == nil || m != nil {
				t.Fatalf("a snapshot cut to %d of %d bytes was accepted", n, len(good))
			}
		}
	})
	t.Run("every single-byte change round-trips or is refused", func(t *testing.T) {
		for i := range good {
			for _, x := range []byte{0x00, 0x01, 0x7f, 0x80, 0xff} {
				b := bytes.Clone(good)
				if b[i] == x {
					continue
				}
				b[i] = x
				if m, err := Restore(b); err == nil && !bytes.Equal(m.Snapshot(), b) {
					t.Fatalf("byte %d set to %#x: restored, but snapshots differently", i, x)
				}
			}
		}
	})
}

// TestRestoreRefusesInconsistentTable tampers with a live machine's state
// and snapshots it: Restore must refuse what no machine could have written.
func TestRestoreRefusesInconsistentTable(t *testing.T) {
	anyHold := func(m *Machine, k Kind, name string) *hold { return m.objects[objectKey{k, name}].holders[0] }
	tests := []struct {
		name   string
		tamper func(m *Machine)
	}{
		{"a mutex held like a set barrier", func(m *Machine) {
			o := m.objects[objectKey{KindMutex, "held"}]
			o.setBy, o.holders = o.holders[0], nil
		}},
		{"a set barrier held like a lock", func(m *Machine) {
			o := m.objects[objectKey{KindBarrier, "gate"}]
			o.holders, o.setBy = []*hold{o.setBy}, nil
		}},
		{"a session past its deadline", func(m *Machine) {
			for _, s := range m.sessions {
				s.deadline = m.now
				break
			}
		}},
		{"a token from the future", func(m *Machine) {
			h := anyHold(m, KindMutex, "held")
			delete(m.holds, h.token)
			h.token = FencingToken((m.index + 1) << SlotBits)
			m.holds[h.token] = h
		}},
		{"a waiter past its deadline", func(m *Machine) {
			m.objects[objectKey{KindMutex, "mx"}].queue.head.deadline = m.now
		}},
		{"a semaphore over its limit", func(m *Machine) { m.objects[objectKey{KindSemaphore, "sem"}].limit = 1 }},
		{"a writer beside a reader", func(m *Machine) { anyHold(m, KindRWLock, "rw").mode = ModeWrite }},
		{"a barrier with all its parties waiting", func(m *Machine) { m.objects[objectKey{KindBarrier, "party"}].parties = 2 }},
		{"a grantable head that waits", func(m *Machine) {
			o := m.objects[objectKey{KindRWLock, "rw"}]
			o.queue.head.mode = ModeRead
		}},
		{"a lock-delay on a semaphore", func(m *Machine) {
			o := m.objects[objectKey{KindSemaphore, "sem"}]
			o.lockDelayUntil, o.lockDelayID = m.now+5, 12345
		}},
		{"a session with a TTL out of bounds", func(m *Machine) {
			for _, s := range m.sessions {
				s.ttlMs = -1
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tblRich(t)
			tc.tamper(h.m)
			b := h.m.Snapshot()
			if m, err := Restore(b); err == nil {
				same := bytes.Equal(m.Snapshot(), b)
				t.Fatalf("Restore accepted it (snapshots the same: %v)", same)
			}
		})
	}
}

// TestRestoreVersion1 restores the version 1 snapshots kept in the fuzz
// corpus (testdata/fuzz/FuzzRestore/v1-*), written before snapshots carried
// a counting barrier's generation: each such barrier restores at the id of
// its first waiter, and the machine snapshots again as the current version.
func TestRestoreVersion1(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzRestore", "v1-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no version 1 snapshots in testdata: %v", err)
	}
	barriers := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		lit, ok := strings.CutPrefix(lines[len(lines)-1], "[]byte(")
		if !ok {
			t.Fatalf("%s: not a []byte corpus entry", f)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if s[len(snapshotMagic)] != 1 {
			t.Fatalf("%s: version %d, want 1", f, s[len(snapshotMagic)])
		}
		m, err := Restore([]byte(s))
		if err != nil {
			continue // a seed made to be refused (FuzzRestore checks how)
		}
		list, _, err := m.List(KindBarrier, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range list {
			if st.Parties == 0 {
				continue
			}
			barriers++
			if len(st.Waiters) == 0 || st.Generation != uint64(st.Waiters[0].ID) {
				t.Fatalf("%s: barrier %q restored at generation %d with waiters %+v", f, st.Name, st.Generation, st.Waiters)
			}
		}
		if got := m.Snapshot(); got[len(snapshotMagic)] != SnapshotVersion {
			t.Fatalf("%s: snapshots again as version %d", f, got[len(snapshotMagic)])
		}
	}
	if barriers == 0 {
		t.Fatal("no version 1 snapshot holds a counting barrier: the test checks nothing")
	}
}
