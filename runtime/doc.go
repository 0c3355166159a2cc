// Package runtime is the production shell around core: a Dragonboat v4
// NodeHost with Pebble log storage, one Raft shard whose state machine is a
// core.Machine, and the node logic of core/replica driving it.
package runtime
