package main

import (
	"fmt"
	"strings"
	"testing"
)

// lockbenchRun is lockbench's output for one run with the given figures.
func lockbenchRun(rate, p50 float64, leader, bench, all int) string {
	return fmt.Sprintf(`# lockbench: 3 lockstep nodes on 127.0.0.1 (started by lockbench)
# idle for 3s: cores: node-1* 0.02, node-2 0.02, node-3 0.02, lockbench 0.00, machine 0.11 of 2
workload                                ops/s    p50 ms    p95 ms    p99 ms   errors
cycles, 64 clients, own names (client)       %.0f      %.2f     12.92     18.36        0
#   16.1 cmds/entry, 498 entries/s; commit 3.61 ms; cores: node-1* 0.72, node-2 0.24, node-3 0.25, lockbench 0.36, machine 1.60 of 2; CPU µs/op: node-1* %d, node-2 60, node-3 63, lockbench %d, all %d
hand-offs, 64 clients, one name (client)        390    158.77    203.89    273.34        0
memory, node-1 (leader), 100k locks RSS   134.2 MiB (before   70.5 MiB)
failover, kill -9 leader           median 465ms, worst 514ms (3 trials)
`, rate, p50, leader, bench, all)
}

func TestParseRunReadsEachPointAndItsCPU(t *testing.T) {
	names, points := parseRun(lockbenchRun(4011, 7.34, 180, 91, 394))
	want := []string{"cycles, 64 clients, own names (client)", "hand-offs, 64 clients, one name (client)"}
	if strings.Join(names, "|") != strings.Join(want, "|") {
		t.Fatalf("points %q, want %q", names, want)
	}
	c := points[want[0]]
	if c.rate != 4011 || c.p50 != 7.34 || c.p95 != 12.92 || !c.hasCPU || c.leader != 180 || c.bench != 91 || c.all != 394 {
		t.Fatalf("cycles point %+v", c)
	}
	if h := points[want[1]]; h.rate != 390 || h.hasCPU {
		t.Fatalf("hand-off point %+v: want 390/s and no CPU figures (its run printed none)", h)
	}
}

func TestComparisonGivesMediansAndPairsWon(t *testing.T) {
	base := []string{lockbenchRun(3000, 9, 230, 120, 520), lockbenchRun(3300, 8, 220, 110, 500), lockbenchRun(2800, 10, 240, 130, 560)}
	head := []string{lockbenchRun(3200, 8.5, 225, 100, 480), lockbenchRun(3100, 8.2, 226, 105, 510), lockbenchRun(3300, 8, 200, 90, 430)}
	var b strings.Builder
	if err := writeComparison(&b, base, head); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	mustContain(t, out, []string{
		"| cycles, 64 clients, own names (client) | ops/s | 3000 / 3300 / 2800 | 3200 / 3100 / 3300 | 3000 → 3200 | 1.07 | 2 of 3 |",
		"| cycles, 64 clients, own names (client) | CPU µs/op, all | 520 / 500 / 560 | 480 / 510 / 430 | 520 → 480 | 0.92 | 2 of 3 |",
		"| cycles, 64 clients, own names (client) | CPU µs/op, lockbench | 120 / 110 / 130 | 100 / 105 / 90 | 120 → 100 | 0.83 | 3 of 3 |",
		"| hand-offs, 64 clients, one name (client) | ops/s | 390 / 390 / 390 | 390 / 390 / 390 | 390 → 390 | 1.00 | 0 of 3 |",
	})
	if strings.Contains(out, "hand-offs, 64 clients, one name (client) | CPU") {
		t.Errorf("CPU rows for a point whose runs printed none:\n%s", out)
	}
	if err := writeComparison(&b, base, head[:2]); err == nil {
		t.Error("3 base runs against 2 head runs compared without a word")
	}
}

func TestRunRefusesAPairCountOutOfBounds(t *testing.T) {
	for _, n := range []int{0, maxPairs + 1} {
		if err := run(options{pairs: n, base: "HEAD", out: t.TempDir()}, &strings.Builder{}); err == nil || !strings.Contains(err.Error(), "-pairs") {
			t.Errorf("-pairs %d: %v, want a refusal naming -pairs", n, err)
		}
	}
}

// mustContain fails t for every line of want that out lacks.
func mustContain(t *testing.T, out string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in\n%s", w, out)
		}
	}
}
