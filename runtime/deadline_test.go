package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// TestDoByDeadlineEndsAQueuedWait: a queued acquire whose DoBy deadline
// passes ends as one whose ctx's deadline passes: context.DeadlineExceeded,
// its wait withdrawn through the log, so that a release grants it nothing
// after. On the leader and through a follower. The hook that hears it
// queued returns only after the deadline, so the deadline passes while
// the request is queued, not before.
func TestDoByDeadlineEndsAQueuedWait(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, f := c.nodes[c.waitLeader(0)], c.nodes[c.follower()]
	holder := session(t, l, 30*time.Second)
	for i, n := range []*Node{l, f} {
		name := fmt.Sprintf("deadline-%d", i)
		token := do(t, l, mutex(name, holder, 0)).Token
		waiter := session(t, n, 30*time.Second)
		deadline := time.Now().Add(300 * time.Millisecond)
		queued := false
		ctx := WithQueued(tctx(t), func(core.WaiterID) {
			queued = true
			time.Sleep(time.Until(deadline)) // the deadline passes while it is queued
		})
		done := make(chan error, 1)
		go func() {
			// Core's own wait is a minute: only the deadline ends it.
			_, err := n.DoBy(ctx, mutex(name, waiter, time.Minute), deadline)
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: a queued DoBy did not end at its deadline", n.NodeID())
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: DoBy past its deadline: %v, want context.DeadlineExceeded", n.NodeID(), err)
		}
		if !queued {
			t.Fatalf("%s: the acquire never queued", n.NodeID())
		}
		eventually(t, "the wait is withdrawn", func() bool { return len(status(t, l, core.KindMutex, name, false).Waiters) == 0 })
		do(t, l, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: holder, Token: token})
		if st := status(t, l, core.KindMutex, name, false); len(st.Holders) != 0 {
			t.Errorf("%s: after the release, a withdrawn wait holds %s: %+v", n.NodeID(), name, st.Holders)
		}
	}
}

// TestDoByQueuedOutlivesTheStuckBound: once queued, a request waits for
// its deadline, however far, not for the bound of a request not yet
// answered (proposal timeout plus retry budget), which the same timer
// keeps until then: a grant after that bound still reaches it.
func TestDoByQueuedOutlivesTheStuckBound(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l := c.nodes[c.waitLeader(0)]
	holder := session(t, l, time.Minute)
	waiter := session(t, l, time.Minute)
	token := do(t, l, mutex("outlives", holder, 0)).Token
	queued := make(chan struct{})
	ctx := WithQueued(tctx(t), func(core.WaiterID) { close(queued) })
	type answer struct {
		r   core.Result
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := l.DoBy(ctx, mutex("outlives", waiter, time.Minute), time.Now().Add(time.Minute))
		done <- answer{r, err}
	}()
	select {
	case <-queued:
	case a := <-done:
		t.Fatalf("the acquire did not queue: %+v, %v", a.r, a.err)
	}
	time.Sleep(l.proposalTimeout + l.retryBudget + 200*time.Millisecond)
	select {
	case a := <-done:
		t.Fatalf("a queued DoBy ended at the stuck bound, long before its deadline: %+v, %v", a.r, a.err)
	default:
	}
	do(t, l, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "outlives", Session: holder, Token: token})
	a := <-done
	if a.err != nil || a.r.Outcome != core.OutcomeGranted || a.r.Session != waiter {
		t.Fatalf("the waiter after the release: %+v, %v; want granted", a.r, a.err)
	}
}
