package sim

import (
	"sort"

	"github.com/lockstepd/lockstep/core"
)

// Machine is what a replica applies entries to: *core.Machine, or a planted
// bug wrapped around it. Bugs live here, never inside core, and each one
// exists to prove that some checker can fail.
type Machine interface {
	Apply(core.Entry) *core.Output
	Index() uint64
	Now() core.LogTime
	Rules() uint64
	NextDeadline() (core.LogTime, bool)
	Hash() [32]byte
	Snapshot() []byte
	AppendSnapshot([]byte) []byte
	CheckInvariants() error
	Status(core.Kind, string) (core.Status, error)
	CheckFence(core.Kind, string, core.FencingToken) (bool, error)
	SessionInfo(core.SessionID) (core.SessionInfo, error)
}

// Bug is one planted bug.
type Bug struct {
	Name       string
	What       string
	Caught     string // the checker expected to catch it
	wrap       func(m Machine, node int) Machine
	staleOK    bool // replicas answer reads from local state, without ReadIndex
	shards     int  // the run's shard count when -shards is not given (0: 1)
	closeFirst bool // a close answers the first shard's success (the client's merge, sim/client.go)
	// withdrawAtOnce: a client that asks its wait withdrawn answers its
	// caller "cancelled" at once, as the runtime did before waits were
	// withdrawn through the log (sim/client.go).
	withdrawAtOnce bool
	mute           bool // replicas silently drop client proposals, leading or forwarding (ticks and leader marks still go)
	// mux plants a multiplexed client's old behaviour (mux.go).
	mux muxBug
	// muxClients is the run's multiplexed clients when -mux is not given
	// (0: drawn as usual).
	muxClients int
	// upgrade: the run starts as a build of rules 3 and upgrades (at a
	// drawn moment) when -upgrade is not given.
	upgrade bool
	// private: the run's share of private requests when -private is not
	// given (0: drawn as usual).
	private float64
}

var bugs = []Bug{
	{Name: "acquired-on-refuse", What: "a try-once acquire or campaign that core refuses is answered as granted",
		Caught: "grant ledger, exclusion, porcupine", wrap: func(m Machine, _ int) Machine { return &acquiredOnRefuse{Machine: m} }},
	{Name: "skip-entry", What: "replica 2 skips applying one committed entry",
		Caught: "state hash and output agreement across replicas", wrap: func(m Machine, node int) Machine {
			if node != 2 {
				return m
			}
			return &skipEntry{Machine: m}
		}},
	{Name: "no-session-extension", What: "the leader-change entry does not extend live sessions",
		Caught: "session lease reference check", wrap: func(m Machine, _ int) Machine { return &noSessionExtension{Machine: m} }},
	{Name: "no-clock-cap", What: "one entry may move log time forward without the MaxClockStepMs cap",
		Caught: "log time step check, or the expiries of a leader change it split", wrap: func(m Machine, _ int) Machine { return &noClockCap{Machine: m} }},
	{Name: "stale-read", What: "replicas answer status and fence reads from local state without ReadIndex",
		Caught: "fenced resource, porcupine", staleOK: true},
	{Name: "mute-leader", What: "every replica silently drops the client commands it should propose (as leader or forwarder)",
		Caught: "liveness", mute: true},
	{Name: "close-first-success", What: "with several shards, a session close answers the first shard's success even when another shard did not answer (issue 18's bug); runs with 4 shards",
		Caught: "close-everywhere", shards: 4, closeFirst: true},
	{Name: "withdraw-answers-at-once", What: "a wait asked withdrawn answers its caller cancelled at once, before the log ends it, " +
		"as a reload did before waits were withdrawn through the log: the log may grant it first",
		Caught: "wait-end", withdrawAtOnce: true},
	{Name: "shared-keepalive-id", What: "a multiplexed client renews all its sessions under one dedupe identity, each counting from 1 (the servers refuse the reused seqs since rules 3)",
		Caught: "Done closes before another session is granted", mux: muxSharedKA},
	{Name: "no-lowest-pending", What: "a multiplexed client sends no lowest pending seq (the old window of 32 results)",
		Caught: "no awaited request refused as forgotten", mux: muxNoLowestPending},
	{Name: "read-then-release-cleanup", What: "a multiplexed client cleans up a request it gave up on by reading the holds and releasing what it finds, not with abandon",
		Caught: "no grant outlives the request told it failed", mux: muxReadThenRelease},
	{Name: "lease-from-send-time", What: "a multiplexed client's lease view ends at send time + TTL, with no guard",
		Caught: "Done closes before another session is granted: a renewal forwarded by a follower is applied at the log time " +
			"the leader last stamped, older than its send (by less than a tick interval since forwarders ask for a tick " +
			"first, issue 16), and the client is cut off while it holds; runs with 4 multiplexed clients",
		mux: muxLeaseFromSend, muxClients: 4},
	{Name: "close-without-lock-delay", What: "a close that asks for the lock-delay is applied by the rules before 4, as a plain close: " +
		"an entry applied by other rules than those it was written under (core/rules.go)",
		Caught: "lock-delay (a grant of a mutex before the lock-delay a forced close of its holder started ran out)",
		wrap:   func(m Machine, _ int) Machine { return &closeWithoutLockDelay{Machine: m} }},
	{Name: "campaign-keeps-value", What: "a campaign of an election's leader keeps the old value, as under rules 3, " +
		"where rules 4 proclaims the campaign's value (a process that resumed its session advertises a stale address)",
		Caught: "election-value", wrap: func(m Machine, _ int) Machine { return &campaignKeepsValue{Machine: m} }},
	{Name: "rules-ignored", What: "a leader-change mark without rules (a build of rules 3) raises the rules to this build's, so the entries " +
		"written under rules 3 apply by rules 4 (a close asking for the lock-delay applies, a leader's campaign sets its value), " +
		"while the machine reports the rules the marks say; runs with a rolling upgrade from rules 3",
		Caught: "close-lock-delay, election-value", upgrade: true,
		wrap: func(m Machine, _ int) Machine { return &rulesIgnored{Machine: m, rules: rulesUnmarked} }},
	{Name: "unheard-unconditional", What: "a replica's unheard release ends the grant whatever else answered it, as a plain release: " +
		"the condition of rules 5 removed, so the same session's retry through another member, answered the grant before the " +
		"release applied, loses a grant its caller was told it holds; runs with half the acquires and campaigns private",
		Caught: "acked-grant-lost", private: 0.5,
		wrap: func(m Machine, _ int) Machine { return &unheardUnconditional{Machine: m} }},
}

// Bugs lists the planted bugs, sorted by name.
func Bugs() []Bug {
	out := append([]Bug(nil), bugs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func bugByName(name string) (Bug, bool) {
	for _, b := range bugs {
		if b.Name == name {
			return b, true
		}
	}
	return Bug{}, false
}

// acquiredOnRefuse answers "granted" where core said "refused".
type acquiredOnRefuse struct {
	Machine
	out core.Output
}

func (b *acquiredOnRefuse) Apply(e core.Entry) *core.Output {
	o := b.Machine.Apply(e)
	b.out = *o
	b.out.Results = append(b.out.Results[:0:0], o.Results...)
	for i := range b.out.Results {
		r := &b.out.Results[i]
		op := e.Commands[i].Op
		if r.Err == nil && r.Outcome == core.OutcomeRefused && r.Reason == core.ReasonNone &&
			(op == core.OpAcquire || op == core.OpCampaign) {
			r.Outcome = core.OutcomeGranted
			r.Token = core.FencingToken(e.Index<<core.SlotBits | (1<<core.SlotBits - 1 - uint64(i)))
		}
	}
	return &b.out
}

// skipEntry skips the first entry with a client's command at index 25 or
// later. An entry of the replicas' own commands alone may change nothing
// (a forwarder's tick request stamped with time the log already has), and
// skipping it would plant no bug.
type skipEntry struct {
	Machine
	skipped bool
	out     core.Output
}

func (b *skipEntry) Apply(e core.Entry) *core.Output {
	if b.skipped || e.Index < 25 || e.ClientCommands() == 0 {
		return b.Machine.Apply(e)
	}
	b.skipped = true
	d, _ := b.Machine.NextDeadline()
	b.out = core.Output{Index: e.Index, Time: b.Machine.Now(), NextDeadline: d}
	for range e.Commands {
		b.out.Results = append(b.out.Results, core.Result{Outcome: core.OutcomeDone})
	}
	return &b.out
}

// noSessionExtension drops the leader-change command before core sees it,
// unless it raises the rules in force (once a run, at its first entry or
// at a rolling upgrade): the bug it plants is the missing extension, and a
// machine left on older rules than its log's would be another.
type noSessionExtension struct {
	Machine
	out core.Output
}

func (b *noSessionExtension) Apply(e core.Entry) *core.Output {
	marks := 0
	drop := func(c *core.Command) bool { return c.Op == core.OpLeaderChange && c.Rules <= b.Machine.Rules() }
	for i := range e.Commands {
		if drop(&e.Commands[i]) {
			marks++
		}
	}
	if marks == 0 {
		return b.Machine.Apply(e)
	}
	kept := make([]core.Command, 0, len(e.Commands)-marks)
	dropped := make([]bool, len(e.Commands))
	for i := range e.Commands {
		if dropped[i] = drop(&e.Commands[i]); !dropped[i] {
			kept = append(kept, e.Commands[i])
		}
	}
	inner := e
	inner.Commands = kept
	o := b.Machine.Apply(inner)
	b.out = core.Output{Index: o.Index, Time: o.Time, NextDeadline: o.NextDeadline, Effects: o.Effects}
	j := 0
	for i := range e.Commands {
		if dropped[i] {
			b.out.Results = append(b.out.Results, core.Result{Outcome: core.OutcomeDone})
			continue
		}
		b.out.Results = append(b.out.Results, o.Results[j])
		j++
	}
	return &b.out
}

// noClockCap lets one entry move log time as far as its stamp says. Core
// caps every entry, so the wrapper spreads core's index space (entry i is
// core entry i*clockCapScale) and feeds core the ticks that reach the
// stamp in the gap before the entry, merging their effects into its output.
type noClockCap struct {
	Machine
	out core.Output
}

const clockCapScale = 64

func (b *noClockCap) Index() uint64 { return b.Machine.Index() / clockCapScale }

func (b *noClockCap) Apply(e core.Entry) *core.Output {
	base := e.Index * clockCapScale
	step := core.LogTime(core.DefaultLimits().MaxClockStepMs)
	b.out = core.Output{Index: e.Index}
	for k := uint64(clockCapScale - 1); k > 0 && b.Machine.Now() > 0 && e.Time-b.Machine.Now() > step; k-- {
		o := b.Machine.Apply(core.Entry{Index: base - k, Proposal: core.Proposal{Time: b.Machine.Now() + step}})
		b.out.Effects = append(b.out.Effects, o.Effects...)
	}
	inner := e
	inner.Index = base
	o := b.Machine.Apply(inner)
	b.out.Time = o.Time
	b.out.NextDeadline = o.NextDeadline
	b.out.Results = append(b.out.Results, o.Results...)
	b.out.Effects = append(b.out.Effects, o.Effects...)
	return &b.out
}

// newMachine builds a replica's machine, from a snapshot when given one,
// wrapped in the run's planted bug.
func newMachine(snapshot []byte, bug Bug, node int) Machine {
	var m *core.Machine
	var err error
	if snapshot == nil {
		m, err = core.New(core.DefaultLimits())
	} else {
		m, err = core.Restore(snapshot)
	}
	if err != nil {
		panic("sim: core machine: " + err.Error())
	}
	if bug.wrap == nil {
		return m
	}
	return bug.wrap(m, node)
}

// closeWithoutLockDelay drops a close's ApplyLockDelay before core sees it.
type closeWithoutLockDelay struct {
	Machine
}

func (b *closeWithoutLockDelay) Apply(e core.Entry) *core.Output {
	for i := range e.Commands {
		if e.Commands[i].ApplyLockDelay {
			cmds := append([]core.Command(nil), e.Commands...)
			for j := range cmds {
				cmds[j].ApplyLockDelay = false
			}
			e.Commands = cmds
			break
		}
	}
	return b.Machine.Apply(e)
}

// unheardUnconditional drops Unheard from releases and resigns before core
// sees them, so a replica's release of a grant its caller did not hear
// ends it even when another request was answered it.
type unheardUnconditional struct {
	Machine
}

func (b *unheardUnconditional) Apply(e core.Entry) *core.Output {
	for i := range e.Commands {
		if e.Commands[i].Unheard {
			cmds := append([]core.Command(nil), e.Commands...)
			for j := range cmds {
				cmds[j].Unheard = false
			}
			e.Commands = cmds
			break
		}
	}
	return b.Machine.Apply(e)
}

// campaignKeepsValue applies a leader's campaign with the value it leads
// with, so the campaign changes nothing: rules 3's answer applied to an
// entry of rules 4.
type campaignKeepsValue struct {
	Machine
}

func (b *campaignKeepsValue) Apply(e core.Entry) *core.Output {
	var cmds []core.Command
	for i, c := range e.Commands {
		if c.Op != core.OpCampaign {
			continue
		}
		st, err := b.Machine.Status(core.KindElection, c.Name)
		if err != nil || len(st.Holders) == 0 || st.Holders[0].Session != c.Session {
			continue
		}
		if cmds == nil {
			cmds = append([]core.Command(nil), e.Commands...)
		}
		cmds[i].Value = st.Holders[0].Value
	}
	if cmds != nil {
		e.Commands = cmds
	}
	return b.Machine.Apply(e)
}

// rulesIgnored applies every entry by this build's rules: it hands core
// marks without rules as marks of core.RulesVersion. It reports the rules
// the log's marks put in force (as core would), so that only what the
// entries did gives it away.
type rulesIgnored struct {
	Machine
	rules uint64 // what the marks say: the highest they carried, 3 before any
}

func (b *rulesIgnored) Rules() uint64 { return b.rules }

func (b *rulesIgnored) Apply(e core.Entry) *core.Output {
	var cmds []core.Command
	for i, c := range e.Commands {
		if c.Op != core.OpLeaderChange {
			continue
		}
		b.rules = max(b.rules, c.Rules)
		if c.Rules == 0 {
			if cmds == nil {
				cmds = append([]core.Command(nil), e.Commands...)
			}
			cmds[i].Rules = core.RulesVersion
		}
	}
	if cmds != nil {
		e.Commands = cmds
	}
	return b.Machine.Apply(e)
}
