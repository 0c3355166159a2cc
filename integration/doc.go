// Package integration holds the end-to-end tests of Lockstep: they build the
// lockstep binary, start single-node and three-node clusters of it as real
// processes on 127.0.0.1 (free ports, temporary data directories), and talk
// to them through REST JSON, Connect JSON and gRPC. The processes, ports,
// files and Raft proxies come from chaos/cluster, the harness the fault
// tests (chaos/) and the load generator (bench/) use too.
//
// The tests carry the build tag "integration" so that `go test ./...` (the
// unit tests) skips them; run them with `make test-integration`, or
//
//	go test -tags integration -count=1 ./integration/
//
// LOCKSTEP_BIN names a binary to test instead of building one.
// LOCKSTEP_KEEP=1 keeps the data directories and logs of a failed run.
package integration
