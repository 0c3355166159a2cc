package core

import (
	"strings"
	"testing"
)

// tblNamed returns a command of op that takes a name, naming name; the
// other fields are valid.
func tblNamed(op Op, s SessionID, name string) Command {
	switch op {
	case OpAcquire:
		return cMutex(name, s, 0)
	case OpRelease:
		return cRelease(KindMutex, name, s, 1)
	case OpBarrierWait:
		return cArrive(name, s, 2, "", 0)
	case OpBarrierSet:
		return cSet(name, s)
	case OpBarrierRemove:
		return cRemove(name)
	case OpCampaign:
		return cCampaign(name, s, "", 0)
	case OpProclaim:
		return cProclaim(name, s, 1, "")
	case OpResign:
		return cResign(name, s, 1)
	}
	panic("op takes no name")
}

func TestNamesTable(t *testing.T) {
	bad := []struct {
		name, phrase string
	}{
		{"", "the name is empty: give 1..256 bytes of printable UTF-8"},
		{strings.Repeat("n", 257), "the name is 257 bytes: at most 256"},
		{"\xff", "the name is not valid UTF-8 at byte 0"},
		{"ok/\xc3", "the name is not valid UTF-8 at byte 3"},
		{"a\x00b", "the name has an unprintable character U+0000 at byte 1"},
		{"line\nbreak", "unprintable character U+000A at byte 4"},
		{"tab\t", "unprintable character U+0009"},
		{"zero\u200bwidth", "unprintable character U+200B"},
		{"no\u00a0break", "unprintable character U+00A0"},
		{"del\x7f", "unprintable character U+007F"},
	}
	good := []string{
		"a", "locks/orders/42", "/leading/and/trailing/", "with space", "ünïcödé-名前", "\ufffd",
		strings.Repeat("n", 256), strings.Repeat("é", 128), "!#$%&'()*+,-.:;<=>?@[]^_`{|}~",
	}
	ops := []Op{OpAcquire, OpRelease, OpBarrierWait, OpBarrierSet, OpBarrierRemove, OpCampaign, OpProclaim, OpResign}
	for _, op := range ops {
		for _, tc := range bad {
			t.Run(op.String()+"/"+tc.phrase, func(t *testing.T) {
				h := newTblHarness(t)
				h.fails(tblNamed(op, h.session(60_000), tc.name), CodeInvalidArgument, tc.phrase)
			})
		}
	}
	h := newTblHarness(t)
	s := h.session(60_000)
	for _, name := range good {
		if err := h.m.Limits().ValidateName(name); err != nil {
			t.Fatalf("ValidateName(%q): %v", name, err)
		}
		h.granted(cMutex(name, s, 0))
		h.status(KindMutex, name)
	}
	for _, tc := range bad {
		if err := h.m.Limits().ValidateName(tc.name); CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tc.phrase) {
			t.Fatalf("ValidateName(%q): %v", tc.name, err)
		}
		if _, err := h.m.Status(KindMutex, tc.name); CodeOf(err) != CodeInvalidArgument {
			t.Fatalf("Status(%q): %v", tc.name, err)
		}
		if _, err := h.m.CheckFence(KindMutex, tc.name, 1); CodeOf(err) != CodeInvalidArgument {
			t.Fatalf("CheckFence(%q): %v", tc.name, err)
		}
	}
	// The name limit is a limit.
	h = newTblHarness(t, func(l *Limits) { l.MaxNameBytes = 4 })
	h.granted(cMutex("abcd", h.session(1_000), 0))
	h.fails(cMutex("abcde", h.session(1_000), 0), CodeInvalidArgument, "the name is 5 bytes: at most 4")
}

func TestSizesTable(t *testing.T) {
	acq := func(s SessionID, owner string, value int) Command {
		c := cMutex("m", s, 0)
		c.Owner, c.Value = owner, make([]byte, value)
		return c
	}
	h := newTblHarness(t)
	s := h.session(60_000)
	h.granted(acq(s, strings.Repeat("o", 128), 1024)) // at the limits
	h.fails(acq(s, strings.Repeat("o", 129), 0), CodeInvalidArgument, "owner is 129 bytes: at most 128")
	h.fails(acq(s, "", 1025), CodeInvalidArgument, "value is 1025 bytes: at most 1024")
	h.fails(acq(s, "\xc3(", 0), CodeInvalidArgument, "owner is not valid UTF-8")
	h.fails(cArrive("b", s, 2, "\xc3(", 1000), CodeInvalidArgument, "participant is not valid UTF-8")

	h = newTblHarness(t, func(l *Limits) { l.MaxOwnerBytes, l.MaxValueBytes = 0, 0 })
	s = h.session(60_000)
	h.fails(acq(s, "o", 0), CodeInvalidArgument, "owner is 1 bytes: at most 0")
	h.fails(acq(s, "", 1), CodeInvalidArgument, "value is 1 bytes: at most 0")
	h.fails(cCampaign("e", s, "v", 0), CodeInvalidArgument, "value is 1 bytes: at most 0")
	h.granted(acq(s, "", 0))
}

func TestResourceLimitsTable(t *testing.T) {
	tests := []struct {
		name   string
		tweak  func(*Limits)
		cmd    func(h *tblHarness) Command
		code   Code
		phrase string
	}{
		{"objects: a mutex", func(l *Limits) { l.MaxObjects = 2 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			h.granted(cSem("b", s, 2, 1, 0))
			return cMutex("c", s, 0)
		}, CodeResourceExhausted, "2 objects are live, the limit: release or close sessions before creating mutex \"c\""},
		{"objects: a barrier arrival", func(l *Limits) { l.MaxObjects = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			return cArrive("b", s, 2, "", WaitForever)
		}, CodeResourceExhausted, "before creating barrier \"b\""},
		{"objects: a barrier set", func(l *Limits) { l.MaxObjects = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			return cSet("b", s)
		}, CodeResourceExhausted, "before creating barrier \"b\""},
		{"objects: a campaign", func(l *Limits) { l.MaxObjects = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			return cCampaign("e", s, "", 0)
		}, CodeResourceExhausted, "before creating election \"e\""},
		{"objects: a mutex kept by its lock-delay counts", func(l *Limits) { l.MaxObjects = 1 }, func(h *tblHarness) Command {
			c := cMutex("a", h.session(1_000), 0)
			c.LockDelayMs = 5_000
			h.granted(c)
			h.advance(1_000)
			return cMutex("b", h.session(1_000), 0)
		}, CodeResourceExhausted, "1 objects are live"},
		{"waiters per object", func(l *Limits) { l.MaxWaitersPerObject = 1 }, func(h *tblHarness) Command {
			h.granted(cMutex("a", h.session(60_000), 0))
			h.queued(cMutex("a", h.session(60_000), WaitForever))
			return cMutex("a", h.session(60_000), WaitForever)
		}, CodeResourceExhausted, "1 requests already wait for mutex \"a\", the limit: try again later"},
		{"waiters per object at a barrier", func(l *Limits) { l.MaxWaitersPerObject = 1 }, func(h *tblHarness) Command {
			h.queued(cArrive("b", h.session(60_000), 5, "", WaitForever))
			return cArrive("b", h.session(60_000), 5, "", WaitForever)
		}, CodeResourceExhausted, "1 requests already wait for barrier \"b\""},
		{"waiters in all: a grant is not a wait", func(l *Limits) { l.MaxWaiters = 2 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			h.granted(cMutex("b", s, 0))
			h.queued(cMutex("a", h.session(60_000), WaitForever))
			h.queued(cMutex("b", h.session(60_000), WaitForever))
			return cCampaign("e", h.session(60_000), "", 0)
		}, CodeOK, ""},
		{"waiters in all, refused", func(l *Limits) { l.MaxWaiters = 2 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			h.granted(cMutex("b", s, 0))
			h.queued(cMutex("a", h.session(60_000), WaitForever))
			h.queued(cMutex("b", h.session(60_000), WaitForever))
			return cArrive("c", h.session(60_000), 2, "", WaitForever)
		}, CodeResourceExhausted, "2 requests wait across the cluster, the limit: try again later"},
		{"holds per session: a grant", func(l *Limits) { l.MaxHoldsPerSession = 2 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			h.granted(cRW("b", s, ModeRead, 0))
			return cMutex("c", s, 0)
		}, CodeResourceExhausted, "has 2 grants and waits, the limit: release some first"},
		{"holds per session: a wait counts", func(l *Limits) { l.MaxHoldsPerSession = 2 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("x", h.session(60_000), 0))
			h.granted(cMutex("a", s, 0))
			h.queued(cMutex("x", s, WaitForever))
			return cCampaign("e", s, "", 0)
		}, CodeResourceExhausted, "has 2 grants and waits"},
		{"holds per session: a queued request", func(l *Limits) { l.MaxHoldsPerSession = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("x", h.session(60_000), 0))
			h.granted(cMutex("a", s, 0))
			return cMutex("x", s, WaitForever)
		}, CodeResourceExhausted, "has 1 grants and waits"},
		{"holds per session: a barrier arrival", func(l *Limits) { l.MaxHoldsPerSession = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			return cArrive("b", s, 2, "", WaitForever)
		}, CodeResourceExhausted, "has 1 grants and waits"},
		{"holds per session: a barrier set", func(l *Limits) { l.MaxHoldsPerSession = 1 }, func(h *tblHarness) Command {
			s := h.session(60_000)
			h.granted(cMutex("a", s, 0))
			return cSet("b", s)
		}, CodeResourceExhausted, "has 1 grants and waits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t, tc.tweak)
			c := tc.cmd(h)
			if tc.code == CodeOK {
				h.ok(c)
				return
			}
			h.fails(c, tc.code, tc.phrase)
		})
	}
}

func TestCommandsPerEntryTable(t *testing.T) {
	h := newTblHarness(t, func(l *Limits) { l.MaxCommandsPerEntry = 3 })
	s := h.session(1_000)
	h.run(cMutex("a", s, 0), cMutex("b", s, 0), cMutex("c", s, 0)) // at the limit
	// Four commands: all refused, nothing applied, though timers still fire.
	out := h.failsEntry(h.now()+1_000, []Command{cCreate(1_000), cCreate(1_000), cCreate(1_000), cCreate(1_000)})
	for _, r := range out.Results {
		tblWantErr(t, r, CodeResourceExhausted, "the entry packs 4 commands; at most 3 fit one entry: propose smaller batches")
	}
	if len(tblFind(out.Effects, EffectSessionExpired)) != 1 {
		t.Fatalf("the refused entry's timers did not fire:\n%s", tblEffects(out.Effects))
	}
}

func TestClientKeyTable(t *testing.T) {
	tests := []struct {
		name   string
		cmd    Command
		phrase string
	}{
		{"a seq without a client", Command{Op: OpSessionCreate, TTLMs: 1_000, Seq: 3}, "request_seq 3 without a client_id: send both or neither"},
		{"a client without a seq", with(cCreate(1_000), "c1", 0), "client_id \"c1\" without a request_seq: number requests from 1"},
		{"a long client id", with(cCreate(1_000), strings.Repeat("c", 129), 1), "client_id is 129 bytes: at most 128"},
		{"an unknown op", Command{Op: 0}, "unknown op 0: use one of session_create .. abandon"},
		{"an op past the last", Command{Op: opCount}, "unknown op 16"},
		{"op 255", Command{Op: 255, Name: "x"}, "unknown op 255"},
		{"a tick request from a client", Command{Op: OpTickRequest, Owner: "n1/1", ClientID: "c", Seq: 1},
			"tick_request is proposed by the replicas themselves, never with a client_id"},
		{"a tick request naming nobody", Command{Op: OpTickRequest}, "tick_request needs owner"},
		{"a tick request with a session", Command{Op: OpTickRequest, Owner: "n1/1", Session: 1}, "tick_request does not take session_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			h.fails(tc.cmd, CodeInvalidArgument, tc.phrase)
		})
	}
	h := newTblHarness(t)
	h.ok(with(cCreate(1_000), strings.Repeat("c", 128), 1))
}

// tblSetField gives one field of c a non-zero value.
func tblSetField(c *Command, f field) {
	switch f {
	case fKind:
		c.Kind = KindMutex
	case fName:
		c.Name = "n"
	case fSession:
		c.Session = 1
	case fToken:
		c.Token = 1
	case fWaiter:
		c.Waiter = 1
	case fTTL:
		c.TTLMs = 1_000
	case fWait:
		c.WaitMs = 1
	case fLockDelay:
		c.LockDelayMs = 1
	case fMaxHold:
		c.MaxHoldMs = 1
	case fLimit:
		c.Limit = 1
	case fPermits:
		c.Permits = 1
	case fMode:
		c.Mode = ModeRead
	case fParties:
		c.Parties = 2
	case fParticipant:
		c.Participant = "p"
	case fOwner:
		c.Owner = "o"
	case fValue:
		c.Value = []byte("v")
	default:
		panic("unknown field")
	}
}

// TestFieldsTable sends every op every field it does not take: each is
// refused by name, so a caller learns the field is ignored instead of
// guessing.
func TestFieldsTable(t *testing.T) {
	h := newTblHarness(t)
	n := 0
	for op := Op(1); op < opCount; op++ {
		for f := field(1); f <= fValue; f <<= 1 {
			if opFields[op]&f != 0 {
				continue
			}
			c := Command{Op: op}
			tblSetField(&c, f)
			h.fails(c, CodeInvalidArgument, op.String()+" does not take "+fieldNames[f]+": leave it empty")
			n++
		}
	}
	if n < 100 {
		t.Fatalf("only %d op/field pairs checked", n)
	}
}

func TestReadsTable(t *testing.T) {
	h := newTblHarness(t)
	s := h.session(60_000)
	h.granted(cMutex("app/b", s, 0))
	h.granted(cMutex("app/a", s, 0))
	h.granted(cMutex("other", s, 0))
	h.granted(cMutex("app", s, 0))
	h.granted(cSem("app/c", s, 3, 1, 0))
	h.granted(cRW("app/a", s, ModeWrite, 0))
	h.granted(cCampaign("app/z", s, "", 0))
	h.ok(cSet("app/gate", s))
	h.queued(cArrive("app/party", s, 2, "", WaitForever))

	names := func(list []Status) string {
		var parts []string
		for _, st := range list {
			parts = append(parts, st.Kind.String()+":"+st.Name)
		}
		return strings.Join(parts, " ")
	}
	tests := []struct {
		kind   Kind
		prefix string
		limit  int
		want   string
		more   bool
	}{
		{0, "app/", 0, "mutex:app/a mutex:app/b semaphore:app/c rwlock:app/a barrier:app/gate barrier:app/party election:app/z", false},
		{0, "", 0, "mutex:app mutex:app/a mutex:app/b mutex:other semaphore:app/c rwlock:app/a barrier:app/gate barrier:app/party election:app/z", false},
		{KindMutex, "app", 0, "mutex:app mutex:app/a mutex:app/b", false},
		{KindMutex, "app/", 2, "mutex:app/a mutex:app/b", false},
		{KindMutex, "app/", 1, "mutex:app/a", true},
		{0, "app/", 3, "mutex:app/a mutex:app/b semaphore:app/c", true},
		{KindBarrier, "", 0, "barrier:app/gate barrier:app/party", false},
		{KindElection, "nothing/", 0, "", false},
		{0, "app/a", -1, "mutex:app/a rwlock:app/a", false},
	}
	for _, tc := range tests {
		list, more, err := h.m.List(tc.kind, tc.prefix, tc.limit)
		if err != nil || names(list) != tc.want || more != tc.more {
			t.Fatalf("List(%v, %q, %d) = %q, %v, %v; want %q, %v", tc.kind, tc.prefix, tc.limit, names(list), more, err, tc.want, tc.more)
		}
	}
	// List shows what Status shows.
	list, _, _ := h.m.List(KindSemaphore, "app/c", 0)
	if st := h.status(KindSemaphore, "app/c"); len(list) != 1 || list[0].Used != st.Used || list[0].Limit != 3 || len(list[0].Holders) != 1 {
		t.Fatalf("List %+v, Status %+v", list, st)
	}
	// MaxListResults caps any limit.
	h2 := newTblHarness(t, func(l *Limits) { l.MaxListResults = 2 })
	s2 := h2.session(60_000)
	for _, n := range []string{"a", "b", "c"} {
		h2.granted(cMutex(n, s2, 0))
	}
	if list, more, _ := h2.m.List(0, "", 100); len(list) != 2 || !more {
		t.Fatalf("capped list: %d, %v", len(list), more)
	}

	errs := []struct {
		name string
		err  error
		code Code
		say  string
	}{
		{"Status of kind 0", tblErr(h.m.Status(0, "a")), CodeInvalidArgument, "unknown kind 0: use mutex, semaphore, rwlock, barrier or election"},
		{"Status of kind 9", tblErr(h.m.Status(9, "a")), CodeInvalidArgument, "unknown kind 9"},
		{"Status of an empty name", tblErr(h.m.Status(KindMutex, "")), CodeInvalidArgument, "the name is empty"},
		{"List of kind 9", tblErr2(h.m.List(9, "", 0)), CodeInvalidArgument, "use 0 for all kinds"},
		{"List with a long prefix", tblErr2(h.m.List(0, strings.Repeat("p", 257), 0)), CodeInvalidArgument, "the prefix is 257 bytes: at most 256"},
		{"CheckFence of kind 0", tblErr(h.m.CheckFence(0, "a", 1)), CodeInvalidArgument, "unknown kind 0"},
		{"SessionInfo of nobody", tblErr(h.m.SessionInfo(42)), CodeNotFound, "session 42 does not exist"},
	}
	for _, tc := range errs {
		if CodeOf(tc.err) != tc.code || !strings.Contains(tc.err.Error(), tc.say) {
			t.Fatalf("%s: %v", tc.name, tc.err)
		}
	}

	info, err := h.m.SessionInfo(s)
	if err != nil || len(info.Holds) != 8 || len(info.Waits) != 1 || info.Waits[0].Name != "app/party" || info.Holds[0].Name != "app/b" {
		t.Fatalf("SessionInfo %+v, %v", info, err)
	}
	if c := h.m.Counts(); c.Sessions != 1 || c.Objects != 9 || c.Holds != 8 || c.Waiters != 1 || c.Clients != 0 {
		t.Fatalf("Counts %+v", c)
	}
}

func tblErr[T any](_ T, err error) error              { return err }
func tblErr2[T any, U any](_ T, _ U, err error) error { return err }

func TestLimitsValidateTable(t *testing.T) {
	tests := []struct {
		tweak  func(*Limits)
		phrase string
	}{
		{func(l *Limits) { l.MaxNameBytes = 0 }, "MaxNameBytes must be within 1..4096"},
		{func(l *Limits) { l.MaxObjects = 0 }, "MaxObjects must be at least 1"},
		{func(l *Limits) { l.MaxWaiters = 1 << 18 }, "MaxWaiters must be within 1..262143"},
		{func(l *Limits) { l.MaxParties = 1 }, "MaxParties must be at least 2"},
		{func(l *Limits) { l.MinTTLMs = 10; l.MaxTTLMs = 5 }, "MinTTLMs must be within 1..MaxTTLMs"},
		{func(l *Limits) { l.MaxClockStepMs = 0 }, "MaxClockStepMs must be within 1..2^40"},
		{func(l *Limits) { l.MaxTTLMs = MaxDurationMs + 1 }, "MaxTTLMs must be at most MaxDurationMs"},
		{func(l *Limits) { l.MaxWaitMs = MaxDurationMs + 1 }, "MaxWaitMs must be within 1..2^40"},
		{func(l *Limits) { l.DedupeRetentionMs = MaxDurationMs + 1 }, "DedupeRetentionMs must be within 1..2^40"},
		{func(l *Limits) { l.MaxCommandsPerEntry = 1 << 18 }, "MaxCommandsPerEntry must be within 1..262143"},
		{func(l *Limits) { l.DedupeWindow = 1025 }, "DedupeWindow must be within 1..1024"},
		{func(l *Limits) { l.MaxLockDelayMs = -1 }, "MaxLockDelayMs must be within 0..2^40"},
	}
	for _, tc := range tests {
		l := DefaultLimits()
		tc.tweak(&l)
		m, err := New(l)
		if m != nil || CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tc.phrase) {
			t.Fatalf("New with a bad limit: %v, want %q", err, tc.phrase)
		}
	}
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatalf("the default limits: %v", err)
	}
}

// A tick request is for the replicas' drivers: applied, it is done and
// leaves the machine exactly as an empty tick at the same index would.
func TestTickRequestChangesNothing(t *testing.T) {
	a, b := newTblHarness(t), newTblHarness(t)
	for _, h := range []*tblHarness{a, b} {
		h.session(10_000)
	}
	out := a.apply(a.now()+5, Command{Op: OpTickRequest, Owner: "n2/7"})
	if r := out.Results[0]; r.Err != nil || r.Outcome != OutcomeDone || len(out.Effects) != 0 {
		t.Fatalf("tick request: %+v, effects %v", r, out.Effects)
	}
	b.apply(b.now() + 5)
	if a.m.Hash() != b.m.Hash() {
		t.Fatal("a tick request changed the machine's state")
	}
}

// ClientCommands counts only what clients sent: the replicas' own commands
// (a leader-change mark, a tick request, a withdrawal) carry no ClientID.
func TestProposalClientCommands(t *testing.T) {
	p := Proposal{Commands: []Command{cLeader(), {Op: OpTickRequest, Owner: "n1/1"}, {Op: OpCancel, Waiter: 3, Session: 2},
		with(cCreate(1_000), "c", 1), with(cKeep(2), "c", 2)}}
	if n := p.ClientCommands(); n != 2 {
		t.Fatalf("%d client commands in %v, want 2", n, p.Commands)
	}
}
