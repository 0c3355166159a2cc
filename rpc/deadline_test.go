package rpc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
)

// deadlineBackend records the deadline each command reaches the backend
// with, and whether its ctx had one.
type deadlineBackend struct {
	rpc.Backend
	mu    sync.Mutex
	seen  map[core.Op][]seenDeadline
	reads map[bool][]bool // by stale: whether each read's ctx had a deadline
}

type seenDeadline struct {
	deadline time.Time
	ctxHas   bool
}

func (d *deadlineBackend) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	_, has := ctx.Deadline()
	d.mu.Lock()
	d.seen[cmd.Op] = append(d.seen[cmd.Op], seenDeadline{deadline, has})
	d.mu.Unlock()
	return d.Backend.DoBy(ctx, cmd, deadline)
}

func (d *deadlineBackend) Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	_, has := ctx.Deadline()
	d.mu.Lock()
	d.reads[stale] = append(d.reads[stale], has)
	d.mu.Unlock()
	return d.Backend.Read(ctx, name, stale, fn)
}

// TestCommandDeadlineIsTheWaitPlusTheRequestTimeout: a command reaches the
// backend with the deadline the API gives it, its wait plus
// RequestTimeout from when it was sent, beside its ctx rather than as a
// context of its own (which cost every request a timer); a wait forever
// (Connect's -1) has none, and its caller cancels it.
func TestCommandDeadlineIsTheWaitPlusTheRequestTimeout(t *testing.T) {
	const requestTimeout = 7 * time.Second
	d := &deadlineBackend{seen: map[core.Op][]seenDeadline{}, reads: map[bool][]bool{}}
	s := startServer(t, func(o *rpc.Options) {
		o.RequestTimeout = requestTimeout
		d.Backend = o.Backend
		o.Backend = d
	})
	before := time.Now()
	st, got := s.call(t, "POST", "/locks/dl/acquire", `{"owner": "w1", "ttl_seconds": 30, "wait_timeout_ms": 1500}`)
	after := time.Now()
	expect(t, "acquire", st, 200)
	expect(t, "granted", got["acquired"], true)
	check := func(op core.Op, wait time.Duration) {
		t.Helper()
		d.mu.Lock()
		seen := d.seen[op]
		d.mu.Unlock()
		if len(seen) != 1 {
			t.Fatalf("%v reached the backend %d times, want once", op, len(seen))
		}
		lo, hi := before.Add(wait+requestTimeout), after.Add(wait+requestTimeout)
		if dl := seen[0].deadline; dl.Before(lo) || dl.After(hi) {
			t.Errorf("%v's deadline is %v after the call, want its wait %v plus the request timeout %v", op, dl.Sub(before), wait, requestTimeout)
		}
		if seen[0].ctxHas {
			t.Errorf("%v's ctx has a deadline of its own: the API made a context for it", op)
		}
	}
	check(core.OpSessionCreate, 0) // the session made for the acquire: no wait
	check(core.OpAcquire, 1500*time.Millisecond)

	_, sess := s.call(t, "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w2"}`)
	st, _ = s.call(t, "POST", "/lockstep.v1.LockService/Acquire", `{"name": "forever", "session_id": "`+sess["session_id"].(string)+`", "wait_timeout_ms": -1}`)
	expect(t, "acquire waiting forever", st, 200)
	d.mu.Lock()
	if seen := d.seen[core.OpAcquire]; len(seen) != 2 || !seen[1].deadline.IsZero() {
		t.Errorf("an acquire that waits forever reached the backend with %+v, want no deadline", seen)
	}
	d.reads = map[bool][]bool{}
	d.mu.Unlock()

	// A linearizable read waits for the leader, within RequestTimeout; a
	// stale one does not wait, and goes without (a release looks for its
	// grant in this node's state first).
	st, _ = s.call(t, "GET", "/locks/dl/status", "")
	expect(t, "status", st, 200)
	st, _ = s.call(t, "POST", "/locks/dl/release", `{"owner": "w1", "fencing_token": "`+got["fencing_token"].(string)+`"}`)
	expect(t, "release", st, 200)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.reads[false]) == 0 || len(d.reads[true]) == 0 {
		t.Fatalf("reads seen: %v, want linearizable (false) and stale (true) ones", d.reads)
	}
	for _, has := range d.reads[false] {
		if !has {
			t.Errorf("a linearizable read's ctx had no deadline: it would wait for the leader unbounded by RequestTimeout")
		}
	}
	for _, has := range d.reads[true] {
		if has {
			t.Errorf("a stale read's ctx had a deadline: the API made a context and a timer it does not need")
		}
	}
}
