package rpc

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// goroutineID is the calling goroutine's number, from its stack's header.
func goroutineID() uint64 {
	var b [64]byte
	n := runtime.Stack(b[:], false)
	f := bytes.Fields(b[:n])
	id, _ := strconv.ParseUint(string(f[1]), 10, 64)
	return id
}

// ranOn runs a task on w and answers the goroutine it ran on.
func ranOn(t *testing.T, w *workers) uint64 {
	t.Helper()
	got := make(chan uint64, 1)
	w.run(func() { got <- goroutineID() })
	select {
	case id := <-got:
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("a task did not run within 5 s")
		return 0
	}
}

func TestWorkersReuseAGoroutine(t *testing.T) {
	w := newWorkers(time.Minute)
	first := ranOn(t, w)
	// The first goroutine waits for work once its task is done; until it
	// does, a task goes to a new one. Either way it takes a task again.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if ranOn(t, w) == first {
			return
		}
	}
	t.Fatal("no later task ran on the goroutine of the first: workers start a goroutine per task")
}

func TestWorkersRunTasksAtOnce(t *testing.T) {
	w := newWorkers(time.Minute)
	const n = 8
	started, release := make(chan struct{}, n), make(chan struct{})
	for range n {
		w.run(func() {
			started <- struct{}{}
			<-release
		})
	}
	for i := range n {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d blocking tasks started: a task waited for another to end", i, n)
		}
	}
	close(release)
}

func TestWorkersEndWhenIdle(t *testing.T) {
	before := runtime.NumGoroutine()
	w := newWorkers(20 * time.Millisecond)
	release := make(chan struct{})
	for range 4 {
		w.run(func() { <-release })
	}
	if runtime.NumGoroutine() < before+4 {
		t.Fatalf("%d goroutines after starting 4 tasks, %d before", runtime.NumGoroutine(), before)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 5 s after the tasks ended, %d before: idle workers do not end", runtime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
