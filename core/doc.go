// Package core is Lockstep's state machine: sessions with leases, mutexes,
// counting semaphores, read-write locks, barriers and elections, with FIFO
// wait queues, fencing tokens and idempotent retries.
//
// It is pure. Apply takes one committed log entry (its index, the time its
// proposer stamped on it, and the commands packed into it) and returns the
// result for each command and the effects on everyone else (grants, ended
// waits, releases, expiries, leader changes, barrier releases) as data. It
// never reads a clock, draws a random number, starts a goroutine or does
// I/O, so every replica that applies the same entries reaches the same
// state, byte for byte (Hash), and the simulator can replay any history.
//
// Read docs/core.md first: the model, one example per primitive, and the
// invariants the tests check. The files follow the primitives: session.go,
// lock.go (the engine mutexes, semaphores and RW locks share), election.go,
// barrier.go; then dedupe.go, timers.go, reads.go, codec.go (the log
// encoding), snapshot.go and invariants.go. Every limit is in limits.go.
package core
