package client_test

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// BenchmarkMutexCycle measures what the client itself costs per lock and
// unlock cycle, 16 workers per GOMAXPROCS (32 here) each on a session and
// a name of its own, against the one dev node TestMain starts: allocations
// and CPU of this process (client-µs/op, from getrusage), beside the
// cycle's wall time, which is mostly the server's commit. Lock waits
// (blocking attempts, probed while they wait); TryLock does not (unary
// attempts). docs/performance.md, "The Go client's own cost":
//
//	go test -run '^$' -bench MutexCycle -benchmem -benchtime 4000x ./client/
func BenchmarkMutexCycle(b *testing.B) {
	for _, how := range []string{"Lock", "TryLock"} {
		b.Run(how, func(b *testing.B) {
			needServer(b)
			c, err := client.New([]string{endpoint}, client.WithRetryTimeout(5*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			const perProc = 16
			workers := perProc * runtime.GOMAXPROCS(0) // what RunParallel starts
			mutexes := make(chan *client.Mutex, workers)
			for w := 0; w < workers; w++ {
				s, err := c.NewSession(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close(context.Background())
				mutexes <- client.NewMutex(s, fmt.Sprintf("bench/%s/%d", how, w))
			}
			lock := func(m *client.Mutex) error { return m.Lock(ctx) }
			if how == "TryLock" {
				lock = func(m *client.Mutex) error { return m.TryLock(ctx) }
			}
			b.SetParallelism(perProc)
			b.ReportAllocs()
			start := cpuTime()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				m := <-mutexes
				for pb.Next() {
					if err := lock(m); err != nil {
						b.Error(err)
						return
					}
					if err := m.Unlock(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "client-µs/op")
		})
	}
}

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
