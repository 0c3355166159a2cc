package core

// Limits bounds everything the machine holds or accepts. Every replica of a
// shard must run with the same Limits; they travel inside snapshots so that a
// restored replica keeps the ones it was created with.
//
// Durations are in milliseconds of log time.
type Limits struct {
	MaxNameBytes        int   // a name is 1..MaxNameBytes bytes of printable UTF-8
	MaxObjects          int   // live objects (mutexes, semaphores, ...) across all kinds
	MaxSessions         int   // live sessions
	MaxWaitersPerObject int   // queued requests on one object
	MaxWaiters          int   // queued requests across the machine
	MaxHoldsPerSession  int   // grants and waits one session may have at once
	MaxOwnerBytes       int   // the owner label shown in status
	MaxValueBytes       int   // the holder's or leader's value
	MaxParties          int   // barrier party count
	MaxSemaphoreLimit   int64 // semaphore permits
	MinTTLMs            int64 // session TTL bounds
	MaxTTLMs            int64
	MaxWaitMs           int64 // bound on a finite wait (WaitForever is separate)
	MaxHoldMs           int64 // bound on an acquire's maximum hold time
	MaxLockDelayMs      int64 // bound on an acquire's lock-delay
	MaxClockStepMs      int64 // how far one entry may move log time forward
	MaxCommandsPerEntry int   // commands packed into one entry
	MaxClients          int   // clients remembered for dedupe
	DedupeWindow        int   // results remembered per client that does not send LowestPending
	MaxPendingPerClient int   // results kept per client at or above its LowestPending
	MaxDedupeResults    int   // results kept across all clients
	DedupeRetentionMs   int64 // how long an idle client's results are kept
	MaxListResults      int   // objects one List returns
}

// DefaultLimits are the limits of docs/design.md.
func DefaultLimits() Limits {
	return Limits{
		MaxNameBytes:        256,
		MaxObjects:          100_000,
		MaxSessions:         100_000,
		MaxWaitersPerObject: 10_000,
		MaxWaiters:          100_000,
		MaxHoldsPerSession:  10_000,
		MaxOwnerBytes:       128,
		MaxValueBytes:       1024,
		MaxParties:          10_000,
		MaxSemaphoreLimit:   1_000_000,
		MinTTLMs:            10,
		MaxTTLMs:            24 * 3600 * 1000,
		MaxWaitMs:           3600 * 1000,
		MaxHoldMs:           24 * 3600 * 1000,
		MaxLockDelayMs:      60 * 1000,
		MaxClockStepMs:      2000,
		MaxCommandsPerEntry: 4096,
		MaxClients:          100_000,
		DedupeWindow:        32,
		MaxPendingPerClient: 16_384,
		MaxDedupeResults:    1_000_000,
		DedupeRetentionMs:   10 * 60 * 1000,
		MaxListResults:      10_000,
	}
}

// maxSlots is how many identifiers one entry can allocate.
const maxSlots = 1 << SlotBits

// Validate says which limit is unusable. The machine refuses to start with
// limits that could let one entry allocate more identifiers than a token has
// slots for.
func (l Limits) Validate() error {
	type check struct {
		ok   bool
		what string
	}
	checks := []check{
		{l.MaxNameBytes >= 1 && l.MaxNameBytes <= 4096, "MaxNameBytes must be within 1..4096"},
		{l.MaxObjects >= 1, "MaxObjects must be at least 1"},
		{l.MaxSessions >= 1, "MaxSessions must be at least 1"},
		{l.MaxWaitersPerObject >= 1, "MaxWaitersPerObject must be at least 1"},
		{l.MaxWaiters >= 1 && l.MaxWaiters < maxSlots/4, "MaxWaiters must be within 1..262143 so one entry cannot exhaust token slots"},
		{l.MaxHoldsPerSession >= 1, "MaxHoldsPerSession must be at least 1"},
		{l.MaxOwnerBytes >= 0 && l.MaxOwnerBytes <= 4096, "MaxOwnerBytes must be within 0..4096"},
		{l.MaxValueBytes >= 0 && l.MaxValueBytes <= 1<<20, "MaxValueBytes must be within 0..1048576"},
		{l.MaxParties >= 2, "MaxParties must be at least 2"},
		{l.MaxSemaphoreLimit >= 1, "MaxSemaphoreLimit must be at least 1"},
		{l.MinTTLMs >= 1 && l.MinTTLMs <= l.MaxTTLMs, "MinTTLMs must be within 1..MaxTTLMs"},
		{l.MaxTTLMs <= MaxDurationMs, "MaxTTLMs must be at most MaxDurationMs (2^40)"},
		{l.MaxWaitMs >= 1 && l.MaxWaitMs <= MaxDurationMs, "MaxWaitMs must be within 1..2^40"},
		{l.MaxHoldMs >= 1 && l.MaxHoldMs <= MaxDurationMs, "MaxHoldMs must be within 1..2^40"},
		{l.MaxLockDelayMs >= 0 && l.MaxLockDelayMs <= MaxDurationMs, "MaxLockDelayMs must be within 0..2^40"},
		{l.MaxClockStepMs >= 1 && l.MaxClockStepMs <= MaxDurationMs, "MaxClockStepMs must be within 1..2^40"},
		{l.MaxCommandsPerEntry >= 1 && l.MaxCommandsPerEntry < maxSlots/4, "MaxCommandsPerEntry must be within 1..262143"},
		{l.MaxClients >= 1, "MaxClients must be at least 1"},
		{l.DedupeWindow >= 1 && l.DedupeWindow <= 1024, "DedupeWindow must be within 1..1024"},
		{l.MaxPendingPerClient >= 2 && l.MaxPendingPerClient <= 1<<20, "MaxPendingPerClient must be within 2..1048576"},
		{l.MaxDedupeResults >= max(l.DedupeWindow, l.MaxPendingPerClient), "MaxDedupeResults must be at least DedupeWindow and MaxPendingPerClient"},
		{l.DedupeRetentionMs >= 1 && l.DedupeRetentionMs <= MaxDurationMs, "DedupeRetentionMs must be within 1..2^40"},
		{l.MaxListResults >= 1, "MaxListResults must be at least 1"},
	}
	for _, c := range checks {
		if !c.ok {
			return errorf(CodeInvalidArgument, "limits: %s", c.what)
		}
	}
	return nil
}
