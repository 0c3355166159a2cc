// Package config reads a Lockstep node's YAML configuration.
//
// The keys are those of docs/design.md (cluster.*, consensus.*, locks.*), kept
// from the original baseline, plus a few the runtime needs (tick interval,
// snapshot schedule, joining an existing cluster). Load refuses unknown keys
// and invalid values with an error that names the key and says what to
// write instead, so that a typo fails at start rather than being ignored.
//
// Three kinds of value live here:
//
//   - the node's identity and addresses (cluster.*): what differs between
//     the members of one cluster;
//   - the consensus settings (consensus.*): must be the same on every member;
//   - the lock defaults (locks.*): read by the API layer.
//
// Dev returns the configuration of `lockstep serve --dev`: one node on
// loopback. The files single.yaml and node1.yaml..node3.yaml next to this
// package are the examples the docs and the integration tests start from;
// config_test.go loads each of them.
package config
