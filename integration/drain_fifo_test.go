//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// TestDrainKeepsTheWaitersOrder: a `lockstep lock` queued through a member
// that drains (SIGTERM) keeps its place in the queue, as it does when that
// member is killed -9: the member leaves its wait queued and answers it
// unavailable, and the CLI's resend on its next endpoint re-attaches to
// the wait. The user trial that found it: the drained member withdrew the
// wait, the resend queued anew behind a waiter that came later, and
// `lockstep status` listed W2 before W1.
func TestDrainKeepsTheWaitersOrder(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	// B leads: the client moves to the leader among its endpoints, so W1,
	// given B then A, waits through B.
	b, a := drainPair(c)
	l := cli{t: t, url: a.url(), dir: t.TempDir()}
	const name = "drain/fifo"
	held, release, order := l.file("held"), l.file("release"), l.file("order")

	_, _, _, holder := l.start("lock", name, "--owner", "holder", "--endpoints", a.url(), "--",
		"sh", "-c", "touch "+held+"; i=0; while [ ! -e "+release+" ] && [ $i -lt 400 ]; do sleep 0.1; i=$((i+1)); done")
	eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(held); return err })
	queued := func(owners ...string) func() error {
		return func() error {
			code, out, errOut := l.run(10*time.Second, "status", name, "--endpoints", a.url())
			if code != 0 {
				return errors.New(errOut)
			}
			pattern := `(?s)holder\s+holder\s`
			for i, o := range owners {
				pattern += `.*waiter ` + string(rune('1'+i)) + `\s+` + o + `\s`
			}
			if !regexp.MustCompile(pattern).MatchString(out) || strings.Contains(out, "waiter "+string(rune('1'+len(owners)))) {
				return errors.New("status says:\n" + out)
			}
			return nil
		}
	}
	_, _, w1Err, w1 := l.start("lock", name, "--owner", "w1", "--endpoints", b.url()+","+a.url(), "--", "sh", "-c", "echo w1 >> "+order)
	eventually(t, 10*time.Second, "w1 queues through "+b.ID, queued("w1"))
	_, _, w2Err, w2 := l.start("lock", name, "--owner", "w2", "--endpoints", a.url(), "--", "sh", "-c", "echo w2 >> "+order)
	eventually(t, 10*time.Second, "w2 queues behind it", queued("w1", "w2"))

	b.signal(t, syscall.SIGTERM)
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("%s drained with exit code %d", b.ID, code)
	}
	// W1's resend reaches A within its back-off; the queue it finds, and
	// keeps, is the one before the drain.
	time.Sleep(2 * time.Second)
	if err := queued("w1", "w2")(); err != nil {
		t.Fatalf("after %s drained: %v", b.ID, err)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		what string
		done chan error
		errb *syncBuffer
	}{{"holder", holder, nil}, {"w1", w1, w1Err}, {"w2", w2, w2Err}} {
		select {
		case err := <-w.done:
			if err != nil {
				stderr := ""
				if w.errb != nil {
					stderr = w.errb.String()
				}
				t.Fatalf("%s: %v\n%s", w.what, err, stderr)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s not done within 30 s of the release", w.what)
		}
	}
	if got, _ := os.ReadFile(order); string(got) != "w1\nw2\n" {
		t.Fatalf("the waiters ran in the order %q, want w1 then w2", got)
	}
}

// drainPair is the member to drain, the leader, and another member.
func drainPair(c *cluster) (leader, other *node) {
	leader = c.leader()
	for _, nd := range c.nodes {
		if nd != leader {
			return leader, nd
		}
	}
	c.t.Fatal("no member besides the leader")
	return nil, nil
}

// TestDrainKeepsTheGoClientsPlace: the Go client's Lock queued through a
// member that drains keeps its place: the member answers it unavailable
// and leaves its wait queued, and the client's resend on its next
// endpoint, with the same client_id and request_seq, re-attaches to it.
// The waiter that came after it, through another member, is granted
// after it.
func TestDrainKeepsTheGoClientsPlace(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	b, a := drainPair(c)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	session := func(owner string, endpoints ...string) *client.Session {
		cl, err := client.New(endpoints)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close(context.Background()) })
		s, err := cl.NewSession(ctx, client.WithTTL(15*time.Second), client.WithOwner(owner))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const name = "drain/go-client"
	holderSession := session("holder", a.url())
	w1Session := session("w1", b.url(), a.url())
	w2Session := session("w2", a.url())
	holder := client.NewMutex(holderSession, name)
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waiters := func() ([]string, error) {
		st, err := holderSession.Client().Status(ctx, client.KindMutex, name)
		if err != nil {
			return nil, err
		}
		var owners []string
		for _, w := range st.Waiters {
			owners = append(owners, w.Owner)
		}
		return owners, nil
	}
	queued := func(want ...string) func() error {
		return func() error {
			got, err := waiters()
			if err != nil {
				return err
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				return fmt.Errorf("waiters %v, want %v", got, want)
			}
			return nil
		}
	}
	granted := make(chan string, 2)
	for _, w := range []struct {
		owner string
		s     *client.Session
	}{{"w1", w1Session}, {"w2", w2Session}} {
		m := client.NewMutex(w.s, name)
		go func() {
			if err := m.Lock(ctx); err != nil {
				granted <- w.owner + ": " + err.Error()
				return
			}
			granted <- w.owner
			_ = m.Unlock(ctx)
		}()
		if w.owner == "w1" {
			eventually(t, 10*time.Second, "w1 queues", queued("w1"))
		}
	}
	eventually(t, 10*time.Second, "w2 queues behind w1", queued("w1", "w2"))

	b.signal(t, syscall.SIGTERM)
	if code := b.waitExit(t, 20*time.Second); code != 0 {
		t.Fatalf("%s drained with exit code %d", b.ID, code)
	}
	time.Sleep(2 * time.Second) // w1's resend reaches A
	if err := queued("w1", "w2")(); err != nil {
		t.Fatalf("after %s drained: %v", b.ID, err)
	}
	if err := holder.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"w1", "w2"} {
		select {
		case got := <-granted:
			if got != want {
				t.Fatalf("granted %q, want %q next", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s not granted within 30 s", want)
		}
	}
}
