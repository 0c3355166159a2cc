package shards

import (
	"testing"

	"github.com/lockstepd/lockstep/core"
)

// BenchmarkOneShard is the route of a command for one name through one
// shard, the way every request of a one-shard cluster takes: Start, one
// Step with the shard's answer, the Outcome. Its allocations are paid by
// every request the leader serves.
//
//	go test -run '^$' -bench OneShard -benchmem ./core/shards/
func BenchmarkOneShard(b *testing.B) {
	cmd := core.Command{Op: core.OpAcquire, Kind: core.KindMutex, Name: "jobs/a", Session: 7}
	answer := []Answer{{Shard: 0, Result: core.Result{Outcome: core.OutcomeGranted, Token: 9}}}
	b.ReportAllocs()
	for b.Loop() {
		f := Start(cmd, 1)
		if err := f.Step(answer); err != nil {
			b.Fatal(err)
		}
		if f.Outcome().Result.Token != 9 {
			b.Fatal("wrong outcome")
		}
	}
}
