package core

import "testing"

// TestClockTable feeds stamped times to a fresh machine and checks the log
// time after each entry: the first entry sets the clock, later ones move it
// to max(now, stamped), by at most MaxClockStepMs while anything is timed
// (timed: the first entry creates a day-long session), and whole when
// nothing is.
func TestClockTable(t *testing.T) {
	const hour = 3600 * 1000
	tests := []struct {
		name   string
		step   int64 // MaxClockStepMs; 0: the default (2 s)
		timed  bool
		stamps []LogTime
		want   []LogTime
	}{
		{"the first entry sets the clock, however far", 0, false,
			[]LogTime{1_700_000_000_000}, []LogTime{1_700_000_000_000}},
		{"a first entry stamped before zero leaves the clock at zero", 0, false,
			[]LogTime{-5}, []LogTime{0}},
		{"time moves forward", 0, true,
			[]LogTime{1_000, 1_100, 1_250, 3_250}, []LogTime{1_000, 1_100, 1_250, 3_250}},
		{"time never moves back", 0, true,
			[]LogTime{10_000, 9_000, 10_000, 500, 10_001}, []LogTime{10_000, 10_000, 10_000, 10_000, 10_001}},
		{"a one-hour jump moves the clock by 2 s", 0, true,
			[]LogTime{1_000, 1_000 + hour}, []LogTime{1_000, 3_000}},
		{"with nothing timed a one-hour jump is taken whole", 0, false,
			[]LogTime{1_000, 1_000 + hour, 1_000 + hour}, []LogTime{1_000, 1_000 + hour, 1_000 + hour}},
		{"with nothing timed time still never moves back", 0, false,
			[]LogTime{10_000, 9_000, 10_001}, []LogTime{10_000, 10_000, 10_001}},
		{"a jump is caught up 2 s per entry", 0, true,
			[]LogTime{1_000, 1_000 + hour, 1_000 + hour, 1_000 + hour}, []LogTime{1_000, 3_000, 5_000, 7_000}},
		{"a step exactly at the cap is taken whole", 0, true,
			[]LogTime{1_000, 3_000, 5_001}, []LogTime{1_000, 3_000, 5_000}},
		{"the cap is a limit", 50, true,
			[]LogTime{1_000, 2_000, 2_010}, []LogTime{1_000, 1_050, 1_100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := DefaultLimits()
			if tc.step != 0 {
				l.MaxClockStepMs = tc.step
			}
			m, err := New(l)
			if err != nil {
				t.Fatal(err)
			}
			for i, at := range tc.stamps {
				var cmds []Command
				if tc.timed && i == 0 {
					cmds = []Command{cCreate(l.MaxTTLMs)}
				}
				out := m.Apply(Entry{Index: uint64(i + 1), Proposal: Proposal{Time: at, Commands: cmds}})
				if out.Time != tc.want[i] || m.Now() != tc.want[i] || m.Index() != uint64(i+1) {
					t.Fatalf("entry %d stamped %d: output time %d, now %d, want %d", i+1, at, out.Time, m.Now(), tc.want[i])
				}
			}
		})
	}
}

func TestClockBehaviourTable(t *testing.T) {
	t.Run("a leader whose clock jumps an hour cannot expire a 10 s session", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(10_000)
		out := h.apply(h.now() + 3600*1000)
		if out.Time != tblStart+2_000 || !h.live(s) || len(out.Effects) != 0 {
			t.Fatalf("time %d, effects:\n%s", out.Time, tblEffects(out.Effects))
		}
	})
	t.Run("commands run at the entry's capped time", func(t *testing.T) {
		h := newTblHarness(t)
		h.session(60_000)
		r := h.apply(h.now()+60_000, cCreate(1_000)).Results[0]
		if r.Deadline != tblStart+2_000+1_000 {
			t.Fatalf("deadline %d: the command saw the uncapped time", r.Deadline)
		}
	})
	t.Run("an entry stamped in the past runs at the current time", func(t *testing.T) {
		h := newTblHarness(t)
		h.advance(5_000)
		r := h.apply(tblStart, cCreate(1_000)).Results[0]
		if r.Deadline != tblStart+5_000+1_000 {
			t.Fatalf("deadline %d", r.Deadline)
		}
	})
	t.Run("timers fire when the clock reaches them, not when an entry claims it", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(3_000)
		h.apply(h.now() + 10_000) // capped at +2 s
		if !h.live(s) {
			t.Fatal("expired by a capped jump")
		}
		effs := h.apply(h.now() + 10_000).Effects // +4 s in all
		if e := tblOne(t, effs, EffectSessionExpired); e.Session != s {
			t.Fatalf("expired %+v", e)
		}
	})
	t.Run("with nothing timed, a command after a quiet hour runs at now", func(t *testing.T) {
		h := newTblHarness(t)
		r := h.apply(h.now()+3600*1000, cCreate(1_000)).Results[0]
		if r.Deadline != tblStart+3600*1000+1_000 {
			t.Fatalf("deadline %d: the session's lease starts before the entry's time", r.Deadline)
		}
		// Now a session is timed: the next jump is capped again.
		if out := h.apply(h.now() + 3600*1000); out.Time != tblStart+3600*1000+2_000 {
			t.Fatalf("time %d after a second jump with a session live", out.Time)
		}
	})
	t.Run("a kept-alive session's old deadline is no deadline", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(10_000)
		h.advance(1_000)
		out := h.apply(h.now(), cKeep(s))
		if out.NextDeadline != h.now()+10_000 {
			t.Fatalf("next deadline %d, want %d (the keepalive's)", out.NextDeadline, h.now()+10_000)
		}
		out = h.apply(h.now(), cClose(s))
		if out.NextDeadline != 0 {
			t.Fatalf("next deadline %d with nothing timed left", out.NextDeadline)
		}
	})
	t.Run("the clock and index survive a snapshot", func(t *testing.T) {
		h := newTblHarness(t)
		h.session(24 * 3600 * 1000)
		h.advance(1_234)
		m, err := Restore(h.m.Snapshot())
		if err != nil {
			t.Fatal(err)
		}
		if m.Now() != h.now() || m.Index() != h.m.Index() {
			t.Fatalf("restored now %d index %d, want %d %d", m.Now(), m.Index(), h.now(), h.m.Index())
		}
		// The restored machine is started: its next entry is capped.
		if out := m.Apply(Entry{Index: m.Index() + 1, Proposal: Proposal{Time: h.now() + 3600*1000}}); out.Time != h.now()+2_000 {
			t.Fatalf("restored machine took an uncapped step to %d", out.Time)
		}
	})
}

// TestApplyIndexOrder checks the documented panic: an index that does not
// increase is a bug in the caller, never silently applied.
func TestApplyIndexOrder(t *testing.T) {
	for _, idx := range []uint64{5, 4, 0} {
		m, _ := New(DefaultLimits())
		m.Apply(Entry{Index: 5})
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("index %d after 5 did not panic", idx)
				}
			}()
			m.Apply(Entry{Index: idx})
		}()
	}
	m, _ := New(DefaultLimits())
	m.Apply(Entry{Index: 5})
	m.Apply(Entry{Index: 9}) // gaps are allowed
	if m.Index() != 9 {
		t.Fatalf("index %d", m.Index())
	}
}

// TestClockDesignQuestions covers two edges docs/design.md implies: an entry
// without a time does not start the clock, and log time is bounded so that
// deadlines never wrap.
func TestClockDesignQuestions(t *testing.T) {
	t.Run("a first entry without a time does not start the clock", func(t *testing.T) {
		m, _ := New(DefaultLimits())
		m.Apply(Entry{Index: 1})
		if out := m.Apply(Entry{Index: 2, Proposal: Proposal{Time: 1_700_000_000_000}}); out.Time != 1_700_000_000_000 {
			t.Fatalf("now %d", out.Time)
		}
	})
	t.Run("deadlines never wrap at the end of log time", func(t *testing.T) {
		m, _ := New(DefaultLimits())
		m.Apply(Entry{Index: 1, Proposal: Proposal{Time: 1<<63 - 5, Commands: []Command{cCreate(10)}}})
		if err := m.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}
