package main

import (
	"strings"
	"testing"
)

// Excerpts in each generator's own shape: lockbench's notes, memory and
// failover lines and make's echo must be skipped; etcd says keys.
const lockbenchOut = `bin/lockbench -bin bin/lockstep
# lockbench: 3 lockstep nodes on 127.0.0.1 (started by lockbench), clients to the leader, 4 HTTP/2 connections per node, 5s per point
workload                                ops/s    p50 ms    p95 ms    p99 ms   errors
cycles, 1 clients, own names                130      3.40      7.90     13.60        0
#   leader: 1.0 commands/entry
cycles, 64 clients, own names              3118     14.10     17.70     30.10        0
#   16.6 cmds/entry; CPU µs/op: node-1 39, node-2 38, node-3* 96, lockbench 45, all 431
cycles, 64 clients, own names, stream      6400      5.00      9.99     49.00        0
#   16.6 cmds/entry; CPU µs/op: node-1 39, node-2 38, node-3* 96, lockbench 45, all 250
# CPU µs/op: all 999 (a note under no row: not read)
hand-offs, 64 clients, one name             328     90.00    150.00    200.00        0
hand-offs, 64 clients, one name, stream     572     80.00    140.00    190.00        0
memory, n1 (leader), 100k locks    RSS   160.0 MiB (before   70.0 MiB)
failover, kill -9 leader           median 480ms, worst 523ms (3 trials)
`

const zkbenchOut = `# zkbench: 3 ZooKeeper members (3.8.0) ...
workload                                ops/s    p50 ms    p95 ms    p99 ms   errors
cycles, 1 clients, own names                300      1.10      2.00      3.00        0
cycles, 64 clients, own names              2137     20.00     40.00     60.00        0
hand-offs, 64 clients, one name             381    100.00    160.00    210.00        2
`

// lockbench -nodes 1: one node alone.
const oneNodeText = `# lockbench: 1 lockstep nodes on 127.0.0.1 (started by lockbench), ...
cycles, 64 clients, own names              9000      2.47      3.89      6.34        0
cycles, 64 clients, own names, stream     12388      2.47      3.89      6.34        0
`

const etcdbenchOut = `cycles, 64 clients, own keys              1868     21.20     45.80     65.10        0
hand-offs, 64 clients, one key              112    300.00    500.00    600.00        0
`

func mustParse(t *testing.T, s string) []row {
	t.Helper()
	rows, err := parseRows(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestParseRows(t *testing.T) {
	ls := mustParse(t, lockbenchOut)
	if len(ls) != 5 {
		t.Fatalf("lockbench: %d rows, want 5: %+v", len(ls), ls)
	}
	want := row{kind: "cycles", clients: 64, variant: "stream", rate: 6400, p50: 5, p95: 9.99, p99: 49, cpu: 250}
	if ls[2] != want {
		t.Fatalf("row 3 = %+v, want %+v", ls[2], want)
	}
	if ls[0].cpu != 0 || ls[1].cpu != 431 || ls[3].cpu != 0 {
		t.Fatalf("CPU per operation read into the wrong rows: %v, %v, %v, want 0, 431, 0 (a note belongs to the row above it)", ls[0].cpu, ls[1].cpu, ls[3].cpu)
	}
	zk := mustParse(t, zkbenchOut)
	if h, ok := find(zk, "hand-offs", 64, ""); !ok || h.rate != 381 || h.errors != 2 {
		t.Fatalf("zkbench hand-offs = %+v %v", h, ok)
	}
	et := mustParse(t, etcdbenchOut)
	if c, ok := find(et, "cycles", 64, ""); !ok || c.rate != 1868 {
		t.Fatalf("etcd's own keys are the plain variant: %+v %v", c, ok)
	}
	if _, err := parseRows(strings.NewReader(zkbenchOut + zkbenchOut)); err == nil {
		t.Fatal("two runs in one output parsed without an error")
	}
}

func TestJudge(t *testing.T) {
	ls, zk, one := mustParse(t, lockbenchOut), mustParse(t, zkbenchOut), mustParse(t, oneNodeText)
	for _, c := range []struct {
		target  int
		variant string
		ratio   float64
		met     bool
	}{
		{0, "", 3118.0 / 2137, false}, // 1.46× ZooKeeper, 2× needed
		{0, "stream", 6400.0 / 2137, true},
		{1, "", 3118.0 / 5000, false},
		{1, "stream", 6400.0 / 5000, true},
		{2, "", 1.77, false}, // p95 17.7 ms against 10
		{2, "stream", 0.999, true},
		{3, "stream", 0.98, true},
		{4, "", 328.0 / 381, false},
		{4, "stream", 572.0 / 381, true}, // 1.501× ≥ 1.5
		{5, "", 3.4 / 1.2, false},
		{6, "", 431.0 / 250, false},
		{6, "stream", 1, true}, // exactly 250 µs meets "≤ 250 µs"
		{7, "", 9000.0 / 10000, false},
		{7, "stream", 12388.0 / 10000, true},
	} {
		v := judge(targets[c.target], ls, c.variant, zk, one)
		if !v.ok || v.met != c.met || v.ratio < c.ratio-1e-9 || v.ratio > c.ratio+1e-9 {
			t.Errorf("%s (%q): %+v, want ratio %.4f met %v", targets[c.target].name, c.variant, v, c.ratio, c.met)
		}
	}
	// A point that was not run has no verdict, and neither has a ZooKeeper
	// target without ZooKeeper's figure.
	if v := judge(targets[5], ls, "stream", zk, one); v.ok {
		t.Errorf("no 1-client stream row, yet %+v", v)
	}
	if v := judge(targets[0], ls, "", nil, one); v.ok {
		t.Errorf("no ZooKeeper rows, yet %+v", v)
	}
	// No one-node output, or a row without its CPU note: no verdict.
	if v := judge(targets[7], ls, "stream", zk, nil); v.ok {
		t.Errorf("no one-node output, yet %+v", v)
	}
	if v := judge(targets[6], mustParse(t, zkbenchOut), "", zk, one); v.ok {
		t.Errorf("a row without a CPU note, yet %+v", v)
	}
	// Exactly twice ZooKeeper meets "at least 2×".
	twice := []row{{kind: "cycles", clients: 64, rate: 4274}}
	if v := judge(targets[0], twice, "", zk, one); !v.met {
		t.Errorf("4274 against 2137 (2×): %+v", v)
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	in := tableInput{
		lockstep:  []side{{label: "Lockstep", rows: mustParse(t, lockbenchOut)}},
		zookeeper: mustParse(t, zkbenchOut),
		etcd:      mustParse(t, etcdbenchOut),
		oneNode:   mustParse(t, oneNodeText),
	}
	if err := writeTable(&b, in); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| target | goal | ZooKeeper | etcd | Lockstep | Lockstep (stream) |",
		"| cycles/s, 64 clients, own names | ≥ 2× ZooKeeper | 2,137 | 1,868 | 3,118 (1.46× ZooKeeper) miss | 6,400 (2.99× ZooKeeper) **met** |",
		"| acquire p95, 64 clients | < 10 ms | 40.00 ms | 45.80 ms | 17.70 ms (1.77× 10 ms) miss | 9.99 ms (1.00× 10 ms) **met** |",
		"| acquire p50, 1 client | < 1.2 ms | 1.10 ms | – | 3.40 ms (2.83× 1.2 ms) miss | – (no figure) |",
		"| CPU per cycle, all processes, 64 clients | ≤ 250 µs | – | – | 431 µs (1.72× 250 µs) miss | 250 µs (1.00× 250 µs) **met** |",
		"| one node, cycles/s, 64 clients | ≥ 10,000/s | – | – | 9,000 (0.90× 10,000/s) miss | 12,388 (1.24× 10,000/s) **met** |",
		"Lockstep: 1 of 8 targets met", // p99 30.1 ms,
		"Lockstep (stream): 7 of 8 targets met",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in\n%s", want, out)
		}
	}
}

func TestVariantDropsLockbenchsParentheses(t *testing.T) {
	for tail, want := range map[string]string{
		"own names (client)": "client",
		"one name (client)":  "client",
		"own names, stream":  "stream",
		"own names":          "",
	} {
		if got := variant(tail); got != want {
			t.Errorf("variant(%q) = %q, want %q", tail, got, want)
		}
	}
}
