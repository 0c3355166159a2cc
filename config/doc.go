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
//   - the lock defaults (locks.*): read by the API layer;
//   - security (security.go, docs/security.md): TLS, API keys, the ACL, the
//     audit log, and the rule that plaintext is served only on loopback
//     unless security.insecure says otherwise. Load also reads the files it
//     names (Security.LoadMaterial), so that a bad certificate or keys file
//     stops a node at start; Read leaves values unchecked for the flags to
//     override first.
//
// Dev returns the configuration of `lockstep serve --dev`: one node on
// loopback. The files single.yaml and node1.yaml..node3.yaml next to this
// package are the examples the docs and the integration tests start from;
// config_test.go loads each of them.
package config
