// Command lockstep-sim runs, sweeps and replays seeds of Lockstep's
// deterministic cluster simulator. `lockstep-sim -seed N` is a pure function
// of N and its flags. docs/simulation.md explains the output.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/sim"
)

// Exit codes: distinct for each kind of failure.
const (
	exitOK       = 0
	exitUsage    = 2
	exitSafety   = 3
	exitLiveness = 4
	exitCrash    = 5
)

func exitCode(s sim.Severity) int {
	switch s {
	case sim.Safety:
		return exitSafety
	case sim.Liveness:
		return exitLiveness
	case sim.Crash:
		return exitCrash
	}
	return exitOK
}

type flags struct {
	seed     uint64 // also in opts.Seed
	seeds    string
	determ   bool
	jsonOut  bool
	jobs     int
	outDir   string
	verbose  bool
	opts     sim.Options
	passthru []string // the option flags the user set, for sweep children
	bugList  bool
	quiet    bool
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("lockstep-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := sim.DefaultOptions(1)
	sim.RegisterFlags(fs, &o)
	fs.StringVar(&f.seeds, "seeds", "", "sweep a range of seeds, A-B, in parallel processes")
	fs.BoolVar(&f.determ, "check-determinism", false, "run the seed twice and stop at the first step where they differ")
	fs.BoolVar(&f.jsonOut, "json", false, "print one JSON object per seed instead of text")
	fs.IntVar(&f.jobs, "j", runtime.NumCPU(), "seeds run at once in a sweep")
	fs.StringVar(&f.outDir, "out", "sim-failures", "where a failing seed writes its trace and porcupine visualization")
	fs.BoolVar(&f.verbose, "v", false, "print the trace of the run")
	fs.BoolVar(&f.quiet, "q", false, "in a sweep, leave passing seeds out of the table")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	skip := map[string]bool{"seed": true, "seeds": true, "check-determinism": true, "json": true, "j": true, "v": true, "q": true}
	fs.Visit(func(fl *flag.Flag) {
		if !skip[fl.Name] {
			f.passthru = append(f.passthru, "-"+fl.Name, fl.Value.String())
		}
	})
	if o.Bug == "list" {
		f.bugList = true
	}
	f.seed = o.Seed
	f.opts = o
	return f, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "lockstep-sim:", err)
		}
		return exitUsage
	}
	if !f.bugList {
		if _, err := f.opts.Resolve(); err != nil {
			fmt.Fprintln(stderr, "lockstep-sim:", err)
			return exitUsage
		}
	}
	switch {
	case f.bugList:
		for _, b := range sim.Bugs() {
			fmt.Fprintf(stdout, "%-22s %s (caught by: %s)\n", b.Name, b.What, b.Caught)
		}
		return exitOK
	case f.seeds != "":
		return sweep(f, stdout, stderr)
	case f.determ:
		return checkDeterminism(f, stdout)
	}
	return runOne(f, stdout)
}

// report is what one seed prints as JSON.
type report struct {
	sim.Result
	Replay      string  `json:"replay"`
	TraceFile   string  `json:"trace_file,omitempty"`
	HTMLFile    string  `json:"porcupine_file,omitempty"`
	WallSeconds float64 `json:"wall_seconds"`
	Banner      string  `json:"banner"`
}

func runOne(f *flags, stdout io.Writer) int {
	o := f.opts
	o.Seed = f.seed
	start := time.Now()
	res := sim.Run(o, sim.RunConfig{CaptureTrace: f.verbose})
	rep := report{Result: res, Replay: "lockstep-sim " + res.Flags, WallSeconds: time.Since(start).Seconds(),
		Banner: res.Options.Banner()}
	if !res.OK {
		rep.TraceFile, rep.HTMLFile = writeFailure(f, o, res)
	}
	if f.jsonOut {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
		return exitCode(res.Severity)
	}
	fmt.Fprintln(stdout, rep.Banner)
	if f.verbose {
		for _, l := range res.TraceLines {
			fmt.Fprintln(stdout, l)
		}
	}
	fmt.Fprintf(stdout, "ops=%d applies=%d leader_changes=%d snapshot_installs=%d faults=%d steps=%d virtual=%.1fs wall=%.2fs\n",
		res.Ops, res.Applies, res.LeaderChanges, res.SnapInstalls, res.Faults, res.Steps, res.VirtualSeconds, rep.WallSeconds)
	fmt.Fprintf(stdout, "fenced writes accepted=%d refused=%d session_expiries=%d linearizable=%s forwarded=%d forwards_lost=%d\n",
		res.FenceAccepted, res.FenceRejected, res.Expiries, res.Linearizable, res.Forwarded, res.ForwardsLost)
	fmt.Fprintf(stdout, "forced closes=%d lock-delays they started=%d\n", res.ForcedCloses, res.CloseDelays)
	if res.Options.Shards > 1 {
		fmt.Fprintf(stdout, "cleanup closes of lost sessions=%d lock-delays they started=%d\n", res.CleanupCloses, res.CleanupDelays)
		fmt.Fprintf(stdout, "closes of expired sessions' copies=%d lock-delays they started=%d\n", res.ExpiryCloses, res.ExpiryDelays)
	}
	if res.Options.Upgrade != sim.UpgradeNone {
		fmt.Fprintf(stdout, "upgrade: rules raised at index %d (0: never) closes refused under rules 3=%d campaign values kept under 3=%d set under 4=%d\n",
			res.RulesRaisedAt, res.RefusedCloses, res.KeptValues, res.SetValues)
	}
	if res.Options.Private != sim.PrivateNone {
		fmt.Fprintf(stdout, "private requests=%d given up=%d retried=%d (public=%d) unheard releases: ended a grant=%d kept it for another request=%d (a retry's race=%d) refused before rules 5=%d\n",
			res.PrivateRequests, res.PrivateGiveUps, res.PrivateRetries, res.PublicRetries, res.UnheardEnded, res.UnheardKept, res.UnheardRaced, res.UnheardUnruled)
	}
	if res.JoinedRequests > 0 || res.JoinedEnded > 0 {
		fmt.Fprintf(stdout, "joined waits: requests that joined one=%d (a private request's public retry=%d) retries answered its end=%d\n",
			res.JoinedRequests, res.JoinedByRetry, res.JoinedEnded)
	}
	for _, v := range res.Warnings {
		fmt.Fprintln(stdout, "tolerated:", v.String())
	}
	for _, v := range res.Violations {
		fmt.Fprintln(stdout, v.String())
	}
	if !res.OK {
		fmt.Fprintln(stdout, "replay:", rep.Replay)
		if rep.TraceFile != "" {
			fmt.Fprintln(stdout, "trace:", rep.TraceFile)
		}
		if rep.HTMLFile != "" {
			fmt.Fprintln(stdout, "porcupine:", rep.HTMLFile)
		}
	}
	verdict := "ok"
	if !res.OK {
		verdict = "FAIL " + res.Kind
	}
	fmt.Fprintf(stdout, "seed=%d %s trace=%s\n", res.Seed, verdict, res.TraceHash)
	return exitCode(res.Severity)
}

// writeFailure runs the failing seed again, keeping its trace and rendering
// porcupine's visualization, and writes both. The second run must print the
// same trace hash; if it does not, the files say so.
func writeFailure(f *flags, o sim.Options, res sim.Result) (traceFile, htmlFile string) {
	again := sim.Run(o, sim.RunConfig{CaptureTrace: true, AllEvents: true, Visualize: true})
	if err := os.MkdirAll(f.outDir, 0o755); err != nil {
		return "", ""
	}
	base := filepath.Join(f.outDir, fmt.Sprintf("seed-%d", res.Seed))
	if o.Bug != "" {
		base += "-" + o.Bug
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# lockstep-sim %s\n# %s\n", res.Flags, strings.ReplaceAll(res.Options.Banner(), "\n", "\n# "))
	if again.TraceHash != res.TraceHash {
		fmt.Fprintf(&b, "# NONDETERMINISM: the first run's trace hash was %s, this one's is %s\n", res.TraceHash, again.TraceHash)
	}
	for _, l := range again.TraceLines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	for _, v := range again.Violations {
		b.WriteString(v.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "seed=%d trace=%s\n", res.Seed, again.TraceHash)
	traceFile = base + ".trace"
	if os.WriteFile(traceFile, b.Bytes(), 0o644) != nil {
		traceFile = ""
	}
	if len(again.PorcupineHTML) > 0 {
		htmlFile = base + ".porcupine.html"
		if os.WriteFile(htmlFile, again.PorcupineHTML, 0o644) != nil {
			htmlFile = ""
		}
	}
	return traceFile, htmlFile
}

func checkDeterminism(f *flags, stdout io.Writer) int {
	o := f.opts
	o.Seed = f.seed
	first := sim.Run(o, sim.RunConfig{RecordSteps: true})
	second := sim.Run(o, sim.RunConfig{CompareSteps: first.StepHashes, RingLines: 30})
	if second.Diverged || second.TraceHash != first.TraceHash || second.Steps != first.Steps {
		at := second.DivergedAt
		if at == 0 {
			at = min(first.Steps, second.Steps) + 1
		}
		fmt.Fprintf(stdout, "the two runs of seed %d diverge at step %d (of %d)\n", f.seed, at, first.Steps)
		again := sim.Run(o, sim.RunConfig{StopAtStep: at, RingLines: 30})
		fmt.Fprintln(stdout, "first run, last steps:")
		for _, l := range again.LastLines {
			fmt.Fprintln(stdout, "  ", l)
		}
		fmt.Fprintln(stdout, "second run, last steps:")
		for _, l := range second.LastLines {
			fmt.Fprintln(stdout, "  ", l)
		}
		fmt.Fprintf(stdout, "seed=%d FAIL nondeterministic trace=%s\n", f.seed, second.TraceHash)
		return exitCrash
	}
	verdict := "ok"
	if !first.OK {
		verdict = "FAIL " + first.Kind
	}
	fmt.Fprintf(stdout, "deterministic: 2 runs, %d steps each, same hash at every step\n", first.Steps)
	fmt.Fprintf(stdout, "seed=%d %s trace=%s\n", f.seed, verdict, first.TraceHash)
	return exitCode(first.Severity)
}

func parseRange(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.ParseUint(a, 10, 64)
	hi, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, fmt.Errorf("-seeds wants A-B with A <= B, got %q", s)
	}
	return lo, hi, nil
}

// sweep runs every seed of a range as its own process (etcd raft's election
// randomness is process-wide), -j at a time, and summarises.
func sweep(f *flags, stdout, stderr io.Writer) int {
	lo, hi, err := parseRange(f.seeds)
	if err != nil {
		fmt.Fprintln(stderr, "lockstep-sim:", err)
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "lockstep-sim:", err)
		return exitCrash
	}
	n := int(hi - lo + 1)
	jobs := max(1, f.jobs)
	reports := make([]report, n)
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for j := 0; j < jobs; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				seed := lo + uint64(i)
				args := append([]string{"-seed", strconv.FormatUint(seed, 10), "-json", "-out", f.outDir}, f.passthru...)
				reports[i] = runChild(self, args, seed)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)

	if f.jsonOut {
		for _, r := range reports {
			b, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(b))
		}
	} else {
		fmt.Fprintf(stdout, "%-8s %-4s %-9s %-16s %7s %8s %6s %6s\n", "seed", "ok", "failure", "trace", "ops", "virtual", "faults", "wall")
		for _, r := range reports {
			ok := "ok"
			if !r.OK {
				ok = "FAIL"
			} else if f.quiet {
				continue
			}
			fmt.Fprintf(stdout, "%-8d %-4s %-9s %-16s %7d %7.1fs %6d %5.1fs\n", r.Seed, ok, r.Kind, r.TraceHash, r.Ops,
				r.VirtualSeconds, r.Faults, r.WallSeconds)
		}
	}
	worst := sim.Severity(0)
	counts := map[string]int{}
	var failed []report
	for _, r := range reports {
		if !r.OK {
			failed = append(failed, r)
			counts[r.Kind]++
			if worst == 0 || rank(r.Severity) < rank(worst) {
				worst = r.Severity
			}
		}
	}
	var kinds []string
	for k, c := range counts {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, c))
	}
	sort.Strings(kinds)
	w := stdout
	if f.jsonOut {
		w = stderr
	}
	fmt.Fprintf(w, "\n%d seeds (%d-%d), %d passed, %d failed %s in %.1fs wall on %d processes: %.0f seeds/min\n",
		n, lo, hi, n-len(failed), len(failed), strings.Join(kinds, " "), wall.Seconds(), jobs, float64(n)/wall.Minutes())
	for _, r := range failed {
		fmt.Fprintf(w, "FAIL seed=%d %s: %s\n  replay: %s\n", r.Seed, r.Kind, firstViolation(r), r.Replay)
		if r.TraceFile != "" {
			fmt.Fprintf(w, "  trace: %s\n", r.TraceFile)
		}
		if r.HTMLFile != "" {
			fmt.Fprintf(w, "  porcupine: %s\n", r.HTMLFile)
		}
	}
	return exitCode(worst)
}

func rank(s sim.Severity) int {
	switch s {
	case sim.Safety:
		return 0
	case sim.Crash:
		return 1
	}
	return 2
}

func firstViolation(r report) string {
	if len(r.Violations) == 0 {
		return "(no detail)"
	}
	msg := r.Violations[0].Check + ": " + r.Violations[0].Msg
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

func runChild(self string, args []string, seed uint64) report {
	start := time.Now()
	cmd := exec.Command(self, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = io.Discard
	err := cmd.Run()
	var rep report
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var last []byte
	for sc.Scan() {
		if l := sc.Bytes(); len(l) > 0 && l[0] == '{' {
			last = append(last[:0], l...)
		}
	}
	if jerr := json.Unmarshal(last, &rep); jerr != nil {
		rep = report{Result: sim.Result{Seed: seed, Severity: sim.Crash, Kind: "crash",
			Violations: []sim.Violation{{Kind: "crash", Check: "process", Msg: fmt.Sprintf("the seed's process failed: %v", err)}}}}
		rep.Replay = fmt.Sprintf("lockstep-sim %s", strings.Join(args, " "))
	}
	rep.Severity = severityOf(rep.Kind)
	rep.WallSeconds = time.Since(start).Seconds()
	return rep
}

func severityOf(kind string) sim.Severity {
	switch kind {
	case "safety":
		return sim.Safety
	case "liveness":
		return sim.Liveness
	case "crash":
		return sim.Crash
	}
	return 0
}
