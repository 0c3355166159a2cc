// Package cluster runs a Lockstep cluster of real `lockstep serve`
// processes on 127.0.0.1 and breaks it on purpose: stop, kill -9,
// SIGSTOP/SIGCONT, restart, wipe a data directory, and, when started with
// proxies, cut, cut one way, delay and heal the Raft link between any two
// nodes (Net).
//
// It is the one harness that chaos/ (the fault tests), integration/ and
// bench/ start real clusters with. It knows the configuration file, the
// process and the HTTP surface (/health, /cluster/status) and nothing of
// the client or the workload.
//
// Every process it starts dies with the process that started it (Linux:
// the parent-death signal) and with Close, on every path; a stopped one is
// continued before it is killed. Nothing listens or dials beyond
// 127.0.0.1.
package cluster
