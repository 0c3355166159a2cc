package shards

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

var errUnavailable = errors.New("unavailable: no quorum")

// Answers for the tables.
var (
	done = func(d core.LogTime) Answer {
		return Answer{Result: core.Result{Outcome: core.OutcomeDone, Session: 7, Deadline: d}}
	}
	dup       = func(d core.LogTime) Answer { a := done(d); a.Result.Duplicate = true; return a }
	gone      = Answer{Result: core.Result{Err: &core.Error{Code: core.CodeNotFound, Msg: "session 7 does not exist"}}}
	full      = Answer{Result: core.Result{Err: &core.Error{Code: core.CodeResourceExhausted, Msg: "too many sessions"}}}
	tooOld    = Answer{Result: core.Result{Err: &core.Error{Code: core.CodeFailedPrecondition, Msg: "request_seq too old"}}}
	noQuorum  = Answer{Err: errUnavailable}
	cancelled = Answer{Result: core.Result{Outcome: core.OutcomeDone, Waiter: 9, Session: 7}}
)

// run drives a Fanout to its end, answering each shard's send with
// answer(shard, cmd), and returns the outcome and every send made, wave by
// wave.
func run(t *testing.T, cmd core.Command, count int, answer func(shard uint64, cmd core.Command) Answer) (Outcome, [][]Send) {
	t.Helper()
	f := Start(cmd, count)
	var waves [][]Send
	for i := 0; len(f.Sends()) > 0; i++ {
		if i > 2 {
			t.Fatalf("more than two waves for %v", cmd.Op)
		}
		sends := slices.Clone(f.Sends())
		waves = append(waves, sends)
		var answers []Answer
		// Answer in reverse, as shards may: the merge must not depend on it.
		for _, s := range slices.Backward(sends) {
			a := answer(s.Shard, s.Cmd)
			a.Shard = s.Shard
			answers = append(answers, a)
		}
		if err := f.Step(answers); err != nil {
			t.Fatal(err)
		}
	}
	if !f.Done() {
		t.Fatal("no sends left but not done")
	}
	return f.Outcome(), waves
}

// per answers shard i with as[i].
func per(as ...Answer) func(uint64, core.Command) Answer {
	return func(s uint64, _ core.Command) Answer { return as[s] }
}

func shardsOf(w []Send) []uint64 {
	var out []uint64
	for _, s := range w {
		out = append(out, s.Shard)
	}
	return out
}

func code(r core.Result) core.Code {
	if r.Err == nil {
		return core.CodeOK
	}
	return r.Err.Code
}

func cleanupShards(o Outcome) []uint64 {
	if o.Cleanup == nil {
		return nil
	}
	return o.Cleanup.Shards
}

func TestOf(t *testing.T) {
	if Of("anything", 1) != 0 || Of("", 4) != 0 || Of("x", 0) != 0 {
		t.Error("one shard, or no name, must be shard 0")
	}
	// FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c: the mapping is part of the
	// on-disk format (a name's shard never changes), so pin it.
	if got := Of("a", 4); got != 0xaf63dc4c8601ec8c%4 {
		t.Errorf(`Of("a", 4) = %d, want %d`, got, uint64(0xaf63dc4c8601ec8c%4))
	}
	hit := map[uint64]bool{}
	for i := range 200 {
		s := Of(fmt.Sprintf("n%d", i), 4)
		if s >= 4 {
			t.Fatalf("shard %d out of range", s)
		}
		hit[s] = true
	}
	if len(hit) != 4 {
		t.Errorf("200 names hit shards %v, want all 4", hit)
	}
}

func TestRoutes(t *testing.T) {
	name := "jobs/a"
	home := Of(name, 4)
	for _, tc := range []struct {
		cmd   core.Command
		count int
		first []uint64
		all   []uint64
	}{
		{core.Command{Op: core.OpAcquire, Name: name}, 4, []uint64{home}, []uint64{home}},
		{core.Command{Op: core.OpAcquire, Name: name}, 1, []uint64{0}, []uint64{0}},
		{core.Command{Op: core.OpSessionCreate}, 4, []uint64{0}, []uint64{0, 1, 2, 3}},
		{core.Command{Op: core.OpSessionCreate}, 1, []uint64{0}, []uint64{0}},
		{core.Command{Op: core.OpSessionKeepAlive, Session: 7}, 4, []uint64{0, 1, 2, 3}, []uint64{0, 1, 2, 3}},
		{core.Command{Op: core.OpSessionClose, Session: 7}, 3, []uint64{0, 1, 2}, []uint64{0, 1, 2}},
		{core.Command{Op: core.OpCancel, Session: 7, Waiter: 9}, 4, []uint64{0, 1, 2, 3}, []uint64{0, 1, 2, 3}},
	} {
		f := Start(tc.cmd, tc.count)
		if got := shardsOf(f.Sends()); !slices.Equal(got, tc.first) {
			t.Errorf("%v with %d shards goes first to %v, want %v", tc.cmd.Op, tc.count, got, tc.first)
		}
		if got := Targets(tc.cmd, tc.count); !slices.Equal(got, tc.all) {
			t.Errorf("Targets(%v, %d) = %v, want %v", tc.cmd.Op, tc.count, got, tc.all)
		}
	}
}

// With one shard every command goes to it and its answer is the answer,
// whatever it is: the multi-shard rules must not change a single-shard
// cluster.
func TestOneShardAnswersUnchanged(t *testing.T) {
	for _, op := range []core.Op{core.OpSessionCreate, core.OpSessionClose, core.OpSessionKeepAlive, core.OpCancel, core.OpAcquire} {
		for _, a := range []Answer{done(5), gone, noQuorum, full} {
			o, waves := run(t, core.Command{Op: op, Session: 7, Waiter: 9}, 1, per(a))
			if len(waves) != 1 || o.Result != a.Result || o.Err != a.Err || o.Cleanup != nil {
				t.Errorf("%v, one shard, answer %+v: outcome %+v after %d waves", op, a, o, len(waves))
			}
		}
	}
}

func TestCreate(t *testing.T) {
	ok := func(d core.LogTime) Answer { return done(d) }
	for _, tc := range []struct {
		name     string
		answers  []Answer // shard 0, then the adopts in 1..3
		waves    int
		err      bool
		code     core.Code
		deadline core.LogTime
		dup      bool
		cleanup  []uint64
	}{
		{name: "made everywhere: the earliest deadline", answers: []Answer{ok(900), ok(800), ok(950), ok(1000)}, waves: 2, deadline: 800},
		{name: "a retry made nothing anew", answers: []Answer{dup(900), dup(900), dup(900), dup(900)}, waves: 2, deadline: 900, dup: true},
		{name: "a retry that completed an adopt is not a duplicate", answers: []Answer{dup(900), dup(900), ok(950), dup(900)}, waves: 2, deadline: 900},
		{name: "shard 0 unreachable: no adopts", answers: []Answer{noQuorum}, waves: 1, err: true},
		{name: "shard 0 full: no adopts", answers: []Answer{full}, waves: 1, code: core.CodeResourceExhausted},
		{name: "an adopt unreachable: the client retries, copies kept", answers: []Answer{ok(900), ok(900), noQuorum, ok(900)}, waves: 2, err: true},
		{name: "an adopt refused: the copies made are closed", answers: []Answer{ok(900), ok(900), full, ok(900)}, waves: 2,
			code: core.CodeResourceExhausted, cleanup: []uint64{0, 1, 3}},
		{name: "refused and unreachable: retry first", answers: []Answer{ok(900), full, noQuorum, ok(900)}, waves: 2, err: true},
		{name: "an adopt slower than the TTL: the first copies expired, closed", answers: []Answer{ok(900), ok(905), ok(910), ok(2100)},
			waves: 2, code: core.CodeNotFound, cleanup: []uint64{0, 1, 2, 3}},
		{name: "a retry a TTL late: the remembered copies are gone", answers: []Answer{dup(900), dup(905), dup(910), ok(2100)},
			waves: 2, code: core.CodeNotFound, cleanup: []uint64{0, 1, 2, 3}},
		{name: "an adopt late but within the TTL: made", answers: []Answer{ok(900), ok(905), ok(910), ok(1800)}, waves: 2, deadline: 900},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var adopted []core.SessionID
			o, waves := run(t, core.Command{Op: core.OpSessionCreate, ClientID: "c", Seq: 3, TTLMs: 1000}, 4,
				func(s uint64, cmd core.Command) Answer {
					if cmd.ClientID != "c" || cmd.Seq != 3 {
						t.Errorf("shard %d got (%q, %d): every shard needs the command's own identity", s, cmd.ClientID, cmd.Seq)
					}
					if s > 0 {
						adopted = append(adopted, cmd.Session)
					}
					return tc.answers[s]
				})
			if len(waves) != tc.waves {
				t.Fatalf("%d waves, want %d", len(waves), tc.waves)
			}
			if tc.waves == 2 && (!slices.Equal(shardsOf(waves[1]), []uint64{1, 2, 3}) || slices.ContainsFunc(adopted, func(id core.SessionID) bool { return id != 7 })) {
				t.Errorf("adopts went to %v with ids %v, want shards 1..3 adopting shard 0's id 7", shardsOf(waves[1]), adopted)
			}
			if (o.Err != nil) != tc.err || (tc.err && !errors.Is(o.Err, errUnavailable)) {
				t.Fatalf("err %v, want an unavailable error: %v", o.Err, tc.err)
			}
			if tc.err {
				if o.Cleanup != nil {
					t.Errorf("cleanup %v on an error: the client's retry completes the session", o.Cleanup)
				}
				return
			}
			if code(o.Result) != tc.code {
				t.Errorf("code %v, want %v (%+v)", code(o.Result), tc.code, o.Result)
			}
			if tc.code == core.CodeOK && (o.Result.Session != 7 || o.Result.Deadline != tc.deadline || o.Result.Duplicate != tc.dup) {
				t.Errorf("result %+v, want session 7, deadline %d, duplicate %v", o.Result, tc.deadline, tc.dup)
			}
			if got := cleanupShards(o); !slices.Equal(got, tc.cleanup) || (o.Cleanup != nil && o.Cleanup.Session != 7) {
				t.Errorf("cleanup %+v, want session 7 in %v", o.Cleanup, tc.cleanup)
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answers  []Answer
		err      bool
		code     core.Code
		deadline core.LogTime
		dup      bool
		cleanup  []uint64
	}{
		{name: "alive everywhere: the earliest deadline", answers: []Answer{done(900), done(700), done(800), done(900)}, deadline: 700},
		{name: "all retries", answers: []Answer{dup(900), dup(900), dup(900), dup(900)}, deadline: 900, dup: true},
		{name: "gone in one shard: lost, closed in the others", answers: []Answer{done(900), gone, done(900), done(900)},
			code: core.CodeNotFound, cleanup: []uint64{0, 2, 3}},
		{name: "gone in one, another unreachable: still lost", answers: []Answer{done(900), gone, noQuorum, done(900)},
			code: core.CodeNotFound, cleanup: []uint64{0, 3}},
		{name: "gone everywhere: nothing to close", answers: []Answer{gone, gone, gone, gone}, code: core.CodeNotFound},
		{name: "one unreachable: retry", answers: []Answer{done(900), noQuorum, done(900), done(900)}, err: true},
		{name: "a refusal", answers: []Answer{done(900), tooOld, done(900), noQuorum}, code: core.CodeFailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := run(t, core.Command{Op: core.OpSessionKeepAlive, Session: 7}, 4, per(tc.answers...))
			if (o.Err != nil) != tc.err {
				t.Fatalf("err %v, want one: %v", o.Err, tc.err)
			}
			if tc.err {
				return
			}
			if code(o.Result) != tc.code {
				t.Errorf("code %v, want %v", code(o.Result), tc.code)
			}
			if tc.code == core.CodeOK && (o.Result.Deadline != tc.deadline || o.Result.Duplicate != tc.dup) {
				t.Errorf("result %+v, want deadline %d, duplicate %v", o.Result, tc.deadline, tc.dup)
			}
			if got := cleanupShards(o); !slices.Equal(got, tc.cleanup) {
				t.Errorf("cleanup in %v, want %v", got, tc.cleanup)
			}
		})
	}
}

// TestClose is the rule of issue 18: a close that answers done leaves the
// session nowhere. Before it, one shard's success was the answer even when
// another shard, where the session held a lock, could not be reached.
func TestClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []Answer
		err     bool
		code    core.Code
		dup     bool
		said    string // what a refusal says besides the shard's own words
	}{
		{name: "closed everywhere", answers: []Answer{done(0), done(0), done(0), done(0)}},
		{name: "one shard unreachable: not closed, retry", answers: []Answer{done(0), done(0), noQuorum, done(0)}, err: true},
		{name: "only shard 0 closed: not closed", answers: []Answer{done(0), noQuorum, noQuorum, noQuorum}, err: true},
		{name: "gone in some, unreachable in one: retry", answers: []Answer{gone, gone, noQuorum, gone}, err: true},
		{name: "closed here, gone there (an earlier attempt): closed", answers: []Answer{gone, done(0), gone, gone}},
		{name: "the retry with the same identity: every shard's stored result", answers: []Answer{dup(0), dup(0), dup(0), dup(0)}, dup: true},
		{name: "a retry that closed the last shard now changed something", answers: []Answer{dup(0), dup(0), done(0), dup(0)}},
		{name: "stored results and gone: still a duplicate", answers: []Answer{dup(0), gone, dup(0), dup(0)}, dup: true},
		{name: "gone everywhere: not_found", answers: []Answer{gone, gone, gone, gone}, code: core.CodeNotFound},
		{name: "a refusal is not a close, and says who closed", answers: []Answer{done(0), tooOld, done(0), done(0)}, code: core.CodeFailedPrecondition,
			said: "session 7 is closed in 3 of 4 shards, and shard 1 refused"},
		{name: "the refusal of the last shard on a retry says the rest is closed", answers: []Answer{dup(0), dup(0), tooOld, gone}, code: core.CodeFailedPrecondition,
			said: "session 7 is closed in 2 of 4 shards, and shard 2 refused"},
		{name: "a refusal where no shard closed it: the refusal alone", answers: []Answer{gone, tooOld, gone, gone}, code: core.CodeFailedPrecondition},
		{name: "unreachable beats a refusal: the retry may close", answers: []Answer{tooOld, noQuorum, done(0), done(0)}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, waves := run(t, core.Command{Op: core.OpSessionClose, Session: 7, ClientID: "c", Seq: 4}, 4, per(tc.answers...))
			if len(waves) != 1 || len(waves[0]) != 4 {
				t.Fatalf("waves %v, want one to all 4 shards", waves)
			}
			if o.Cleanup != nil {
				t.Errorf("cleanup %+v: a close's retry is the client's, with its own identity", o.Cleanup)
			}
			if (o.Err != nil) != tc.err {
				t.Fatalf("err %v, result %+v; want an error: %v", o.Err, o.Result, tc.err)
			}
			if tc.err {
				if !errors.Is(o.Err, errUnavailable) || !strings.Contains(o.Err.Error(), "not closed in every shard") {
					t.Errorf("err %q must wrap the shard's and say the close is not complete", o.Err)
				}
				return
			}
			if code(o.Result) != tc.code {
				t.Errorf("code %v, want %v", code(o.Result), tc.code)
			}
			if tc.code == core.CodeFailedPrecondition {
				// Where shards closed it, the refusal says so, and that a
				// retry ends the rest, keeping the shard's own words;
				// else it is the shard's refusal as it was.
				msg := o.Result.Err.Msg
				if tc.said == "" && msg != tooOld.Result.Err.Msg {
					t.Errorf("refusal %q, want the shard's own %q", msg, tooOld.Result.Err.Msg)
				}
				for _, want := range []string{tc.said, tooOld.Result.Err.Msg, "retry the close"} {
					if tc.said != "" && !strings.Contains(msg, want) {
						t.Errorf("refusal %q does not say %q", msg, want)
					}
				}
			}
			if tc.code == core.CodeOK && (o.Result.Session != 7 || o.Result.Duplicate != tc.dup) {
				t.Errorf("result %+v, want session 7 closed, duplicate %v", o.Result, tc.dup)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []Answer
		err     bool
		code    core.Code
	}{
		{name: "the shard with the wait cancels it", answers: []Answer{gone, gone, cancelled, gone}},
		{name: "found, another shard unreachable: done", answers: []Answer{noQuorum, cancelled, gone, gone}},
		{name: "not found, one unreachable: it may be there", answers: []Answer{gone, noQuorum, gone, gone}, err: true},
		{name: "nowhere", answers: []Answer{gone, gone, gone, gone}, code: core.CodeNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := run(t, core.Command{Op: core.OpCancel, Session: 7, Waiter: 9}, 4, per(tc.answers...))
			if (o.Err != nil) != tc.err {
				t.Fatalf("err %v, want one: %v", o.Err, tc.err)
			}
			if !tc.err && code(o.Result) != tc.code {
				t.Errorf("code %v, want %v", code(o.Result), tc.code)
			}
		})
	}
	// Waiter ids are per shard: without its session a cancel could withdraw
	// another session's wait, so it is refused before anything is sent.
	f := Start(core.Command{Op: core.OpCancel, Waiter: 9}, 4)
	if !f.Done() || len(f.Sends()) != 0 || code(f.Outcome().Result) != core.CodeInvalidArgument {
		t.Errorf("a cancel without a session, 4 shards: done %v, sends %v, outcome %+v", f.Done(), f.Sends(), f.Outcome())
	}
}

func TestStepRefusesWrongAnswers(t *testing.T) {
	f := Start(core.Command{Op: core.OpSessionClose, Session: 7}, 3)
	for _, answers := range [][]Answer{
		{{Shard: 0}, {Shard: 1}},
		{{Shard: 0}, {Shard: 1}, {Shard: 1}},
		{{Shard: 0}, {Shard: 1}, {Shard: 3}},
	} {
		if err := f.Step(answers); err == nil {
			t.Errorf("Step took %v for sends to 0..2", answers)
		}
	}
	if f.Done() || len(f.Sends()) != 3 {
		t.Fatal("a refused Step changed the fanout")
	}
	if err := f.Step([]Answer{done(0), done(0), {Shard: 2, Result: done(0).Result}}); err == nil {
		t.Error("Step took two answers from shard 0")
	}
}

// A cleanup closes a lost session's copies as its expiry would end them:
// a mutex it held with a lock-delay stays blocked for it (docs/design.md,
// Several shards). A plain close would hand the name to the next session
// at once, while the lost session's holder may still run.
func TestCleanupCloseKeepsTheLockDelay(t *testing.T) {
	m, err := core.New(core.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	var index uint64
	apply := func(at core.LogTime, c core.Command) core.Result {
		index++
		out := m.Apply(core.Entry{Index: index, Proposal: core.Proposal{Time: at, Commands: []core.Command{c}}})
		return out.Results[0]
	}
	apply(1_000, core.Command{Op: core.OpLeaderChange, Rules: core.RulesVersion})
	lost := apply(1_000, core.Command{Op: core.OpSessionCreate, TTLMs: 10_000}).Session
	next := apply(1_000, core.Command{Op: core.OpSessionCreate, TTLMs: 10_000}).Session
	if r := apply(1_000, core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "job", Session: lost, LockDelayMs: 5_000}); r.Err != nil || r.Token == 0 {
		t.Fatalf("acquire: %+v", r)
	}
	cu := &Cleanup{Session: lost, Shards: []uint64{0}}
	if r := apply(2_000, cu.Close()); r.Err != nil {
		t.Fatalf("cleanup close: %v", r.Err)
	}
	st, err := m.Status(core.KindMutex, "job")
	if err != nil || st.LockDelayUntil != 7_000 {
		t.Fatalf("after the cleanup: %+v, %v; want the name blocked until 7000 (the close at 2000 plus the 5 s lock-delay)", st, err)
	}
	if r := apply(3_000, core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "job", Session: next}); r.Token != 0 {
		t.Fatalf("an acquire 1 s after the cleanup was granted token %d, inside the lock-delay", r.Token)
	}
}
