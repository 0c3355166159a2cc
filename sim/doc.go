// Package sim is Lockstep's deterministic cluster simulator, in the manner
// of FoundationDB's simulation and TigerBeetle's VOPR: one seed drives a
// whole cluster through faults in virtual time, every history is checked,
// and any failure replays exactly from its seed.
//
// A run (Run) is a pure function of its Options. Everything happens on one
// event queue ordered by (virtual time, scheduling order); nothing reads the
// wall clock, starts a goroutine, or lets map order decide. Randomness comes
// from independent math/rand/v2 streams per concern (options, network,
// faults, disk, each clock, each client), so a new draw in one does not
// reshuffle the others. etcd raft draws election jitter from the
// process-wide crypto/rand.Reader: a run installs a reader seeded from its
// seed, and two runs in one process take turns (sweeps use one process per
// seed).
//
// The world:
//   - replicas (node.go): real go.etcd.io/raft/v3 RawNodes with PreVote,
//     CheckQuorum and ReadIndex reads, each applying committed entries to its
//     own core machine through the shared core/replica driver, which leads
//     or forwards a follower's requests to the leader as the runtime's does,
//     with a disk
//     (disk.go) that loses unsynced writes on a crash, and snapshots with log
//     compaction during the run;
//   - a network (network.go) that loses, duplicates, delays and reorders
//     messages, and partitions (random halves, isolated leader, one way);
//   - clocks (clock.go) with offset, drift and jumps per replica;
//   - clients (client.go) with sessions and keepalives that use every
//     primitive, retry with the same (client_id, seq), pause and die, and a
//     fenced resource (resource.go) they write to with their tokens; in
//     half the seeds some of their acquires and campaigns are private (a
//     REST caller's without a client_id: sent once, given up for good, the
//     node releasing a grant its caller did not hear, and the caller
//     often retrying through another node);
//   - multiplexed clients (mux.go, in some seeds): one client id shared by
//     several sessions and many callers, as the Go client runs, with
//     LowestPending, abandon, a keepalive identity per session, a guarded
//     lease view, long jobs and network outages, checked by mux_checker.go;
//   - the fault injector (faults.go) and planted bugs (bugs.go).
//
// The checks: at every applied entry (checker.go, ledger.go) replicas agree
// on entries, outputs and (sampled) state hashes, core's invariants hold,
// and the committed log keeps docs/design.md's contract (exclusion, tokens
// strictly increasing per name, the clock cap, session leases with
// leader-change extension); acknowledged grants exist in the log, and no
// replica's unheard release ends one; the fenced resource never accepts a
// stale token. At the end, a liveness phase heals
// everything and demands a settled cluster, and porcupine checks client
// histories per name (history.go). docs/simulation.md is the guide.
package sim
