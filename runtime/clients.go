package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
)

// clientPool hands out the node-local dedupe identities Do gives commands
// that carry none. The machine keeps DedupeWindow results per client and
// refuses a seq that fell out of the window, so one shared identity would
// break under more than DedupeWindow concurrent requests. Each identity is
// therefore lent to one request at a time (its retries included) and its
// seq only grows. The prefix is random per process: a restarted node must
// not reuse (client, seq) pairs whose results the machine still remembers.
type clientPool struct {
	mu     sync.Mutex
	prefix string
	next   int
	free   []*localClient
}

type localClient struct {
	id  string
	seq uint64
}

func newClientPool(nodeID string) *clientPool {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &clientPool{prefix: fmt.Sprintf("rt/%s/%s/", nodeID, hex.EncodeToString(b[:]))}
}

func (p *clientPool) get() *localClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c
	}
	p.next++
	return &localClient{id: fmt.Sprintf("%s%d", p.prefix, p.next)}
}

// local says whether id is one of the identities this pool hands out:
// Do gave its command one, and nobody outside this node knows it.
func (p *clientPool) local(id string) bool { return strings.HasPrefix(id, p.prefix) }

func (p *clientPool) put(c *localClient) {
	p.mu.Lock()
	p.free = append(p.free, c)
	p.mu.Unlock()
}
