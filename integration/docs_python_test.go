//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pythonMembers is the line of docs/api.md's Python example that names
// the members; the test points it at its own node.
const pythonMembers = `MEMBERS = [("127.0.0.1", 8080)]`

// TestDocsPythonWatchRuns runs the Python program of docs/api.md ("Writing
// a client in another language") as written, but for its members line,
// against a real node: it prints the grant and the release of
// jobs/nightly, and after the node restarts it resumes from its positions
// and prints the next grant without repeating the first. The example was
// checked by hand once and then drifted free of any test. Python 3 comes
// from the machine (.ci/run installs it); without it, and outside CI, the
// test is skipped.
func TestDocsPythonWatchRuns(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is not installed: .ci/run installs it for this test")
		}
		t.Skip("no python3 here")
	}
	blocks := readFenced(t, "docs/api.md", "python")
	if len(blocks) != 1 {
		t.Fatalf("docs/api.md has %d python blocks: this test runs exactly one", len(blocks))
	}
	src := strings.Join(blocks[0].lines, "\n")
	if !strings.Contains(src, pythonMembers) {
		t.Fatalf("docs/api.md's python block no longer has %s, the line this test points at its node", pythonMembers)
	}
	c := newCluster(t, 1)
	nd := c.nodes[0]
	c.start(nd)
	c.waitHealthy(30*time.Second, nd)
	host, port, err := net.SplitHostPort(nd.API)
	if err != nil {
		t.Fatal(err)
	}
	src = strings.Replace(src, pythonMembers, fmt.Sprintf("MEMBERS = [(%q, %s)]", host, port), 1)
	script := filepath.Join(t.TempDir(), "watch.py")
	if err := os.WriteFile(script, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-u", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Cancel(); _ = cmd.Wait() }()

	// The watch opens from now: grant and release until it has printed
	// both (a cycle before it was open is not shown).
	cycle := func(name string) {
		body := c.ok("POST", nd, "/locks/"+name+"/acquire", `{"owner": "cron"}`)
		c.ok("POST", nd, "/locks/"+name+"/release", fmt.Sprintf(`{"owner": "cron", "fencing_token": "%v"}`, body["fencing_token"]))
	}
	printed := func(typ, name string) int {
		n := 0
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 5 && f[1] == typ && f[2] == "KIND_MUTEX" && f[3] == name {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "the example prints a grant and its release", func() error {
		if printed("EVENT_TYPE_GRANTED", "jobs/nightly") > 0 && printed("EVENT_TYPE_RELEASED", "jobs/nightly") > 0 {
			return nil
		}
		cycle("jobs%2Fnightly")
		return fmt.Errorf("printed so far:\n%s", out.String())
	})
	grants := printed("EVENT_TYPE_GRANTED", "jobs/nightly")

	// The node restarts: the stream breaks, and the program resumes on it
	// from its positions.
	if err := nd.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	c.start(nd)
	c.waitHealthy(30*time.Second, nd)
	cycle("jobs%2Fafter")
	eventually(t, 30*time.Second, "the example resumes after a restart", func() error {
		if printed("EVENT_TYPE_GRANTED", "jobs/after") == 1 && printed("EVENT_TYPE_RELEASED", "jobs/after") == 1 {
			return nil
		}
		return fmt.Errorf("printed so far:\n%s", out.String())
	})
	if !strings.Contains(out.String(), "stream ended:") && !strings.Contains(out.String(), "stream lost:") {
		t.Errorf("the example did not say its stream broke:\n%s", out.String())
	}
	if n := printed("EVENT_TYPE_GRANTED", "jobs/nightly"); n != grants {
		t.Errorf("after resuming the example printed jobs/nightly's grants %d times, had %d: it repeated events\n%s", n, grants, out.String())
	}
}
