package client

import (
	"fmt"
	"sync"

	"github.com/lockstepd/lockstep/internal/quote"
)

// Fence is the resource side of fencing: it remembers, per name, the largest
// fencing token it has accepted and refuses anything older, so a former
// holder that paused past its lease (and still believes it holds the lock)
// cannot write after the next holder has. Check tokens where the write
// happens, under the same lock or transaction as the write itself.
//
// Accepting only the largest token suits exclusive holds: a mutex, an RW
// lock's writer, an election's leader, where a newer grant means the
// older one has ended. Semaphore holders and an RW lock's readers hold at
// once, each with its own token, and an older token is then still
// legitimately held: a Fence per name would refuse a current holder. Check
// those with Client.CheckFence, which asks the cluster whether a token
// still holds.
//
// A Fence lives in memory; a resource that restarts must keep the largest
// token with its data (for example a column updated in the same
// transaction: "UPDATE ... WHERE $token > 0 AND fence_token <= $token",
// refusing token 0 as Check does), see docs/client.md. The zero Fence is
// ready to use.
type Fence struct {
	mu   sync.Mutex
	last map[string]uint64
}

// Check accepts token for name if it is at least the largest seen (the
// same holder may write many times with one token) and remembers it;
// otherwise it answers an error wrapping ErrStaleToken. Token 0 is never
// valid.
func (f *Fence) Check(name string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if token == 0 {
		return fmt.Errorf("fence %s: token 0: %w (no token was sent)", quote.Bounded(name), ErrStaleToken)
	}
	if f.last == nil {
		f.last = map[string]uint64{}
	}
	if last := f.last[name]; token < last {
		return fmt.Errorf("fence %s: token %d is older than %d: %w", quote.Bounded(name), token, last, ErrStaleToken)
	}
	f.last[name] = token
	return nil
}

// Last is the largest token accepted for name (0 when none).
func (f *Fence) Last(name string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[name]
}
