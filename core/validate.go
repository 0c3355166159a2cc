package core

import (
	"unicode"
	"unicode/utf8"
)

// MaxClientIDBytes bounds the dedupe key's client part.
const MaxClientIDBytes = 128

// field is one optional Command field, for the table of which op reads what.
type field uint32

const (
	fKind field = 1 << iota
	fName
	fSession
	fToken
	fWaiter
	fTTL
	fWait
	fLockDelay
	fMaxHold
	fLimit
	fPermits
	fMode
	fParties
	fParticipant
	fOwner
	fValue
	fLowestPending
	fTargetSeq
	fRules
	fApplyLockDelay
	fUnheard
)

// fLast is the highest field bit; the decoder refuses a mask above it.
const fLast = fUnheard

// anyOpFields may be set on a command of any op: they belong to its dedupe
// identity, like ClientID and Seq, and checkClient checks them.
const anyOpFields = fLowestPending

// fieldNames spells each field as the API does (Command's Session is the
// API's session_id), since the API's callers read these messages.
var fieldNames = map[field]string{
	fKind: "kind", fName: "name", fSession: "session_id", fToken: "fencing_token", fWaiter: "waiter_id", fTTL: "ttl_ms",
	fWait: "wait_timeout_ms", fLockDelay: "lock_delay_ms", fMaxHold: "max_hold_ms", fLimit: "limit", fPermits: "permits",
	fMode: "mode", fParties: "parties", fParticipant: "participant", fOwner: "owner", fValue: "value",
	fLowestPending: "lowest_pending_seq", fTargetSeq: "abandon_seq",
	fRules: "rules", fApplyLockDelay: "apply_lock_delay", fUnheard: "unheard",
}

// opFields says which fields each op may set; any other must be zero, so a
// caller who sends a field the op ignores learns it instead of guessing.
var opFields = [opCount]field{
	OpSessionCreate:    fTTL | fOwner | fSession, // Session: adopt this id (a mirror in another shard)
	OpSessionKeepAlive: fSession | fTTL,
	OpSessionClose:     fSession | fApplyLockDelay,
	OpAcquire:          fKind | fName | fSession | fWait | fLockDelay | fMaxHold | fLimit | fPermits | fMode | fOwner | fValue,
	OpRelease:          fKind | fName | fSession | fToken | fUnheard,
	OpCancel:           fSession | fWaiter | fUnheard,
	OpBarrierWait:      fName | fSession | fWait | fParties | fParticipant,
	OpBarrierSet:       fName | fSession,
	OpBarrierRemove:    fName,
	OpCampaign:         fName | fSession | fWait | fOwner | fValue,
	OpProclaim:         fName | fSession | fToken | fValue,
	OpResign:           fName | fSession | fToken | fUnheard,
	OpLeaderChange:     fRules,
	OpAbandon:          fKind | fName | fSession | fTargetSeq,
	OpTickRequest:      fOwner,
}

// setFields says which fields a command carries.
func (c *Command) setFields() field {
	var f field
	set := func(b bool, x field) {
		if b {
			f |= x
		}
	}
	set(c.Kind != 0, fKind)
	set(c.Name != "", fName)
	set(c.Session != 0, fSession)
	set(c.Token != 0, fToken)
	set(c.Waiter != 0, fWaiter)
	set(c.TTLMs != 0, fTTL)
	set(c.WaitMs != 0, fWait)
	set(c.LockDelayMs != 0, fLockDelay)
	set(c.MaxHoldMs != 0, fMaxHold)
	set(c.Limit != 0, fLimit)
	set(c.Permits != 0, fPermits)
	set(c.Mode != 0, fMode)
	set(c.Parties != 0, fParties)
	set(c.Participant != "", fParticipant)
	set(c.Owner != "", fOwner)
	set(len(c.Value) != 0, fValue)
	set(c.LowestPending != 0, fLowestPending)
	set(c.TargetSeq != 0, fTargetSeq)
	set(c.Rules != 0, fRules)
	set(c.ApplyLockDelay, fApplyLockDelay)
	set(c.Unheard, fUnheard)
	return f
}

// CheckCommand reports what is wrong with c that no state can change: an
// unknown op, a field the op does not take, a field it needs, a number out
// of l's range, a name or label that is not printable UTF-8, or a client
// identity (ClientID, Seq, LowestPending) that does not hold together. nil
// means that only state can refuse c (a stale token, a full queue, a
// semaphore's fixed limit).
//
// It is the one statement of these rules. The machine runs it on every
// command it applies, so a replica refuses the same commands whatever
// proposed them; the API (rpc) and the runtime run it before proposing, so
// that bad input is answered without a log entry. Its messages name fields
// as the API spells them (session_id for Session, fencing_token for Token,
// waiter_id, wait_timeout_ms, abandon_seq for TargetSeq) and say what to fix.
func CheckCommand(l Limits, c *Command) *Error { return checkCommand(&l, c) }

func (m *Machine) validate(c *Command) *Error { return checkCommand(&m.limits, c) }

func checkCommand(l *Limits, c *Command) *Error {
	if c.Op == 0 || c.Op >= opCount {
		return errorf(CodeInvalidArgument, "unknown op %d: use one of session_create .. abandon", uint8(c.Op))
	}
	if extra := c.setFields() &^ (opFields[c.Op] | anyOpFields); extra != 0 {
		for f := field(1); f != 0 && f <= fLast; f <<= 1 {
			if extra&f != 0 {
				return errorf(CodeInvalidArgument, "%s does not take %s: leave it empty", c.Op, fieldNames[f])
			}
		}
	}
	if err := checkClient(c); err != nil {
		return err
	}
	switch c.Op {
	case OpSessionCreate:
		return firstError(checkTTL(l, c.TTLMs, false), checkLabel(l, "owner", c.Owner))
	case OpSessionKeepAlive:
		return firstError(need(c.Session != 0, "session_keepalive needs session_id: give the session to keep alive"), checkTTL(l, c.TTLMs, true))
	case OpSessionClose:
		return need(c.Session != 0, "session_close needs session_id: give the session to close")
	case OpAcquire:
		return firstError(checkObject(l, c), need(c.Session != 0, "acquire needs session_id: create a session first"), checkWait(l, c.WaitMs),
			checkLabel(l, "owner", c.Owner), checkValue(l, c.Value),
			need(c.MaxHoldMs >= 0 && c.MaxHoldMs <= l.MaxHoldMs, "max_hold_ms %d is out of range: use 0 (none) to %d", c.MaxHoldMs, l.MaxHoldMs),
			checkAcquireKind(l, c))
	case OpRelease:
		return firstError(checkObject(l, c), need(c.Token != 0, "release needs fencing_token: give the token the acquire answered"),
			need(!c.Unheard || c.Session != 0, "an unheard release needs session_id: its condition is about that session's requests"))
	case OpCancel:
		return firstError(need(c.Waiter != 0, "cancel needs waiter_id: give the waiter_id the queued request answered"),
			need(!c.Unheard || c.Session != 0, "an unheard cancel needs session_id: its condition is about that session's requests"))
	case OpBarrierWait:
		return firstError(checkName(l, c.Name), need(c.Session != 0, "barrier_wait needs session_id: give the session that waits"), checkWait(l, c.WaitMs),
			need(c.Parties == 0 || (c.Parties >= 2 && c.Parties <= int64(l.MaxParties)),
				"parties %d is out of range: use 2..%d, or 0 to wait for a set barrier to be removed", c.Parties, l.MaxParties),
			checkLabel(l, "participant", c.Participant))
	case OpBarrierSet:
		return firstError(checkName(l, c.Name),
			need(c.Session != 0, "barrier_set needs session_id: a set barrier stays up while the session that set it lives"))
	case OpBarrierRemove:
		return checkName(l, c.Name)
	case OpCampaign:
		return firstError(checkName(l, c.Name), need(c.Session != 0, "campaign needs session_id: give the candidate's session"), checkWait(l, c.WaitMs),
			checkLabel(l, "owner", c.Owner), checkValue(l, c.Value))
	case OpProclaim:
		return firstError(checkName(l, c.Name), need(c.Session != 0, "proclaim needs session_id: give the leader's session"),
			need(c.Token != 0, "proclaim needs fencing_token: give the leadership's token"), checkValue(l, c.Value))
	case OpResign:
		return firstError(checkName(l, c.Name), need(c.Session != 0, "resign needs session_id: give the leader's session"),
			need(c.Token != 0, "resign needs fencing_token: give the leadership's token"))
	case OpAbandon:
		return firstError(need(c.ClientID != "", "abandon needs client_id: give the client_id of the request to abandon"),
			need(c.Session != 0, "abandon needs session_id: give the session the abandoned request was made for"),
			need(c.TargetSeq != 0, "abandon needs abandon_seq: give the request_seq of the request to abandon"),
			need(c.TargetSeq != c.Seq, "abandon_seq %d equals this request's own request_seq: give the earlier request's", c.TargetSeq),
			need(c.LowestPending == 0 || c.LowestPending <= c.TargetSeq,
				"lowest_pending_seq %d is above abandon_seq %d: the abandoned request is still pending until abandon answers", c.LowestPending, c.TargetSeq),
			checkAbandonKind(c.Kind), checkName(l, c.Name))
	case OpLeaderChange:
		return checkMarkRules(c.Rules)
	case OpTickRequest:
		return firstError(need(c.Owner != "", "tick_request needs owner: the asking replica's request, so that it knows its own"),
			checkLabel(l, "owner", c.Owner))
	}
	return nil
}

// checkMarkRules accepts a leader-change mark's rules: 0 (a mark of a
// build before marks carried them), or a version this build knows how to
// apply. A mark of rules below rulesUnmarked was never written by any
// build: it is refused (invalid_argument), and the entry applies without
// it. A mark of newer rules is refused here too, for CheckCommand's
// callers, but Apply never reaches this: an entry that carries one stops
// the machine (Machine.Apply, newerRules), since applying it and the log
// after it by this build's rules would diverge from the members that
// wrote them.
func checkMarkRules(r uint64) *Error {
	switch {
	case r == 0 || (r >= rulesUnmarked && r <= RulesVersion):
		return nil
	case r > RulesVersion:
		return errorf(CodeFailedPrecondition, "leader_change carries rules %d, newer than this build's %d: run a build of rules %d on every member", r, RulesVersion, r)
	}
	return errorf(CodeInvalidArgument, "leader_change carries rules %d: marks carry rules %d..%d, or none", r, rulesUnmarked, RulesVersion)
}

// need is nil when ok, else an invalid_argument error with the message.
func need(ok bool, format string, args ...any) *Error {
	if ok {
		return nil
	}
	return errorf(CodeInvalidArgument, format, args...)
}

// checkAbandonKind accepts the kinds of requests that can wait or hold:
// acquires, campaigns and barrier waits.
func checkAbandonKind(k Kind) *Error {
	switch k {
	case KindMutex, KindSemaphore, KindRWLock, KindElection, KindBarrier:
		return nil
	case 0:
		return errorf(CodeInvalidArgument, "abandon needs kind: give the kind of the abandoned request's object")
	}
	return errorf(CodeInvalidArgument, "abandon takes kind mutex, semaphore, rwlock, election or barrier, not %s", k)
}

func firstError(errs ...*Error) *Error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func checkClient(c *Command) *Error {
	switch {
	case c.ClientID == "" && c.Seq != 0:
		return errorf(CodeInvalidArgument, "request_seq %d without a client_id: send both or neither", c.Seq)
	case c.ClientID != "" && c.Seq == 0:
		return errorf(CodeInvalidArgument, "client_id %q without a request_seq: number requests from 1", c.ClientID)
	case len(c.ClientID) > MaxClientIDBytes:
		return errorf(CodeInvalidArgument, "client_id is %d bytes: at most %d", len(c.ClientID), MaxClientIDBytes)
	case c.ClientID != "" && c.Op.Internal():
		return errorf(CodeInvalidArgument, "%s is proposed by the replicas themselves, never with a client_id", c.Op)
	case c.LowestPending != 0 && c.ClientID == "":
		return errorf(CodeInvalidArgument, "lowest_pending_seq %d without a client_id: it belongs to the client's request numbering", c.LowestPending)
	case c.LowestPending > c.Seq:
		return errorf(CodeInvalidArgument, "lowest_pending_seq %d is above request_seq %d: this request itself is pending, so give at most %d",
			c.LowestPending, c.Seq, c.Seq)
	}
	return nil
}

// ValidateName reports whether name can name an object: 1..MaxNameBytes
// bytes of printable UTF-8, CheckCommand's rule. It is for a name outside a
// command (a read's), so that a read is refused in the same words.
func (l Limits) ValidateName(name string) error {
	if err := checkName(&l, name); err != nil {
		return err
	}
	return nil
}

// ValidateLabel reports whether label can be an owner or participant label:
// at most MaxOwnerBytes of printable UTF-8, CheckCommand's rule. It is for a
// label outside a command (one the API looks a holder up by).
func (l Limits) ValidateLabel(field, label string) error {
	if err := checkLabel(&l, field, label); err != nil {
		return err
	}
	return nil
}

func (m *Machine) validateName(name string) *Error { return checkName(&m.limits, name) }

func checkName(l *Limits, name string) *Error {
	max := l.MaxNameBytes
	if name == "" {
		return errorf(CodeInvalidArgument, "the name is empty: give 1..%d bytes of printable UTF-8", max)
	}
	if len(name) > max {
		return errorf(CodeInvalidArgument, "the name is %d bytes: at most %d", len(name), max)
	}
	for i, r := range name {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(name[i:]); size <= 1 {
				return errorf(CodeInvalidArgument, "the name is not valid UTF-8 at byte %d", i)
			}
		}
		if !unicode.IsPrint(r) {
			return errorf(CodeInvalidArgument, "the name has an unprintable character %U at byte %d", r, i)
		}
	}
	return nil
}

func checkObject(l *Limits, c *Command) *Error {
	switch c.Kind {
	case KindMutex, KindSemaphore, KindRWLock:
	default:
		return errorf(CodeInvalidArgument, "%s takes kind mutex, semaphore or rwlock, not %s", c.Op, c.Kind)
	}
	return checkName(l, c.Name)
}

func checkAcquireKind(l *Limits, c *Command) *Error {
	switch c.Kind {
	case KindMutex:
		if c.Limit != 0 || c.Permits != 0 || c.Mode != 0 {
			return errorf(CodeInvalidArgument, "a mutex takes no limit, permits or mode: use a semaphore or an rwlock")
		}
	case KindSemaphore:
		if c.Limit < 1 || c.Limit > l.MaxSemaphoreLimit {
			return errorf(CodeInvalidArgument, "limit %d is out of range: a semaphore needs 1..%d", c.Limit, l.MaxSemaphoreLimit)
		}
		if c.Permits < 0 || c.Permits > c.Limit {
			return errorf(CodeInvalidArgument, "permits %d is out of range: use 1..limit (%d); 0 means 1", c.Permits, c.Limit)
		}
		if c.Mode != 0 {
			return errorf(CodeInvalidArgument, "a semaphore takes no mode")
		}
	case KindRWLock:
		if c.Mode != ModeRead && c.Mode != ModeWrite {
			return errorf(CodeInvalidArgument, "an rwlock acquire needs mode read or write")
		}
		if c.Limit != 0 || c.Permits != 0 {
			return errorf(CodeInvalidArgument, "an rwlock takes no limit or permits")
		}
	}
	if c.LockDelayMs != 0 && c.Kind != KindMutex {
		return errorf(CodeInvalidArgument, "lock_delay_ms applies to mutexes only: leave it out")
	}
	if c.LockDelayMs < 0 || c.LockDelayMs > l.MaxLockDelayMs {
		return errorf(CodeInvalidArgument, "lock_delay_ms %d is out of range: use 0 (none) to %d", c.LockDelayMs, l.MaxLockDelayMs)
	}
	return nil
}

func checkTTL(l *Limits, ttl int64, optional bool) *Error {
	if optional && ttl == 0 {
		return nil
	}
	if ttl < l.MinTTLMs || ttl > l.MaxTTLMs {
		return errorf(CodeInvalidArgument, "ttl_ms %d is out of range: use %d..%d", ttl, l.MinTTLMs, l.MaxTTLMs)
	}
	return nil
}

func checkWait(l *Limits, wait int64) *Error {
	if wait == WaitForever || (wait >= 0 && wait <= l.MaxWaitMs) {
		return nil
	}
	return errorf(CodeInvalidArgument, "wait_timeout_ms %d is out of range: use 0 (try once), 1..%d ms, or -1 (until granted or cancelled)",
		wait, l.MaxWaitMs)
}

// checkLabel checks a label shown in status (an owner, a participant):
// printable UTF-8 like a name, so that nothing that prints status can be
// made to emit terminal escapes. Empty is allowed.
func checkLabel(l *Limits, field, label string) *Error {
	if len(label) > l.MaxOwnerBytes {
		return errorf(CodeInvalidArgument, "%s is %d bytes: at most %d", field, len(label), l.MaxOwnerBytes)
	}
	for i, r := range label {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(label[i:]); size <= 1 {
				return errorf(CodeInvalidArgument, "%s is not valid UTF-8 at byte %d", field, i)
			}
		}
		if !unicode.IsPrint(r) {
			return errorf(CodeInvalidArgument, "%s has an unprintable character %U at byte %d: labels are printable UTF-8", field, r, i)
		}
	}
	return nil
}

func checkValue(l *Limits, v []byte) *Error {
	if len(v) > l.MaxValueBytes {
		return errorf(CodeInvalidArgument, "value is %d bytes: at most %d", len(v), l.MaxValueBytes)
	}
	return nil
}
