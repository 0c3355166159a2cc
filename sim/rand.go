package sim

import (
	"crypto/rand"
	"io"
	mrand "math/rand/v2"
	"sync"
)

// Each concern draws from its own stream, seeded from the run's seed and
// the concern's name, so that one more draw in (say) the workload never
// shifts what the network or a clock does.
func stream(seed uint64, name string) *mrand.Rand {
	return mrand.New(mrand.NewPCG(seed, fnv64(name)))
}

func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// etcd raft draws each randomized election timeout from crypto/rand.Reader,
// a process-wide variable. A run installs a reader seeded from its own seed
// for as long as it lasts, and holds raftRandMu meanwhile: two runs in one
// process take turns (parallel sweeps use one process per seed).
var raftRandMu sync.Mutex

type seededReader struct{ r *mrand.ChaCha8 }

func (s seededReader) Read(p []byte) (int, error) { return s.r.Read(p) }

// installRaftRand makes crypto/rand.Reader a pure function of seed until
// the returned function restores the previous reader.
func installRaftRand(seed uint64) (restore func()) {
	raftRandMu.Lock()
	var key [32]byte
	for i := 0; i < 4; i++ {
		v := stream(seed, "raft-election").Uint64() + uint64(i)*0x9e3779b97f4a7c15
		for j := 0; j < 8; j++ {
			key[i*8+j] = byte(v >> (8 * j))
		}
	}
	prev := rand.Reader
	rand.Reader = seededReader{mrand.NewChaCha8(key)}
	return func() {
		rand.Reader = prev
		raftRandMu.Unlock()
	}
}

var _ io.Reader = seededReader{}
