package main

// The targets table of issue 12 ("Performance"), from the text the three
// load generators print: lockbench (Lockstep), etcdbench and zkbench print
// one row per point in the same shape,
//
//	%-34s %10.0f %9.2f %9.2f %9.2f %8d   (workload, ops/s, p50/p95/p99 ms, errors)
//
// with workloads named "cycles, N clients, own names|keys" and
// "hand-offs, N clients, one name|key". Anything after those words (", stream")
// names a variant of the same point, which gets a column of its own, so one
// lockbench output with and without the session stream compares in one table.
// lockbench follows each row with a note whose "CPU µs/op: ..., all N" is
// the CPU every process spent per operation; the table reads it for the
// CPU target. A second lockbench output, of one node alone (-nodes 1), gives
// the one-node target.

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// rowRE: a workload row. The name's words before the numbers are free, so a
// row is recognised by its start and by the five figures that end it.
var rowRE = regexp.MustCompile(`^(cycles|hand-offs), (\d+) clients?,\s*(.*?)\s+(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+)\s*$`)

// cpuRE: lockbench's note under a row, the CPU all processes spent per
// operation.
var cpuRE = regexp.MustCompile(`^#.*CPU µs/op: .*\ball (\d+(?:\.\d+)?)\s*$`)

// row: one point of one output.
type row struct {
	kind          string // "cycles" or "hand-offs"
	clients       int
	variant       string // the name's words after own/one name|key; "" for the plain point
	rate          float64
	p50, p95, p99 float64 // ms
	errors        int64
	cpu           float64 // µs of CPU per operation, all processes; 0: the output does not say
}

// parseRows reads an output and returns its workload rows, in order; every
// other line (comments, headers, make's echo, failover and memory lines) is
// skipped. Two rows for the same point are an error: the figures would be
// ambiguous.
func parseRows(r io.Reader) ([]row, error) {
	var rows []row
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	afterRow := false // the line before was a row: its note may follow
	for sc.Scan() {
		m := rowRE.FindStringSubmatch(sc.Text())
		if m == nil {
			if c := cpuRE.FindStringSubmatch(sc.Text()); c != nil && afterRow {
				rows[len(rows)-1].cpu, _ = strconv.ParseFloat(c[1], 64) // the pattern is a number
			}
			afterRow = false
			continue
		}
		afterRow = true
		var x row
		var err error
		x.kind = m[1]
		x.clients, _ = strconv.Atoi(m[2]) // \d+: cannot fail below 2^63
		x.variant = variant(m[3])
		f := []*float64{&x.rate, &x.p50, &x.p95, &x.p99}
		for i, p := range f {
			if *p, err = strconv.ParseFloat(m[4+i], 64); err != nil {
				return nil, fmt.Errorf("%q: %w", sc.Text(), err)
			}
		}
		if x.errors, err = strconv.ParseInt(m[8], 10, 64); err != nil {
			return nil, fmt.Errorf("%q: %w", sc.Text(), err)
		}
		key := fmt.Sprintf("%s/%d/%s", x.kind, x.clients, x.variant)
		if seen[key] {
			return nil, fmt.Errorf("two rows for %s, %d clients%s", x.kind, x.clients, suffix(x.variant))
		}
		seen[key] = true
		rows = append(rows, x)
	}
	return rows, sc.Err()
}

// variant: what is left of a row name's tail once the words every system
// spells its own way (own names, own keys, one name, one key) are gone,
// without the parentheses lockbench puts around it ("own names (client)").
func variant(tail string) string {
	for _, w := range []string{"own names", "own keys", "one name", "one key"} {
		tail = strings.Replace(tail, w, "", 1)
	}
	return strings.Trim(tail, " ,;()")
}

func suffix(v string) string {
	if v == "" {
		return ""
	}
	return ", " + v
}

func find(rows []row, kind string, clients int, variant string) (row, bool) {
	for _, r := range rows {
		if r.kind == kind && r.clients == clients && r.variant == variant {
			return r, true
		}
	}
	return row{}, false
}

// metric: which figure of a row a target judges.
type metric int

const (
	rate metric = iota
	p50
	p95
	p99
	cpu
)

func (m metric) of(r row) float64 {
	return [...]float64{r.rate, r.p50, r.p95, r.p99, r.cpu}[m]
}

// target: one line of issue 12's Targets. The ratio is Lockstep's figure
// over the reference (ZooKeeper's same figure, or a fixed bound); a rate
// target is met when the ratio is at least need, a latency target when the
// figure is under the bound (ratio below 1).
type target struct {
	name    string
	goal    string
	kind    string
	clients int
	metric  metric
	vsZK    bool    // the reference is ZooKeeper's figure
	bound   float64 // else this fixed bound (cycles/s or ms)
	need    float64 // rate targets: the ratio needed
	lower   bool    // latency: lower is better, met when under the bound
	atMost  bool    // with lower: met at the bound too (≤)
	oneNode bool    // judged on the one-node output (-nodes 1)
}

// The targets at its point: 64 workers, on own names and on one.
const (
	targetClients  = 64
	handoffClients = 64
)

var targets = []target{
	{name: "cycles/s, 64 clients, own names", goal: "≥ 2× ZooKeeper", kind: "cycles", clients: targetClients, metric: rate, vsZK: true, need: 2},
	{name: "cycles/s, 64 clients, own names", goal: "≥ 5,000/s", kind: "cycles", clients: targetClients, metric: rate, bound: 5000, need: 1},
	{name: "acquire p95, 64 clients", goal: "< 10 ms", kind: "cycles", clients: targetClients, metric: p95, bound: 10, lower: true},
	{name: "acquire p99, 64 clients", goal: "< 50 ms", kind: "cycles", clients: targetClients, metric: p99, bound: 50, lower: true},
	{name: "hand-offs/s, 64 clients, one name", goal: "≥ 1.5× ZooKeeper", kind: "hand-offs", clients: handoffClients, metric: rate, vsZK: true, need: 1.5},
	{name: "acquire p50, 1 client", goal: "< 1.2 ms", kind: "cycles", clients: 1, metric: p50, bound: 1.2, lower: true},
	{name: "CPU per cycle, all processes, 64 clients", goal: "≤ 250 µs", kind: "cycles", clients: targetClients, metric: cpu, bound: 250, lower: true, atMost: true},
	{name: "one node, cycles/s, 64 clients", goal: "≥ 10,000/s", kind: "cycles", clients: targetClients, metric: rate, bound: 10000, need: 1, oneNode: true},
}

// verdict: a Lockstep figure against a target.
type verdict struct {
	figure float64
	ratio  float64
	met    bool
	ok     bool // false: a figure is missing (the point was not run)
}

// judge compares one Lockstep column (its rows, its variant) to a target,
// with ZooKeeper's rows as the reference where the target asks for it, and
// the one-node output's rows of the same variant for a one-node target.
func judge(t target, lockstep []row, variant string, zookeeper, oneNode []row) verdict {
	if t.oneNode {
		lockstep = oneNode
	}
	l, ok := find(lockstep, t.kind, t.clients, variant)
	if !ok || t.metric.of(l) == 0 {
		return verdict{}
	}
	ref := t.bound
	if t.vsZK {
		z, ok := find(zookeeper, t.kind, t.clients, "")
		if !ok {
			return verdict{}
		}
		ref = t.metric.of(z)
	}
	v := verdict{figure: t.metric.of(l), ok: ref > 0}
	if !v.ok {
		return v
	}
	v.ratio = v.figure / ref
	if t.lower {
		v.met = v.figure < ref || t.atMost && v.figure == ref
	} else {
		v.met = v.ratio >= t.need
	}
	return v
}

// side: one system's output under its column label.
type side struct {
	label string
	rows  []row
}

type tableInput struct {
	lockstep  []side
	zookeeper []row
	etcd      []row // may be empty
	oneNode   []row // lockbench -nodes 1; may be empty
}

// column: one Lockstep column, a side and one of its variants.
type column struct {
	label, variant string
	rows           []row
}

func (in tableInput) columns() []column {
	var cols []column
	for _, s := range in.lockstep {
		var seen []string
		for _, r := range s.rows {
			if !contains(seen, r.variant) {
				seen = append(seen, r.variant)
				label := s.label
				if r.variant != "" {
					label += " (" + r.variant + ")"
				}
				cols = append(cols, column{label: label, variant: r.variant, rows: s.rows})
			}
		}
	}
	return cols
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func figure(t target, v float64) string {
	switch t.metric {
	case rate:
		return thousands(v)
	case cpu:
		return thousands(v) + " µs"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
}

// thousands: 3118.4 → "3,118".
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// reference prints another system's figure for a target, or –: none for
// the CPU (the other generators do not read it) or one node.
func reference(t target, rows []row) string {
	r, ok := find(rows, t.kind, t.clients, "")
	if !ok || t.metric == cpu || t.oneNode {
		return "–"
	}
	return figure(t, t.metric.of(r))
}

// writeTable prints the targets as a Markdown table (to paste into
// docs/performance.md), one column per Lockstep output and variant, and a
// count of the targets each met.
func writeTable(w io.Writer, in tableInput) error {
	cols := in.columns()
	head := []string{"target", "goal", "ZooKeeper", "etcd"}
	for _, c := range cols {
		head = append(head, c.label)
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(head)))
	met := make([]int, len(cols))
	for _, t := range targets {
		cells := []string{t.name, t.goal, reference(t, in.zookeeper), reference(t, in.etcd)}
		for i, c := range cols {
			v := judge(t, c.rows, c.variant, in.zookeeper, in.oneNode)
			if !v.ok {
				cells = append(cells, "– (no figure)")
				continue
			}
			word := "miss"
			if v.met {
				word = "**met**"
				met[i]++
			}
			against := "ZooKeeper"
			if !t.vsZK {
				against = strings.TrimLeft(t.goal, "≥≤< ")
			}
			cells = append(cells, fmt.Sprintf("%s (%.2f× %s) %s", figure(t, v.figure), v.ratio, against, word))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	for i, c := range cols {
		fmt.Fprintf(w, "\n%s: %d of %d targets met", c.label, met[i], len(targets))
	}
	_, err := fmt.Fprintln(w)
	return err
}
