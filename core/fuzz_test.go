package core

// Fuzz targets for the decoder, for applying decoded garbage, and for
// Restore. Their seed corpus lives in testdata/fuzz/<Target>/ and is made
// from real encodings by TestWriteFuzzSeeds:
//
//	go test -run '^TestWriteFuzzSeeds$' -write-fuzz-seeds ./core/
//
// Run a target with, for example:
//
//	go test -run '^$' -fuzz '^FuzzApplyDecoded$' -fuzztime 60s ./core/

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

// FuzzDecode: any bytes decode to a proposal or an error, never a panic, and
// a proposal decoded from bytes encodes back to exactly those bytes.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeProposal(b)
		if err != nil {
			if CodeOf(err) != CodeInvalidArgument || p.Commands != nil || p.Time != 0 {
				t.Fatalf("a failed decode: %+v, %v", p, err)
			}
			return
		}
		if got := EncodeProposal(p); !bytes.Equal(got, b) {
			t.Fatalf("decode then encode changed the bytes:\n in %x\nout %x", b, got)
		}
	})
}

// tblFuzzLimits are tight, so that garbage reaches the limits too.
func tblFuzzLimits(l *Limits) {
	l.MaxNameBytes = 16
	l.MaxObjects = 10
	l.MaxSessions = 6
	l.MaxWaitersPerObject = 3
	l.MaxWaiters = 10
	l.MaxHoldsPerSession = 8
	l.MaxOwnerBytes = 16
	l.MaxValueBytes = 16
	l.MaxParties = 5
	l.MaxSemaphoreLimit = 10
	l.MaxTTLMs = 60_000
	l.MaxWaitMs = 10_000
	l.MaxHoldMs = 10_000
	l.MaxLockDelayMs = 30_000
	l.MaxCommandsPerEntry = 16
	l.MaxClients = 3
	l.DedupeWindow = 4
	l.DedupeRetentionMs = 5_000
}

var tblFuzzBase struct {
	once sync.Once
	snap []byte
}

// tblFuzzMachine returns the pre-populated machine the apply target starts
// from: the rich machine under tight limits, restored from a snapshot that
// is built once.
func tblFuzzMachine(t testing.TB) *tblHarness {
	tblFuzzBase.once.Do(func() { tblFuzzBase.snap = tblRich(t, tblFuzzLimits).m.Snapshot() })
	m, err := Restore(tblFuzzBase.snap)
	if err != nil {
		t.Fatal(err)
	}
	return &tblHarness{t: t, m: m, idx: m.Index()}
}

// FuzzApplyDecoded decodes bytes into a proposal and applies it, then the
// same commands again after gap ms (a retry, and timers firing), to a
// pre-populated machine. Nothing may panic but a mark of newer rules; the invariants hold after each
// entry; a restored copy behaves identically; an entry whose commands all
// fail or are retries changes nothing beyond what an empty entry at the same
// index and time changes (timers); results and effects are well formed.
func FuzzApplyDecoded(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, gap uint16) {
		p, err := DecodeProposal(b)
		if err != nil {
			return
		}
		h := tblFuzzMachine(t)
		if newerRules(p.Commands) != 0 {
			// A mark of rules newer than this build's stops the machine
			// (TestMarkOfNewerRulesStopsTheMachine): the one panic allowed.
			if applyStops(h.m, Entry{Index: h.idx + 1, Proposal: p}) == nil {
				t.Fatalf("a mark of rules %d applied", newerRules(p.Commands))
			}
			return
		}
		second := Proposal{Time: tblSatAdd(max(p.Time, h.now()), LogTime(gap)), Commands: p.Commands}
		for _, prop := range []Proposal{p, second} {
			before := h.m.Snapshot()
			copyA, errA := Restore(before)
			copyB, errB := Restore(before)
			if errA != nil || errB != nil {
				t.Fatalf("Restore of a live machine: %v %v", errA, errB)
			}
			h.idx++
			e := Entry{Index: h.idx, Proposal: prop}
			out := tblCopy(h.m.Apply(e))
			if err := h.m.CheckInvariants(); err != nil {
				t.Fatalf("entry %d: %v", h.idx, err)
			}
			tblCheckOutput(t, e, out)

			// The same entry on a restored copy: the same output and state.
			again := tblCopy(copyA.Apply(e))
			if fmt.Sprintf("%+v", again.Results) != fmt.Sprintf("%+v", out.Results) || tblEffects(again.Effects) != tblEffects(out.Effects) {
				t.Fatalf("a restored copy answered differently:\n%+v\n%s\n%+v\n%s", out.Results, tblEffects(out.Effects), again.Results, tblEffects(again.Effects))
			}
			if copyA.Hash() != h.m.Hash() {
				t.Fatal("a restored copy reached another state")
			}

			// Nothing but failures and retries: the state is what an empty
			// entry at the same index and time leaves.
			inert := true
			for _, r := range out.Results {
				if r.Err == nil && !r.Duplicate {
					inert = false
				}
			}
			if inert {
				tick := tblCopy(copyB.Apply(Entry{Index: e.Index, Proposal: Proposal{Time: prop.Time}}))
				if copyB.Hash() != h.m.Hash() {
					t.Fatalf("an entry of failures and retries changed the state: %+v", out.Results)
				}
				if tblEffects(tick.Effects) != tblEffects(out.Effects) {
					t.Fatalf("an entry of failures and retries had effects:\n%s\nan empty entry:\n%s", tblEffects(out.Effects), tblEffects(tick.Effects))
				}
			}
		}
	})
}

// tblCheckOutput checks what every output must look like.
func tblCheckOutput(t *testing.T, e Entry, out Output) {
	t.Helper()
	if len(out.Results) != len(e.Commands) || out.Index != e.Index {
		t.Fatalf("%d results for %d commands, index %d", len(out.Results), len(e.Commands), out.Index)
	}
	for i, r := range out.Results {
		if r.Err != nil {
			if r.Err.Code == CodeOK || r.Err.Code > CodeConflict || r.Err.Msg == "" || r != (Result{Err: r.Err}) {
				t.Fatalf("result %d: malformed error %+v", i, r)
			}
			continue
		}
		if r.Outcome < OutcomeDone || r.Outcome > OutcomeReleased {
			t.Fatalf("result %d: outcome %v", i, r.Outcome)
		}
		if r.Outcome == OutcomeGranted && (r.Token == 0 || r.Token.LogIndex() > e.Index) {
			t.Fatalf("result %d: grant with token %d at index %d", i, r.Token, e.Index)
		}
		if r.Outcome == OutcomeQueued && r.Waiter == 0 && !r.Duplicate {
			t.Fatalf("result %d: queued without a waiter", i)
		}
	}
	last := map[objectKey]FencingToken{}
	for _, ef := range out.Effects {
		if ef.Kind != EffectGranted || ef.Object == KindBarrier {
			continue
		}
		// A new grant's token comes from this entry and increases per name.
		k := objectKey{ef.Object, ef.Name}
		if ef.Token.LogIndex() != e.Index || ef.Token <= last[k] {
			t.Fatalf("grant of %v %q with token %d at index %d after %d", ef.Object, ef.Name, ef.Token, e.Index, last[k])
		}
		last[k] = ef.Token
	}
}

func tblSatAdd(a, b LogTime) LogTime {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// FuzzRestore: any bytes restore to a machine or an error, never a panic; a
// restored machine snapshots back to exactly its bytes (an older version's
// to the current version's, which then round-trips exactly), and can go on.
func FuzzRestore(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Restore(b)
		if err != nil {
			if m != nil || CodeOf(err) != CodeInvalidArgument {
				t.Fatalf("a failed restore: %v, %v", m, err)
			}
			return
		}
		got := m.Snapshot()
		if b[len(snapshotMagic)] != SnapshotVersion {
			m2, err := Restore(got)
			if err != nil {
				t.Fatalf("an upgraded snapshot does not restore: %v", err)
			}
			b = got
			got = m2.Snapshot()
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("restore then snapshot changed the bytes:\n in %x\nout %x", b, got)
		}
		if err := m.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
		// The restored machine applies entries like any other.
		if next := m.Index() + 1; next < 1<<(64-SlotBits) {
			m.Apply(Entry{Index: next, Proposal: Proposal{Time: tblSatAdd(m.Now(), 1_000), Commands: []Command{cLeader()}}})
			if err := m.CheckInvariants(); err != nil {
				t.Fatalf("after an entry: %v", err)
			}
		}
	})
}

var tblWriteSeeds = flag.Bool("write-fuzz-seeds", false, "write the fuzz seed corpus to testdata/fuzz")

// TestWriteFuzzSeeds writes the seed corpus from real encodings. It runs
// only with -write-fuzz-seeds; the files it writes are committed.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*tblWriteSeeds {
		t.Skip("run with -write-fuzz-seeds to rewrite testdata/fuzz")
	}
	write := func(target, name string, args ...any) {
		var buf bytes.Buffer
		buf.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				fmt.Fprintf(&buf, "[]byte(%q)\n", v)
			case uint16:
				fmt.Fprintf(&buf, "uint16(%d)\n", v)
			default:
				t.Fatalf("seed argument %T", a)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// FuzzDecode: the codec table's proposals, and a few near misses.
	props := tblProposals()
	for name, p := range props {
		write("FuzzDecode", name, EncodeProposal(p))
	}
	packed := EncodeProposal(props["packed"])
	write("FuzzDecode", "truncated", packed[:len(packed)-3])
	write("FuzzDecode", "trailing", append(bytes.Clone(packed), 0))
	write("FuzzDecode", "overlong_varint", []byte{ProposalVersion, 0x80, 0x00, 0})

	// FuzzApplyDecoded: proposals that name the fuzz machine's real
	// sessions, tokens and waiters.
	h := tblFuzzMachine(t)
	seeds := tblFuzzProposals(h)
	names := make([]string, 0, len(seeds))
	for name := range seeds {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		write("FuzzApplyDecoded", name, EncodeProposal(seeds[name]), uint16([]int{0, 500, 2_000, 9_000}[i%4]))
	}
	for _, name := range []string{"tick", "every_field", "packed", "unknown_op"} {
		write("FuzzApplyDecoded", "codec_"+name, EncodeProposal(props[name]), uint16(1_000))
	}

	// FuzzRestore: snapshots of machines in many states.
	empty, _ := New(DefaultLimits())
	write("FuzzRestore", "empty", empty.Snapshot())
	write("FuzzRestore", "started", newTblHarness(t).m.Snapshot())
	rich := tblRich(t)
	write("FuzzRestore", "rich", rich.m.Snapshot())
	write("FuzzRestore", "fuzz_machine", h.m.Snapshot())
	for i, st := range tblScript(rich) {
		rich.apply(rich.now()+st.dt, st.cmds(rich)...)
		if i%4 == 1 {
			write("FuzzRestore", fmt.Sprint("rich_step_", i), rich.m.Snapshot())
		}
	}
	tampered := tblRich(t)
	o := tampered.m.objects[objectKey{KindMutex, "held"}]
	o.setBy, o.holders = o.holders[0], nil
	write("FuzzRestore", "mutex_set_like_a_barrier", tampered.m.Snapshot())
}

// tblFuzzProposals builds proposals against the fuzz machine's state.
func tblFuzzProposals(h *tblHarness) map[string]Proposal {
	now := h.now()
	hold := func(k Kind, name string) (SessionID, FencingToken) {
		st := h.status(k, name)
		return st.Holders[0].Session, st.Holders[0].Token
	}
	waiter := func(k Kind, name string) (SessionID, WaiterID) {
		st := h.status(k, name)
		return st.Waiters[0].Session, st.Waiters[0].ID
	}
	var sessions []SessionID
	for id := range h.m.sessions {
		sessions = append(sessions, id)
	}
	sort.Slice(sessions, func(i, j int) bool { return sessions[i] < sessions[j] })
	a, b, c := sessions[0], sessions[1], sessions[2]
	mxS, mxT := hold(KindMutex, "mx")
	heldS, heldT := hold(KindMutex, "held")
	semS, semT := hold(KindSemaphore, "sem")
	rwS, rwT := hold(KindRWLock, "rw")
	leadS, leadT := hold(KindElection, "lead")
	gateS, _ := hold(KindBarrier, "gate")
	mxWS, mxW := waiter(KindMutex, "mx")
	leadWS, leadW := waiter(KindElection, "lead")
	next := FencingToken(h.idx+1) << SlotBits

	var keepalives []Command
	for _, s := range sessions {
		keepalives = append(keepalives, cKeep(s))
	}
	many := make([]Command, 17)
	for i := range many {
		many[i] = cCreate(1_000)
	}
	at := func(dt LogTime, cmds ...Command) Proposal { return Proposal{Time: now + dt, Commands: cmds} }
	return map[string]Proposal{
		"tick_fires_timers":     at(2_000),
		"tick_past":             at(-5_000),
		"tick_far":              at(3600 * 1000),
		"keepalives":            at(500, keepalives...),
		"leader_change":         at(2_000, cLeader()),
		"leader_change_packed":  at(1_500, cLeader(), cKeep(a), cClose(b)),
		"release_mx":            at(0, cRelease(KindMutex, "mx", mxS, mxT)),
		"release_held_no_sess":  at(0, cRelease(KindMutex, "held", 0, heldT)),
		"release_sem":           at(0, cRelease(KindSemaphore, "sem", semS, semT)),
		"release_rw":            at(0, cRelease(KindRWLock, "rw", rwS, rwT)),
		"release_stale":         at(0, cRelease(KindMutex, "held", heldS, heldT-1)),
		"release_wrong_session": at(0, cRelease(KindMutex, "mx", c, mxT)),
		"cancel_mx_waiter":      at(0, cCancel(mxWS, mxW)),
		"cancel_lead_waiter":    at(0, cCancel(0, leadW)),
		"cancel_twice":          at(0, cCancel(mxWS, mxW), cCancel(mxWS, mxW)),
		"proclaim":              at(0, cProclaim("lead", leadS, leadT, "new")),
		"resign":                at(0, cResign("lead", leadS, leadT)),
		"resign_by_candidate":   at(0, cResign("lead", leadWS, leadT)),
		"gate_remove":           at(0, cRemove("gate")),
		"gate_set_by_other":     at(0, cSet("gate", a)),
		"gate_set_again":        at(0, cSet("gate", gateS)),
		"party_completes":       at(0, cArrive("party", c, 3, "p3", 0)),
		"party_mismatch":        at(0, cArrive("party", c, 4, "", 0)),
		"mx_queue":              at(0, cMutex("mx", c, 3_000)),
		"mx_reacquire":          at(0, cMutex("mx", mxS, 0)),
		"sem_wrong_limit":       at(0, cSem("sem", c, 4, 1, 0)),
		"sem_barge":             at(0, cSem("sem", c, 3, 1, 0)),
		"rw_mode_mismatch":      at(0, cRW("rw", rwS, ModeWrite, 0)),
		"rw_read_behind_writer": at(0, cRW("rw", c, ModeRead, WaitForever)),
		"campaign_queue":        at(0, cCampaign("lead", c, "c", 5_000)),
		"packed_same_name": at(0, cMutex("fresh", a, 0), cRelease(KindMutex, "fresh", a, next),
			cMutex("fresh", b, 0), cRelease(KindMutex, "fresh", b, next+1), cMutex("fresh", c, 0)),
		"handoff_then_release": at(0, cRelease(KindMutex, "mx", mxS, mxT), cRelease(KindMutex, "mx", mxWS, next)),
		"lock_delay_expiry":    at(2_000, cMutex("delayed", a, 0)),
		"max_hold":             at(2_000, cMutex("held", a, WaitForever)),
		"retry_ca_1":           at(0, with(cMutex("mx", a, 8_000), "ca", 1)),
		"retry_cb_2":           at(0, with(cSem("sem", b, 3, 2, 4_000), "cb", 2)),
		"retry_below_window":   at(0, with(cKeep(a), "ca", 1), with(cKeep(a), "ca", 2)),
		"new_client":           at(0, with(cCreate(1_000), "new", 1), with(cCreate(1_000), "new", 1)),
		"too_many_clients":     at(0, with(cCreate(1_000), "x", 1), with(cCreate(1_000), "y", 1)),
		"session_limit":        at(0, cCreate(1_000), cCreate(1_000), cCreate(1_000)),
		"object_limit":         at(0, cMutex("o1", a, 0), cMutex("o2", a, 0), cMutex("o3", a, 0)),
		"too_many_commands":    at(0, many...),
		"bad_names":            at(0, cMutex("", a, 0), cMutex("\xff", a, 0), cMutex("a\x00", a, 0), cMutex("seventeen-bytes!!", a, 0)),
		"extra_field":          at(0, Command{Op: OpSessionClose, Session: a, Name: "x"}),
		"unknown_session":      at(0, cMutex("mx", 12345, 0), cKeep(1)),
		"close_all":            at(0, cClose(a), cClose(b), cClose(c)),
		"close_then_use":       at(0, cClose(a), cMutex("mx", a, 0)),
	}
}
