package runtime

import (
	"crypto/sha256"
)

// StateHash is one shard's replicated state at one applied index, as a
// hash: the SHA-256 of the bytes a snapshot taken at that index would hold
// (the runtime's header — applied index, member names — and core's
// canonical snapshot). Two members that applied the same log to the same
// index have equal hashes; a member that applied something else does not.
// The chaos suite compares them after the last fault heals (docs/chaos.md).
type StateHash struct {
	Shard        uint64
	AppliedIndex uint64
	Hash         [32]byte
}

// StateHashes hashes every shard's state, each at the index it has applied.
// It encodes the whole state under the state machine's read lock, which
// pauses applying for as long as the encoding takes: a debugging and
// testing aid, not something to poll on a large production state.
func (n *Node) StateHashes() ([]StateHash, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	out := make([]StateHash, 0, len(n.shards))
	for _, sh := range n.shards {
		index, hash := sh.sm.stateHash()
		out = append(out, StateHash{Shard: sh.index, AppliedIndex: index, Hash: hash})
	}
	return out, nil
}

// stateHash hashes what PrepareSnapshot would encode now, with the index it
// was applied to, both read under one lock.
func (s *stateMachine) stateHash() (uint64, [32]byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied, sha256.Sum256(s.encode())
}
