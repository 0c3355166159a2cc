package core

import "fmt"

// Op is what a command asks for.
type Op uint8

const (
	OpSessionCreate    Op = iota + 1 // TTLMs, Owner → Session; with Session set, adopt that id (see sessionCreate)
	OpSessionKeepAlive               // Session → Deadline
	OpSessionClose                   // Session, ApplyLockDelay: releases every hold and wait
	OpAcquire                        // Kind (mutex, semaphore, rwlock), Name, Session, WaitMs, ...
	OpRelease                        // Kind, Name, Session, Token, Unheard
	OpCancel                         // Waiter, Session, Unheard: withdraw a queued request
	OpBarrierWait                    // Name, Session, Parties (0: wait for a set barrier's removal), Participant, WaitMs
	OpBarrierSet                     // Name, Session: raise a set/remove barrier held by the session
	OpBarrierRemove                  // Name: lower it, releasing its waiters
	OpCampaign                       // Name, Session, Value, Owner (candidate), WaitMs
	OpProclaim                       // Name, Session, Token, Value
	OpResign                         // Name, Session, Token, Unheard
	OpLeaderChange                   // Rules: the shard has a new Raft leader: extend every live session, raise the rules in force
	OpAbandon                        // Kind, Name, Session, TargetSeq: withdraw ClientID's request TargetSeq (see abandon)
	OpTickRequest                    // Owner (the asking replica's request): a forwarder asks the leader for a tick; changes nothing
	opCount
)

var opNames = [...]string{"", "session_create", "session_keepalive", "session_close", "acquire", "release",
	"cancel", "barrier_wait", "barrier_set", "barrier_remove", "campaign", "proclaim", "resign", "leader_change", "abandon",
	"tick_request"}

// Internal reports whether the op is proposed by replicas themselves
// (core/replica), never by a client: the leader-change mark and a
// forwarder's tick request.
func (o Op) Internal() bool { return o == OpLeaderChange || o == OpTickRequest }

func (o Op) String() string {
	if o > 0 && o < opCount {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Command is one client request (or the runtime's leader-change marker) as it
// travels in the log. It is a flat record: each Op reads the fields it names
// above and requires the others to be zero, so that one encoding serves all.
type Command struct {
	Op       Op
	ClientID string // with Seq, the dedupe key; empty for commands that need none
	Seq      uint64
	// LowestPending is the lowest Seq of ClientID whose answer the client
	// still waits for (Seq itself when none is older). The machine keeps
	// every result of the client at or above it and forgets those below,
	// so any number of requests may be in flight (see dedupe.go). 0: not
	// given, and the client's last DedupeWindow results are kept instead.
	LowestPending uint64

	Kind        Kind
	Name        string
	Session     SessionID
	Token       FencingToken
	Waiter      WaiterID
	TTLMs       int64
	WaitMs      int64 // 0: try once; WaitForever: until granted, cancelled or the session ends
	LockDelayMs int64 // after this grant ends by failure (session expiry, max hold), keep the name blocked this long
	MaxHoldMs   int64 // expire this grant after this long even while its session lives
	Limit       int64 // semaphore size, fixed by the first acquirer
	Permits     int64 // semaphore weight (default 1)
	Mode        Mode  // rwlock
	Parties     int64 // barrier
	Participant string
	Owner       string // a label shown in status
	Value       []byte
	TargetSeq   uint64 // OpAbandon: the Seq of ClientID's request to withdraw
	// Rules is OpLeaderChange's: the RulesVersion of the build that
	// proposed the mark, which raises the rules in force to it (never
	// lowers them; Machine.Rules). 0: a mark of a build before marks
	// carried rules, which raises nothing.
	Rules uint64
	// ApplyLockDelay is OpSessionClose's, from rules 4: end the session's
	// holds as a failure, so that a mutex hold's LockDelayMs applies as on
	// expiry. An operator's close of another process's session sets it: that
	// process may still run, and write, until it notices. The session's own
	// graceful close does not.
	ApplyLockDelay bool
	// Unheard is OpRelease's and OpResign's, from rules 5: a replica's
	// release of a grant whose only requester went away before hearing
	// it, a request nobody else can send again (one the runtime gave its
	// identity). It releases the grant only if no other request was ever
	// answered it: no re-acquire or campaign of its session since, and no
	// request that joined its wait (hold.shared). Otherwise it is refused
	// and the grant stays, for the caller that heard it. On OpCancel, the
	// withdrawal of such a requester's wait: refused when another request
	// of the session joined the wait (waiter.joined), which stays queued
	// for it. Without the
	// condition, the session's next acquire through another member, answered
	// that grant before this release applied, would lose a grant its caller
	// was told it holds.
	Unheard bool
}

// Proposal is the payload of one log entry: commands packed by the proposer
// and the time it stamped them with. A proposal without commands is a tick.
type Proposal struct {
	Time     LogTime
	Commands []Command
}

// ClientCommands counts the proposal's commands that clients sent: every
// one carries a ClientID (the runtime gives one to a request without);
// the replicas' own commands (the leader-change mark, a tick request, the
// withdrawal of a wait whose caller left) carry none.
func (p Proposal) ClientCommands() int {
	n := 0
	for i := range p.Commands {
		if p.Commands[i].ClientID != "" {
			n++
		}
	}
	return n
}

// Entry is a committed proposal with the index the log gave it.
type Entry struct {
	Index uint64
	Proposal
}

// Outcome says what an accepted command did.
type Outcome uint8

const (
	OutcomeDone     Outcome = iota + 1 // the command took effect
	OutcomeGranted                     // the caller holds it now (Token set)
	OutcomeQueued                      // the caller waits (Waiter set); an Effect will answer
	OutcomeRefused                     // try-once and someone else holds it
	OutcomeReleased                    // a barrier released its parties
)

var outcomeNames = [...]string{"", "done", "granted", "queued", "refused", "released"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && o > 0 {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Result answers one command, to the proposer. A retried command (same
// ClientID and Seq) gets the same Result back; a queued request's stored
// result is updated when the wait ends, so that a retry after a lost reply
// learns the outcome.
type Result struct {
	Err        *Error
	Outcome    Outcome
	Token      FencingToken
	Session    SessionID
	Waiter     WaiterID
	Deadline   LogTime // session: when it expires; queued: when the wait ends (0: no deadline)
	Generation uint64  // barrier generation
	Reason     Reason  // why a queued request ended without a grant (OutcomeRefused after OutcomeQueued)
	Duplicate  bool    // this was a retry: nothing changed
}

// EffectKind says what happened to someone other than the proposer.
type EffectKind uint8

const (
	EffectGranted         EffectKind = iota + 1 // a hold began (Waiter set when it was queued)
	EffectWaitEnded                             // a queued request ended without a grant (Reason says why)
	EffectReleased                              // a hold ended (Reason says why)
	EffectSessionExpired                        // a session ran out of TTL
	EffectLeaderChanged                         // an election's leader changed (Session 0: none)
	EffectBarrierReleased                       // a barrier generation released its parties
	EffectValueChanged                          // an election leader proclaimed a new value
	EffectSessionClosed                         // a session was closed (its holds' releases come first)
)

var effectNames = [...]string{"", "granted", "wait_ended", "released", "session_expired", "leader_changed",
	"barrier_released", "value_changed", "session_closed"}

func (k EffectKind) String() string {
	if int(k) < len(effectNames) && k > 0 {
		return effectNames[k]
	}
	return fmt.Sprintf("effect(%d)", uint8(k))
}

// Reason says why a hold or a wait ended.
type Reason uint8

const (
	ReasonNone           Reason = iota
	ReasonReleased              // the holder released it
	ReasonSessionClosed         // the session was closed
	ReasonSessionExpired        // the session ran out of TTL
	ReasonMaxHold               // the grant outlived its maximum hold time
	ReasonTimeout               // the wait reached its deadline
	ReasonCancelled             // the waiter withdrew
	ReasonBarrierRemoved        // a set barrier was removed (its waiters may go)
)

var reasonNames = [...]string{"", "released", "session_closed", "session_expired", "max_hold", "timeout",
	"cancelled", "barrier_removed"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Effect is one consequence of an entry, returned as data for the runtime to
// route: wake a blocked RPC, feed a watch or an election observer.
type Effect struct {
	Kind       EffectKind
	Reason     Reason
	Object     Kind
	Name       string
	Session    SessionID
	Waiter     WaiterID
	Token      FencingToken
	Generation uint64
	Value      []byte
}

// Output is what applying one entry produced. Results line up with the
// entry's commands. The slices belong to the machine and are reused by the
// next Apply: copy what must outlive it.
type Output struct {
	Index uint64
	Time  LogTime
	// NextDeadline is the earliest log time at which something in the
	// machine ends by time alone (a lease, a wait, a hold limit, a lock
	// delay), after this entry; 0 when nothing would. A leader proposes a
	// tick when its clock passes it (core/replica), and only then when idle.
	NextDeadline LogTime
	Results      []Result
	Effects      []Effect
}
