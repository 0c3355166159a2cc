package runtime

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// TestWithdrawnWaitHearsWhatTheLogDid: a queued acquire withdrawn through
// WithWithdrawal (a reload that no longer allows it) answers what the log
// applied first. Its withdrawal races the release that grants it, on the
// leader and through a follower; in every round either the caller hears
// the grant and its session holds the lock, or it hears ErrWithdrawn and
// its session holds nothing. Ending the call's context instead, as a
// reload did, answered the caller an error of a grant the log had made
// the moment before: the lock stayed held, by a session told it did not
// hold it, until that session ended.
func TestWithdrawnWaitHearsWhatTheLogDid(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	leader := c.nodes[c.waitLeader(0)]
	follower := c.nodes[c.follower()]
	holder := session(t, leader, 30*time.Second)
	waiter := session(t, leader, 30*time.Second)
	granted, withdrawn := 0, 0
	const rounds = 30
	for round := range rounds {
		name := fmt.Sprintf("withdrawn-%d", round)
		on := leader
		if round%2 == 1 {
			on = follower
		}
		token := do(t, leader, mutex(name, holder, 0)).Token
		queued := make(chan struct{})
		withdraw := make(chan struct{})
		type answer struct {
			r   core.Result
			err error
		}
		answered := make(chan answer, 1)
		ctx := WithWithdrawal(tctx(t), func(core.WaiterID) { close(queued) }, withdraw)
		go func() {
			cmd := mutex(name, waiter, -1)
			cmd.ClientID, cmd.Seq = fmt.Sprintf("withdraw-test-%d", round), 1
			r, err := on.Do(ctx, cmd)
			answered <- answer{r, err}
		}()
		select {
		case <-queued:
		case a := <-answered:
			t.Fatalf("round %d: the acquire did not queue: %+v, %v", round, a.r, a.err)
		}
		switch round % 3 {
		case 0: // withdrawn alone: nothing grants it
			close(withdraw)
		case 1: // the release and the withdrawal race
			released := make(chan error, 1)
			go func() {
				r, err := leader.Do(tctx(t), core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: holder, Token: token,
					ClientID: fmt.Sprintf("withdraw-release-%d", round), Seq: 1})
				if err == nil && r.Err != nil {
					err = r.Err
				}
				released <- err
			}()
			close(withdraw)
			if err := <-released; err != nil {
				t.Fatalf("round %d: release: %v", round, err)
			}
		case 2: // granted first, withdrawn after
			do(t, leader, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: holder, Token: token})
			close(withdraw)
		}
		var a answer
		select {
		case a = <-answered:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: a withdrawn wait did not end", round)
		}
		st := status(t, leader, core.KindMutex, name, false)
		holds := len(st.Holders) == 1 && st.Holders[0].Session == waiter
		switch {
		case a.err == nil && a.r.Outcome == core.OutcomeGranted:
			granted++
			if !holds || st.Holders[0].Token != a.r.Token {
				t.Fatalf("round %d: the caller heard granted (token %d), but the lock is %+v", round, a.r.Token, st.Holders)
			}
			do(t, leader, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: waiter, Token: a.r.Token})
		case errors.Is(a.err, ErrWithdrawn):
			withdrawn++
			if holds || len(st.Waiters) != 0 {
				t.Fatalf("round %d: the caller heard withdrawn, but its session holds the lock or waits: %+v, %+v", round, st.Holders, st.Waiters)
			}
			if round%3 == 0 {
				do(t, leader, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Session: holder, Token: token})
			}
			// Nothing of the wait is left to be granted later.
			if st := status(t, leader, core.KindMutex, name, false); len(st.Holders) != 0 {
				t.Fatalf("round %d: after the holder's release, %+v hold a lock whose waiter was withdrawn", round, st.Holders)
			}
		default:
			t.Fatalf("round %d: a withdrawn wait answered %+v, %v: want its grant or ErrWithdrawn", round, a.r, a.err)
		}
	}
	if granted == 0 || withdrawn == 0 {
		t.Fatalf("%d rounds granted, %d withdrawn: each kind of round should have both", granted, withdrawn)
	}
}

// TestWithdrawalOutlivesALostQuorum: a wait withdrawn on a member that has
// lost its quorum, which cannot propose the cancel then and whose cancel
// sent through another path gives up after the retry budget, is withdrawn
// once the member can propose again: its caller hears ErrWithdrawn, and
// the holder's release grants it nothing. The withdrawal was lost before,
// and the caller, whose rights a reload had withdrawn, was granted the
// lock at the next release.
func TestWithdrawalOutlivesALostQuorum(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	lead := c.waitLeader(0)
	f := c.follower()
	holder := session(t, c.nodes[lead], time.Minute)
	waiter := session(t, c.nodes[lead], time.Minute)
	token := do(t, c.nodes[lead], mutex("lost-quorum", holder, 0)).Token
	queued, withdraw := make(chan struct{}), make(chan struct{})
	answered := make(chan error, 1)
	ctx := WithWithdrawal(context.Background(), func(core.WaiterID) { close(queued) }, withdraw)
	on := c.nodes[f]
	go func() {
		cmd := mutex("lost-quorum", waiter, -1)
		cmd.ClientID, cmd.Seq = "withdraw-lost-quorum", 1
		r, err := on.Do(ctx, cmd)
		if err == nil {
			err = fmt.Errorf("answered %+v", r)
		}
		answered <- err
	}()
	select {
	case <-queued:
	case err := <-answered:
		t.Fatalf("the acquire did not queue: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the acquire did not queue")
	}
	var others []int
	for i := range 3 {
		if i != f {
			others = append(others, i)
			c.stop(i)
		}
	}
	// Once it knows no leader, it cannot propose (a follower's driver).
	eventually(t, "the member left alone to know no leader", func() bool { return on.Health() != nil })
	close(withdraw)
	time.Sleep(on.retryBudget + time.Second) // the cancel through another path gives up
	for _, i := range others {
		c.restart(i)
	}
	c.waitLeader(0)
	select {
	case err := <-answered:
		if !errors.Is(err, ErrWithdrawn) {
			t.Fatalf("the withdrawn wait answered %v, want ErrWithdrawn", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the withdrawal was lost: the wait still waits after the quorum came back")
	}
	l := c.nodes[c.waitLeader(0)]
	do(t, l, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: "lost-quorum", Session: holder, Token: token})
	if st := status(t, l, core.KindMutex, "lost-quorum", false); len(st.Holders) != 0 || len(st.Waiters) != 0 {
		t.Fatalf("after the holder's release: %+v hold, %+v wait; the withdrawn waiter must have neither", st.Holders, st.Waiters)
	}
}
