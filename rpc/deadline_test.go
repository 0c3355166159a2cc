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
	mu   sync.Mutex
	seen map[core.Op][]seenDeadline
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

// TestCommandDeadlineIsTheWaitPlusTheRequestTimeout: a command reaches the
// backend with the deadline the API gives it, its wait plus
// RequestTimeout from when it was sent, beside its ctx rather than as a
// context of its own (which cost every request a timer); a wait forever
// (Connect's -1) has none, and its caller cancels it.
func TestCommandDeadlineIsTheWaitPlusTheRequestTimeout(t *testing.T) {
	const requestTimeout = 7 * time.Second
	d := &deadlineBackend{seen: map[core.Op][]seenDeadline{}}
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
	d.mu.Unlock()
}
