package main

import (
	"fmt"
	"io"
	"strings"
)

// zkTargets are issue 12's ratio targets against ZooKeeper, by workload:
// Lockstep's rate at least this many times ZooKeeper's, in the same pair.
var zkTargets = map[string]float64{
	"cycles, 64 clients, own names":   2,
	"hand-offs, 64 clients, one name": 1.5,
}

// sameWorkload is the workload a lockbench line names without the way it
// reached the cluster ("cycles, 64 clients, own names (client)" is zkbench's
// "cycles, 64 clients, own names").
func sameWorkload(name string) string {
	if i := strings.LastIndex(name, " ("); i > 0 && strings.HasSuffix(name, ")") {
		return name[:i]
	}
	return name
}

// writeAgainstZooKeeper prints, for every workload both ran, ZooKeeper's and
// Lockstep's rate and p50 pair by pair, Lockstep over ZooKeeper in each
// pair and the median of those ratios, and for a workload with a target in
// how many pairs it held. A ratio is taken within a pair, since the two
// runs of a pair met the same phase of the machine.
func writeAgainstZooKeeper(w io.Writer, zk, lockstep []string) error {
	if len(zk) != len(lockstep) || len(zk) == 0 {
		return fmt.Errorf("%d ZooKeeper runs and %d Lockstep runs: want as many of each, at least one", len(zk), len(lockstep))
	}
	names, zp := parseRuns(zk)
	_, lp := parseRuns(lockstep)
	for i, l := range lp {
		byWorkload := map[string]point{}
		for name, p := range l {
			byWorkload[sameWorkload(name)] = p
		}
		lp[i] = byWorkload
	}
	fmt.Fprintln(w, "| workload | figure | ZooKeeper, pair by pair | Lockstep, pair by pair | Lockstep/ZooKeeper, pair by pair | median ratio | target | pairs at the target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, name := range names {
		for _, f := range figures[:2] { // ops/s and p50: what the targets and a reader compare
			var zv, lv, ratios []float64
			for i := range zp {
				z, okz := zp[i][name]
				l, okl := lp[i][name]
				if !okz || !okl || f.get(z) == 0 {
					continue
				}
				zv, lv = append(zv, f.get(z)), append(lv, f.get(l))
				ratios = append(ratios, f.get(l)/f.get(z))
			}
			if len(ratios) == 0 {
				continue
			}
			target, held := "–", "–"
			if want, ok := zkTargets[name]; ok && !f.lower {
				n := 0
				for _, r := range ratios {
					if r >= want {
						n++
					}
				}
				target, held = fmt.Sprintf("≥ %.1f×", want), fmt.Sprintf("%d of %d", n, len(ratios))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %.2f× | %s | %s |\n",
				name, f.name, join(zv, num), join(lv, num), join(ratios, times), median(ratios), target, held)
		}
	}
	return nil
}

// times writes a ratio.
func times(x float64) string { return fmt.Sprintf("%.2f×", x) }
