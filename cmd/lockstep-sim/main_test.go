package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return out.String() + errb.String(), code
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

var lastOK = regexp.MustCompile(`^seed=3 ok trace=[0-9a-f]{16}$`)

func TestOneSeed(t *testing.T) {
	out, code := runCmd(t, "-seed", "3")
	if code != exitOK || !lastOK.MatchString(lastLine(out)) {
		t.Fatalf("exit %d, last line %q", code, lastLine(out))
	}
	again, _ := runCmd(t, "-seed", "3")
	if lastLine(again) != lastLine(out) {
		t.Fatalf("the same seed printed %q, then %q", lastLine(out), lastLine(again))
	}
}

func TestFailingSeedWritesItsFiles(t *testing.T) {
	dir := t.TempDir()
	out, code := runCmd(t, "-seed", "1", "-bug", "skip-entry", "-out", dir)
	if code != exitSafety {
		t.Fatalf("exit %d, want %d (safety):\n%s", code, exitSafety, out)
	}
	if !regexp.MustCompile(`^seed=1 FAIL safety trace=[0-9a-f]{16}$`).MatchString(lastLine(out)) {
		t.Fatalf("last line %q", lastLine(out))
	}
	if !strings.Contains(out, "replay: lockstep-sim -seed 1 -replicas ") || !strings.Contains(out, "-bug skip-entry") {
		t.Fatalf("no replay line:\n%s", out)
	}
	for _, f := range []string{"seed-1-skip-entry.trace", "seed-1-skip-entry.porcupine.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
	trace, _ := os.ReadFile(filepath.Join(dir, "seed-1-skip-entry.trace"))
	hash := strings.TrimPrefix(lastLine(out)[strings.Index(lastLine(out), "trace="):], "trace=")
	if !strings.Contains(string(trace), "trace="+hash) || strings.Contains(string(trace), "NONDETERMINISM") {
		t.Fatalf("the trace file does not end with the run's hash %s", hash)
	}
}

func TestJSON(t *testing.T) {
	out, code := runCmd(t, "-seed", "3", "-json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v: %s", code, err, out)
	}
	for _, k := range []string{"seed", "ok", "trace_hash", "ops", "virtual_seconds", "faults", "violations"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("no %q in %s", k, out)
		}
	}
}

func TestDeterminismFlag(t *testing.T) {
	out, code := runCmd(t, "-seed", "3", "-check-determinism")
	if code != exitOK || !strings.Contains(out, "deterministic: 2 runs") || !lastOK.MatchString(lastLine(out)) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestUsage(t *testing.T) {
	if _, code := runCmd(t, "-replicas", "4"); code != exitUsage {
		t.Fatalf("-replicas 4: exit %d, want %d", code, exitUsage)
	}
	if _, code := runCmd(t, "-nope"); code != exitUsage {
		t.Fatalf("an unknown flag: exit %d, want %d", code, exitUsage)
	}
	out, code := runCmd(t, "-bug", "list")
	if code != exitOK || strings.Count(out, "\n") < 4 || !strings.Contains(out, "no-clock-cap") {
		t.Fatalf("-bug list: exit %d:\n%s", code, out)
	}
}

// A sweep runs each seed as its own process of the real binary.
func TestSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "lockstep-sim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-seeds", "1-3", "-j", "2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 seeds (1-3), 3 passed, 0 failed") {
		t.Fatalf("%v:\n%s", err, out)
	}
	// Each seed's process printed the hash this process computes for it.
	for _, seed := range []string{"1", "2", "3"} {
		one, _ := runCmd(t, "-seed", seed)
		hash := lastLine(one)[strings.Index(lastLine(one), "trace=")+len("trace="):]
		if !regexp.MustCompile(`(?m)^` + seed + ` +ok +` + hash + ` `).MatchString(string(out)) {
			t.Fatalf("seed %s: this process computed trace %s, the sweep's process printed:\n%s", seed, hash, out)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "-seeds", "1-2", "-j", "2", "-bug", "skip-entry", "-out", dir)
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != exitSafety || !strings.Contains(string(out), "replay: lockstep-sim -seed 1 ") ||
		!strings.Contains(string(out), "replay: lockstep-sim -seed 2 ") {
		t.Fatalf("exit %d, %v:\n%s", cmd.ProcessState.ExitCode(), err, out)
	}
}
