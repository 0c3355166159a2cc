// Package model is the sequential specification of Lockstep's mutexes,
// semaphores, RW locks and elections that porcupine checks histories
// against. The simulator (sim/) and the fault tests against real processes
// (chaos/) both record what clients asked and were told as Operations of
// Input and Output and check them with Lock; each turns what it observed
// into these types its own way (the simulator from its committed log,
// chaos from the client's answers and the Watch stream).
//
// A name's state is small: its holders in token order, an election's value,
// and the highest token ever granted on it; a grant must raise that token
// (tokens strictly increase per name). An operation whose outcome is
// unknown must be resolved, or left out, before checking: the model takes
// every output as what happened.
//
// It follows rules 4 (core/rules.go): an election's leader campaigning
// again is answered with its leadership and proclaims the campaign's
// value.
package model
