// Package chaos breaks real Lockstep clusters on purpose and checks every
// history: `lockstep serve` processes on 127.0.0.1 (package cluster; the
// chaos build, -tags chaos), the real Go client, and faults drawn from a
// seed — kill -9 and restart (of one node, a minority, or briefly a
// majority), SIGSTOP/SIGCONT past the election timeout, partitions through
// proxies on the Raft links (isolated leader, one-way loss, one cut link,
// a bridge, slow links) and on the API links (a node's clients cut off or
// slowed), a node's clock jumping ahead, stepping back or
// running fast (moved through the chaos build's hook), a lost disk (the node
// wiped and added back as a new member), and a member joining and leaving.
// With -secure the cluster runs with mutual TLS and authentication.
//
// The processes are not deterministic, but a run's plan is: the seed draws
// the options, the fault schedule and each worker's choices, so a failing
// seed replays the same faults against the same workload. Every run ends
// with `seed=N ok` or `seed=N FAIL` and the line that replays it.
//
// The workload: mutexes, semaphores, RW locks and elections on hot and
// cold names; a counting barrier (barrier.go); a watcher that restarts and
// resumes across faults (watcher.go); a sleeper that holds a mutex and
// freezes past its TTL; a lapser whose sessions stop renewing on purpose
// (sessions.go).
//
// The checks (docs/chaos.md):
//   - linearizability of every name's history with porcupine against the
//     simulator's model (package model); the client's answers are completed
//     from the cluster's own log, read through Watch: an acquire whose
//     answer was lost took effect if and only if the log granted it, and
//     grants the machine ended (expiry, abandon) enter as its operations;
//   - a fenced resource (resource.go) that takes each write with its token:
//     tokens only grow, and no write is accepted for a grant the log had
//     already ended when the resource asked (a paused former holder);
//   - every acknowledged grant is in the log;
//   - sessions: one kept alive is never expired, one stopped is expired
//     within its TTL plus the grace;
//   - the watcher saw the log's events in order, none missed or repeated;
//   - the barrier's generations grow and are all in the log;
//   - liveness once the last fault heals: every member reaches one applied
//     index, and one state hash there, and every worker is granted again,
//     within printed bounds;
//   - recovery figures per fault (fault → next grant, heal → full service).
//
// Planted bugs (bugs.go) live in the workload and the resource, never in
// core: each must make a run fail.
package chaos
