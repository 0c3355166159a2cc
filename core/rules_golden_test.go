package core

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The rules' golden check (RulesVersion). Logs recorded once, per encoding
// version, under testdata/rules/, are applied to fresh machines; every
// rulesCheckpoint entries, and after the last, a hash of the results and
// effects so far and a hash of the state are compared with the ones
// recorded for (RulesVersion, ProposalVersion, SnapshotVersion). A change
// that makes the same log apply differently fails here until it bumps a
// version, and a version's hashes are never rewritten: that is what lets a
// member trust that a peer of the same versions applies the same log to the
// same state.
//
// There is one log per rules version a build keeps (rules.go): log-pP.bin,
// recorded by a build of rules 3 before marks carried rules, which every
// later build must still apply by rules 3 (a member replaying its old log
// after an upgrade); and log-pP-rR.bin for each later R, whose first entry
// is a mark carrying R, as a new leader of a build of rules R proposes.
// The results of each log of older rules than the build's must stay those
// every build of its rules recorded (checkOlderResults).
//
// Error messages are left out of both hashes: a clearer message changes
// nothing a replica decides on, and two members that word one differently
// still agree on every holder.

var recordRules = flag.Bool("record-rules", false,
	"TestRulesGolden: record the logs (those this ProposalVersion has none of) and the hashes for the current versions (if none are recorded)")

const (
	rulesDir        = "testdata/rules"
	rulesEntries    = 2000
	rulesCheckpoint = 100
	rulesSeed       = 0x10c857e9
)

func rulesKey() string {
	return fmt.Sprintf("r%d-p%d-s%d", RulesVersion, ProposalVersion, SnapshotVersion)
}

// rulesLogName names the recorded log that applies by rules.
func rulesLogName(rules uint64) string {
	if rules == rulesUnmarked {
		return fmt.Sprintf("log-p%d.bin", ProposalVersion)
	}
	return fmt.Sprintf("log-p%d-r%d.bin", ProposalVersion, rules)
}

func TestRulesGolden(t *testing.T) {
	sumPath := filepath.Join(rulesDir, rulesKey()+".sum")
	var b strings.Builder
	b.WriteString(vocabulary())
	for rules := uint64(rulesUnmarked); rules <= RulesVersion; rules++ {
		name := rulesLogName(rules)
		lines := applyRulesLog(t, loadRulesLog(t, rules), rules)
		if rules < RulesVersion {
			checkOlderResults(t, rules, lines)
		}
		fmt.Fprintf(&b, "log %s\n%s", name, lines)
	}
	got := b.String()

	want, err := os.ReadFile(sumPath)
	if errors.Is(err, fs.ErrNotExist) {
		if !*recordRules {
			t.Fatalf("no hashes recorded for %s (%s).\n"+
				"After bumping RulesVersion, ProposalVersion or SnapshotVersion, record them with\n"+
				"\tgo test ./core -run TestRulesGolden -record-rules\n"+
				"and commit %s", Compatibility(), sumPath, rulesDir)
		}
		if err := os.WriteFile(sumPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", sumPath)
		return
	} else if err != nil {
		t.Fatal(err)
	}
	if *recordRules {
		t.Fatalf("%s is recorded already, and a version's hashes are never rewritten: a change that alters them needs a new version", sumPath)
	}
	if string(want) == got {
		return
	}
	wl, gl := strings.Split(string(want), "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			t.Fatalf("the recorded logs no longer apply as %s recorded them:\n\twant %s\n\tgot  %s\n"+
				"This change alters what members decide from one log (or how they encode it): members running it\n"+
				"and members running the build before would disagree. Bump RulesVersion (core/rules.go, and say\n"+
				"what changed there, keeping the old rule for entries applied by the rules before), or\n"+
				"SnapshotVersion if only the snapshot's bytes changed, then record:\n"+
				"\tgo test ./core -run TestRulesGolden -record-rules",
				sumPath, w, g)
		}
	}
}

// loadRulesLog reads the log that applies by rules, recording it first
// when -record-rules is given and there is none.
func loadRulesLog(t *testing.T, rules uint64) []Entry {
	logPath := filepath.Join(rulesDir, rulesLogName(rules))
	raw, err := os.ReadFile(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		if !*recordRules {
			t.Fatalf("no recorded log for rules %d and entry encoding version %d (%s): record one with\n\tgo test ./core -run TestRulesGolden -record-rules", rules, ProposalVersion, logPath)
		}
		raw = encodeRulesLog(generateRulesLog(t, rules))
		if err := os.MkdirAll(rulesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(logPath, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("recorded %s", logPath)
	} else if err != nil {
		t.Fatal(err)
	}
	entries, err := decodeRulesLog(raw)
	if err != nil {
		t.Fatalf("%s: %v: the entry encoding changed without a new ProposalVersion", logPath, err)
	}
	return entries
}

// checkOlderResults compares the results of the log of rules, older than
// this build's, as this build applies it, with what every build of those
// rules recorded for it: a member restarted on this build replays such a
// log by those rules, and must decide what the members that wrote it
// decided. (The state hashes may differ: a later snapshot version writes
// the same state otherwise, as version 5 added the rules in force.)
func checkOlderResults(t *testing.T, rules uint64, lines string) {
	name := rulesLogName(rules)
	files, err := filepath.Glob(filepath.Join(rulesDir, fmt.Sprintf("r%d-p%d-s*.sum", rules, ProposalVersion)))
	if err != nil || len(files) == 0 {
		t.Fatalf("no hashes recorded by a build of rules %d for %s (%v)", rules, name, err)
	}
	results := func(text string) []string {
		var out []string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "entry ") {
				r, _, _ := strings.Cut(l, " state ")
				out = append(out, r)
			}
		}
		return out
	}
	got := results(lines)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := results(rulesSection(string(raw), name))
		if len(want) == 0 {
			continue // a build of these rules that did not apply this log
		}
		if !reflect.DeepEqual(want, got) {
			t.Fatalf("%s applied by rules %d no longer gives the results %s recorded:\n\twant %q\n\tgot  %q\n"+
				"A rule changed for entries written under older rules: keep the old rule for them (branch on m.rules)",
				name, rules, f, want, got)
		}
	}
}

// rulesSection is the part of a recorded sum that belongs to the log
// name: the lines after "log NAME" up to the next "log " line. Sums
// recorded before builds kept one log per rules (r3-p1-s4.sum) have no such
// lines, and are all the unmarked log's.
func rulesSection(text, name string) string {
	lines := strings.Split(text, "\n")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "log ") }) {
		if name != rulesLogName(rulesUnmarked) {
			return ""
		}
		return text
	}
	var b strings.Builder
	in := false
	for _, l := range lines {
		if strings.HasPrefix(l, "log ") {
			in = l == "log "+name
			continue
		}
		if in {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// vocabulary lists what an entry can say: the ops, kinds and modes, and
// the command's fields. A new one changes no recorded entry's outcome, but
// a build without it would refuse, or decode differently, an entry that
// uses it, while a build with it applies it: members of the two would
// diverge. So it changes these lines, and needs a new version too.
func vocabulary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ops %s\n", strings.Join(opNames[1:], " "))
	fmt.Fprintf(&b, "kinds %s\n", strings.Join(kindNames[1:], " "))
	fmt.Fprintf(&b, "modes %s %s\n", ModeWrite, ModeRead)
	fmt.Fprintf(&b, "wait-forever %d\n", WaitForever)
	b.WriteString("command")
	ct := reflect.TypeFor[Command]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		fmt.Fprintf(&b, " %s:%s", f.Name, f.Type)
	}
	b.WriteString("\n")
	return b.String()
}

// applyRulesLog applies entries to a fresh machine and returns the
// checkpoint lines: "entry N results HASH state HASH". The log must leave
// the machine under rules.
func applyRulesLog(t *testing.T, entries []Entry, rules uint64) string {
	m, err := New(rulesLimits())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	results := sha256.New()
	closeDelays := 0          // lock-delays a close started
	campaignValues := 0       // values a campaign (not a proclaim) changed
	unheard := map[bool]int{} // unheard releases and resigns, by whether they ended the grant
	// Requests answered a wait another request queued (they joined it), and
	// retries of them answered how that wait ended rather than "queued".
	queuedBy := map[WaiterID]requestKey{}
	joinedReqs := map[requestKey]bool{}
	joinedEnds := 0
	for i, e := range entries {
		out := m.Apply(e)
		hashOutput(results, out)
		for j, c := range e.Commands {
			r := out.Results[j]
			if c.Unheard && (r.Err == nil || r.Err.Code == CodeFailedPrecondition) {
				unheard[r.Err == nil]++
			}
			k := requestKey{c.ClientID, c.Seq}
			switch {
			case c.ClientID == "":
			case r.Duplicate && joinedReqs[k] && (r.Err != nil || r.Outcome != OutcomeQueued):
				joinedEnds++
			case !r.Duplicate && r.Err == nil && r.Outcome == OutcomeQueued && r.Waiter != 0:
				if first, ok := queuedBy[r.Waiter]; ok && first != k {
					joinedReqs[k] = true
				} else {
					queuedBy[r.Waiter] = k
				}
			}
		}
		if !slices.ContainsFunc(e.Commands, func(c Command) bool { return c.Op == OpProclaim }) {
			for _, ef := range out.Effects {
				if ef.Kind == EffectValueChanged {
					campaignValues++
				}
			}
		}
		for _, ef := range out.Effects {
			if ef.Kind == EffectReleased && ef.Reason == ReasonSessionClosed && ef.Object == KindMutex {
				if o := m.objects[objectKey{KindMutex, ef.Name}]; o != nil && o.lockDelayID == uint64(ef.Token) && o.lockDelayUntil > m.now {
					closeDelays++
				}
			}
		}
		if (i+1)%rulesCheckpoint == 0 || i == len(entries)-1 {
			fmt.Fprintf(&b, "entry %d results %x state %s\n", e.Index, results.Sum(nil)[:12], stateHash(t, m))
		}
	}
	if err := m.CheckInvariants(); err != nil {
		t.Fatalf("after the recorded log: %v", err)
	}
	if m.Rules() != rules {
		t.Fatalf("%s leaves rules %d in force, want %d", rulesLogName(rules), m.Rules(), rules)
	}
	// Each log shows what its rules do with a close that asks for the
	// lock-delay: refused under rules 3, where none can be written; a
	// lock-delay on the names it releases from rules 4.
	switch {
	case rules < rulesCloseLockDelay && closeDelays != 0:
		t.Fatalf("%s: %d closes started a lock-delay under rules %d", rulesLogName(rules), closeDelays, rules)
	case rules >= rulesCloseLockDelay && closeDelays == 0:
		t.Fatalf("%s: no close started a lock-delay: the log does not exercise rules %d", rulesLogName(rules), rulesCloseLockDelay)
	}
	// And what they do with a campaign of a leader with another value:
	// nothing under rules 3; a value_changed, as a proclaim's, from rules 4.
	switch {
	case rules < rulesCampaignValue && campaignValues != 0:
		t.Fatalf("%s: %d campaigns changed a leader's value under rules %d", rulesLogName(rules), campaignValues, rules)
	case rules >= rulesCampaignValue && campaignValues == 0:
		t.Fatalf("%s: no campaign changed a leader's value: the log does not exercise rules %d", rulesLogName(rules), rulesCampaignValue)
	}
	// And what they do with a replica's unheard release: refused under
	// rules 4; from rules 5 it ends a grant nobody else heard of, and is
	// refused for one another request was answered.
	switch {
	case rules < rulesUnheardRelease && unheard[true] != 0:
		t.Fatalf("%s: %d unheard releases ended a grant under rules %d", rulesLogName(rules), unheard[true], rules)
	case rules >= rulesUnheardRelease && (unheard[true] == 0 || unheard[false] == 0):
		t.Fatalf("%s: unheard releases ended %d grants and kept %d: the log does not exercise rules %d both ways",
			rulesLogName(rules), unheard[true], unheard[false], rulesUnheardRelease)
	}
	// And what they answer a retry of a request that joined a wait: "queued"
	// under rules 4, for ever; from rules 5, how the wait ended.
	switch {
	case rules < rulesJoinedWaitEnd && joinedEnds != 0:
		t.Fatalf("%s: %d retries of a joined request heard their wait end under rules %d", rulesLogName(rules), joinedEnds, rules)
	case rules >= rulesJoinedWaitEnd && joinedEnds == 0:
		t.Fatalf("%s: no retry of a request that joined a wait heard how the wait ended: the log does not exercise rules %d", rulesLogName(rules), rulesJoinedWaitEnd)
	}
	return b.String()
}

// stateHash hashes m's snapshot with the kept results' messages blanked.
func stateHash(t *testing.T, m *Machine) string {
	c, err := Restore(m.Snapshot())
	if err != nil {
		t.Fatalf("restoring the state: %v", err)
	}
	for _, rec := range c.clients.byID {
		for i := range rec.results {
			if r := &rec.results[i].result; r.Err != nil {
				r.Err = &Error{Code: r.Err.Code}
			}
		}
	}
	sum := sha256.Sum256(c.Snapshot())
	return hex.EncodeToString(sum[:12])
}

// hashOutput writes what an entry decided, in a fixed layout that does not
// follow the structs' fields: adding a field to Result or Effect changes no
// hash unless the values written here change.
func hashOutput(h hash.Hash, out *Output) {
	var b []byte
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	s := func(v int64) { b = binary.AppendVarint(b, v) }
	u(out.Index)
	s(int64(out.Time))
	s(int64(out.NextDeadline))
	u(uint64(len(out.Results)))
	for _, r := range out.Results {
		if r.Err != nil {
			u(uint64(r.Err.Code) + 1)
		} else {
			u(0)
		}
		u(uint64(r.Outcome))
		u(uint64(r.Token))
		u(uint64(r.Session))
		u(uint64(r.Waiter))
		s(int64(r.Deadline))
		u(r.Generation)
		u(uint64(r.Reason))
		if r.Duplicate {
			u(1)
		} else {
			u(0)
		}
	}
	u(uint64(len(out.Effects)))
	for _, e := range out.Effects {
		u(uint64(e.Kind))
		u(uint64(e.Reason))
		u(uint64(e.Object))
		u(uint64(len(e.Name)))
		b = append(b, e.Name...)
		u(uint64(e.Session))
		u(uint64(e.Waiter))
		u(uint64(e.Token))
		u(e.Generation)
		u(uint64(len(e.Value)))
		b = append(b, e.Value...)
	}
	h.Write(b)
}

// rulesLimits are the limits the log is applied under: the defaults, with
// the dedupe bounds small enough that the log reaches them.
func rulesLimits() Limits {
	l := DefaultLimits()
	l.MaxClients = 6
	l.DedupeWindow = 4
	l.MaxSessions = 40
	l.MaxWaitersPerObject = 6
	return l
}

// The log's file: each entry is its index (uvarint), the encoded proposal's
// length (uvarint) and the encoded proposal.

func encodeRulesLog(entries []Entry) []byte {
	var b []byte
	for _, e := range entries {
		p := EncodeProposal(e.Proposal)
		b = binary.AppendUvarint(b, e.Index)
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

func decodeRulesLog(raw []byte) ([]Entry, error) {
	r := bufio.NewReader(bytes.NewReader(raw))
	var entries []Entry
	for {
		index, err := binary.ReadUvarint(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return entries, nil
			}
			return nil, err
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 1<<20 {
			return nil, fmt.Errorf("entry %d: bad length", index)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return nil, fmt.Errorf("entry %d: %w", index, err)
		}
		prop, err := DecodeProposal(p)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", index, err)
		}
		entries = append(entries, Entry{Index: index, Proposal: prop})
	}
}

// rulesRand is splitmix64: the log is generated once and stored, so the
// generator may change, but a fixed one keeps a re-recorded log the same.
type rulesRand uint64

func (r *rulesRand) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rulesRand) intn(n int) int { return int(r.next() % uint64(n)) }

// generateRulesLog makes a log that reaches every op and kind, waits that
// time out and are granted, expiries, hold limits, lock delays, retries,
// forgotten clients, invalid commands, clock steps either way and leader
// changes with jumps, applying it as it goes so that most commands name
// live sessions, holds and waits. A log for rules after rulesUnmarked
// starts with a mark carrying them, and all its marks carry them.
func generateRulesLog(t *testing.T, rules uint64) []Entry {
	m, err := New(rulesLimits())
	if err != nil {
		t.Fatal(err)
	}
	rng := rulesRand(rulesSeed)
	var (
		now      = LogTime(1_700_000_000_000)
		entries  []Entry
		sessions []SessionID
		holds    []Effect // Kind, Name, Session, Token of grants
		waiters  []Effect // Object, Name, Session, Waiter of queued requests
		seqs     = map[string]uint64{}
		lastCmd  = map[string]Command{}
		// From rules 5 (rulesJoinedWaitEnd): requests that queued, which
		// another request of their session may join, and the requests that
		// did, which a retry asks again, while the wait lasts and after.
		queued, joined []Command
	)
	names := []string{"a", "b", "c", "d", "jobs/1", "jobs/2"}
	kinds := []Kind{KindMutex, KindMutex, KindSemaphore, KindRWLock, KindBarrier, KindElection}
	waits := []int64{0, 0, 300, 2_000, 20_000, WaitForever}
	pickSession := func() SessionID {
		if len(sessions) == 0 || rng.intn(20) == 0 {
			return SessionID(rng.intn(1 << 30)) // unknown
		}
		return sessions[rng.intn(len(sessions))]
	}
	stamp := func(c *Command) {
		id := fmt.Sprintf("client-%d", rng.intn(9))
		if prev, ok := lastCmd[id]; ok && rng.intn(12) == 0 {
			*c = prev // a retry: same id and seq, and the same request
			return
		}
		seqs[id]++
		c.ClientID, c.Seq = id, seqs[id]
		if rng.intn(3) == 0 {
			c.LowestPending = c.Seq - uint64(rng.intn(int(min(c.Seq, 3))))
		}
		lastCmd[id] = *c
	}
	command := func() Command {
		// Drawn only under rules 5 and later, so the older logs' draws stay
		// as they were recorded.
		if rules >= rulesJoinedWaitEnd && rng.intn(8) == 0 {
			if len(joined) > 0 && rng.intn(2) == 0 {
				return joined[rng.intn(len(joined))] // its stored answer: queued, or how the wait ended
			}
			if len(queued) > 0 {
				c := queued[rng.intn(len(queued))] // the same request, as another client of the session sends it
				id := fmt.Sprintf("joiner-%d", rng.intn(3))
				seqs[id]++
				c.ClientID, c.Seq = id, seqs[id]
				c.LowestPending = c.Seq - min(c.Seq-1, 4)
				joined = append(joined, c)
				if len(joined) > 8 {
					joined = joined[len(joined)-8:]
				}
				return c
			}
		}
		var c Command
		switch op := rng.intn(16); {
		case op < 3:
			c = Command{Op: OpSessionCreate, TTLMs: int64(1_000 + rng.intn(30_000)), Owner: "worker"}
			if rng.intn(15) == 0 {
				c.TTLMs = -1 // invalid
			}
		case op < 5:
			c = Command{Op: OpSessionKeepAlive, Session: pickSession()}
		case op == 5:
			c = Command{Op: OpSessionClose, Session: pickSession()}
			if rules >= rulesCloseLockDelay && rng.intn(2) == 0 {
				c.ApplyLockDelay = true // an operator's close
			}
		case op < 10:
			k := kinds[rng.intn(3)+rng.intn(2)] // mutex, semaphore, rwlock
			if k == KindMutex && rng.intn(2) == 0 {
				k = KindRWLock
			}
			name := k.String() + "/" + names[rng.intn(len(names))]
			if rng.intn(10) == 0 {
				name = names[rng.intn(len(names))] // maybe held as another kind
			}
			c = Command{Op: OpAcquire, Kind: k, Name: name, Session: pickSession(), WaitMs: waits[rng.intn(len(waits))]}
			switch k {
			case KindSemaphore:
				c.Limit, c.Permits = 3, int64(1+rng.intn(2))
			case KindRWLock:
				c.Mode = []Mode{ModeRead, ModeWrite}[rng.intn(2)]
			}
			if rng.intn(8) == 0 {
				c.MaxHoldMs = int64(100 + rng.intn(3_000))
			}
			if rng.intn(8) == 0 || (rules >= rulesCloseLockDelay && k == KindMutex && rng.intn(3) == 0) {
				c.LockDelayMs = int64(100 + rng.intn(2_000))
			}
			if rng.intn(25) == 0 {
				c.Name = "" // invalid
			}
		case op < 12:
			if len(holds) == 0 {
				return Command{Op: OpRelease, Kind: KindMutex, Name: "a", Session: pickSession(), Token: FencingToken(rng.next() >> 20)}
			}
			h := holds[rng.intn(len(holds))]
			switch h.Object {
			case KindElection:
				c = Command{Op: OpResign, Name: h.Name, Session: h.Session, Token: h.Token}
				if rng.intn(2) == 0 {
					c = Command{Op: OpProclaim, Name: h.Name, Session: h.Session, Token: h.Token, Value: []byte{byte(rng.intn(256))}}
				}
			default:
				c = Command{Op: OpRelease, Kind: h.Object, Name: h.Name, Session: h.Session, Token: h.Token}
			}
			if rules >= rulesUnheardRelease && c.Op != OpProclaim && rng.intn(3) == 0 {
				c.Unheard = true // a replica's, for a grant whose requester left: no identity
				return c
			}
		case op == 12:
			if len(waiters) == 0 {
				return Command{Op: OpCancel, Session: pickSession(), Waiter: WaiterID(rng.next() >> 20)}
			}
			w := waiters[rng.intn(len(waiters))]
			c = Command{Op: OpCancel, Session: w.Session, Waiter: w.Waiter}
			if rules >= rulesUnheardRelease && rng.intn(3) == 0 {
				c.Unheard = true // a replica's, for a gone requester's wait: no identity
				return c
			}
		case op == 13:
			switch rng.intn(3) {
			case 0:
				c = Command{Op: OpBarrierWait, Name: "meet", Session: pickSession(), Parties: 3, Participant: fmt.Sprintf("p%d", rng.intn(4)), WaitMs: waits[2+rng.intn(4)]}
			case 1:
				c = Command{Op: OpBarrierSet, Name: "gate", Session: pickSession()}
			default:
				c = Command{Op: OpBarrierWait, Name: "gate", Session: pickSession(), WaitMs: waits[2+rng.intn(4)]}
				if rng.intn(2) == 0 {
					c = Command{Op: OpBarrierRemove, Name: "gate"}
				}
			}
		case op == 14:
			c = Command{Op: OpCampaign, Name: "leader", Session: pickSession(), Value: []byte("v"), Owner: "candidate", WaitMs: waits[rng.intn(len(waits))]}
			if rules >= rulesCampaignValue && rng.intn(2) == 0 {
				c.Value = []byte{'v', byte('0' + rng.intn(3))} // a candidate back with another value
			}
		default:
			// Withdraw an earlier request of a client, whichever it was.
			id := fmt.Sprintf("client-%d", rng.intn(9))
			prev, ok := lastCmd[id]
			if !ok || prev.Op != OpAcquire {
				return Command{Op: OpSessionKeepAlive, Session: pickSession(), ClientID: "late", Seq: uint64(1 + rng.intn(3))}
			}
			c = Command{Op: OpAbandon, Kind: prev.Kind, Name: prev.Name, Session: prev.Session, TargetSeq: prev.Seq}
			c.ClientID = id
			seqs[id]++
			c.Seq = seqs[id]
			return c
		}
		stamp(&c)
		return c
	}

	mark := Command{Op: OpLeaderChange}
	if rules != rulesUnmarked {
		mark.Rules = rules
	}
	for i := 1; i <= rulesEntries; i++ {
		switch r := rng.intn(100); {
		case r < 80:
			now += LogTime(rng.intn(100))
		case r < 95:
			now += LogTime(100 + rng.intn(1_000))
		case r < 98:
			now -= LogTime(rng.intn(1_500)) // a clock stepped back: log time holds
		default:
			now += LogTime(5_000 + rng.intn(20_000)) // more than a step may move
		}
		var cmds []Command
		switch r := rng.intn(100); {
		case i == 1 && mark.Rules != 0:
			cmds = []Command{mark} // the first leader of a build of these rules
		case r < 3:
			if rng.intn(4) == 0 {
				now += 3_600_000 // a new leader an hour ahead
			}
			cmds = []Command{mark}
		case r < 8:
			// a tick
		case r < 10:
			cmds = []Command{{Op: OpTickRequest, Owner: "replica-2"}}
		default:
			for range 1 + rng.intn(6) {
				cmds = append(cmds, command())
			}
		}
		e := Entry{Index: uint64(i), Proposal: Proposal{Time: now, Commands: cmds}}
		out := m.Apply(e)
		entries = append(entries, Entry{Index: e.Index, Proposal: Proposal{Time: e.Time, Commands: append([]Command(nil), cmds...)}})
		for j, res := range out.Results {
			c := cmds[j]
			switch {
			case res.Err != nil || res.Duplicate:
			case c.Op == OpSessionCreate:
				sessions = append(sessions, res.Session)
			case res.Outcome == OutcomeGranted:
				k := c.Kind
				if c.Op == OpCampaign {
					k = KindElection
				}
				holds = append(holds, Effect{Object: k, Name: c.Name, Session: c.Session, Token: res.Token})
			case res.Outcome == OutcomeQueued:
				waiters = append(waiters, Effect{Object: c.Kind, Name: c.Name, Session: c.Session, Waiter: res.Waiter})
				if c.ClientID != "" {
					queued = append(queued, c)
				}
			}
		}
		for _, ef := range out.Effects {
			if ef.Kind == EffectGranted {
				holds = append(holds, Effect{Object: ef.Object, Name: ef.Name, Session: ef.Session, Token: ef.Token})
			}
		}
		// Keep the lists short, so that most picks are recent.
		if len(holds) > 24 {
			holds = holds[len(holds)-24:]
		}
		if len(waiters) > 24 {
			waiters = waiters[len(waiters)-24:]
		}
		if len(queued) > 24 {
			queued = queued[len(queued)-24:]
		}
		if len(sessions) > 30 {
			sessions = sessions[len(sessions)-30:]
		}
	}
	return entries
}
