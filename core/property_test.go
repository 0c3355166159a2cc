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
//
// The files, by role: property_test.go the tests and their limits;
// property_harness_test.go the harness (apply, compare, check);
// property_gen_test.go the generators; property_format_test.go copying,
// printing and the coverage report; model_test.go (state, lookups,
// mutations, reads), model_apply_test.go and model_validate_test.go the
// reference model.

import (
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
