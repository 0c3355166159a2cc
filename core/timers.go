package core

// timerKind orders timers that fall due at the same log time: sessions
// expire before waits time out, so a waiter whose session dies in the same
// instant is told "session expired", the more useful answer.
type timerKind uint8

const (
	timerSession timerKind = iota + 1
	timerMaxHold
	timerWaiter
	timerLockDelay
)

// timer is a deadline. Timers are never removed early: a fired timer whose
// target has moved on (a session kept alive, a waiter already granted) is
// recognised as stale and skipped. Firing order depends only on (at, kind,
// id), never on insertion order, so a restored machine that rebuilt only its
// live timers fires exactly like the original.
type timer struct {
	at   LogTime
	kind timerKind
	id   uint64
}

func (a timer) less(b timer) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.id < b.id
}

// timerHeap is a binary min-heap of timers.
type timerHeap struct{ items []timer }

func (h *timerHeap) Len() int    { return len(h.items) }
func (h *timerHeap) peek() timer { return h.items[0] }

func (h *timerHeap) push(t timer) {
	h.items = append(h.items, t)
	i := len(h.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h.items[i].less(h.items[p]) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

// init orders items appended without push into a heap, in O(n).
func (h *timerHeap) init() {
	for i := len(h.items)/2 - 1; i >= 0; i-- {
		h.down(i, len(h.items))
	}
}

func (h *timerHeap) pop() timer {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	h.down(0, last)
	return top
}

func (h *timerHeap) down(i, last int) {
	for {
		l, r, min := 2*i+1, 2*i+2, i
		if l < last && h.items[l].less(h.items[min]) {
			min = l
		}
		if r < last && h.items[r].less(h.items[min]) {
			min = r
		}
		if min == i {
			break
		}
		h.items[i], h.items[min] = h.items[min], h.items[i]
		i = min
	}
}
