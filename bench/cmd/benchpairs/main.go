// Command benchpairs compares two builds of Lockstep the way
// docs/performance.md says to: interleaved lockbench runs, each build with
// its own server and its own lockbench (so the Go client changes with it),
// a fresh cluster per run, and the medians of every figure over the pairs.
// Rates here swing by a third with the machine; the CPU each process spends
// per operation, compared pair by pair, is the steadier figure.
//
//	go run ./bench/cmd/benchpairs -base HEAD~1 -pairs 4
//	make bench-pairs BASE=HEAD~1 PAIRS=4
//
// The base is built from a git worktree of the revision, the head from the
// working tree as it is; the runs alternate base/head, head/base, so that a
// drift of the machine does not favour one side.
//
// With -zookeeper ZKBENCH the other side is ZooKeeper instead of a base
// build: the working tree's lockbench alternates with zkbench (bench/zookeeper),
// and the table gives Lockstep over ZooKeeper pair by pair, their median, and
// in how many pairs issue 12's ratio targets held, since one side-by-side run
// on this machine says little (make bench-zkpairs).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Limits of one comparison.
const (
	maxPairs   = 20               // more says nothing the medians of 20 do not
	runTimeout = 10 * time.Minute // one lockbench run, cluster start included
)

type options struct {
	base, out, flags string
	pairs            int
	zkbench, zkFlags string // -zookeeper: zkbench's binary in place of a base build, and its flags
}

func main() {
	var o options
	flag.StringVar(&o.base, "base", "HEAD", "the git revision to compare the working tree against")
	flag.IntVar(&o.pairs, "pairs", 3, fmt.Sprintf("interleaved pairs of runs (1..%d)", maxPairs))
	flag.StringVar(&o.flags, "flags", "-clients 1,64 -handoff 64 -failover 0 -partition 0 -mem 0 -idle 0 -via client",
		"lockbench's flags for every run")
	flag.StringVar(&o.out, "out", "bin/pairs", "where the two builds and every run's output go")
	flag.StringVar(&o.zkbench, "zookeeper", "", "zkbench's binary: compare the working tree with ZooKeeper instead of with -base")
	flag.StringVar(&o.zkFlags, "zk-flags", "-clients 1,64 -handoff 64", "zkbench's flags for every run (with -zookeeper)")
	flag.Parse()
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchpairs:", err)
		os.Exit(1)
	}
}

func run(o options, w io.Writer) error {
	if o.pairs < 1 || o.pairs > maxPairs {
		return fmt.Errorf("-pairs %d: give 1..%d", o.pairs, maxPairs)
	}
	out, err := filepath.Abs(o.out)
	if err != nil {
		return err
	}
	// Outputs of an earlier comparison with more pairs would sit beside
	// this one's under the same names.
	old, _ := filepath.Glob(filepath.Join(out, "*-*.txt"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	base := &side{name: "base", dir: filepath.Join(out, "base")}
	head := &side{name: "head", dir: filepath.Join(out, "head")}
	head.bench = func() (string, error) { return lockbench(head.dir, o.flags) }
	if o.zkbench != "" {
		zk, err := filepath.Abs(o.zkbench)
		if err != nil {
			return err
		}
		if _, err := os.Stat(zk); err != nil {
			return fmt.Errorf("-zookeeper %s: %w (build it: cd bench/zookeeper && go build -o ../../bin/zkbench .)", o.zkbench, err)
		}
		base.name = "zookeeper"
		base.bench = func() (string, error) { return benchCommand(zk, strings.Fields(o.zkFlags)) }
		fmt.Fprintf(w, "# benchpairs: ZooKeeper (zkbench %s) against the working tree (lockbench %s), interleaved pairs: %d\n", o.zkFlags, o.flags, o.pairs)
	} else {
		if err := buildRevision(o.base, base.dir, filepath.Join(out, "base-src")); err != nil {
			return err
		}
		base.bench = func() (string, error) { return lockbench(base.dir, o.flags) }
		fmt.Fprintf(w, "# benchpairs: base %s, head the working tree, interleaved pairs: %d; each run: lockbench %s\n", o.base, o.pairs, o.flags)
	}
	if err := build(".", head.dir); err != nil {
		return err
	}
	for i := range o.pairs {
		order := []*side{base, head}
		if i%2 == 1 {
			order = []*side{head, base}
		}
		for _, s := range order {
			text, err := s.bench()
			name := filepath.Join(out, fmt.Sprintf("%s-%d.txt", s.name, i+1))
			_ = os.WriteFile(name, []byte(text), 0o644)
			if err != nil {
				return fmt.Errorf("pair %d, %s: %w (its output: %s)", i+1, s.name, err, name)
			}
			s.runs = append(s.runs, text)
			fmt.Fprintf(w, "# pair %d: %s done\n", i+1, s.name)
		}
	}
	if o.zkbench != "" {
		return writeAgainstZooKeeper(w, base.runs, head.runs)
	}
	return writeComparison(w, base.runs, head.runs)
}

// side is one of the two sides: its binaries' folder, how it runs once, and
// its runs' outputs.
type side struct {
	name, dir string
	bench     func() (string, error)
	runs      []string
}

// buildRevision builds rev's lockstep and lockbench into dir, from a
// worktree at src that it removes after.
func buildRevision(rev, dir, src string) error {
	_ = exec.Command("git", "worktree", "remove", "--force", src).Run()
	if out, err := exec.Command("git", "worktree", "add", "--detach", src, rev).CombinedOutput(); err != nil {
		return fmt.Errorf("git worktree add %s %s: %v: %s", src, rev, err, out)
	}
	defer exec.Command("git", "worktree", "remove", "--force", src).Run() //nolint:errcheck
	return build(src, dir)
}

// build builds the tree at src's lockstep and lockbench into dir, an
// absolute path (src is the build's working directory).
func build(src, dir string) error {
	for pkg, path := range map[string]string{"lockstep": "./cmd/lockstep", "lockbench": "./bench/cmd/lockbench"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), path)
		cmd.Dir = src
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s in %s: %v: %s", path, src, err, out)
		}
	}
	return nil
}

// lockbench runs dir's lockbench against dir's lockstep.
func lockbench(dir, flags string) (string, error) {
	return benchCommand(filepath.Join(dir, "lockbench"), append([]string{"-bin", filepath.Join(dir, "lockstep")}, strings.Fields(flags)...))
}

// benchCommand runs one load generator, bounded by runTimeout, and answers
// what it printed.
func benchCommand(bin string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	var b bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no end within %v", runTimeout)
	}
	return b.String(), err
}
