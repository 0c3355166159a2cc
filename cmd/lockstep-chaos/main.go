// Command lockstep-chaos breaks real Lockstep clusters on purpose and
// checks every history (package chaos, docs/chaos.md):
//
//	lockstep-chaos -seed 7                  one run; last line seed=7 ok|FAIL
//	lockstep-chaos -seeds 1-5 -duration 30s several, one cluster each
//	lockstep-chaos -bug list                the planted bugs
//
// It exits 0 when every run passed, 1 when one failed, 2 on a usage or
// setup error.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/chaos"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockstep-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "the seed: draws the options, the fault schedule and the workload")
	seeds := fs.String("seeds", "", "a range of seeds A-B, one run (and one cluster) each; overrides -seed")
	duration := fs.Duration("duration", 30*time.Second, "the fault phase of each run")
	nodes := fs.Int("nodes", 3, "members: 3 or 5")
	shards := fs.Int("shards", 1, "consensus.shards (sessions are mirrored across shards)")
	nemesis := fs.String("nemesis", "", "the fault kinds to draw from (default "+strings.Join(chaos.Nemeses, ",")+"; without partition with -secure)")
	bug := fs.String("bug", "", "a planted bug to run with; list prints them")
	bin := fs.String("bin", os.Getenv("LOCKSTEP_BIN"), "the lockstep binary, a chaos build for the clock fault (default $LOCKSTEP_BIN, else bin/lockstep-chaos-node)")
	out := fs.String("out", "chaos-failures", "where a failing run writes its HTML report; empty for none")
	asJSON := fs.Bool("json", false, "print one JSON object per run (the seed line goes to stderr)")
	verbose := fs.Bool("v", false, "print the faults and phases as they happen")
	failFast := fs.Bool("failfast", false, "stop at the first failing seed")
	keep := fs.Bool("keep", false, "keep each cluster's directory (configurations, data, logs)")
	secure := fs.Bool("secure", false, "mutual TLS and authentication on (no Raft proxies, so no partition)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bug == "list" {
		for _, b := range chaos.Bugs {
			fmt.Fprintln(stdout, b)
		}
		return 0
	}
	if *bin == "" {
		*bin = "bin/lockstep-chaos-node"
	}
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(stderr, "lockstep-chaos: no lockstep binary at %s (make bin/lockstep-chaos-node, or -bin): %v\n", *bin, err)
		return 2
	}
	from, to := *seed, *seed
	if *seeds != "" {
		a, b, ok := strings.Cut(*seeds, "-")
		x, err1 := strconv.ParseUint(a, 10, 64)
		y, err2 := strconv.ParseUint(b, 10, 64)
		if !ok || err1 != nil || err2 != nil || y < x || y-x >= 10_000 {
			fmt.Fprintf(stderr, "lockstep-chaos: -seeds %q: want A-B with A <= B, at most 10000 seeds\n", *seeds)
			return 2
		}
		from, to = x, y
	}
	failed := 0
	for s := from; s <= to; s++ {
		o := chaos.Options{Seed: s, Binary: *bin, Duration: *duration, Nodes: *nodes, Shards: *shards,
			Bug: *bug, Out: *out, Keep: *keep, Secure: *secure}
		if *nemesis != "" {
			o.Nemesis = strings.Split(*nemesis, ",")
		}
		if *verbose {
			o.Log = stderr
		}
		res, err := chaos.Run(o)
		if err != nil {
			fmt.Fprintf(stderr, "lockstep-chaos: seed %d: %v\n", s, err)
			return 2
		}
		if !res.OK {
			failed++
		}
		verdict := "ok"
		if !res.OK {
			verdict = "FAIL"
		}
		if *asJSON {
			b, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(b))
			fmt.Fprintf(stderr, "seed=%d %s\n", s, verdict)
			if failed > 0 && *failFast {
				break
			}
			continue
		}
		summary(stdout, res)
		fmt.Fprintf(stdout, "seed=%d %s\n", s, verdict)
		if failed > 0 && *failFast {
			break
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func summary(w io.Writer, r chaos.Result) {
	fmt.Fprintf(w, "ops=%d checked=%d log_events=%d porcupine=%s fenced_writes=%d accepted/%d refused sleeper_writes=%d wall=%.1fs\n",
		r.Ops, r.Checked, r.Events, r.Porcupine, r.Accepted, r.Refused, r.SleeperWrites, r.Wall)
	var kinds []string
	for k, n := range r.Faults {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "faults: %s\n", orNone(strings.Join(kinds, " ")))
	ss := r.Sessions
	worst := int64(0)
	for _, ms := range ss.ExpiredAfter {
		worst = max(worst, ms)
	}
	fmt.Fprintf(w, "sessions: %d kept alive, %d stopped on purpose (expired at most %dms after their last renewal), %d closes checked\n",
		ss.KeptAlive, ss.Stopped, worst, ss.Closed)
	fmt.Fprintf(w, "watcher: %d events in order, %d resumes; barrier: %d rounds\n", r.Watcher.Events, r.Watcher.Resumes, r.Barrier.Rounds)
	fmt.Fprintf(w, "state: %s\n", orNone(strings.Join(r.StateHashes, ", ")))
	fmt.Fprintln(w, "recovery (targets: election < 1s, partition recovery < 5s; printed, not asserted):")
	var keys []string
	for k := range r.Recovery {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := r.Recovery[k]
		var parts []string
		worst := int64(0)
		for _, ms := range v {
			parts = append(parts, fmt.Sprintf("%dms", ms))
			worst = max(worst, ms)
		}
		fmt.Fprintf(w, "  %-24s max %5dms  [%s]\n", k, worst, strings.Join(parts, " "))
	}
	if r.HostClockStepMs != 0 {
		fmt.Fprintf(w, "host: this machine's wall clock stepped %+dms against its monotonic clock during the run (a paused virtual machine, NTP; not a fault of the run): log times read off by that\n", r.HostClockStepMs)
	}
	if len(r.Violations) == 0 {
		fmt.Fprintln(w, "violations: none")
	} else {
		fmt.Fprintf(w, "violations: %d\n", len(r.Violations))
		for _, v := range r.Violations {
			fmt.Fprintf(w, "  %s\n", v)
		}
		if r.Report != "" {
			fmt.Fprintf(w, "report: %s\n", r.Report)
		}
	}
	fmt.Fprintf(w, "replay: %s\n", r.Replay)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
