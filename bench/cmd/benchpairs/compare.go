package main

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// point is one workload line of a lockbench run with the CPU figures of
// the comment line under it.
type point struct {
	rate, p50, p95     float64
	leader, bench, all float64 // CPU µs per operation; 0 when not printed
	hasCPU             bool
}

// A workload line: its name, then ops/s, p50, p95, p99 and errors.
var pointLine = regexp.MustCompile(`^(\S.*?)\s{2,}(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+\d+$`)

// parseRun reads the workload lines of one lockbench output, by name, in
// their order.
func parseRun(text string) (names []string, points map[string]point) {
	points = map[string]point{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if m := pointLine.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "#") {
			last = m[1]
			p := point{}
			p.rate, _ = strconv.ParseFloat(m[2], 64)
			p.p50, _ = strconv.ParseFloat(m[3], 64)
			p.p95, _ = strconv.ParseFloat(m[4], 64)
			if _, seen := points[last]; !seen {
				names = append(names, last)
			}
			points[last] = p
			continue
		}
		_, cpu, ok := strings.Cut(line, "CPU µs/op: ")
		if !ok || last == "" {
			continue
		}
		p := points[last]
		for _, f := range strings.Split(cpu, ", ") {
			who, v, ok := strings.Cut(strings.TrimSpace(f), " ")
			if !ok {
				continue
			}
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				continue
			}
			switch {
			case strings.HasSuffix(who, "*"):
				p.leader = x
			case who == "lockbench":
				p.bench = x
			case who == "all":
				p.all = x
			}
		}
		p.hasCPU = true
		points[last] = p
	}
	return names, points
}

// figure is one column of the comparison: how to read it off a point and
// whether lower is better.
type figure struct {
	name  string
	get   func(point) float64
	lower bool // lower is better (latency, CPU)
	cpu   bool // only where the run printed CPU figures
}

var figures = []figure{
	{name: "ops/s", get: func(p point) float64 { return p.rate }},
	{name: "p50 ms", get: func(p point) float64 { return p.p50 }, lower: true},
	{name: "p95 ms", get: func(p point) float64 { return p.p95 }, lower: true},
	{name: "CPU µs/op, leader", get: func(p point) float64 { return p.leader }, lower: true, cpu: true},
	{name: "CPU µs/op, lockbench", get: func(p point) float64 { return p.bench }, lower: true, cpu: true},
	{name: "CPU µs/op, all", get: func(p point) float64 { return p.all }, lower: true, cpu: true},
}

// writeComparison prints, for every workload both sides ran, each figure's
// values pair by pair, their medians, head over base, and in how many
// pairs head was the better.
func writeComparison(w io.Writer, base, head []string) error {
	if len(base) != len(head) || len(base) == 0 {
		return fmt.Errorf("%d base runs and %d head runs: want as many of each, at least one", len(base), len(head))
	}
	names, bp := parseRuns(base)
	_, hp := parseRuns(head)
	fmt.Fprintln(w, "| workload | figure | base, pair by pair | head, pair by pair | median base → head | head/base | head better |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, name := range names {
		for _, f := range figures {
			var bv, hv []float64
			better := 0
			for i := range bp {
				b, okb := bp[i][name]
				h, okh := hp[i][name]
				if !okb || !okh || (f.cpu && (!b.hasCPU || !h.hasCPU)) {
					continue
				}
				x, y := f.get(b), f.get(h)
				bv, hv = append(bv, x), append(hv, y)
				if (f.lower && y < x) || (!f.lower && y > x) {
					better++
				}
			}
			if len(bv) == 0 {
				continue
			}
			mb, mh := median(bv), median(hv)
			ratio := "–"
			if mb != 0 {
				ratio = fmt.Sprintf("%.2f", mh/mb)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s → %s | %s | %d of %d |\n",
				name, f.name, join(bv, num), join(hv, num), num(mb), num(mh), ratio, better, len(bv))
		}
	}
	return nil
}

// parseRuns reads every run's points; names are the first run's
// workloads, in their order.
func parseRuns(runs []string) (names []string, points []map[string]point) {
	for i, text := range runs {
		n, p := parseRun(text)
		if i == 0 {
			names = n
		}
		points = append(points, p)
	}
	return names, points
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func num(x float64) string {
	if x >= 100 || x == float64(int64(x)) {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'f', 2, 64)
}

// join lists figures pair by pair, each as format writes it.
func join(v []float64, format func(float64) string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = format(x)
	}
	return strings.Join(s, " / ")
}
