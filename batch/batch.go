// Package batch sends what is ready together as one: the session streams'
// messages on both sides (rpc's answers, the client's requests), where
// each message costs hand-offs between goroutines and a system call
// whatever it carries (docs/performance.md, "One stream for a client's
// sessions").
package batch

import "sync"

// Gatherer gathers items for one sender at a time: the goroutine that adds
// an item while no send is under way sends it, and goes on sending, in
// batches of at most Max, what the others add meanwhile. So nothing waits
// for a timer or a goroutine of its own, a lone item goes at once, and
// items that become ready while a send is in the kernel share the next.
// The zero value is not ready: Max must be set.
type Gatherer[T any] struct {
	Max int // the most items in one send; at least 1

	mu      sync.Mutex
	items   []T  // waiting for the sending goroutine
	sending bool // a goroutine is sending
}

// Add gathers item, and sends with send unless a send is under way (then
// the goroutine in it sends the item). A send that fails drops what is
// gathered, and Add returns its error to the goroutine that sent; what is
// added later is sent again.
func (g *Gatherer[T]) Add(item T, send func([]T) error) error {
	if g.Max < 1 {
		panic("batch: Gatherer.Max must be at least 1")
	}
	g.mu.Lock()
	g.items = append(g.items, item)
	if g.sending {
		g.mu.Unlock()
		return nil
	}
	g.sending = true
	var err error
	for len(g.items) > 0 && err == nil {
		b := g.items
		if len(b) > g.Max {
			b = b[:g.Max]
		}
		g.items = g.items[len(b):]
		if len(g.items) == 0 {
			g.items = nil // the next batch starts a fresh slice: b is the sender's
		}
		g.mu.Unlock()
		err = send(b)
		g.mu.Lock()
	}
	if err != nil {
		g.items = nil
	}
	g.sending = false
	g.mu.Unlock()
	return err
}
