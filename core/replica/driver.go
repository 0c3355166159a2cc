package replica

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/lockstepd/lockstep/core"
)

// RequestID names one client request on this replica. The caller picks it
// (a connection-scoped counter, say); it must be unique among the requests
// the driver still holds.
type RequestID uint64

// ProposalID names one proposal this driver asked for, so that the caller can
// report a proposal the consensus library refused.
type ProposalID uint64

// Config bounds the driver. Zero fields take the defaults below.
type Config struct {
	// Name names this replica among the shard's replicas: a forwarder's
	// tick request carries it, so that the replica knows its own request
	// in the log. Replicas of one shard must not share a name.
	Name string
	// TickIntervalMs is how long a leader stays quiet before a deadline
	// of the machine that has come due is served by a tick (defaults to
	// 100), and how long a forwarder's stamp stays fresh after the tick it
	// asked for (docs/runtime.md, Time).
	TickIntervalMs int64
	// KeepTimeMs is the longest a leader stays quiet while anything in the
	// machine is timed (defaults to 1000): log time may move at most
	// core's MaxClockStepMs (2 s) by one entry while anything is timed, so
	// the leader's clock must never run further than that ahead of it.
	// Must be at least TickIntervalMs and below MaxClockStepMs.
	KeepTimeMs  int64
	MaxBatch    int // client commands packed into one proposal; defaults to 256
	MaxInflight int // client commands proposed and not yet applied; defaults to 4096
	MaxPending  int // requests held at once (queued, in flight, blocked on a waiter); defaults to 65536
	// MaxUnconfirmed is the proposal gate: proposals handed to the
	// consensus library that it has neither confirmed nor refused. While
	// that many are out, the driver proposes nothing more, so the requests
	// that arrive during a commit wait in its queue and go out packed into
	// the next entry (group commit); defaults to 2 (docs/performance.md:
	// the packing is best at 2).
	MaxUnconfirmed int
	// RideAlongMs is the longest a blocking acquire may wait in the queue
	// for another proposal to ride with, when this replica already holds
	// a request blocked in the same object's queue (defaults to 20; -1:
	// never wait). Such an acquire can only join that queue (core grants
	// nothing past a waiter), so nobody waits on its entry. On a
	// contended lock the releaser's next acquire then shares the entry of
	// the next release, one entry per hand-off in place of two
	// (docs/performance.md, "Acquires ride with releases").
	RideAlongMs int64
	// MarkRules is the rules this driver's leader-change marks carry
	// (core.Command.Rules), which raise the rules in force where they are
	// applied (core/rules.go): 0 means core.RulesVersion, this build's,
	// and a production member leaves it so. Lower rules stand in for an
	// older build in a test or the simulator's upgrade (docs/simulation.md):
	// MarkRulesUnmarked proposes marks without Rules, as a build of rules
	// 3 did (it had no field); 4..core.RulesVersion carries that number.
	MarkRules uint64
}

// Defaults and limits for Config.
const (
	DefaultTickIntervalMs = 100
	DefaultKeepTimeMs     = 1000
	DefaultMaxBatch       = 256
	DefaultMaxInflight    = 4096
	DefaultMaxPending     = 65536
	DefaultMaxUnconfirmed = 2
	DefaultRideAlongMs    = 20
	// MaxRideAlongMs bounds RideAlongMs: an acquire held back learns its
	// waiter id (and can be cancelled by it) no later than that.
	MaxRideAlongMs = 1000
	// MaxMaxUnconfirmed bounds the gate from above: the driver keeps the
	// unconfirmed proposals' ids in a slice it searches, and a caller that
	// never confirms must be stopped before that grows without end.
	MaxMaxUnconfirmed = 1 << 16
	// MarkRulesUnmarked is Config.MarkRules for a build of rules 3, whose
	// marks carried no rules.
	MarkRulesUnmarked = 3
)

func (c Config) withDefaults() Config {
	if c.TickIntervalMs == 0 {
		c.TickIntervalMs = DefaultTickIntervalMs
	}
	if c.KeepTimeMs == 0 {
		c.KeepTimeMs = max(DefaultKeepTimeMs, c.TickIntervalMs)
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.MaxUnconfirmed == 0 {
		c.MaxUnconfirmed = DefaultMaxUnconfirmed
	}
	if c.RideAlongMs == 0 {
		c.RideAlongMs = DefaultRideAlongMs
	}
	if c.MarkRules == 0 {
		c.MarkRules = core.RulesVersion
	}
	return c
}

// Validate says which setting is unusable.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.TickIntervalMs < 1:
		return fmt.Errorf("replica: TickIntervalMs must be at least 1, got %d", c.TickIntervalMs)
	case c.KeepTimeMs < c.TickIntervalMs:
		return fmt.Errorf("replica: KeepTimeMs (%d) must be at least TickIntervalMs (%d)", c.KeepTimeMs, c.TickIntervalMs)
	case c.KeepTimeMs >= core.DefaultLimits().MaxClockStepMs:
		return fmt.Errorf("replica: KeepTimeMs (%d) must be below core's MaxClockStepMs (%d): log time may not fall further behind the leader's clock",
			c.KeepTimeMs, core.DefaultLimits().MaxClockStepMs)
	case len(c.Name) > core.DefaultLimits().MaxOwnerBytes-21:
		return fmt.Errorf("replica: Name is %d bytes: at most %d", len(c.Name), core.DefaultLimits().MaxOwnerBytes-21)
	case c.MaxBatch < 1:
		return fmt.Errorf("replica: MaxBatch must be at least 1, got %d", c.MaxBatch)
	case c.MaxInflight < c.MaxBatch:
		return fmt.Errorf("replica: MaxInflight (%d) must be at least MaxBatch (%d)", c.MaxInflight, c.MaxBatch)
	case c.MaxPending < 1:
		return fmt.Errorf("replica: MaxPending must be at least 1, got %d", c.MaxPending)
	case c.MaxUnconfirmed < 1 || c.MaxUnconfirmed > MaxMaxUnconfirmed:
		return fmt.Errorf("replica: MaxUnconfirmed must be within 1..%d, got %d", MaxMaxUnconfirmed, c.MaxUnconfirmed)
	case c.RideAlongMs < -1 || c.RideAlongMs > MaxRideAlongMs:
		return fmt.Errorf("replica: RideAlongMs must be -1 (never wait) or within 0..%d, got %d", MaxRideAlongMs, c.RideAlongMs)
	case c.MarkRules < MarkRulesUnmarked || c.MarkRules > core.RulesVersion:
		return fmt.Errorf("replica: MarkRules must be 0 (this build's, %d) or within %d..%d, got %d", core.RulesVersion, MarkRulesUnmarked, core.RulesVersion, c.MarkRules)
	}
	return nil
}

// Proposal is an entry the caller must propose to the consensus library.
type Proposal struct {
	ID       ProposalID
	Proposal core.Proposal // what Data encodes, for logs and tests
	Data     []byte        // core.EncodeProposal(Proposal)
}

// ReplyKind says what a reply tells the client.
type ReplyKind uint8

const (
	// ReplyResult is final: the command applied and Result is what the
	// machine answered (Result.Err when it refused the command).
	ReplyResult ReplyKind = iota + 1
	// ReplyQueued is not final: the command applied and waits in the
	// machine's queue as Result.Waiter. ReplyGranted or ReplyWaitEnded follows
	// while this replica keeps applying the log.
	ReplyQueued
	// ReplyGranted is final: a queued request now holds (Result.Token), was
	// elected (Result.Token) or its barrier released (OutcomeReleased,
	// Result.Generation).
	ReplyGranted
	// ReplyWaitEnded is final: a queued request ended without a grant
	// (OutcomeRefused); Reason says why (timeout, cancelled, session ended).
	ReplyWaitEnded
	// ReplyNotLeader is final: nothing was proposed. Leader hints at the
	// replica to ask instead (0: unknown).
	ReplyNotLeader
	// ReplyUnknown is final: the command was proposed, then this replica
	// lost leadership (or the proposal was dropped) before it applied. It
	// may or may not take effect: retry with the same ClientID and Seq to
	// learn which.
	ReplyUnknown
	// ReplyBusy is final: nothing was proposed, the replica holds too many
	// requests. Retry later.
	ReplyBusy
	// ReplyRejected is final: nothing was proposed, the request cannot be
	// (no ClientID or Seq, or an Op clients may not send).
	ReplyRejected
)

var replyNames = [...]string{"", "result", "queued", "granted", "wait_ended", "not_leader", "unknown", "busy", "rejected"}

func (k ReplyKind) String() string {
	if int(k) < len(replyNames) && k > 0 {
		return replyNames[k]
	}
	return fmt.Sprintf("reply(%d)", uint8(k))
}

// Reply answers one request.
type Reply struct {
	Request RequestID
	Kind    ReplyKind
	Result  core.Result
	Reason  core.Reason // ReplyWaitEnded
	Leader  uint64      // ReplyNotLeader
	Index   uint64      // the log index that produced the answer, for applied replies
	// of is the command the reply answers, for an applied one: a grant
	// whose requester goes for good before the reply leaves Ready is
	// released (unsend).
	of *core.Command
}

// Final reports whether the request is finished with this reply.
func (r Reply) Final() bool { return r.Kind != ReplyQueued }

// Ready is what the caller must do now: make the proposals, in order, and
// send the replies.
type Ready struct {
	Proposals []Proposal
	Replies   []Reply
}

// IsEmpty reports whether there is nothing to do.
func (r Ready) IsEmpty() bool { return len(r.Proposals) == 0 && len(r.Replies) == 0 }

type reqState uint8

const (
	stateQueued   reqState = iota + 1 // waiting to be proposed
	stateInflight                     // proposed, not yet applied
	stateBlocked                      // applied as queued; waiting for a grant or an end
)

type request struct {
	id        RequestID
	cmd       core.Command
	state     reqState
	proposal  ProposalID    // stateInflight: the proposal that carried it
	waiter    core.WaiterID // stateBlocked
	abandoned bool          // the requester went away while the command was in flight
	// gone: its requester went away for good (GoneEvent): nobody will
	// send it again and hear its answer from dedupe, so a grant it could
	// not hear is released rather than left to its session.
	gone bool
	// withdrawing: the requester asked its wait withdrawn and stays for
	// the answer (EventWithdraw): its cancel is owed (Driver.owed) once it
	// queues, if it had not yet.
	withdrawing bool
	// A queued acquire that may ride along (mayRide): whether a Ready has
	// held it back yet, and the replica's clock then (Config.RideAlongMs
	// counts from it).
	held   bool
	heldAt core.LogTime
	// asksBefore is how many tick requests this replica had made when the
	// request arrived (Driver.askSeq): a forwarder's ask numbered above it
	// was made after the request arrived, and once answered, covers it
	// (Driver.covers).
	asksBefore uint64
}

// objectKey names one lockable object of the machine.
type objectKey struct {
	kind core.Kind
	name string
}

type dedupeKey struct {
	client string
	seq    uint64
}

// Role is what a driver does with the requests it is given. It follows
// from the leadership events and from whether the replica has applied an
// entry yet.
type Role uint8

const (
	// RoleFollower proposes nothing and answers every request NotLeader:
	// no leader is known, or this replica has applied nothing yet, so it
	// has no log time to stamp a forward with (a first entry stamped 0
	// would pin log time at 0).
	RoleFollower Role = iota + 1
	// RoleForwarder packs requests as a leader does and proposes them
	// through the consensus library, which hands a follower's proposal to
	// the leader. It stamps them with the log time this replica has
	// applied, never its own clock, so it cannot move log time (core's
	// advanceClock keeps the maximum), and it proposes no ticks and no
	// leader-change mark (docs/design.md, Time).
	RoleForwarder
	// RoleLeader stamps requests with the replica's clock, proposes the
	// leader-change mark first and a tick when idle for an interval.
	RoleLeader
)

var roleNames = [...]string{"", "follower", "forwarder", "leader"}

func (r Role) String() string {
	if int(r) < len(roleNames) && r > 0 {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Driver is one replica's driver. It is not safe for concurrent use: the
// caller serialises Step and Ready, as it does for a raft RawNode.
type Driver struct {
	cfg     Config
	maxStep core.LogTime // core's MaxClockStepMs: how far one entry may move log time while anything is timed

	now         core.LogTime // the replica's stamping clock at the last Tick (clockAnchor)
	clock       clockAnchor
	appliedTime core.LogTime // the machine's log time after the last applied entry (or restored snapshot)
	appliedMono core.LogTime // the monotonic clock's last reading when appliedTime was set
	isLeader    bool         // as the last LeadershipEvent said
	term        uint64       // as the last LeadershipEvent said
	leaderID    uint64       // as the last LeadershipEvent said

	// role is what the driver does now, taken up in roleTerm under
	// roleLeader: any change of the three ends a proposing role, failing
	// what it had not seen applied.
	role                 Role
	roleTerm, roleLeader uint64

	needLeaderMark bool         // propose OpLeaderChange before anything else
	markProposal   ProposalID   // the proposal carrying this term's OpLeaderChange, until it fails or the term ends
	markStamp      core.LogTime // the stamp of the last OpLeaderChange proposed: applied once appliedTime reaches it
	lastProposalAt core.LogTime // the replica's clock at the last proposal
	nextProposal   ProposalID

	// What the machine holds that time alone ends, as of the last applied
	// entry (core.Output.NextDeadline): while timed, a leader proposes a
	// tick when deadline comes due and at least every KeepTimeMs.
	timed    bool
	deadline core.LogTime
	// tickAsked: a forwarder's tick request was applied and no tick or
	// leader-change mark has followed it yet; a leader answers it at once.
	tickAsked bool

	// A forwarder's time (docs/runtime.md, Time): it stamps forwards with
	// the log time it has applied, which is fresh only if the leader
	// stamped an entry after this replica last asked. freshUntil is this
	// replica's clock until which it forwards without asking again; ask
	// is the outstanding request (its Owner, "" for none), askedAt the
	// clock when it went out, askIndex its entry once applied. answered
	// is the number (askSeq) of the last ask whose answering time entry
	// was applied: the requests that arrived before that ask was made
	// (request.asksBefore below it) are covered, fresh or not (covers).
	freshUntil core.LogTime
	ask        string
	askSeq     uint64
	askedAt    core.LogTime
	askIndex   uint64
	askProp    ProposalID
	answered   uint64

	reqs    map[RequestID]*request
	byKey   map[dedupeKey][]RequestID // requests waiting for the result of (ClientID, Seq)
	blocked map[core.WaiterID][]RequestID
	// queuedOn counts the requests in stateBlocked per object they wait
	// in (acquires only): an acquire of an object listed here finds a
	// queue in the machine, so it may ride along (Config.RideAlongMs).
	queuedOn map[objectKey]int
	queue    []RequestID // stateQueued, in arrival order
	inflight int         // requests in stateInflight
	cancels  []core.Command
	// owed are the cancels this replica owes the machine, by waiter: a
	// wait whose requester went away or asked it withdrawn. Each stays
	// owed until a cancel of it applies (or its wait ends), and is asked
	// again when the proposal that carried it fails or the role that
	// queued it ends: sent once, a lost cancel let the wait be granted
	// later to nobody, or to a requester whose rights were withdrawn.
	owed map[owedKey]*owedCancel
	// owedRetryAt is when the owed cancels of failed proposals are asked
	// again (0: none waits). A proposal refused on the spot (a deposed
	// leader, a forwarder that knows no leader) fails as soon as it is
	// made: asked again at once, its cancels went round the shard's loop
	// as fast as it turns until the leader update came. They wait a tick
	// interval instead (owedRetryDelay); a new role asks them at once.
	owedRetryAt core.LogTime

	// unconfirmed lists the proposals of the current role that the caller
	// has neither confirmed nor refused, in ascending order: the gate
	// (Config.MaxUnconfirmed).
	unconfirmed []ProposalID

	out Ready
}

// New returns a driver for a replica that is not (yet) the leader.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Driver{
		cfg:          cfg.withDefaults(),
		maxStep:      core.LogTime(core.DefaultLimits().MaxClockStepMs),
		role:         RoleFollower,
		nextProposal: 1,
		reqs:         make(map[RequestID]*request),
		byKey:        make(map[dedupeKey][]RequestID),
		blocked:      make(map[core.WaiterID][]RequestID),
		owed:         make(map[owedKey]*owedCancel),
		queuedOn:     make(map[objectKey]int),
	}, nil
}

// IsLeader reports whether the driver believes this replica leads.
func (d *Driver) IsLeader() bool { return d.role == RoleLeader }

// Role returns what the driver does with requests now.
func (d *Driver) Role() Role { return d.role }

// Proposes reports whether the driver takes requests now (as leader or
// forwarder); a follower's driver answers them NotLeader.
func (d *Driver) Proposes() bool { return d.role != RoleFollower }

// Pending returns how many requests the driver holds.
func (d *Driver) Pending() int { return len(d.reqs) }

// Unconfirmed returns how many of its proposals the driver waits to hear
// confirmed or refused (at most Config.MaxUnconfirmed).
func (d *Driver) Unconfirmed() int { return len(d.unconfirmed) }

// Owed is how many cancels this replica owes the machine (Driver.owed):
// asked, proposed, or waiting to be asked again after their proposal
// failed. A closing node waits for them to reach the log.
func (d *Driver) Owed() int { return len(d.owed) }

// EventKind says what happened.
type EventKind uint8

const (
	EventRequest           EventKind = iota + 1 // a client sent Command as Request
	EventCancel                                 // the client behind Request went away
	EventTick                                   // the replica's wall clock reads Now and its monotonic clock Mono
	EventLeadership                             // leadership is now (IsLeader, Term, LeaderID)
	EventApplied                                // Entry was applied and produced Output
	EventProposalFailed                         // the consensus library refused Proposal
	EventProposalConfirmed                      // the consensus library committed Proposal
	EventRestored                               // the machine was replaced by a snapshot at log time Now: applied entries were skipped
	EventUnheard                                // a requester went away for good without taking its answer, Result to Command
	EventWithdraw                               // the client behind a queued Request asks it withdrawn, and waits to hear how it ended
)

// Event is one input to Step. Each kind reads the fields named above.
type Event struct {
	Kind     EventKind
	Request  RequestID
	Command  core.Command
	Now      core.LogTime
	Mono     core.LogTime
	IsLeader bool
	Term     uint64
	LeaderID uint64
	Entry    core.Entry
	Output   *core.Output
	Proposal ProposalID
	Gone     bool        // EventCancel: GoneEvent
	Result   core.Result // EventUnheard
}

// RequestEvent is a client request arriving.
func RequestEvent(id RequestID, cmd core.Command) Event {
	return Event{Kind: EventRequest, Request: id, Command: cmd}
}

// CancelEvent is the client behind a request going away. It may come back
// with the same identity (ClientID, Seq), elsewhere or here, and hear from
// dedupe how the request ended: a grant that comes anyway stays.
func CancelEvent(id RequestID) Event { return Event{Kind: EventCancel, Request: id} }

// GoneEvent is the client behind a request going away for good: nobody
// will ask for its answer again (the runtime gave the request an identity
// only it knows, for a call that carried none; a caller that gave up on it
// and forgot it). Its wait is withdrawn as CancelEvent withdraws it, and a
// grant it did not hear, applied before the cancel or as the request's own
// result, is released (owed as a cancel is, until a release of it
// applies) rather than left to hold the name until the session ends.
func GoneEvent(id RequestID) Event { return Event{Kind: EventCancel, Request: id, Gone: true} }

// WithdrawEvent is the client behind a request asking its wait withdrawn
// while it stays to hear how the wait ended: the cancel goes through the
// log, and the request's final reply is whichever the log applied first,
// its grant or its end (ReplyWaitEnded, core.ReasonCancelled). A request
// not queued yet is withdrawn once it queues. The cancel is owed until one
// applies (Driver.owed). An unknown request is left alone.
func WithdrawEvent(id RequestID) Event { return Event{Kind: EventWithdraw, Request: id} }

// TickEvent is a reading of a clock that is its own monotonic clock (a
// test's, a simulator's without steps): ClockEvent(now, now).
func TickEvent(now core.LogTime) Event { return ClockEvent(now, now) }

// ClockEvent is a reading of the replica's two clocks: wall is its wall
// clock in ms since the Unix epoch, which an operator, NTP or a resumed
// virtual machine may step; mono is a monotonic clock in ms from any
// origin, which runs at the wall clock's rate but is never stepped. A
// leader stamps with the wall clock as read when it took the role, carried
// forward by the monotonic one (clockAnchor).
func ClockEvent(wall, mono core.LogTime) Event { return Event{Kind: EventTick, Now: wall, Mono: mono} }

// LeadershipEvent reports who leads: this replica (isLeader) in term, or
// leaderID (0: unknown). The driver leads when isLeader, forwards when
// another replica leads and this one has applied an entry, and otherwise
// refers requests to leaderID.
func LeadershipEvent(isLeader bool, term, leaderID uint64) Event {
	return Event{Kind: EventLeadership, IsLeader: isLeader, Term: term, LeaderID: leaderID}
}

// AppliedEvent reports an applied entry and its output. The driver copies
// what it keeps, so out may be reused afterwards.
func AppliedEvent(e core.Entry, out *core.Output) Event {
	return Event{Kind: EventApplied, Entry: e, Output: out}
}

// ProposalFailedEvent reports a proposal the consensus library refused, or
// gave up on (a timeout, a dropped forward): its requests are answered
// unknown, and it leaves the gate.
func ProposalFailedEvent(id ProposalID) Event { return Event{Kind: EventProposalFailed, Proposal: id} }

// ProposalConfirmedEvent reports a proposal the consensus library committed
// (the runtime: Dragonboat's result completed; the simulator: this replica
// applied its entry). It leaves the gate; its requests are answered by the
// applied entry, not by this event. A proposal of an earlier role, or one
// already confirmed or refused, is ignored.
func ProposalConfirmedEvent(id ProposalID) Event {
	return Event{Kind: EventProposalConfirmed, Proposal: id}
}

// RestoredEvent reports that the machine jumped to a snapshot whose log time
// is now (also when a replica starts from one): the entries it skipped may
// have answered requests held here, which will never see their results.
// They are failed as unknown, so the client retries and dedupe tells it
// what happened.
func RestoredEvent(now core.LogTime) Event { return Event{Kind: EventRestored, Now: now} }

// UnheardEvent reports that the requester of a request went away for
// good (as GoneEvent says) without taking the answer the driver
// gave it, res to cmd: the answer came as it left (or as its deadline
// passed and it was told the wait timed out). A grant in res is released,
// owed as a cancel is, as one that comes after the requester left is:
// nobody will hear of it, and nobody can ask again.
func UnheardEvent(cmd core.Command, res core.Result) Event {
	return Event{Kind: EventUnheard, Command: cmd, Result: res}
}

// Step feeds one event to the driver. An error means the caller broke the
// contract (a reused request id, an output that does not match its entry);
// the driver's state is unchanged then.
func (d *Driver) Step(ev Event) error {
	switch ev.Kind {
	case EventRequest:
		return d.stepRequest(ev.Request, ev.Command)
	case EventCancel:
		d.stepCancel(ev.Request, ev.Gone)
	case EventWithdraw:
		if r := d.reqs[ev.Request]; r != nil && !r.withdrawing {
			r.withdrawing = true
			if r.state == stateBlocked {
				d.cancelWait(r.waiter, r.cmd.Session, false) // its requester stays to hear the grant
			}
		}
	case EventTick:
		d.stepTick(ev.Now, ev.Mono)
	case EventLeadership:
		d.stepLeadership(ev.IsLeader, ev.Term, ev.LeaderID)
	case EventApplied:
		return d.stepApplied(ev.Entry, ev.Output)
	case EventProposalFailed:
		d.stepProposalFailed(ev.Proposal)
	case EventProposalConfirmed:
		d.settle(ev.Proposal)
	case EventRestored:
		d.stepRestored(ev.Now)
	case EventUnheard:
		d.releaseUnheard(&ev.Command, ev.Result)
	default:
		return fmt.Errorf("replica: unknown event kind %d", ev.Kind)
	}
	return nil
}

func (d *Driver) stepRequest(id RequestID, cmd core.Command) error {
	if _, dup := d.reqs[id]; dup {
		return fmt.Errorf("replica: request id %d is already pending", id)
	}
	switch {
	case cmd.ClientID == "" || cmd.Seq == 0 || cmd.Op.Internal():
		d.reply(Reply{Request: id, Kind: ReplyRejected})
	case d.role == RoleFollower:
		d.reply(Reply{Request: id, Kind: ReplyNotLeader, Leader: d.leaderID})
	case len(d.reqs) >= d.cfg.MaxPending:
		d.reply(Reply{Request: id, Kind: ReplyBusy})
	default:
		r := &request{id: id, cmd: cmd, state: stateQueued, asksBefore: d.askSeq}
		d.reqs[id] = r
		k := dedupeKey{cmd.ClientID, cmd.Seq}
		d.byKey[k] = append(d.byKey[k], id)
		d.queue = append(d.queue, id)
	}
	return nil
}

func (d *Driver) stepCancel(id RequestID, gone bool) {
	r := d.reqs[id]
	if r == nil {
		if gone {
			d.unsend(id)
		}
		return
	}
	r.gone = r.gone || gone
	switch r.state {
	case stateQueued:
		d.forget(r)
	case stateInflight:
		r.abandoned = true // decided when its result arrives
	case stateBlocked:
		d.cancelWait(r.waiter, r.cmd.Session, r.gone)
		d.forget(r)
	}
}

// cancelWait withdraws a queued request from the machine, so that a grant
// nobody waits for does not sit on the name until the session ends. The
// cancel is owed until one applies (Driver.owed): a follower, which
// proposes nothing, asks it once it leads or forwards. gone: the
// requester went away for good (GoneEvent), so a grant that beats the cancel
// is released (route).
func (d *Driver) cancelWait(w core.WaiterID, s core.SessionID, gone bool) {
	if w == 0 {
		return
	}
	k := owedKey{waiter: w}
	if o, ok := d.owed[k]; ok {
		o.gone = o.gone || gone
		o.cmd.Unheard = o.cmd.Unheard && gone // a requester that stays to hear withdraws it whatever joined
	} else {
		// A gone requester's cancel is unheard: the machine keeps the
		// wait for another request of the session that joined it (rules
		// 5), which would otherwise be told its wait was cancelled.
		d.owed[k] = &owedCancel{cmd: core.Command{Op: core.OpCancel, Waiter: w, Session: s, Unheard: gone}, gone: gone}
	}
	d.askOwed(k)
}

// oweRelease releases a grant whose requester went away for good before
// it heard of it (GoneEvent), owed as a cancel is, until a release
// of it applies. A barrier's "grant" is its release, and holds nothing.
func (d *Driver) oweRelease(kind core.Kind, name string, s core.SessionID, token core.FencingToken) {
	if token == 0 || kind == core.KindBarrier {
		return
	}
	// Unheard: the machine ends it only if no other request was answered
	// it (rules 5). The same session's acquire through another member may
	// have been answered this grant, its live one, before this release
	// applies; that caller was told it holds the grant, and keeps it.
	c := core.Command{Op: core.OpRelease, Kind: kind, Name: name, Session: s, Token: token, Unheard: true}
	if kind == core.KindElection {
		c = core.Command{Op: core.OpResign, Name: name, Session: s, Token: token, Unheard: true}
	}
	k := owedKey{token: token}
	if _, ok := d.owed[k]; !ok {
		d.owed[k] = &owedCancel{cmd: c}
	}
	d.askOwed(k)
}

// owedKey names what an owed withdrawal is of: a wait (its cancel) or a
// grant (its release).
type owedKey struct {
	waiter core.WaiterID
	token  core.FencingToken
}

// owedOf is the key of the owed withdrawal c (a cancel, or a release or
// resign) would settle.
func owedOf(c *core.Command) owedKey {
	if c.Op == core.OpCancel {
		return owedKey{waiter: c.Waiter}
	}
	return owedKey{token: c.Token}
}

// owedCancel is one withdrawal the replica owes (Driver.owed): the cancel
// of a wait, or the release of a grant nobody heard of.
type owedCancel struct {
	cmd     core.Command // what to propose
	gone    bool         // a cancel whose requester went away for good: a grant that beats it is released
	asked   bool         // in d.cancels, or in a proposal
	carrier ProposalID   // the proposal that carries it (0: not proposed yet)
}

// askOwed queues k's owed withdrawal, unless it is queued or out already,
// or this replica cannot propose (it asks once it can: takeRole).
func (d *Driver) askOwed(k owedKey) {
	o := d.owed[k]
	if o == nil || o.asked || d.role == RoleFollower {
		return
	}
	o.asked, o.carrier = true, 0
	d.cancels = append(d.cancels, o.cmd)
}

// askAllOwed queues every owed withdrawal not queued or out, cancels in
// waiter order then releases in token order (the log must not depend on a
// map's order).
func (d *Driver) askAllOwed() {
	d.owedRetryAt = 0
	if len(d.owed) == 0 {
		return
	}
	ks := make([]owedKey, 0, len(d.owed))
	for k := range d.owed {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b owedKey) int {
		if (a.waiter == 0) != (b.waiter == 0) {
			if a.waiter == 0 {
				return 1 // releases (waiter 0) after the cancels
			}
			return -1
		}
		if c := cmp.Compare(a.waiter, b.waiter); c != 0 {
			return c
		}
		return cmp.Compare(a.token, b.token)
	})
	for _, k := range ks {
		d.askOwed(k)
	}
}

// settleOwed drops k's owed withdrawal: one applied (whatever it found),
// or the wait ended.
func (d *Driver) settleOwed(k owedKey) { delete(d.owed, k) }

// unaskOwed marks the owed cancels that carrier held (every one, when all)
// as lost, for askAllOwed to ask again: their proposal failed, their role
// ended, or a snapshot skipped the entries that held them. It says how
// many it marked.
func (d *Driver) unaskOwed(all bool, carrier ProposalID) int {
	n := 0
	for _, o := range d.owed {
		if all || (o.asked && o.carrier == carrier) {
			o.asked, o.carrier = false, 0
			n++
		}
	}
	return n
}

// clockAnchor is where the replica's stamping clock stands (docs/design.md,
// Time): the wall clock read at the anchor, carried forward by the
// monotonic clock since. It is anchored at the first reading and each time
// the replica takes the leader role, so log time starts each term at the
// new leader's wall clock, or where log time stands (the log time this
// replica has applied) when that wall clock is behind it: log time then
// runs on at real rate instead of standing still until a clock behind
// catches up, which would hold every expiry back by as much. Within a term
// a step of the wall clock (NTP stepping a clock, a virtual machine
// resumed from a pause, an operator's date) moves no log time. Log time
// moved by such a step would move every lease's end by it at once, ahead
// of the clients, which count their leases on monotonic clocks: a step
// forward would expire sessions whose clients still hold their leases. Rate errors (a slewed clock) reach
// both clocks alike and stay within the client's guard (docs/client.md).
type clockAnchor struct {
	read       bool         // a reading has come
	wall, mono core.LogTime // the last reading
	atWall     core.LogTime // the wall clock at the anchor
	atMono     core.LogTime // the monotonic clock at the anchor
}

// observe takes a reading and returns the stamping clock. A monotonic
// reading that goes back is a clock without one (TickEvent's, stepped):
// the anchor moves to it, so such a clock is taken as it reads.
func (c *clockAnchor) observe(wall, mono core.LogTime) core.LogTime {
	if !c.read || mono < c.mono {
		c.atWall, c.atMono = wall, mono
	}
	c.read, c.wall, c.mono = true, wall, mono
	return c.atWall + (mono - c.atMono)
}

// reanchor starts the stamping clock again at the last wall reading, or at
// floor when the wall clock is behind it, and returns it.
func (c *clockAnchor) reanchor(floor core.LogTime) core.LogTime {
	c.atWall, c.atMono = max(c.wall, floor), c.mono
	return c.atWall
}

// ClockOffset is how far the replica's wall clock stands from log time
// (wall minus log time, in ms), which the runtime reports. On a leader it
// is measured against its stamping clock: a step of the wall clock this
// term that log time ignored, or (negative) how far the wall clock was
// behind log time when it took the lead. On any other replica, against
// the log time it applied last, carried forward by its monotonic clock
// since (log time runs at the leader's monotonic rate, idle or not): its
// wall clock's offset from the leader's stamping clock, to within the
// replication delay and a tick. A member whose clock stands ahead moves
// log time (and every deadline with it) that far ahead if it takes the
// lead (docs/design.md, Time), so this shows the skew before a failover
// does. While a replica replays old entries it reads high.
func (d *Driver) ClockOffset() core.LogTime {
	if d.isLeader || d.appliedTime == 0 {
		return d.clock.wall - d.now
	}
	return d.clock.wall - (d.appliedTime + d.clock.mono - d.appliedMono)
}

func (d *Driver) stepTick(wall, mono core.LogTime) {
	now := d.clock.observe(wall, mono)
	d.now = now
	if now < d.lastProposalAt {
		// The clock stepped back: measure the next interval from here rather
		// than stop ticking until it catches up.
		d.lastProposalAt = now
	}
}

func (d *Driver) stepLeadership(isLeader bool, term, leaderID uint64) {
	d.isLeader, d.term, d.leaderID = isLeader, term, leaderID
	d.takeRole()
}

// takeRole moves the driver to the role its inputs call for. A proposing
// role ends when the role, the term or the leader changes: what it queued
// or proposed is failed (a forward may have gone to a leader that is gone;
// a leader's entries may be overwritten), and the next role starts afresh.
func (d *Driver) takeRole() {
	want := RoleFollower
	switch {
	case d.isLeader:
		want = RoleLeader
	case d.leaderID != 0 && d.appliedTime > 0:
		want = RoleForwarder
	}
	if want == d.role && d.term == d.roleTerm && d.leaderID == d.roleLeader {
		return
	}
	if d.role != RoleFollower {
		d.loseRole()
	}
	if want == RoleLeader {
		if d.clock.read {
			d.now = d.clock.reanchor(d.appliedTime)
		}
		d.needLeaderMark = true
		d.lastProposalAt = d.now
	}
	d.role, d.roleTerm, d.roleLeader = want, d.term, d.leaderID
	d.askAllOwed() // the role that ended dropped the cancels it had queued or proposed
}

// loseRole fails every request that still needs this replica to propose or
// to see its entry: queued ones were never proposed (NotLeader, naming the
// leader as now known), in-flight ones may still commit under the next
// leader (Unknown). Requests blocked on a waiter stay: their answer arrives
// through the log, which this replica keeps applying in any role.
func (d *Driver) loseRole() {
	// forget takes each request out of d.queue: walk a copy.
	for _, id := range slices.Clone(d.queue) {
		r := d.reqs[id]
		d.reply(Reply{Request: id, Kind: ReplyNotLeader, Leader: d.leaderID})
		d.forget(r)
	}
	for _, id := range d.sortedIDs(stateInflight) {
		r := d.reqs[id]
		if !r.abandoned {
			d.reply(Reply{Request: id, Kind: ReplyUnknown})
		}
		d.forget(r)
	}
	d.queue = d.queue[:0]
	d.cancels = d.cancels[:0]
	d.unaskOwed(true, 0) // asked again by the next proposing role
	d.needLeaderMark = false
	d.ask, d.freshUntil = "", 0
	d.role = RoleFollower
	// The proposals of the role that ended no longer hold the gate: their
	// requests are answered, and a new leader's first entry must not wait
	// for the fate of what this replica forwarded before.
	d.unconfirmed = d.unconfirmed[:0]
}

// settle takes a proposal out of the gate.
func (d *Driver) settle(id ProposalID) {
	if i, ok := slices.BinarySearch(d.unconfirmed, id); ok {
		d.unconfirmed = slices.Delete(d.unconfirmed, i, i+1)
	}
}

func (d *Driver) stepProposalFailed(id ProposalID) {
	d.settle(id)
	if d.ask != "" && id == d.askProp {
		d.ask = "" // asked again by the next Ready
	}
	// The leader-change entry is what keeps a failover from expiring
	// sessions: while this replica still leads, a lost one is proposed again.
	if d.role == RoleLeader && id == d.markProposal {
		d.needLeaderMark = true
	}
	for _, rid := range d.sortedIDs(stateInflight) {
		r := d.reqs[rid]
		if r.proposal != id {
			continue
		}
		if !r.abandoned {
			d.reply(Reply{Request: rid, Kind: ReplyUnknown})
		}
		d.forget(r)
	}
	if d.unaskOwed(false, id) > 0 && d.owedRetryAt == 0 { // the cancels it carried are owed still
		d.owedRetryAt = d.now + d.owedRetryDelay()
	}
}

// owedRetryDelay is how long the owed cancels of a failed proposal wait
// before they are asked again (Driver.owedRetryAt).
func (d *Driver) owedRetryDelay() core.LogTime { return core.LogTime(d.cfg.TickIntervalMs) }

func (d *Driver) stepRestored(now core.LogTime) {
	// The snapshot skipped the entries that may have carried this
	// replica's proposals: it will not see them applied, so they no longer
	// hold the gate (their requests are failed below).
	d.unconfirmed = d.unconfirmed[:0]
	for _, s := range []reqState{stateInflight, stateBlocked} {
		for _, id := range d.sortedIDs(s) {
			r := d.reqs[id]
			if !r.abandoned {
				d.reply(Reply{Request: id, Kind: ReplyUnknown})
			}
			d.forget(r)
		}
	}
	d.appliedTime, d.appliedMono = now, d.clock.mono
	// The snapshot's deadlines are not known here until its next entry:
	// count one as due now, so that a leader ticks once and learns them. A
	// tick request in the skipped entries is lost: ask again.
	d.timed, d.deadline = true, now
	d.ask, d.freshUntil = "", 0
	// The skipped entries may have carried an owed cancel, or the end of
	// its wait: ask each again (one that finds no waiter settles it).
	d.unaskOwed(true, 0)
	d.takeRole()
	d.askAllOwed()
}

func (d *Driver) stepApplied(e core.Entry, out *core.Output) error {
	if out == nil || len(out.Results) != len(e.Commands) {
		return fmt.Errorf("replica: entry %d has %d commands but its output is %v", e.Index, len(e.Commands), describeOutput(out))
	}
	if d.appliedTime == 0 && out.Time > 0 {
		d.appliedTime = out.Time
		d.takeRole() // a follower that knows the leader may forward now
	}
	d.appliedTime, d.appliedMono = out.Time, d.clock.mono
	d.timed, d.deadline = out.NextDeadline != 0, out.NextDeadline
	d.noteTime(e, out)
	for i := range e.Commands {
		c := &e.Commands[i]
		if c.ClientID == "" {
			continue
		}
		k := dedupeKey{c.ClientID, c.Seq}
		ids := d.byKey[k]
		if len(ids) == 0 {
			continue
		}
		for _, id := range slices.Clone(ids) {
			d.answer(d.reqs[id], out.Results[i], out.Index)
		}
	}
	for i := range out.Effects {
		d.route(&out.Effects[i], out.Index)
	}
	if len(d.owed) > 0 {
		for i := range e.Commands {
			c := &e.Commands[i]
			switch o := d.owed[owedOf(c)]; {
			case o == nil:
			case c.Op == core.OpCancel && o.cmd.Op == core.OpCancel && o.cmd.Session == c.Session &&
				(out.Results[i].Err == nil || out.Results[i].Err.Code == core.CodeNotFound ||
					(c.Unheard && out.Results[i].Err.Code == core.CodeFailedPrecondition)):
				// applied: the wait is withdrawn, or was gone, or stays for
				// a request that joined it (not a refused cancel)
				d.settleOwed(owedOf(c))
			case (c.Op == core.OpRelease || c.Op == core.OpResign) && o.cmd.Op == c.Op && (c.Unheard || out.Results[i].Err == nil):
				// applied: released, or kept for a caller that heard of it,
				// or it had ended already; or another release ended it
				d.settleOwed(owedOf(c))
			}
		}
	}
	return nil
}

// noteTime follows the tick requests and the leader's time entries (ticks
// and leader-change marks, which only a leader proposes) in the log. A
// time entry after this replica's own request was stamped by a leader
// that had already received the request, so by a clock reading taken
// after askedAt: stamps of the applied log time stay within a tick
// interval of the leader's clock until askedAt + TickIntervalMs.
func (d *Driver) noteTime(e core.Entry, out *core.Output) {
	timeEntry := len(e.Commands) == 0 && e.Time > 0
	for i := range e.Commands {
		c := &e.Commands[i]
		switch {
		case c.Op == core.OpLeaderChange && out.Results[i].Err == nil:
			timeEntry = true
		case c.Op == core.OpTickRequest && out.Results[i].Err == nil:
			d.tickAsked = true
			if d.ask != "" && c.Owner == d.ask && d.askIndex == 0 {
				d.askIndex = e.Index
			}
		}
	}
	if !timeEntry {
		return
	}
	d.tickAsked = false
	if d.ask != "" && d.askIndex != 0 && e.Index > d.askIndex {
		d.freshUntil = d.askedAt + core.LogTime(d.cfg.TickIntervalMs)
		d.answered = d.askSeq
		d.ask = ""
	}
}

func describeOutput(out *core.Output) string {
	if out == nil {
		return "nil"
	}
	return fmt.Sprintf("%d results", len(out.Results))
}

// answer gives a request the result of its command.
func (d *Driver) answer(r *request, res core.Result, index uint64) {
	if res.Err == nil && res.Outcome == core.OutcomeQueued && res.Waiter != 0 {
		if r.abandoned {
			d.cancelWait(res.Waiter, r.cmd.Session, r.gone)
			d.forget(r)
			return
		}
		if r.state == stateBlocked {
			return // a retry of a request that already waits here
		}
		d.leaveQueues(r)
		r.state = stateBlocked
		r.waiter = res.Waiter
		d.blocked[res.Waiter] = append(d.blocked[res.Waiter], r.id)
		if r.cmd.Op == core.OpAcquire {
			d.queuedOn[objectKey{r.cmd.Kind, r.cmd.Name}]++
		}
		d.reply(Reply{Request: r.id, Kind: ReplyQueued, Result: res, Index: index})
		if r.withdrawing {
			d.cancelWait(r.waiter, r.cmd.Session, false) // its requester stays to hear the grant
		}
		return
	}
	if !r.abandoned {
		d.reply(Reply{Request: r.id, Kind: ReplyResult, Result: res, Index: index, of: &r.cmd})
	} else if r.gone && d.alone(r) {
		// Granted at once, to a requester that went away and can never
		// ask again: nobody will hear of this grant.
		d.releaseUnheard(&r.cmd, res)
	}
	d.forget(r)
}

// releaseUnheard releases the grant res gave cmd, if it gave one, which
// its requester, gone for good, will never hear of.
func (d *Driver) releaseUnheard(cmd *core.Command, res core.Result) {
	if res.Err != nil || res.Outcome != core.OutcomeGranted {
		return
	}
	kind := cmd.Kind
	if cmd.Op == core.OpCampaign {
		kind = core.KindElection
	}
	s := res.Session
	if s == 0 {
		s = cmd.Session
	}
	d.oweRelease(kind, cmd.Name, s, res.Token)
}

// alone says whether r is the only request of its dedupe identity here:
// another would hear its answer.
func (d *Driver) alone(r *request) bool {
	return len(d.byKey[dedupeKey{r.cmd.ClientID, r.cmd.Seq}]) == 1
}

// route ends the waits an effect answers.
func (d *Driver) route(ef *core.Effect, index uint64) {
	if ef.Waiter == 0 {
		return
	}
	if ef.Kind == core.EffectGranted || ef.Kind == core.EffectWaitEnded {
		o := d.owed[owedKey{waiter: ef.Waiter}]
		d.settleOwed(owedKey{waiter: ef.Waiter}) // a cancel owed for it has nothing left to do
		if o != nil && o.gone && ef.Kind == core.EffectGranted && len(d.blocked[ef.Waiter]) == 0 {
			// The grant beat the cancel of a requester gone for good:
			// nobody will hear of it.
			d.oweRelease(ef.Object, ef.Name, ef.Session, ef.Token)
		}
	}
	ids := d.blocked[ef.Waiter]
	if len(ids) == 0 {
		return
	}
	// The replies carry what the machine stores as the request's result when
	// the wait ends, so a retry (answered from dedupe) and the blocked request
	// hear the same thing.
	var rep Reply
	switch ef.Kind {
	case core.EffectGranted:
		rep = Reply{Kind: ReplyGranted, Result: core.Result{Outcome: core.OutcomeGranted, Token: ef.Token,
			Session: ef.Session, Waiter: ef.Waiter}}
		if ef.Object == core.KindBarrier {
			rep.Result = core.Result{Outcome: core.OutcomeReleased, Session: ef.Session, Waiter: ef.Waiter,
				Generation: ef.Generation}
		}
	case core.EffectWaitEnded:
		rep = Reply{Kind: ReplyWaitEnded, Reason: ef.Reason, Result: core.Result{Outcome: core.OutcomeRefused,
			Waiter: ef.Waiter, Session: ef.Session, Reason: ef.Reason}}
	default:
		return
	}
	rep.Index = index
	for _, id := range slices.Clone(ids) {
		rep.Request, rep.of = id, &d.reqs[id].cmd
		d.reply(rep)
		d.forget(d.reqs[id])
	}
}

func (d *Driver) reply(r Reply) { d.out.Replies = append(d.out.Replies, r) }

// unsend withdraws the final reply to request id that Ready has not handed
// out yet, its requester gone for good: it was answered in the entry just
// applied, and left before the reply could reach it. A grant in it is
// released, as one that comes after the requester left is.
func (d *Driver) unsend(id RequestID) {
	i := slices.IndexFunc(d.out.Replies, func(r Reply) bool { return r.Request == id && r.Final() })
	if i < 0 {
		return
	}
	rep := d.out.Replies[i]
	d.out.Replies = slices.Delete(d.out.Replies, i, i+1)
	if rep.of != nil {
		d.releaseUnheard(rep.of, rep.Result)
	}
}

// leaveQueues takes a request out of the queue or the in-flight count.
func (d *Driver) leaveQueues(r *request) {
	switch r.state {
	case stateQueued:
		if i := slices.Index(d.queue, r.id); i >= 0 {
			d.queue = slices.Delete(d.queue, i, i+1)
		}
	case stateInflight:
		d.inflight--
	case stateBlocked:
		ids := d.blocked[r.waiter]
		if i := slices.Index(ids, r.id); i >= 0 {
			ids = slices.Delete(ids, i, i+1)
		}
		if len(ids) == 0 {
			delete(d.blocked, r.waiter)
		} else {
			d.blocked[r.waiter] = ids
		}
		if r.cmd.Op == core.OpAcquire {
			k := objectKey{r.cmd.Kind, r.cmd.Name}
			d.queuedOn[k]--
			switch n := d.queuedOn[k]; {
			case n < 0:
				panic(fmt.Sprintf("replica: %d blocked acquires counted on %v %q", n, k.kind, k.name))
			case n == 0:
				delete(d.queuedOn, k)
			}
		}
	}
}

// forget drops a request the driver no longer answers.
func (d *Driver) forget(r *request) {
	d.leaveQueues(r)
	k := dedupeKey{r.cmd.ClientID, r.cmd.Seq}
	ids := d.byKey[k]
	if i := slices.Index(ids, r.id); i >= 0 {
		ids = slices.Delete(ids, i, i+1)
	}
	if len(ids) == 0 {
		delete(d.byKey, k)
	} else {
		d.byKey[k] = ids
	}
	delete(d.reqs, r.id)
}

// sortedIDs lists the requests in one state by id, so that map order never
// reaches the output.
func (d *Driver) sortedIDs(s reqState) []RequestID {
	var ids []RequestID
	for id, r := range d.reqs {
		if r.state == s {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// Ready returns what to do now and forgets it: the caller must perform it,
// and report each proposal's fate with ProposalConfirmedEvent or
// ProposalFailedEvent. Feed a Tick first: a leader's proposals are stamped
// with the last clock reading. While fewer than MaxUnconfirmed proposals
// are unconfirmed, a leader proposes, in this order: the leader-change mark
// once after it took over, then withdrawn waits and queued client commands
// packed up to MaxBatch per proposal while fewer than MaxInflight are in
// flight, and a tick when none of those was proposed for TickIntervalMs of
// its clock. A forwarder proposes the same withdrawn waits and packed
// commands, stamped with the log time it has applied, and never a mark or a
// tick. Replies are never held back by the gate.
func (d *Driver) Ready() Ready {
	if d.role != RoleFollower {
		d.propose()
	}
	out := d.out
	d.out = Ready{}
	return out
}

// stalled says whether this leader's clock ran more than core's
// MaxClockStepMs ahead of the log time it has applied while anything is
// timed, with no mark on its way: the leader (or the majority with it)
// was stopped (a process paused, a host or disk stalled) while its
// monotonic clock ran on, so log time stood still. Entries moving log time
// by at most MaxClockStepMs each would then catch it up faster than real
// time, and every lease renewed meanwhile would end early by the excess:
// a client counting a fresh 5 s lease would see its lock given to another
// a tenth of a second later. So the leader proposes a leader-change mark,
// which takes its stamp whole and moves every deadline by the jump, as a
// new leader's first entry does: the stall counts against no lease
// (docs/design.md, Time).
func (d *Driver) stalled() bool {
	return d.timed && d.appliedTime > 0 && d.now-d.appliedTime > d.maxStep && d.appliedTime >= d.markStamp
}

// markRules is what the mark's Rules says: the configured rules, or none
// for a build of rules 3.
func (d *Driver) markRules() uint64 {
	if d.cfg.MarkRules == MarkRulesUnmarked {
		return 0
	}
	return d.cfg.MarkRules
}

// gateOpen reports whether the gate lets one more proposal out.
func (d *Driver) gateOpen() bool { return len(d.unconfirmed) < d.cfg.MaxUnconfirmed }

func (d *Driver) propose() {
	if d.owedRetryAt != 0 && (d.now >= d.owedRetryAt || d.now < d.owedRetryAt-d.owedRetryDelay()) {
		d.askAllOwed() // their wait is over (or the clock stepped back)
	}
	lead := d.role == RoleLeader
	if lead && !d.needLeaderMark && d.stalled() {
		d.needLeaderMark = true
	}
	if lead && d.needLeaderMark && d.gateOpen() {
		d.needLeaderMark = false
		d.markProposal = d.nextProposal
		d.markStamp = d.now
		d.tickAsked = false
		d.emit([]core.Command{{Op: core.OpLeaderChange, Rules: d.markRules()}}, nil)
	}
	// A forwarder sends requests only on fresh time (forwardFresh, which
	// asks for it). Withdrawals do not wait for it: they start no lease,
	// and a closing node has no time to wait for a tick (Close flushes
	// them once). Nor do the requests an answered ask covers, fresh or
	// not (covers): the queue is in arrival order, so those are at its
	// head.
	requests := lead || d.forwardFresh()
	may := func() bool { return requests || d.covers(d.reqs[d.queue[0]]) }
	for d.gateOpen() && (len(d.cancels) > 0 || (d.inflight < d.cfg.MaxInflight && d.queueDue() && may())) {
		room := d.cfg.MaxBatch
		cmds := make([]core.Command, 0, min(room, len(d.cancels)+len(d.queue)))
		n := min(len(d.cancels), room)
		cmds = append(cmds, d.cancels[:n]...)
		for _, c := range d.cancels[:n] {
			if o := d.owed[owedOf(&c)]; o != nil {
				o.carrier = d.nextProposal // emit's, below
			}
		}
		d.cancels = d.cancels[n:]
		room -= n
		var ids []RequestID
		for room > 0 && len(d.queue) > 0 && d.inflight < d.cfg.MaxInflight && may() {
			r := d.reqs[d.queue[0]]
			d.queue = d.queue[1:]
			r.state = stateInflight
			d.inflight++
			cmds = append(cmds, r.cmd)
			ids = append(ids, r.id)
			room--
		}
		d.emit(cmds, ids)
	}
	if len(d.cancels) == 0 {
		d.cancels = nil
	}
	if lead && d.gateOpen() && d.tickDue() {
		d.tickAsked = false
		d.emit(nil, nil)
	}
}

// queueDue says whether the queue holds a request that must go out now:
// any request but an acquire that may ride along (Config.RideAlongMs), or
// such an acquire held back for RideAlongMs already, or a full proposal's
// worth. The requests held back go out with the next proposal, in their
// place in the queue.
func (d *Driver) queueDue() bool {
	if len(d.queue) == 0 {
		return false
	}
	if d.cfg.RideAlongMs < 0 || len(d.queue) >= d.cfg.MaxBatch {
		return true
	}
	for _, id := range d.queue {
		r := d.reqs[id]
		if !d.mayRide(r) {
			return true
		}
		if !r.held {
			r.held, r.heldAt = true, d.now
		}
		if d.now-r.heldAt >= core.LogTime(d.cfg.RideAlongMs) {
			return true
		}
	}
	return false
}

// mayRide says whether a queued request can only join a queue of the
// machine: a blocking acquire of an object in whose queue this replica
// holds a blocked acquire (core's grantOrQueue grants nothing past a
// waiter). The next proposal carries it; until then nobody waits on it.
func (d *Driver) mayRide(r *request) bool {
	return r.cmd.Op == core.OpAcquire && r.cmd.WaitMs != 0 && d.queuedOn[objectKey{r.cmd.Kind, r.cmd.Name}] > 0
}

// tickDue says whether a leader that has nothing else to propose should
// propose a tick: a forwarder asked for one, or something of the machine
// fell due and the leader was quiet for a tick interval, or something is
// timed and the leader was quiet for KeepTimeMs. With nothing timed and
// nobody asking, an idle leader proposes nothing: the next command it
// stamps brings log time to its clock whole (core's advanceClock).
func (d *Driver) tickDue() bool {
	quiet := d.now - d.lastProposalAt
	switch {
	case d.tickAsked:
		return true
	case !d.timed:
		return false
	case d.now >= d.deadline && quiet >= core.LogTime(d.cfg.TickIntervalMs):
		return true
	}
	return quiet >= core.LogTime(d.cfg.KeepTimeMs)
}

// forwardFresh says whether a forwarder may forward every request it
// holds now: its applied log time is fresh (noteTime), or it holds none,
// or each arrived before an ask that was answered (covers). Otherwise it
// asks the leader for a tick, once at a time, and holds the requests not
// covered until the tick is applied: stamped with a stale log time, a
// keepalive or a create forwarded after a quiet spell would start its
// lease before the client sent it. An ask not answered within KeepTimeMs
// is made again.
func (d *Driver) forwardFresh() bool {
	if !d.queueDue() {
		return true // nothing to forward yet, so no time to ask for
	}
	if d.now < d.freshUntil || d.covers(d.reqs[d.queue[len(d.queue)-1]]) {
		return true
	}
	if d.ask != "" && d.now-d.askedAt >= core.LogTime(d.cfg.KeepTimeMs) {
		d.ask = ""
	}
	if d.ask == "" && d.gateOpen() {
		d.askSeq++
		d.ask = d.cfg.Name + "/" + strconv.FormatUint(d.askSeq, 10)
		d.askedAt, d.askIndex, d.askProp = d.now, 0, d.nextProposal
		d.emit([]core.Command{{Op: core.OpTickRequest, Owner: d.ask}}, nil)
	}
	return false
}

// covers says whether a forwarder's answered ask covers r: r arrived
// before the ask was made, so the leader stamped the answering tick after
// r arrived, and the log time this replica has applied since is not before
// r's arrival however long the answer took. Forwarded with it, r starts no
// lease before its client sent it. Without this, the held requests were
// forwarded only when the answer came within TickIntervalMs of the ask:
// while commits took longer (a loaded or slow disk, a distant leader), a
// follower asked again and again and forwarded nothing, and its requests
// failed unavailable.
func (d *Driver) covers(r *request) bool { return r.asksBefore < d.answered }

// emit records one proposal. The in-flight requests remember which proposal
// carried them so that a refused proposal fails exactly them. A leader
// stamps it with its clock; a forwarder with the log time it has applied,
// which is never ahead of the leader's.
func (d *Driver) emit(cmds []core.Command, ids []RequestID) {
	id := d.nextProposal
	d.nextProposal++
	stamp := d.now
	if d.role == RoleForwarder {
		stamp = d.appliedTime
	}
	p := core.Proposal{Time: stamp, Commands: cmds}
	for _, rid := range ids {
		d.reqs[rid].proposal = id
	}
	d.out.Proposals = append(d.out.Proposals, Proposal{ID: id, Proposal: p, Data: core.EncodeProposal(p)})
	d.unconfirmed = append(d.unconfirmed, id) // ids only grow: the slice stays sorted
	d.lastProposalAt = d.now
}
