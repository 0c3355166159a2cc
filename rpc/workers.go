package rpc

import "time"

// workers runs the requests of session streams on goroutines that are kept
// for the next request, instead of a fresh goroutine each. A fresh one
// starts with a 2 KiB stack that growStack takes to 16 KiB, and at its end
// the runtime frees that stack (it keeps only starting-size stacks for
// reuse): that allocation and copy, with the stack cache refills behind
// them, was 5% of the leader's CPU at 64 workers through the Go client
// (docs/performance.md). A kept goroutine's stack is already grown.
//
// A request is handed to a goroutine that waits for one, or to a new one
// when none waits, so a request never waits for another to end; a
// goroutine left without work for workerIdle ends. At most as many are
// kept as were busy at once in the last workerIdle.
type workers struct {
	tasks chan func() // unbuffered: a send succeeds only to a waiting goroutine
	idle  time.Duration
}

// workerIdle is how long a goroutine waits for its next request before it
// ends.
const workerIdle = 5 * time.Second

func newWorkers(idle time.Duration) *workers {
	return &workers{tasks: make(chan func()), idle: idle}
}

// run runs f on a waiting goroutine, or on a new one.
func (w *workers) run(f func()) {
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

// work runs f, then the tasks handed to it, until it waits w.idle for one.
func (w *workers) work(f func()) {
	growStack() // rpc/stack.go: a request goes as deep as a unary handler's
	idle := time.NewTimer(w.idle)
	defer idle.Stop()
	for {
		f()
		f = nil // let the finished request's memory go while this waits
		idle.Reset(w.idle)
		select {
		case f = <-w.tasks:
		case <-idle.C:
			return
		}
	}
}
