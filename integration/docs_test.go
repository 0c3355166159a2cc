//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The commands the user docs tell people to run are run here as written,
// so that the docs cannot drift from what happens. Every ```sh block of
// docFiles is listed in docBlocks, by its file and first line: either how
// it is run, or why it is not. A block the table does not know, or a
// listed block the docs no longer have, fails the test, so a new command
// in the docs comes with its check.
//
// "As written" has three stated exceptions: 127.0.0.1:8080 (the dev
// node's fixed address) becomes the test node's address, `lockstep` and
// `bin/lockstep` are the binary under test, and commands that run until
// stopped are stopped (a server after its health answers, `elect` after
// its first line).

var docFiles = []string{"README.md", "docs/operations.md", "docs/client.md", "docs/api.md"}

type docMode int

const (
	// docScript: the file's docScript blocks run in one bash, in order,
	// against one node (api.md's first block defines API and post for the
	// rest). Each must exit 0, show exactly its planned error answers,
	// and answer every field its "# → {...}" comments name.
	docScript docMode = iota
	// docLines: each command line runs alone against one node and must
	// exit 0.
	docLines
	// docInterrupt: each command line runs until it prints its first line
	// on stdout (what it promises: elected, the leader now), then gets
	// SIGINT, and must exit 0.
	docInterrupt
	// docMake: each `make TARGET ...` line is dry-run (`make -n`), which
	// fails when the target or its prerequisites are gone. The targets are
	// long (make test runs the rest of this test) or are CI's own.
	docMake
	// docCheck: each serve line runs with --check (the configuration is
	// valid and the flags exist); make lines as docMake; a request to the
	// members the block would start is not run.
	docCheck
	// docCluster: lines ending in & start three members from
	// config/node*.yaml on their fixed ports; once all answer /health the
	// rest of the block runs, and so do the later docCluster blocks.
	docCluster
	// docSkip: not run; why says why.
	docSkip
)

type docBlock struct {
	file, first string
	mode        docMode
	why         string // docSkip: why no test runs it
	errors      int    // docScript: error answers ("code":) the block shows on purpose
}

var docBlocks = []docBlock{
	{file: "README.md", first: "make run    # start one node on local disk, no set-up: lockstep serve --dev (API on 127.0.0.1:8080)", mode: docMake},
	{file: "README.md", first: "curl -s http://127.0.0.1:8080/health", mode: docScript},
	{file: "README.md", first: "make sim SEEDS=1-10000       # a longer simulation sweep; failures print their replay command", mode: docMake},

	{file: "docs/operations.md", first: "make run                                     # builds bin/lockstep, then bin/lockstep serve --dev", mode: docCheck},
	{file: "docs/operations.md", first: "lockstep serve --config config/node1.yaml &", mode: docCluster},
	{file: "docs/operations.md", first: "make image                                                   # lockstep:dev", mode: docSkip,
		why: "no Docker daemon in CI; make test-image (in make test) builds the image and runs it with buildah"},
	{file: "docs/operations.md", first: "c=$(buildah --storage-driver vfs from lockstep:dev)", mode: docSkip,
		why: "make test-image (in make test) builds the image and runs it with buildah the same way"},
	{file: "docs/operations.md", first: "c=$(buildah --storage-driver vfs from --name node-1 lockstep:dev)", mode: docSkip,
		why: "it needs the reader's node1.yaml; the image's serving is proven by make test-image"},
	{file: "docs/operations.md", first: "docker run -d --name node-1 --network lockstep \\", mode: docSkip,
		why: "no Docker daemon in CI; buildah runs the same image in make test-image"},
	{file: "docs/operations.md", first: "lockstep snapshot save backup-$(date +%F).tar --endpoints http://10.0.0.1:8080,http://10.0.0.2:8080", mode: docSkip,
		why: "it names 10.0.0.x and tests send nothing off loopback; saving and restoring are TestRestoreAfterLosingTheMajority's"},
	{file: "docs/operations.md", first: "lockstep cluster remove node-3                 # RemoveNode, from any member", mode: docSkip,
		why: "it names 10.0.0.9 and tests send nothing off loopback; removing a member and adding it back with --join is TestThreeNodes'"},
	{file: "docs/operations.md", first: "curl -si -X POST http://127.0.0.1:8081/lockstep.v1.ClusterService/AddNode \\", mode: docSkip,
		why: "it names 10.0.0.4 and tests send nothing off loopback; adding and joining a member is TestThreeNodes'"},
	{file: "docs/operations.md", first: "curl -s -X POST http://127.0.0.1:8081/lockstep.v1.ClusterService/RemoveNode \\", mode: docCluster},
	{file: "docs/operations.md", first: "curl -s -X POST http://127.0.0.1:8081/lockstep.v1.ClusterService/TransferLeadership \\", mode: docCluster},
	{file: "docs/operations.md", first: "lockstep serve --config config/node1.yaml --shards 4   # and the same on node2, node3, on empty data dirs", mode: docCheck},

	{file: "docs/client.md", first: "*/15 * * * *  lockstep lock jobs/report --wait 0 --ttl 30s -- /opt/report.sh", mode: docSkip,
		why: "a crontab entry for the reader's /opt/report.sh; lock --wait 0 and --ttl are TestCLI's"},
	{file: "docs/client.md", first: "lockstep sem gpu --limit 4 -- ./train.sh              # at most 4 at once, cluster-wide", mode: docLines},
	{file: "docs/client.md", first: "lockstep elect scheduler 10.0.0.7:8080     # prints when elected, leads until Ctrl-C, then resigns", mode: docInterrupt},

	{file: "docs/api.md", first: "API=http://127.0.0.1:8080", mode: docScript},
	{file: "docs/api.md", first: "# open a 10-second session", mode: docScript},
	{file: "docs/api.md", first: "# take the mutex \"db-migrate\", waiting up to 5 s; no session_id, so the", mode: docScript, errors: 1},
	{file: "docs/api.md", first: "# take 2 of the 5 permits of \"gpu\" (the first acquirer fixes the limit;", mode: docScript},
	{file: "docs/api.md", first: "R1=$(post /rwlocks/config/acquire '{\"owner\": \"reader-1\", \"mode\": \"read\", \"wait_timeout_ms\": 2000}' | jq -r .fencing_token)", mode: docScript},
	{file: "docs/api.md", first: "# arrive at a 3-party barrier and wait up to 30 s for the other two (two", mode: docScript},
	{file: "docs/api.md", first: "# run for leader of \"scheduler\" with value \"10.0.0.7:8080\", waiting up to 60 s", mode: docScript},
	{file: "docs/api.md", first: "curl -s $API/health; echo", mode: docScript},
}

// shellBlock is one ```sh block of a doc: where it starts and its lines.
type shellBlock struct {
	file  string
	line  int
	lines []string
}

func (b shellBlock) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

func readShellBlocks(t *testing.T, file string) []shellBlock {
	t.Helper()
	return readFenced(t, file, "sh")
}

// readFenced reads the blocks of a doc fenced as lang (```lang).
func readFenced(t *testing.T, file, lang string) []shellBlock {
	t.Helper()
	f, err := os.Open(filepath.Join("..", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []shellBlock
	var cur *shellBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"+lang):
			cur = &shellBlock{file: file, line: n}
		case cur != nil && strings.HasPrefix(line, "```"):
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// docBlockOf finds the table's entry for a block.
func docBlockOf(b shellBlock) (docBlock, bool) {
	for _, d := range docBlocks {
		if d.file == b.file && len(b.lines) > 0 && d.first == b.lines[0] {
			return d, true
		}
	}
	return docBlock{}, false
}

// commandLines are a block's lines without comments, blanks and
// continuations (a line ending in \ is joined with the next).
func commandLines(lines []string) []string {
	var out []string
	pending := ""
	for _, l := range lines {
		trimmed := strings.TrimSpace(l)
		if pending == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			pending += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		out = append(out, pending+trimmed)
		pending = ""
	}
	return out
}

// stripComment drops a trailing "  # ..." from a command line.
func stripComment(l string) string {
	if i := strings.Index(l, " #"); i >= 0 {
		return strings.TrimSpace(l[:i])
	}
	return l
}

// docEnv is what every doc command runs with: the binary as `lockstep` on
// PATH, the CLI pointed at the test node, and a working folder with the
// scripts client.md runs (./train.sh, ./big.sh).
type docEnv struct {
	env []string
	dir string
	api string // host:port of the one-node cluster
}

func newDocEnv(t *testing.T, api string) docEnv {
	t.Helper()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(binDir, "lockstep")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"train.sh", "big.sh"} {
		if err := os.WriteFile(filepath.Join(dir, s), []byte("#!/bin/sh\necho \"$0 ran with token $LOCKSTEP_FENCING_TOKEN\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"), "LOCKSTEP_ENDPOINTS=http://"+api)
	return docEnv{env: env, dir: dir, api: api}
}

// bash is one bash process running script in its own process group (so
// that whatever it starts in the background is stopped with it).
func (e docEnv) bash(ctx context.Context, dir, script string) (*exec.Cmd, *syncBuffer) {
	cmd, out, _ := e.bashStdout(ctx, dir, script)
	return cmd, out
}

// bashStdout is bash that also answers what went to stdout alone.
func (e docEnv) bashStdout(ctx context.Context, dir, script string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir, cmd.Env = dir, e.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out, stdout syncBuffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, &stdout), &out
	return cmd, &out, &stdout
}

func (e docEnv) asWritten(s string) string {
	s = strings.ReplaceAll(s, "127.0.0.1:8080", e.api)
	return strings.ReplaceAll(s, "bin/lockstep ", binary+" ")
}

// runDocScripts runs a file's docScript blocks in one bash, in order.
func runDocScripts(t *testing.T, e docEnv, file string, blocks []shellBlock, plans []docBlock) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -eo pipefail\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '@@block %d'\n%s\n", i, e.asWritten(strings.Join(b.lines, "\n")))
	}
	script.WriteString("echo '@@end'\n")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd, out := e.bash(ctx, e.dir, script.String())
	err := cmd.Run()
	parts := strings.Split(out.String(), "@@block ")
	if err != nil || !strings.Contains(out.String(), "@@end") {
		t.Fatalf("%s: the blocks stopped (%v) in the last one started:\n%s", file, err, parts[len(parts)-1])
	}
	keyRE := regexp.MustCompile(`"([a-z_]+)":`)
	for i, b := range blocks {
		got := ""
		if i+1 < len(parts) {
			got = parts[i+1]
		}
		if n := strings.Count(got, `"code":`); n != plans[i].errors {
			t.Errorf("%s: %d error answers, the doc shows %d:\n%s", b.where(), n, plans[i].errors, got)
		}
		for _, l := range b.lines {
			_, shown, ok := strings.Cut(l, "# → {")
			if !ok || strings.Contains(l, `"code"`) {
				continue
			}
			for _, m := range keyRE.FindAllStringSubmatch(shown, -1) {
				if !strings.Contains(got, `"`+m[1]+`":`) {
					t.Errorf("%s: the doc shows the field %q, and no answer of the block has it:\n%s", b.where(), m[1], got)
				}
			}
		}
	}
}

// runDocLine runs one command line; with interrupt, it is stopped with
// SIGINT after its first line of output.
func runDocLine(t *testing.T, e docEnv, where, line string, interrupt bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, out, stdout := e.bashStdout(ctx, e.dir, "exec "+e.asWritten(line))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if interrupt {
		eventually(t, 15*time.Second, where+": "+line+" prints", func() error {
			if !strings.Contains(stdout.String(), "\n") {
				return fmt.Errorf("nothing yet")
			}
			return nil
		})
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("%s: %s: %v\n%s", where, line, err, out.String())
	}
}

func runDocMake(t *testing.T, where, line string) {
	t.Helper()
	args := strings.Fields(stripComment(line))
	if len(args) == 0 || args[0] != "make" {
		t.Errorf("%s: %q is not a make line", where, line)
		return
	}
	cmd := exec.Command("make", append([]string{"-n"}, args[1:]...)...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: make -n %s: %v\n%s", where, strings.Join(args[1:], " "), err, out)
	}
}

func runDocCheck(t *testing.T, e docEnv, where, line string) {
	t.Helper()
	l := stripComment(line)
	switch {
	case strings.HasPrefix(l, "make "):
		runDocMake(t, where, l)
		return
	case !strings.Contains(l, " serve "):
		return // a request to the members the block started: they are not running here
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd, out := e.bash(ctx, "..", e.asWritten(l)+" --check")
	if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "configuration ok") {
		t.Errorf("%s: %s --check: %v\n%s", where, l, err, out.String())
	}
}

// runDocCluster starts the members of the first block, waits for their
// health, then runs the rest of each block in one bash each; the members
// are killed at the end.
func runDocCluster(t *testing.T, e docEnv, blocks []shellBlock) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"node1.yaml", "node2.yaml", "node3.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "config", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config", n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var starts, rest []string
	for _, l := range commandLines(blocks[0].lines) {
		if strings.HasSuffix(l, "&") {
			starts = append(starts, l)
		} else {
			rest = append(rest, l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	members, out := e.bash(ctx, dir, strings.Join(starts, "\n")+"\nwait")
	if err := members.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-members.Process.Pid, syscall.SIGKILL)
		_ = members.Wait()
		if t.Failed() {
			t.Logf("the members' output:\n%s", out.String())
		}
	}()
	for _, api := range []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"} {
		eventually(t, 30*time.Second, blocks[0].where()+": "+api+" healthy", func() error {
			r, err := http.Get("http://" + api + "/health")
			if err != nil {
				return err
			}
			r.Body.Close()
			if r.StatusCode != 200 {
				return fmt.Errorf("health %d", r.StatusCode)
			}
			return nil
		})
	}
	run := func(where string, lines []string, want string) {
		cmd, o := e.bash(ctx, dir, "set -eo pipefail\n"+strings.Join(lines, "\n"))
		if err := cmd.Run(); err != nil || strings.Contains(o.String(), `"code":`) || !strings.Contains(o.String(), want) {
			t.Errorf("%s: %v (want %q in the answer, no error):\n%s", where, err, want, o.String())
		}
	}
	run(blocks[0].where(), rest, `"leader_id":"node-`)
	for _, b := range blocks[1:] {
		run(b.where(), b.lines, "{")
	}
}

func TestDocsCommandsRunAsWritten(t *testing.T) {
	byFile := map[string][]shellBlock{}
	seen := map[string]bool{}
	for _, f := range docFiles {
		for _, b := range readShellBlocks(t, f) {
			d, ok := docBlockOf(b)
			if !ok {
				first := ""
				if len(b.lines) > 0 {
					first = b.lines[0]
				}
				t.Errorf("%s: a shell block no test runs (first line %q): add it to docBlocks in integration/docs_test.go, with how it runs or why it cannot", b.where(), first)
				continue
			}
			seen[d.file+"\x00"+d.first] = true
			byFile[f] = append(byFile[f], b)
		}
	}
	for _, d := range docBlocks {
		if !seen[d.file+"\x00"+d.first] {
			t.Errorf("docBlocks lists a block %s no longer has (first line %q): the docs changed; update the table", d.file, d.first)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	c := newCluster(t, 1)
	c.start(c.nodes[0])
	c.waitHealthy(30*time.Second, c.nodes[0])
	e := newDocEnv(t, c.nodes[0].API)

	var cluster []shellBlock
	for _, f := range docFiles {
		var scripts []shellBlock
		var plans []docBlock
		for _, b := range byFile[f] {
			d, _ := docBlockOf(b)
			switch d.mode {
			case docScript:
				scripts, plans = append(scripts, b), append(plans, d)
			case docLines, docInterrupt:
				for _, l := range commandLines(b.lines) {
					runDocLine(t, e, b.where(), stripComment(l), d.mode == docInterrupt)
				}
			case docMake:
				for _, l := range commandLines(b.lines) {
					runDocMake(t, b.where(), l)
				}
			case docCheck:
				for _, l := range commandLines(b.lines) {
					runDocCheck(t, e, b.where(), l)
				}
			case docCluster:
				cluster = append(cluster, b)
			case docSkip:
				if d.why == "" {
					t.Errorf("%s: skipped without saying why", b.where())
				}
			}
		}
		if len(scripts) > 0 {
			runDocScripts(t, e, f, scripts, plans)
		}
	}
	if len(cluster) > 0 {
		runDocCluster(t, e, cluster)
	}
}
