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
)

// fLast is the highest field bit; the decoder refuses a mask above it.
const fLast = fTargetSeq

// anyOpFields may be set on a command of any op: they belong to its dedupe
// identity, like ClientID and Seq, and validateClient checks them.
const anyOpFields = fLowestPending

var fieldNames = map[field]string{
	fKind: "kind", fName: "name", fSession: "session", fToken: "token", fWaiter: "waiter", fTTL: "ttl_ms",
	fWait: "wait_ms", fLockDelay: "lock_delay_ms", fMaxHold: "max_hold_ms", fLimit: "limit", fPermits: "permits",
	fMode: "mode", fParties: "parties", fParticipant: "participant", fOwner: "owner", fValue: "value",
	fLowestPending: "lowest_pending_seq", fTargetSeq: "target_seq",
}

// opFields says which fields each op may set; any other must be zero, so a
// caller who sends a field the op ignores learns it instead of guessing.
var opFields = [opCount]field{
	OpSessionCreate:    fTTL | fOwner | fSession, // Session: adopt this id (a mirror in another shard)
	OpSessionKeepAlive: fSession | fTTL,
	OpSessionClose:     fSession,
	OpAcquire:          fKind | fName | fSession | fWait | fLockDelay | fMaxHold | fLimit | fPermits | fMode | fOwner | fValue,
	OpRelease:          fKind | fName | fSession | fToken,
	OpCancel:           fSession | fWaiter,
	OpBarrierWait:      fName | fSession | fWait | fParties | fParticipant,
	OpBarrierSet:       fName | fSession,
	OpBarrierRemove:    fName,
	OpCampaign:         fName | fSession | fWait | fOwner | fValue,
	OpProclaim:         fName | fSession | fToken | fValue,
	OpResign:           fName | fSession | fToken,
	OpLeaderChange:     0,
	OpAbandon:          fKind | fName | fSession | fTargetSeq,
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
	return f
}

// validate checks everything about a command that does not depend on state.
func (m *Machine) validate(c *Command) *Error {
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
	if err := m.validateClient(c); err != nil {
		return err
	}
	need := func(ok bool, format string, args ...any) *Error {
		if ok {
			return nil
		}
		return errorf(CodeInvalidArgument, format, args...)
	}
	l := &m.limits
	switch c.Op {
	case OpSessionCreate:
		return firstError(m.validateTTL(c.TTLMs, false), m.validateOwner(c.Owner))
	case OpSessionKeepAlive:
		return firstError(need(c.Session != 0, "session_keepalive needs a session"), m.validateTTL(c.TTLMs, true))
	case OpSessionClose:
		return need(c.Session != 0, "session_close needs a session")
	case OpAcquire:
		return firstError(m.validateObject(c), need(c.Session != 0, "acquire needs a session: create one first"), m.validateWait(c.WaitMs), m.validateOwner(c.Owner), m.validateValue(c.Value),
			need(c.MaxHoldMs >= 0 && c.MaxHoldMs <= l.MaxHoldMs, "max_hold_ms %d is out of range: use 0 (none) to %d", c.MaxHoldMs, l.MaxHoldMs),
			m.validateAcquireKind(c))
	case OpRelease:
		return firstError(m.validateObject(c), need(c.Token != 0, "release needs the fencing token of the grant to release"))
	case OpCancel:
		return need(c.Waiter != 0, "cancel needs the waiter id that the queued request answered")
	case OpBarrierWait:
		return firstError(m.validateName(c.Name), need(c.Session != 0, "barrier_wait needs a session"), m.validateWait(c.WaitMs),
			need(c.Parties == 0 || (c.Parties >= 2 && c.Parties <= int64(l.MaxParties)),
				"parties %d is out of range: use 2..%d, or 0 to wait for a set barrier to be removed", c.Parties, l.MaxParties),
			m.validateLabel("participant", c.Participant))
	case OpBarrierSet:
		return firstError(m.validateName(c.Name), need(c.Session != 0, "barrier_set needs the session that holds the barrier"))
	case OpBarrierRemove:
		return m.validateName(c.Name)
	case OpCampaign:
		return firstError(m.validateName(c.Name), need(c.Session != 0, "campaign needs a session"), m.validateWait(c.WaitMs),
			m.validateOwner(c.Owner), m.validateValue(c.Value))
	case OpProclaim:
		return firstError(m.validateName(c.Name), need(c.Session != 0 && c.Token != 0, "proclaim needs the leader's session and token"),
			m.validateValue(c.Value))
	case OpResign:
		return firstError(m.validateName(c.Name), need(c.Session != 0 && c.Token != 0, "resign needs the leader's session and token"))
	case OpAbandon:
		return firstError(need(c.ClientID != "", "abandon needs the client_id of the request to withdraw"),
			need(c.Session != 0, "abandon needs the session the request was made for"),
			need(c.TargetSeq != 0, "abandon needs the request_seq of the request to withdraw (target_seq)"),
			need(c.TargetSeq != c.Seq, "abandon's target_seq %d is its own request_seq: name the earlier request to withdraw", c.TargetSeq),
			need(c.LowestPending == 0 || c.LowestPending <= c.TargetSeq,
				"lowest_pending_seq %d is above target_seq %d: the request being withdrawn is still pending", c.LowestPending, c.TargetSeq),
			m.validateAbandonKind(c.Kind), m.validateName(c.Name))
	}
	return nil
}

// validateAbandonKind accepts the kinds of requests that can wait or hold:
// acquires, campaigns and barrier waits.
func (m *Machine) validateAbandonKind(k Kind) *Error {
	switch k {
	case KindMutex, KindSemaphore, KindRWLock, KindElection, KindBarrier:
		return nil
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

func (m *Machine) validateClient(c *Command) *Error {
	switch {
	case c.ClientID == "" && c.Seq != 0:
		return errorf(CodeInvalidArgument, "request_seq %d without a client_id: send both or neither", c.Seq)
	case c.ClientID != "" && c.Seq == 0:
		return errorf(CodeInvalidArgument, "client_id %q without a request_seq: number requests from 1", c.ClientID)
	case len(c.ClientID) > MaxClientIDBytes:
		return errorf(CodeInvalidArgument, "client_id is %d bytes: at most %d", len(c.ClientID), MaxClientIDBytes)
	case c.ClientID != "" && c.Op == OpLeaderChange:
		return errorf(CodeInvalidArgument, "leader_change is proposed by the runtime, never with a client_id")
	case c.LowestPending != 0 && c.ClientID == "":
		return errorf(CodeInvalidArgument, "lowest_pending_seq %d without a client_id: it belongs to the client's request numbering", c.LowestPending)
	case c.LowestPending > c.Seq:
		return errorf(CodeInvalidArgument, "lowest_pending_seq %d is above request_seq %d: this request itself is pending, so the lowest is at most %d",
			c.LowestPending, c.Seq, c.Seq)
	}
	return nil
}

// ValidateName reports whether name can name an object: 1..MaxNameBytes bytes
// of printable UTF-8. The API layer uses it to answer before proposing.
func (l Limits) ValidateName(name string) error {
	if err := validateName(name, l.MaxNameBytes); err != nil {
		return err
	}
	return nil
}

func (m *Machine) validateName(name string) *Error { return validateName(name, m.limits.MaxNameBytes) }

func validateName(name string, max int) *Error {
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

func (m *Machine) validateObject(c *Command) *Error {
	switch c.Kind {
	case KindMutex, KindSemaphore, KindRWLock:
	default:
		return errorf(CodeInvalidArgument, "%s takes kind mutex, semaphore or rwlock, not %s", c.Op, c.Kind)
	}
	return m.validateName(c.Name)
}

func (m *Machine) validateAcquireKind(c *Command) *Error {
	l := &m.limits
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
		return errorf(CodeInvalidArgument, "lock_delay_ms applies to mutexes only")
	}
	if c.LockDelayMs < 0 || c.LockDelayMs > l.MaxLockDelayMs {
		return errorf(CodeInvalidArgument, "lock_delay_ms %d is out of range: use 0 (none) to %d", c.LockDelayMs, l.MaxLockDelayMs)
	}
	return nil
}

func (m *Machine) validateTTL(ttl int64, optional bool) *Error {
	if optional && ttl == 0 {
		return nil
	}
	l := &m.limits
	if ttl < l.MinTTLMs || ttl > l.MaxTTLMs {
		return errorf(CodeInvalidArgument, "ttl_ms %d is out of range: use %d..%d", ttl, l.MinTTLMs, l.MaxTTLMs)
	}
	return nil
}

func (m *Machine) validateWait(wait int64) *Error {
	if wait == WaitForever || (wait >= 0 && wait <= m.limits.MaxWaitMs) {
		return nil
	}
	return errorf(CodeInvalidArgument, "wait_ms %d is out of range: use 0 (try once), 1..%d, or -1 (until granted or cancelled)",
		wait, m.limits.MaxWaitMs)
}

func (m *Machine) validateOwner(owner string) *Error { return m.validateLabel("owner", owner) }

// validateLabel checks a label shown in status (an owner, a participant):
// printable UTF-8 like a name, so that nothing that prints status can be
// made to emit terminal escapes. Empty is allowed.
func (m *Machine) validateLabel(field, label string) *Error {
	if len(label) > m.limits.MaxOwnerBytes {
		return errorf(CodeInvalidArgument, "%s is %d bytes: at most %d", field, len(label), m.limits.MaxOwnerBytes)
	}
	return ValidateLabel(field, label)
}

// ValidateLabel reports whether a label is printable UTF-8; the API layer
// uses it to answer before proposing.
func ValidateLabel(field, label string) *Error {
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

func (m *Machine) validateValue(v []byte) *Error {
	if len(v) > m.limits.MaxValueBytes {
		return errorf(CodeInvalidArgument, "value is %d bytes: at most %d", len(v), m.limits.MaxValueBytes)
	}
	return nil
}
