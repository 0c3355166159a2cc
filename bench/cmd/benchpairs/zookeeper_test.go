package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// zkbenchRun is zkbench's output for one run with the given figures.
func zkbenchRun(cycles, p50, handoffs float64) string {
	return fmt.Sprintf(`# zkbench: 3 ZooKeeper members (3.8.0) on 127.0.0.1 started by zkbench
workload                                ops/s    p50 ms    p95 ms    p99 ms   errors
cycles, 64 clients, own names            %.0f     %.2f     28.41     40.42        0
hand-offs, 64 clients, one name           %.0f    140.07    187.35    251.30        0
`, cycles, p50, handoffs)
}

func TestAgainstZooKeeperGivesRatiosPairByPairAndTargetsHeld(t *testing.T) {
	zk := []string{zkbenchRun(2000, 14, 250), zkbenchRun(1500, 19, 300), zkbenchRun(2500, 12, 200)}
	ls := []string{lockbenchRun(4500, 7, 180, 90, 300), lockbenchRun(2800, 8, 180, 90, 300), lockbenchRun(6000, 6, 180, 90, 300)}
	var b strings.Builder
	if err := writeAgainstZooKeeper(&b, zk, ls); err != nil {
		t.Fatal(err)
	}
	mustContain(t, b.String(), []string{
		// Lockstep's "(client)" lines are matched to zkbench's by workload.
		"| cycles, 64 clients, own names | ops/s | 2000 / 1500 / 2500 | 4500 / 2800 / 6000 | 2.25× / 1.87× / 2.40× | 2.25× | ≥ 2.0× | 2 of 3 |",
		"| hand-offs, 64 clients, one name | ops/s | 250 / 300 / 200 | 390 / 390 / 390 | 1.56× / 1.30× / 1.95× | 1.56× | ≥ 1.5× | 2 of 3 |",
		"| cycles, 64 clients, own names | p50 ms | 14 / 19 / 12 | 7 / 8 / 6 | 0.50× / 0.42× / 0.50× | 0.50× | – | – |",
	})
	if err := writeAgainstZooKeeper(&b, zk, ls[:1]); err == nil {
		t.Error("3 ZooKeeper runs against 1 Lockstep run compared without a word")
	}
}

func TestSameWorkloadDropsOnlyTheWayIn(t *testing.T) {
	for in, want := range map[string]string{
		"cycles, 64 clients, own names (client)":             "cycles, 64 clients, own names",
		"cycles, 64 clients, own names (client-per-session)": "cycles, 64 clients, own names",
		"cycles, 64 clients, own names":                      "cycles, 64 clients, own names",
	} {
		if got := sameWorkload(in); got != want {
			t.Errorf("sameWorkload(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRunWithoutZkbenchSaysHowToBuildIt(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "zkbench")
	err := run(options{pairs: 1, zkbench: missing, out: t.TempDir()}, &strings.Builder{})
	if err == nil || !strings.Contains(err.Error(), "go build -o ../../bin/zkbench") {
		t.Fatalf("%v, want a refusal that says how to build zkbench", err)
	}
}
