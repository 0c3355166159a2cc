//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestClientPromises drives the Go client as programs use it, against one
// three-node cluster of real processes (issue 17): one Client shared by
// many goroutines and sessions, calls cancelled in the middle of a race
// with a release, two processes given the same client id prefix, and a
// node stopped with SIGSTOP. The node is stopped last, since it leaves the
// cluster one node short for a moment.
func TestClientPromises(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	var all []string
	for _, nd := range c.nodes {
		all = append(all, nd.url())
	}
	t.Run("ManyGoroutinesOneClient", func(t *testing.T) { manyGoroutinesOneClient(t, all) })
	t.Run("CancelledCallsLeakNothing", func(t *testing.T) { cancelledCallsLeakNothing(t, all) })
	t.Run("SameClientIDPrefix", func(t *testing.T) { sameClientIDPrefix(t, all) })
	t.Run("StoppedNode", func(t *testing.T) { stoppedNode(t, c) })
}

// fencedResource is the protected side of the locks: it checks, per name,
// that holders never overlap beyond what the primitive allows and that
// every grant's token is larger than the tokens of every grant before it.
type fencedResource struct {
	mu      sync.Mutex
	holders map[string]int
	writer  map[string]bool
	last    map[string]uint64
}

func newFencedResource() *fencedResource {
	return &fencedResource{holders: map[string]int{}, writer: map[string]bool{}, last: map[string]uint64{}}
}

// enter admits one holder of name (at most limit at once; write: alone)
// with token, or says what went wrong.
func (r *fencedResource) enter(name string, token uint64, limit int, write bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.writer[name]:
		return fmt.Errorf("%s: entered with token %d while a writer holds it", name, token)
	case write && r.holders[name] > 0:
		return fmt.Errorf("%s: writer with token %d entered beside %d holders", name, token, r.holders[name])
	case r.holders[name] >= limit:
		return fmt.Errorf("%s: holder %d with token %d; at most %d at once", name, r.holders[name]+1, token, limit)
	}
	// Shared holds (readers, permits) may enter in any order among
	// themselves; an exclusive one must carry a token above all before it.
	if limit == 1 || write {
		if token <= r.last[name] {
			return fmt.Errorf("%s: token %d is not above %d, seen before", name, token, r.last[name])
		}
	}
	r.last[name] = max(r.last[name], token)
	r.holders[name]++
	r.writer[name] = write
	return nil
}

func (r *fencedResource) leave(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.holders[name]--
	r.writer[name] = false
}

// grantOf is one primitive value as the load below cycles it.
type grantOf struct {
	name  string
	limit int  // holders allowed at once
	write bool // an exclusive hold of a shared primitive
	lock  func(context.Context) error
	token func() uint64
	free  func(context.Context) error
}

func pickGrant(s *client.Session, g, i int) grantOf {
	switch (g + i) % 3 {
	case 0:
		m := client.NewMutex(s, fmt.Sprintf("a/mutex/%d", (g/3+i)%4))
		return grantOf{name: m.Name(), limit: 1, lock: m.Lock, token: m.Token, free: m.Unlock}
	case 1:
		m := client.NewSemaphore(s, "a/sem", 3)
		return grantOf{name: "a/sem", limit: 3, lock: func(ctx context.Context) error { return m.Acquire(ctx, 1) },
			token: m.Token, free: m.Release}
	default:
		m := client.NewRWMutex(s, "a/rw")
		if i%4 == 0 {
			return grantOf{name: "a/rw", limit: 1000, write: true, lock: m.Lock, token: m.Token, free: m.Unlock}
		}
		return grantOf{name: "a/rw", limit: 1000, lock: m.RLock, token: m.Token, free: m.Unlock}
	}
}

// One Client, 8 sessions with 2 s leases, 200 goroutines cycling mutexes, a
// semaphore and a read-write lock for 10 s: no error, no session lost, no
// overlap at the fenced resource.
func manyGoroutinesOneClient(t *testing.T, endpoints []string) {
	cl, err := client.New(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sessions := make([]*client.Session, 8)
	for i := range sessions {
		if sessions[i], err = cl.NewSession(ctx, client.WithTTL(2*time.Second), client.WithOwner(fmt.Sprintf("s%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	res := newFencedResource()
	var failures, cycles atomic.Int64
	fail := func(format string, a ...any) {
		if failures.Add(1) <= 20 {
			t.Errorf(format, a...)
		}
	}
	until := time.Now().Add(10 * time.Second)
	var wg sync.WaitGroup
	for g := range 200 {
		s := sessions[g%len(sessions)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100_000 && time.Now().Before(until) && failures.Load() == 0; i++ {
				h := pickGrant(s, g, i)
				if err := h.lock(ctx); err != nil {
					fail("goroutine %d: %s: %v", g, h.name, err)
					return
				}
				if err := res.enter(h.name, h.token(), h.limit, h.write); err != nil {
					fail("goroutine %d: %v", g, err)
				}
				// Stay a moment, so that an overlapping holder would be
				// inside at the same time, not just before or after.
				time.Sleep(time.Duration(i%3) * time.Millisecond)
				res.leave(h.name)
				if err := h.free(ctx); err != nil {
					fail("goroutine %d: release %s: %v", g, h.name, err)
					return
				}
				cycles.Add(1)
			}
		}()
	}
	wg.Wait()
	for i, s := range sessions {
		select {
		case <-s.Done():
			t.Errorf("session %d was lost: %v", i, s.Err())
		default:
		}
		_ = s.Close(ctx)
	}
	t.Logf("%d grants in 10 s by 200 goroutines on 8 sessions of one Client", cycles.Load())
	if cycles.Load() == 0 {
		t.Fatal("no grant at all")
	}
}

// 3,000 Lock, Campaign and Acquire calls cancelled at random moments while
// the holders release: afterwards no session holds or waits for anything
// its caller was not told it got.
func cancelledCallsLeakNothing(t *testing.T, endpoints []string) {
	cl, err := client.New(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const workers, calls = 60, 50 // 3,000 calls
	sessions := make([]*client.Session, workers)
	for i := range sessions {
		if sessions[i], err = cl.NewSession(ctx, client.WithTTL(5*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	var granted, cancelled, failures atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		s := sessions[w]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 17))
			for i := range calls {
				name := fmt.Sprintf("b/%d", rng.IntN(3))
				var lock func(context.Context) error
				var free func(context.Context) error
				switch (w + i) % 3 {
				case 0:
					m := client.NewMutex(s, name)
					lock, free = m.Lock, m.Unlock
				case 1:
					e := client.NewElection(s, name)
					lock = func(ctx context.Context) error { return e.Campaign(ctx, nil) }
					free = e.Resign
				default:
					m := client.NewSemaphore(s, name, 1)
					lock = func(ctx context.Context) error { return m.Acquire(ctx, 1) }
					free = m.Release
				}
				// Deadlines spread over about two grant round trips, so
				// that cancels land before, during and after the grants
				// that releases hand on.
				cctx, stop := context.WithTimeout(ctx, time.Duration(rng.IntN(80_000))*time.Microsecond)
				err := lock(cctx)
				stop()
				switch {
				case err == nil:
					granted.Add(1)
					time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
					if err := free(ctx); err != nil && failures.Add(1) <= 10 {
						t.Errorf("release after a grant: %v", err)
					}
				case errors.Is(err, context.DeadlineExceeded):
					cancelled.Add(1)
				default:
					if failures.Add(1) <= 10 {
						t.Errorf("call %d of worker %d: %v", i, w, err)
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d granted, %d cancelled", granted.Load(), cancelled.Load())
	// The clean-ups run in the background; they are bounded, so the
	// sessions must come to hold and wait for nothing.
	eventually(t, 20*time.Second, "every session holds and waits for nothing", func() error {
		for _, s := range sessions {
			st, err := sessionState(ctx, endpoints[0], s.ID())
			if err != nil {
				return err
			}
			if len(st.Holds) > 0 || len(st.Waits) > 0 {
				return fmt.Errorf("session %d holds %v and waits %v", s.ID(), st.Holds, st.Waits)
			}
		}
		return nil
	})
	for _, s := range sessions {
		_ = s.Close(ctx)
	}
}

// Two Clients given the same WithClientID (two processes of one service)
// making the same sequence of requests: each gets its own answers.
func sameClientIDPrefix(t *testing.T, endpoints []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := client.New(endpoints, client.WithClientID("billing"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.New(endpoints, client.WithClientID("billing"))
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		sa, err := a.NewSession(ctx, client.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.NewSession(ctx, client.WithTTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if sa.ID() == sb.ID() {
			t.Fatalf("round %d: both clients were answered session %d", round, sa.ID())
		}
		name := fmt.Sprintf("d/%d", round)
		ma, mb := client.NewMutex(sa, name), client.NewMutex(sb, name)
		errA, errB := ma.TryLock(ctx), mb.TryLock(ctx)
		if (errA == nil) == (errB == nil) {
			t.Fatalf("round %d: TryLock by both clients: %v and %v; exactly one must get it", round, errA, errB)
		}
		_ = sa.Close(ctx)
		_ = sb.Close(ctx)
	}
}

// A node stopped with SIGSTOP for three TTLs: every session survives, a
// unary call on a client whose first endpoint is the stopped node fails
// over within the attempt timeout, a Lock blocked there moves to another
// node, and a Watch there resumes elsewhere.
func stoppedNode(t *testing.T, c *cluster) {
	const ttl = 2 * time.Second
	stopped := c.leader()
	clients := make([]*client.Client, len(c.nodes))
	var onStopped *client.Client
	for i, nd := range c.nodes {
		eps := []string{nd.url()} // each client starts at its own node
		for _, other := range c.nodes {
			if other != nd {
				eps = append(eps, other.url())
			}
		}
		cl, err := client.New(eps, client.WithStreamSilence(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		if nd == stopped {
			onStopped = cl
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sessions := make([]*client.Session, len(clients))
	for i, cl := range clients {
		s, err := cl.NewSession(ctx, client.WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		sessions[i] = s
	}
	var holderSession *client.Session
	var waiterSession *client.Session
	for i, cl := range clients {
		if cl == onStopped {
			waiterSession = sessions[i]
		} else {
			holderSession = sessions[i]
		}
	}
	holder := client.NewMutex(holderSession, "c/blocked")
	if err := holder.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- client.NewMutex(waiterSession, "c/blocked").Lock(ctx) }()
	events := onStopped.Watch(ctx, "c/")
	eventually(t, 10*time.Second, "the waiter queued", func() error {
		st, err := holderSession.Client().Status(ctx, client.KindMutex, "c/blocked")
		if err != nil || len(st.Waiters) != 1 {
			return fmt.Errorf("status %v %v", st, err)
		}
		return nil
	})

	stopped.signal(t, syscall.SIGSTOP)
	defer stopped.signal(t, syscall.SIGCONT) // always, even on failure
	stoppedAt := time.Now()

	// A unary call: the documented bound is the attempt timeout (2 s) per
	// stuck endpoint, then the next endpoint answers.
	start := time.Now()
	if _, err := onStopped.Status(ctx, client.KindMutex, "c/blocked"); err != nil {
		t.Fatalf("Status with the first endpoint stopped: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second+3*time.Second {
		t.Errorf("Status took %v with its first endpoint stopped; the attempt timeout is 2s", took)
	}
	// The Watch, silent on the stopped node, resumes elsewhere and sees
	// a grant made now.
	other := client.NewMutex(holderSession, "c/watched")
	if err := other.Lock(ctx); err != nil {
		t.Fatalf("lock with a node stopped: %v", err)
	}
	seen := false
	for limit := time.After(2*time.Second + 8*time.Second); !seen; {
		select {
		case r := <-events:
			for _, ev := range r.Events {
				seen = seen || (ev.Name == "c/watched" && ev.FencingToken == other.Token())
			}
		case <-limit:
			t.Fatal("the Watch on the stopped node did not resume elsewhere")
		}
	}
	// The blocked Lock moves off the stopped node and gets the grant.
	if err := holder.Unlock(ctx); err != nil {
		t.Fatalf("unlock with a node stopped: %v", err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("the Lock blocked on the stopped node: %v", err)
		}
	case <-time.After(2*time.Second + 2*time.Second + 8*time.Second): // two probe intervals + attempt timeout + margin
		t.Fatal("the Lock blocked on the stopped node did not move")
	}
	// Three TTLs in all with the node stopped; then every session lives.
	time.Sleep(time.Until(stoppedAt.Add(3 * ttl)))
	for i, s := range sessions {
		select {
		case <-s.Done():
			t.Errorf("session of client %d was lost with one node stopped: %v", i, s.Err())
		default:
		}
	}
	for _, s := range sessions {
		_ = s.Close(ctx)
	}
}

// sessionState reads a session straight from a node.
func sessionState(ctx context.Context, endpoint string, id uint64) (*pb.Session, error) {
	sessions := lockstepv1connect.NewSessionServiceClient(http.DefaultClient, endpoint)
	res, err := sessions.Get(ctx, connect.NewRequest(&pb.GetSessionRequest{SessionId: id}))
	if err != nil {
		return nil, err
	}
	return res.Msg.Session, nil
}
