package runtime

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// What a closing node does with the waits it serves (shard.stopServing).

// waiterSessions is the wait queue of the mutex name, as the sessions that
// wait, in order.
func waiterSessions(t *testing.T, n *Node, name string) []core.SessionID {
	t.Helper()
	var out []core.SessionID
	for _, w := range status(t, n, core.KindMutex, name, false).Waiters {
		out = append(out, w.Session)
	}
	return out
}

// doneCall is the answer of a Do run in the background.
type doneCall struct {
	r   core.Result
	err error
}

func doInBackground(ctx context.Context, n *Node, cmd core.Command) <-chan doneCall {
	ch := make(chan doneCall, 1)
	go func() {
		r, err := n.Do(ctx, cmd)
		ch <- doneCall{r, err}
	}()
	return ch
}

func answerOf(t *testing.T, what string, ch <-chan doneCall) doneCall {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer within 10 s", what)
		return doneCall{}
	}
}

// TestClosedNodesWaitsKeepTheirPlace: two waits queued in order through a
// follower, with their callers' own identities, stay in the queue when
// that follower closes, as after a kill -9 of it: each caller is answered
// ErrWaitKept (an ErrShuttingDown, so it moves on), and its resend to
// another member re-attaches to its wait by dedupe. The resends arrive in
// the other order, and the first in the queue is granted first all the
// same. A wait between them that the node identified itself (no identity
// of its caller's) cannot be re-attached, and is withdrawn. Before, the
// close withdrew every wait, so the resends queued anew in the order they
// came, and the second waiter was granted first.
func TestClosedNodesWaitsKeepTheirPlace(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, f := c.waitLeader(0), c.follower()
	leader, follower := c.nodes[l], c.nodes[f]
	const name = "drained-fifo"
	holder := session(t, leader, time.Minute)
	s1 := session(t, leader, time.Minute)
	s0 := session(t, leader, time.Minute)
	s2 := session(t, leader, time.Minute)
	held := do(t, leader, mutex(name, holder, 0))

	w1 := mutex(name, s1, -1)
	w1.ClientID, w1.Seq = "drain-test-w1", 1
	w0 := mutex(name, s0, -1) // no identity: Do gives it a node-local one
	w2 := mutex(name, s2, -1)
	w2.ClientID, w2.Seq = "drain-test-w2", 1
	first := doInBackground(tctx(t), follower, w1)
	eventually(t, "w1 queues", func() bool { return len(waiterSessions(t, leader, name)) == 1 })
	anonymous := doInBackground(tctx(t), follower, w0)
	eventually(t, "w0 queues", func() bool { return len(waiterSessions(t, leader, name)) == 2 })
	second := doInBackground(tctx(t), follower, w2)
	eventually(t, "w2 queues", func() bool { return len(waiterSessions(t, leader, name)) == 3 })

	c.stop(f)
	for _, w := range []struct {
		what string
		ch   <-chan doneCall
		want error
	}{{"w1", first, ErrWaitKept}, {"w2", second, ErrWaitKept}, {"w0", anonymous, ErrShuttingDown}} {
		a := answerOf(t, w.what, w.ch)
		if !errors.Is(a.err, w.want) || (w.want == ErrShuttingDown && errors.Is(a.err, ErrWaitKept)) {
			t.Errorf("%s at the close: %+v, %v; want %v", w.what, a.r, a.err, w.want)
		}
	}
	if got, want := waiterSessions(t, leader, name), []core.SessionID{s1, s2}; !slices.Equal(got, want) {
		t.Fatalf("the queue after the close: sessions %v, want %v (w1, w2 kept; the anonymous w0 withdrawn)", got, want)
	}

	// The resends, second first: each re-attaches to its wait.
	second = doInBackground(tctx(t), leader, w2)
	first = doInBackground(tctx(t), leader, w1)
	time.Sleep(100 * time.Millisecond) // let them reach the leader's driver
	if got, want := waiterSessions(t, leader, name), []core.SessionID{s1, s2}; !slices.Equal(got, want) {
		t.Fatalf("the queue after the resends: sessions %v, want %v", got, want)
	}
	do(t, leader, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: holder, Token: held.Token})
	a := answerOf(t, "w1's resend", first)
	if a.err != nil || a.r.Err != nil || a.r.Outcome != core.OutcomeGranted {
		t.Fatalf("w1's resend after the release: %+v, %v; want granted", a.r, a.err)
	}
	select {
	case b := <-second:
		t.Fatalf("w2's resend answered while w1 holds: %+v, %v", b.r, b.err)
	case <-time.After(200 * time.Millisecond):
	}
	do(t, leader, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: s1, Token: a.r.Token})
	if b := answerOf(t, "w2's resend", second); b.err != nil || b.r.Err != nil || b.r.Outcome != core.OutcomeGranted || b.r.Token <= a.r.Token {
		t.Fatalf("w2's resend after w1's release: %+v, %v; want granted after token %d", b.r, b.err, a.r.Token)
	}
}

// TestCancelledWaitIsWithdrawnThoughItsNodeCloses: a wait with its
// caller's own identity whose caller cancels it is withdrawn, as before:
// only the node's own closing leaves a wait in the queue, and a close
// that follows the cancel does not bring it back.
func TestCancelledWaitIsWithdrawnThoughItsNodeCloses(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	l, f := c.waitLeader(0), c.follower()
	leader, follower := c.nodes[l], c.nodes[f]
	const name = "drained-cancel"
	holder := session(t, leader, time.Minute)
	s1 := session(t, leader, time.Minute)
	s2 := session(t, leader, time.Minute)
	do(t, leader, mutex(name, holder, 0))

	cancelled := mutex(name, s1, -1)
	cancelled.ClientID, cancelled.Seq = "drain-test-cancelled", 1
	ctx, cancel := context.WithCancel(tctx(t))
	gone := doInBackground(ctx, follower, cancelled)
	kept := mutex(name, s2, -1)
	kept.ClientID, kept.Seq = "drain-test-kept", 1
	eventually(t, "the first wait queues", func() bool { return len(waiterSessions(t, leader, name)) == 1 })
	stays := doInBackground(tctx(t), follower, kept)
	eventually(t, "the second wait queues", func() bool { return len(waiterSessions(t, leader, name)) == 2 })

	cancel()
	if a := answerOf(t, "the cancelled wait", gone); !errors.Is(a.err, context.Canceled) {
		t.Fatalf("the cancelled wait: %+v, %v; want context.Canceled", a.r, a.err)
	}
	eventually(t, "the cancelled wait leaves the queue", func() bool {
		return slices.Equal(waiterSessions(t, leader, name), []core.SessionID{s2})
	})
	c.stop(f)
	if a := answerOf(t, "the kept wait", stays); !errors.Is(a.err, ErrWaitKept) {
		t.Errorf("the other wait at the close: %+v, %v; want ErrWaitKept", a.r, a.err)
	}
	if got, want := waiterSessions(t, leader, name), []core.SessionID{s2}; !slices.Equal(got, want) {
		t.Errorf("the queue after the close: sessions %v, want %v", got, want)
	}
}
