package sim

import (
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// The ledger's checks, each shown failing on a hand-written log that breaks
// exactly its rule (planted bugs cover the others end to end).

type logBuilder struct {
	t   *testing.T
	w   *world
	idx uint64
	// untimed: the outputs say nothing in the machine is timed.
	untimed bool
}

func newLogBuilder(t *testing.T) *logBuilder {
	w := &world{tr: newTrace(), names: &names{semLimits: map[string]int64{"s": 1}}}
	w.chk = newChecker(w)
	return &logBuilder{t: t, w: w, idx: 1}
}

func (b *logBuilder) entry(time core.LogTime, cmds []core.Command, results []core.Result, effects ...core.Effect) {
	b.idx++
	e := core.Entry{Index: b.idx, Proposal: core.Proposal{Time: time, Commands: cmds}}
	// Something stays timed (the sessions of start), unless the test says
	// the machine holds nothing timed.
	next := core.LogTime(0)
	if !b.untimed {
		next = time + 5000
	}
	b.w.chk.logs[0].led.entry(e, &core.Output{Index: b.idx, Time: time, NextDeadline: next, Results: results, Effects: effects}, false)
}

func (b *logBuilder) failed() string {
	if len(b.w.chk.violations) == 0 {
		return ""
	}
	return b.w.chk.violations[0].Check
}

func session(ttl int64) core.Command { return core.Command{Op: core.OpSessionCreate, TTLMs: ttl} }

func mutexAcquire(s core.SessionID, wait int64) core.Command {
	return core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "m", Session: s, WaitMs: wait}
}

func granted(s core.SessionID, t core.FencingToken, w core.WaiterID) core.Effect {
	return core.Effect{Kind: core.EffectGranted, Object: core.KindMutex, Name: "m", Session: s, Token: t, Waiter: w}
}

// start creates sessions 10 and 20 at log time 1000.
func (b *logBuilder) start() {
	b.entry(1000, []core.Command{session(5000), session(5000)},
		[]core.Result{{Outcome: core.OutcomeDone, Session: 10}, {Outcome: core.OutcomeDone, Session: 20}})
}

func TestLedgerCatchesTwoMutexHolders(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(1100, []core.Command{mutexAcquire(10, 0), mutexAcquire(20, 0)},
		[]core.Result{{Outcome: core.OutcomeGranted, Token: 100}, {Outcome: core.OutcomeGranted, Token: 101}},
		granted(10, 100, 0), granted(20, 101, 0))
	if got := b.failed(); got != "exclusion" {
		t.Fatalf("caught %q, want exclusion", got)
	}
}

func TestLedgerCatchesTokensGoingBack(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(1100, []core.Command{mutexAcquire(10, 0)}, []core.Result{{Outcome: core.OutcomeGranted, Token: 100}}, granted(10, 100, 0))
	rel := core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "m", Session: 10, Token: 100}
	b.entry(1200, []core.Command{rel}, []core.Result{{Outcome: core.OutcomeDone}},
		core.Effect{Kind: core.EffectReleased, Reason: core.ReasonReleased, Object: core.KindMutex, Name: "m", Session: 10, Token: 100})
	b.entry(1300, []core.Command{mutexAcquire(20, 0)}, []core.Result{{Outcome: core.OutcomeGranted, Token: 90}}, granted(20, 90, 0))
	if got := b.failed(); got != "token-order" {
		t.Fatalf("caught %q, want token-order", got)
	}
}

func TestLedgerCatchesBargingPastTheQueue(t *testing.T) {
	b := newLogBuilder(t)
	b.entry(1000, []core.Command{session(5000), session(5000), session(5000)}, []core.Result{
		{Outcome: core.OutcomeDone, Session: 10}, {Outcome: core.OutcomeDone, Session: 20}, {Outcome: core.OutcomeDone, Session: 30}})
	b.entry(1100, []core.Command{mutexAcquire(10, 0)}, []core.Result{{Outcome: core.OutcomeGranted, Token: 100}}, granted(10, 100, 0))
	b.entry(1200, []core.Command{mutexAcquire(20, 5000), mutexAcquire(30, 5000)},
		[]core.Result{{Outcome: core.OutcomeQueued, Waiter: 200}, {Outcome: core.OutcomeQueued, Waiter: 201}})
	rel := core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "m", Session: 10, Token: 100}
	b.entry(1300, []core.Command{rel}, []core.Result{{Outcome: core.OutcomeDone}},
		core.Effect{Kind: core.EffectReleased, Reason: core.ReasonReleased, Object: core.KindMutex, Name: "m", Session: 10, Token: 100},
		granted(30, 300, 201))
	if got := b.failed(); got != "fifo" {
		t.Fatalf("caught %q, want fifo", got)
	}
}

func TestLedgerCatchesEarlyExpiry(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(3000, nil, nil, core.Effect{Kind: core.EffectSessionExpired, Reason: core.ReasonSessionExpired, Session: 10})
	if got := b.failed(); got != "session-lease" {
		t.Fatalf("caught %q, want session-lease", got)
	}
}

func TestLedgerCatchesExpiryInTheLeaderChangeEntry(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(2000, nil, nil)
	b.entry(4000, nil, nil)
	b.entry(6000, []core.Command{{Op: core.OpLeaderChange}}, []core.Result{{Outcome: core.OutcomeDone}},
		core.Effect{Kind: core.EffectSessionExpired, Reason: core.ReasonSessionExpired, Session: 10})
	if got := b.failed(); got != "leader-change-expiry" {
		t.Fatalf("caught %q, want leader-change-expiry", got)
	}
}

func TestLedgerCatchesClockJumps(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(3500, nil, nil)
	if got := b.failed(); got != "clock-step" {
		t.Fatalf("caught %q, want clock-step", got)
	}
}

// With nothing timed, an entry may take its stamp whole: an idle leader
// proposes nothing, and its next entry brings log time to its clock.
func TestLedgerLetsAnUntimedMachineJump(t *testing.T) {
	b := newLogBuilder(t)
	b.untimed = true
	b.entry(1000, nil, nil)
	b.entry(3_601_000, nil, nil)
	if got := b.failed(); got != "" {
		t.Fatalf("caught %q after a jump with nothing timed", got)
	}
}

func TestLedgerCatchesOverfullSemaphore(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	acq := func(s core.SessionID) core.Command {
		return core.Command{Op: core.OpAcquire, Kind: core.KindSemaphore, Name: "s", Session: s, Limit: 1, Permits: 1}
	}
	sem := func(s core.SessionID, t core.FencingToken) core.Effect {
		return core.Effect{Kind: core.EffectGranted, Object: core.KindSemaphore, Name: "s", Session: s, Token: t}
	}
	b.entry(1100, []core.Command{acq(10), acq(20)},
		[]core.Result{{Outcome: core.OutcomeGranted, Token: 100}, {Outcome: core.OutcomeGranted, Token: 101}},
		sem(10, 100), sem(20, 101))
	if got := b.failed(); got != "exclusion" {
		t.Fatalf("caught %q, want exclusion", got)
	}
}

func TestLedgerAcceptsAQueueServedInOrder(t *testing.T) {
	b := newLogBuilder(t)
	b.start()
	b.entry(1100, []core.Command{mutexAcquire(10, 0)}, []core.Result{{Outcome: core.OutcomeGranted, Token: 100}}, granted(10, 100, 0))
	b.entry(1200, []core.Command{mutexAcquire(20, 5000)}, []core.Result{{Outcome: core.OutcomeQueued, Waiter: 200}})
	rel := core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "m", Session: 10, Token: 100}
	b.entry(1300, []core.Command{rel}, []core.Result{{Outcome: core.OutcomeDone}},
		core.Effect{Kind: core.EffectReleased, Reason: core.ReasonReleased, Object: core.KindMutex, Name: "m", Session: 10, Token: 100},
		granted(20, 300, 200))
	if got := b.failed(); got != "" {
		t.Fatalf("caught %q in a correct log: %v", got, b.w.chk.violations)
	}
}

// A forwarded entry must leave log time where the leader put it: one whose
// stamp (a follower's own clock) moved it is caught; one stamped with the
// follower's applied log time is not.
func TestLedgerCatchesAForwardMovingTime(t *testing.T) {
	for _, tc := range []struct {
		stamp core.LogTime
		want  string
	}{{1000, ""}, {1050, "forward-stamp"}} {
		b := newLogBuilder(t)
		b.start()
		b.idx++
		e := core.Entry{Index: b.idx, Proposal: core.Proposal{Time: tc.stamp}}
		b.w.chk.logs[0].led.entry(e, &core.Output{Index: b.idx, Time: max(tc.stamp, 1000)}, true)
		if got := b.failed(); got != tc.want {
			t.Fatalf("forward stamped %d: caught %q, want %q", tc.stamp, got, tc.want)
		}
	}
}

// forcedCloseLog: session 10 holds "m" with a 500 ms lock-delay, session 20
// waits for it, and a close of session 10 that asks for the lock-delay
// (after a mark of rules rules) releases it at log time 1300.
func forcedCloseLog(b *logBuilder, rules uint64) {
	b.start()
	b.entry(1050, []core.Command{{Op: core.OpLeaderChange, Rules: rules}}, []core.Result{{Outcome: core.OutcomeDone}})
	acq := mutexAcquire(10, 0)
	acq.LockDelayMs = 500
	b.entry(1100, []core.Command{acq}, []core.Result{{Outcome: core.OutcomeGranted, Token: 100}}, granted(10, 100, 0))
	b.entry(1200, []core.Command{mutexAcquire(20, 5000)}, []core.Result{{Outcome: core.OutcomeQueued, Waiter: 200}})
	b.entry(1300, []core.Command{{Op: core.OpSessionClose, Session: 10, ApplyLockDelay: true}},
		[]core.Result{{Outcome: core.OutcomeDone, Session: 10}},
		core.Effect{Kind: core.EffectReleased, Reason: core.ReasonSessionClosed, Object: core.KindMutex, Name: "m", Session: 10, Token: 100},
		core.Effect{Kind: core.EffectSessionClosed, Reason: core.ReasonSessionClosed, Session: 10})
}

// TestLedgerCatchesAGrantInsideAForcedCloseLockDelay: the next holder may
// start only once the lock-delay the forced close started ran out.
func TestLedgerCatchesAGrantInsideAForcedCloseLockDelay(t *testing.T) {
	for _, tc := range []struct {
		at   core.LogTime
		want string
	}{{1799, "lock-delay"}, {1800, ""}} {
		b := newLogBuilder(t)
		forcedCloseLog(b, rulesCloseLockDelay)
		b.entry(tc.at, nil, nil, granted(20, 400, 200))
		if got := b.failed(); got != tc.want {
			t.Fatalf("a grant at %d after a lock-delay to 1800: caught %q, want %q", tc.at, got, tc.want)
		}
	}
}

// TestLedgerCatchesAForcedCloseUnderRules3: before a mark raised the rules
// to 4, a close asking for the lock-delay must be refused.
func TestLedgerCatchesAForcedCloseUnderRules3(t *testing.T) {
	b := newLogBuilder(t)
	forcedCloseLog(b, 0) // a mark of the build before: rules 3 stay
	if got := b.failed(); got != "close-lock-delay" {
		t.Fatalf("caught %q, want close-lock-delay", got)
	}
}

// TestLedgerCatchesARefusedForcedCloseUnderRules4: from rules 4 a close
// asking for the lock-delay applies; refused as rules 3 refuse it, it is
// an entry applied by the rules before its own. Under rules 3 the refusal
// is what must happen.
func TestLedgerCatchesARefusedForcedCloseUnderRules4(t *testing.T) {
	for _, tc := range []struct {
		rules uint64
		want  string
	}{{rulesCloseLockDelay, "close-lock-delay"}, {0, ""}} {
		b := newLogBuilder(t)
		b.start()
		b.entry(1050, []core.Command{{Op: core.OpLeaderChange, Rules: tc.rules}}, []core.Result{{Outcome: core.OutcomeDone}})
		b.entry(1100, []core.Command{{Op: core.OpSessionClose, Session: 10, ApplyLockDelay: true}},
			[]core.Result{{Err: &core.Error{Code: core.CodeFailedPrecondition, Msg: "apply_lock_delay needs rules 4"}}})
		if got := b.failed(); got != tc.want {
			t.Fatalf("a refused forced close after a mark of rules %d: caught %q, want %q", tc.rules, got, tc.want)
		}
	}
}

// TestLedgerCatchesMachineRulesApart: the machine's rules in force after
// an entry must be those the log's marks put in force.
func TestLedgerCatchesMachineRulesApart(t *testing.T) {
	for _, tc := range []struct {
		mark, machine uint64
		want          string
	}{{0, rulesUnmarked, ""}, {0, core.RulesVersion, "rules"}, {core.RulesVersion, core.RulesVersion, ""}, {core.RulesVersion, rulesUnmarked, "rules"}} {
		b := newLogBuilder(t)
		b.start()
		b.idx++
		e := core.Entry{Index: b.idx, Proposal: core.Proposal{Time: 1050, Commands: []core.Command{{Op: core.OpLeaderChange, Rules: tc.mark}}}}
		b.w.chk.logs[0].led.entryRules(e, &core.Output{Index: b.idx, Time: 1050, NextDeadline: 6050, Results: []core.Result{{Outcome: core.OutcomeDone}}}, false, tc.machine)
		if got := b.failed(); got != tc.want {
			t.Fatalf("a mark of rules %d, the machine at rules %d: caught %q, want %q", tc.mark, tc.machine, got, tc.want)
		}
	}
}

// unheardLog: session 10 holds "m" with token 100 (granted at index 3), and
// a replica's unheard release of it applies at log time 1200, ending it
// (the machine's answer when nobody else was answered the grant) or
// refused for a grant another request was answered.
func unheardLog(b *logBuilder, ended bool) {
	b.entry(1050, []core.Command{{Op: core.OpLeaderChange, Rules: core.RulesVersion}}, []core.Result{{Outcome: core.OutcomeDone}})
	b.entry(1100, []core.Command{mutexAcquire(10, 0)}, []core.Result{{Outcome: core.OutcomeGranted, Token: 100}}, granted(10, 100, 0))
	rel := core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "m", Session: 10, Token: 100, Unheard: true}
	if ended {
		b.entry(1200, []core.Command{rel}, []core.Result{{Outcome: core.OutcomeDone, Session: 10, Token: 100}},
			core.Effect{Kind: core.EffectReleased, Reason: core.ReasonReleased, Object: core.KindMutex, Name: "m", Session: 10, Token: 100})
		return
	}
	b.entry(1200, []core.Command{rel}, []core.Result{{Err: &core.Error{Code: core.CodeFailedPrecondition, Msg: "answered to another request"}}})
}

// TestLedgerCatchesAnAckedGrantAnUnheardReleaseEnded: a grant a client was
// told of may not end by a replica's unheard release, whether the client
// was told before the release applied or after; a release refused (rules
// 5's condition) keeps it, and one that ends a grant nobody was told of
// is the machine's own act in the history.
func TestLedgerCatchesAnAckedGrantAnUnheardReleaseEnded(t *testing.T) {
	m := objKey{core.KindMutex, "m"}
	for _, tc := range []struct {
		name             string
		toldBefore, told bool
		ended            bool
		want             string
	}{
		{"told, then ended", true, false, true, "acked-grant-lost"},
		{"ended, then told", false, true, true, "acked-grant-lost"},
		{"told, then kept", true, false, false, ""},
		{"ended, nobody told", false, false, true, ""},
	} {
		b := newLogBuilder(t)
		b.start()
		if tc.toldBefore {
			unheardLog(b, false) // the grant, and a refused release first
			b.w.chk.toldGrant("client 1", m, 10, 100)
			if tc.ended {
				b.entry(1300, []core.Command{{Op: core.OpRelease, Kind: core.KindMutex, Name: "m", Session: 10, Token: 100, Unheard: true}},
					[]core.Result{{Outcome: core.OutcomeDone, Session: 10, Token: 100}},
					core.Effect{Kind: core.EffectReleased, Reason: core.ReasonReleased, Object: core.KindMutex, Name: "m", Session: 10, Token: 100})
			}
		} else {
			unheardLog(b, tc.ended)
		}
		if tc.told {
			b.w.chk.toldGrant("client 1", m, 10, 100)
		}
		if got := b.failed(); got != tc.want {
			t.Fatalf("%s: caught %q, want %q", tc.name, got, tc.want)
		}
		led := b.w.chk.logs[0].led
		if tc.ended != (len(led.sysOps) == 1) {
			t.Fatalf("%s: the history has %d operations of the machine, want one for an ended grant", tc.name, len(led.sysOps))
		}
	}
}
