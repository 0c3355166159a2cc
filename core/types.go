package core

import "fmt"

// LogTime is the state machine's clock in milliseconds. It only moves when an
// entry is applied, and only forward: see advanceClock.
type LogTime int64

// MaxLogTime bounds log time (about 142,000 years of milliseconds), and
// MaxDurationMs every duration limit (about 35 years), so that a deadline,
// now plus a duration, always fits an int64.
const (
	MaxLogTime    LogTime = 1 << 52
	MaxDurationMs int64   = 1 << 40
)

// FencingToken identifies one grant. It is derived from the log index of the
// entry that made the grant: token = index<<SlotBits | slot, where slot counts
// the identifiers handed out while applying that entry. Tokens therefore
// strictly increase across the whole log, and so per name, even when one
// entry (a packed batch, or a tick that expires sessions) grants the same name
// more than once. token>>SlotBits is the log index.
type FencingToken uint64

// SessionID and WaiterID come from the same allocator as fencing tokens, so
// they are unique across the machine's whole history and never random.
type (
	SessionID uint64
	WaiterID  uint64
)

// SlotBits is how many low bits of an identifier count within one entry.
const SlotBits = 20

// LogIndex returns the index of the entry that made the grant.
func (t FencingToken) LogIndex() uint64 { return uint64(t) >> SlotBits }

// Kind says which primitive an object is. Names live in one namespace per
// kind: the mutex "a" and the semaphore "a" are different objects.
type Kind uint8

const (
	KindMutex Kind = iota + 1
	KindSemaphore
	KindRWLock
	KindBarrier
	KindElection
	kindCount
)

var kindNames = [...]string{"", "mutex", "semaphore", "rwlock", "barrier", "election"}

func (k Kind) String() string {
	if k > 0 && k < kindCount {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads the names String returns.
func ParseKind(s string) (Kind, bool) {
	for k := KindMutex; k < kindCount; k++ {
		if kindNames[k] == s {
			return k, true
		}
	}
	return 0, false
}

func (k Kind) valid() bool { return k > 0 && k < kindCount }

// Mode is how an RW lock is held.
type Mode uint8

const (
	ModeWrite Mode = iota + 1
	ModeRead
)

func (m Mode) String() string {
	switch m {
	case ModeWrite:
		return "write"
	case ModeRead:
		return "read"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// WaitForever, as a command's WaitMs, waits until granted, cancelled, or the
// session ends: the blocking Lock(ctx) of etcd and Curator. The caller is
// expected to cancel through the log when it goes away.
const WaitForever int64 = -1
