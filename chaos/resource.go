package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

// resource is the storage service the mutexes and elections protect, done right: it
// refuses a token older than the newest it accepted for the name, and
// before accepting one asks the cluster, with a linearizable CheckFence,
// whether the token still holds. What it accepted is checked afterwards
// against the log (check): a write accepted for a grant the log had ended
// before the resource asked is a violation — a paused former holder must
// be turned away.
type resource struct {
	h     *history
	c     *client.Client
	bug   *bug
	names sync.Map // name → *sync.Mutex: one write per name at a time

	mu       sync.Mutex
	maxSeen  map[string]uint64
	accepted []write
	refused  int
	errors   int
}

// write is an accepted write: its token and when the resource began
// asking the cluster about it.
type write struct {
	worker int
	key    model.Key
	token  uint64
	asked  time.Duration
}

// fenceTimeout bounds one fence check.
const fenceTimeout = 5 * time.Second

func newResource(h *history, c *client.Client, b *bug) *resource {
	return &resource{h: h, c: c, bug: b, maxSeen: map[string]uint64{}}
}

// Write is a holder's write with its token: true when accepted.
func (r *resource) Write(ctx context.Context, worker int, k model.Key, token uint64) bool {
	l, _ := r.names.LoadOrStore(k.Name, &sync.Mutex{})
	l.(*sync.Mutex).Lock()
	defer l.(*sync.Mutex).Unlock()
	r.mu.Lock()
	stale := token < r.maxSeen[k.Name]
	r.mu.Unlock()
	if stale {
		r.count(&r.refused)
		return false
	}
	asked := r.h.now()
	if !r.bug.is(bugSkipFence) {
		ctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		kind := client.KindMutex
		if k.Kind == core.KindElection {
			kind = client.KindElection
		}
		ok, err := r.c.CheckFence(ctx, kind, k.Name, token)
		cancel()
		if err != nil {
			r.count(&r.errors)
			return false
		}
		if !ok {
			r.count(&r.refused)
			return false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxSeen[k.Name] = token
	r.accepted = append(r.accepted, write{worker: worker, key: k, token: token, asked: asked})
	return true
}

func (r *resource) count(n *int) {
	r.mu.Lock()
	*n++
	r.mu.Unlock()
}

// check returns the violations of the fence: a token lower than one
// accepted before it for the same name, and a write accepted for a grant
// whose end the watch had delivered before the resource asked about it.
func (r *resource) check() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bad []string
	last := map[string]uint64{}
	for _, w := range r.accepted {
		if w.token < last[w.key.Name] {
			bad = append(bad, fmt.Sprintf("the resource accepted token %d for %q after token %d", w.token, w.key.Name, last[w.key.Name]))
		}
		last[w.key.Name] = w.token
		if r.h.releasedBefore(w.key, w.token, w.asked) {
			bad = append(bad, fmt.Sprintf("the resource accepted worker %d's write to %q with token %d at %.3fs, after the log had ended that grant",
				w.worker, w.key.Name, w.token, w.asked.Seconds()))
		}
	}
	return bad
}
