package sim

import (
	"container/heap"
	"time"
)

// evKind says what a scheduled event does.
type evKind uint8

const (
	evDeliver  evKind = iota + 1 // a network message arrives
	evRaftTick                   // a replica's raft ticker fires
	evProcess                    // a replica runs its ready loop
	evSynced                     // a replica's disk finished a sync
	evRestart                    // a crashed replica comes back
	evClient                     // a client's timer fires
	evFault                      // the fault injector acts
	evHeal                       // a fault ends
	evResource                   // the fenced resource's timer fires
	evScript                     // a scenario's scripted action
	evMux                        // a multiplexed client's timer fires (mux.go)
	evUpgrade                    // the rolling upgrade takes its next replica (upgrade.go)
)

var evNames = [...]string{"", "deliver", "raft_tick", "process", "synced", "restart", "client", "fault", "heal", "resource", "script", "mux", "upgrade"}

func (k evKind) String() string { return evNames[k] }

// event is one entry of the run's only queue. Events run in (at, seq)
// order: seq is the order they were scheduled in, so ties break the same
// way on every run.
type event struct {
	at   time.Duration
	seq  uint64
	kind evKind
	node int    // replica (1-based) or client index, by kind
	gen  uint64 // the target's incarnation or timer generation: stale timers are skipped
	msg  *message
	arg  int
}

type eventQueue struct {
	items []*event
	seq   uint64
}

func (q *eventQueue) Len() int { return len(q.items) }
func (q *eventQueue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}
func (q *eventQueue) Swap(i, j int) { q.items[i], q.items[j] = q.items[j], q.items[i] }
func (q *eventQueue) Push(x any)    { q.items = append(q.items, x.(*event)) }
func (q *eventQueue) Pop() any {
	n := len(q.items)
	it := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	return it
}

func (q *eventQueue) schedule(e *event) {
	q.seq++
	e.seq = q.seq
	heap.Push(q, e)
}

func (q *eventQueue) next() *event { return heap.Pop(q).(*event) }
