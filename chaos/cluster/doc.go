// Package cluster runs a Lockstep cluster of real `lockstep serve`
// processes on 127.0.0.1 and breaks it on purpose: stop, kill -9,
// SIGSTOP/SIGCONT, restart, wipe a data directory, and, when started with
// proxies, cut, cut one way, delay and heal the Raft link between any two
// nodes (Net). With a chaos build of lockstep (-tags chaos) it also moves a
// node's clock and reads every shard's state hash (hooks.go); with
// Options.Secure it makes a PKI and runs the cluster with mutual TLS and
// authentication (secure.go).
//
// It is the one harness that chaos/ (the fault tests), integration/ and
// bench/ start real clusters with. It knows the configuration file, the
// process and the HTTP surface (/health, /cluster/status, the chaos
// build's /debug/chaos/) and nothing of the client or the workload.
//
// Every process it starts dies with the process that started it (Linux:
// the parent-death signal) and with Close, on every path; a stopped one is
// continued before it is killed. Nothing listens or dials beyond
// 127.0.0.1.
package cluster
