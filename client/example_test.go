package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// These examples compile and appear in go doc, but do not run in tests (no
// "Output:" lines): they need a server at 127.0.0.1:8080 (make run).

func ExampleMutex() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())
	s, err := c.NewSession(ctx, client.WithTTL(15*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())

	m := client.NewMutex(s, "jobs/nightly")
	if err := m.TryLock(ctx); errors.Is(err, client.ErrLocked) {
		fmt.Println("another machine runs the job")
		return
	} else if err != nil {
		log.Fatal(err)
	}
	defer m.Unlock(context.Background())
	// Pass the token with every write; stop when the lock is lost.
	fmt.Println("running with token", m.Token())
	select {
	case <-m.Lost():
		log.Print("lost the lock: ", s.Err())
	case <-time.After(time.Second): // the work
	}
}

func ExampleSemaphore() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	s, err := c.NewSession(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	gpu := client.NewSemaphore(s, "gpu", 4) // at most 4 permits out at once
	if err := gpu.Acquire(ctx, 2); err != nil {
		log.Fatal(err)
	}
	defer gpu.Release(context.Background())
	fmt.Println("holding 2 of 4 permits")
}

func ExampleRWMutex() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	s, err := c.NewSession(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	cfg := client.NewRWMutex(s, "config")
	if err := cfg.RLock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reading the config")
	_ = cfg.RUnlock(ctx)
}

func ExampleBarrier() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	s, err := c.NewSession(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	gen, err := client.NewBarrier(s, "stage-2", 3).Wait(ctx) // returns when 3 have arrived
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("all three arrived, generation", gen)
}

func ExampleElection() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	s, err := c.NewSession(ctx, client.WithOwner("node-a"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	e := client.NewElection(s, "scheduler")
	if err := e.Campaign(ctx, []byte("10.0.0.7:8080")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("leading with token", e.Token())
	// ... lead until done or s.Done() closes, then step down cleanly:
	_ = e.Resign(context.Background())
}

func ExampleClient_Observe() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	for l := range c.Observe(ctx, "scheduler") {
		fmt.Printf("leader: %s at %s\n", l.Candidate, l.Value)
	}
}

func ExampleClient_Watch() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background()) // a Client not closed keeps its goroutines and connections
	for r := range c.Watch(ctx, "jobs/") {
		for _, ev := range r.Events {
			fmt.Println(ev.Index, ev.Type, ev.Name, ev.FencingToken)
		}
	}
}

func ExampleFence() {
	var f client.Fence // on the resource side, next to the data
	write := func(token uint64, v string) error {
		if err := f.Check("orders-db", token); err != nil {
			return err // a former holder: refuse
		}
		fmt.Println("wrote", v)
		return nil
	}
	_ = write(40, "a")
	_ = write(41, "b")
	err := write(40, "late") // the old holder woke up
	fmt.Println(errors.Is(err, client.ErrStaleToken))
	// Output:
	// wrote a
	// wrote b
	// true
}

// A process hands its session, and the locks it holds, to the process that
// replaces it (etcd's Session.Orphan and concurrency.WithLease): the old one
// orphans it and passes the id on (here a file; any channel will do), the
// new one resumes it within its TTL. The new Mutex's Lock of the held name
// answers the grant the session holds, token and all.
func ExampleClient_ResumeSession() {
	ctx := context.Background()
	c, err := client.New([]string{"http://127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())

	// The old process, on its way out: its requests in flight end and the
	// session is left alive on the servers, holding "jobs/leader".
	old, err := c.NewSession(ctx, client.WithTTL(30*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	if err := client.NewMutex(old, "jobs/leader").Lock(ctx); err != nil {
		log.Fatal(err)
	}
	if err := old.Orphan(ctx); err != nil {
		log.Fatal(err) // not handed over: Close it, or Orphan again
	}
	id := old.ID() // written where the next process finds it

	// The new process, within the TTL.
	s, err := c.ResumeSession(ctx, id)
	if errors.Is(err, client.ErrSessionLost) {
		log.Print("the session expired before it was resumed: start over")
		return
	} else if err != nil {
		log.Fatal(err)
	}
	defer s.Close(context.Background())
	m := client.NewMutex(s, "jobs/leader")
	if err := m.Lock(ctx); err != nil { // the grant the session holds
		log.Fatal(err)
	}
	fmt.Println("holding again with token", m.Token())
}
