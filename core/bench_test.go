package core

import (
	"runtime"
	"strconv"
	"testing"
)

// Benchmarks that print figures; docs/performance.md records them with the
// command that reproduces them. None of them asserts a time.

// benchMachine returns a machine whose limits admit n sessions and objects.
func benchMachine(b *testing.B, n int) *Machine {
	l := DefaultLimits()
	if n > l.MaxObjects {
		l.MaxObjects, l.MaxSessions, l.MaxClients = n, n, n
	}
	m, err := New(l)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// populate creates n sessions, each holding the mutex "lock/<i>", packing
// batch commands per entry. It returns the next free index.
func populate(b *testing.B, m *Machine, n int) (sessions []SessionID, tokens []FencingToken, next uint64) {
	const batch = 1024
	idx := m.Index() + 1
	now := LogTime(1_000)
	sessions = make([]SessionID, 0, n)
	for i := 0; i < n; i += batch {
		cmds := make([]Command, 0, batch)
		for j := i; j < n && j < i+batch; j++ {
			cmds = append(cmds, Command{Op: OpSessionCreate, TTLMs: 3_600_000, Owner: "worker-" + strconv.Itoa(j)})
		}
		out := m.Apply(Entry{Index: idx, Proposal: Proposal{Time: now, Commands: cmds}})
		idx++
		for _, r := range out.Results {
			sessions = append(sessions, r.Session)
		}
	}
	tokens = make([]FencingToken, 0, n)
	for i := 0; i < n; i += batch {
		cmds := make([]Command, 0, batch)
		for j := i; j < n && j < i+batch; j++ {
			cmds = append(cmds, Command{Op: OpAcquire, Kind: KindMutex, Name: "lock/" + strconv.Itoa(j), Session: sessions[j],
				Owner: "worker-" + strconv.Itoa(j)})
		}
		out := m.Apply(Entry{Index: idx, Proposal: Proposal{Time: now, Commands: cmds}})
		idx++
		for _, r := range out.Results {
			if r.Outcome != OutcomeGranted {
				b.Fatalf("populate: %+v", r)
			}
			tokens = append(tokens, r.Token)
		}
	}
	return sessions, tokens, idx
}

// BenchmarkApply measures entries applied per second on one core for an
// acquire/release mix: 1,024 sessions each take and give back their own
// mutex, one command per entry, with a tick every 100 entries, a dedupe key
// on every command, and a queued waiter handed the lock on every 8th name.
func BenchmarkApply(b *testing.B) {
	const names = 1024
	m := benchMachine(b, 4*names)
	sessions, tokens, idx := populate(b, m, names)
	// A second session per 8th name waits forever behind the holder.
	for j := 0; j < names; j += 8 {
		out := m.Apply(Entry{Index: idx, Proposal: Proposal{Time: 1_000, Commands: []Command{{Op: OpSessionCreate, TTLMs: 3_600_000}}}})
		idx++
		s := out.Results[0].Session
		m.Apply(Entry{Index: idx, Proposal: Proposal{Time: 1_000, Commands: []Command{
			{Op: OpAcquire, Kind: KindMutex, Name: "lock/" + strconv.Itoa(j), Session: s, WaitMs: WaitForever}}}})
		idx++
		sessions = append(sessions, s)
	}
	holder := make([]SessionID, names)
	copy(holder, sessions[:names])
	nameOf := make([]string, names)
	for j := range nameOf {
		nameOf[j] = "lock/" + strconv.Itoa(j)
	}
	cmd := make([]Command, 1)
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % names
		seq++
		now := LogTime(1_000 + i/100)
		if tokens[j] != 0 {
			cmd[0] = Command{Op: OpRelease, ClientID: "bench", Seq: seq, Kind: KindMutex, Name: nameOf[j], Session: holder[j], Token: tokens[j]}
		} else {
			cmd[0] = Command{Op: OpAcquire, ClientID: "bench", Seq: seq, Kind: KindMutex, Name: nameOf[j], Session: holder[j], WaitMs: WaitForever}
		}
		out := m.Apply(Entry{Index: idx, Proposal: Proposal{Time: now, Commands: cmd}})
		idx++
		r := out.Results[0]
		switch {
		case r.Err != nil:
			b.Fatalf("entry %d: %v", i, r.Err)
		case cmd[0].Op == OpRelease:
			tokens[j] = 0
			for _, e := range out.Effects {
				if e.Kind == EffectGranted { // the waiter took over: it becomes the holder
					tokens[j], holder[j] = e.Token, e.Session
				}
			}
		case r.Outcome == OutcomeGranted:
			tokens[j] = r.Token
		case r.Outcome == OutcomeQueued: // the old holder queues behind the new one
			tokens[j] = 0
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkApplyPacked is BenchmarkApply's mix with 64 commands per entry,
// as the runtime packs them under load.
func BenchmarkApplyPacked(b *testing.B) {
	const names = 4096
	m := benchMachine(b, names)
	sessions, tokens, idx := populate(b, m, names)
	nameOf := make([]string, names)
	for j := range nameOf {
		nameOf[j] = "lock/" + strconv.Itoa(j)
	}
	cmds := make([]Command, 64)
	var seq uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for k := range cmds {
			j := (i*64 + k) % names
			seq++
			if tokens[j] != 0 {
				cmds[k] = Command{Op: OpRelease, ClientID: "bench", Seq: seq, Kind: KindMutex, Name: nameOf[j], Session: sessions[j], Token: tokens[j]}
			} else {
				cmds[k] = Command{Op: OpAcquire, ClientID: "bench", Seq: seq, Kind: KindMutex, Name: nameOf[j], Session: sessions[j]}
			}
		}
		out := m.Apply(Entry{Index: idx, Proposal: Proposal{Time: LogTime(1_000 + i), Commands: cmds}})
		idx++
		for k, r := range out.Results {
			j := (i*64 + k) % names
			if r.Err != nil {
				b.Fatal(r.Err)
			}
			if cmds[k].Op == OpRelease {
				tokens[j] = 0
			} else {
				tokens[j] = r.Token
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "commands/s")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func benchMemory(b *testing.B, n int) {
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		m := benchMachine(b, n)
		populate(b, m, n)
		after := heapInUse()
		b.ReportMetric(float64(after-before)/(1<<20), "MiB")
		b.ReportMetric(float64(after-before)/float64(n), "B/lock")
		runtime.KeepAlive(m)
	}
}

// BenchmarkMemory100k: heap held by 100,000 sessions each holding one mutex
// with an owner label.
func BenchmarkMemory100k(b *testing.B) { benchMemory(b, 100_000) }

// BenchmarkMemory1M: the same for 1,000,000 (limits raised to admit them).
func BenchmarkMemory1M(b *testing.B) { benchMemory(b, 1_000_000) }

// BenchmarkSnapshot1M and BenchmarkRestore1M: one snapshot or restore of a
// machine with 1,000,000 sessions each holding a mutex.
func BenchmarkSnapshot1M(b *testing.B) {
	m := benchMachine(b, 1_000_000)
	populate(b, m, 1_000_000)
	b.ResetTimer()
	var size int
	for i := 0; i < b.N; i++ {
		size = len(m.Snapshot())
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB-snapshot")
}

func BenchmarkRestore1M(b *testing.B) {
	m := benchMachine(b, 1_000_000)
	populate(b, m, 1_000_000)
	snap := m.Snapshot()
	want := m.Hash()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := Restore(snap)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.StopTimer()
			if r.Hash() != want {
				b.Fatal("restored machine differs")
			}
			b.StartTimer()
		}
	}
}
