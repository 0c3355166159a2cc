//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// cli runs `lockstep ARGS...` against a node, as a person would.
type cli struct {
	t   *testing.T
	url string
	dir string
}

// syncBuffer is a bytes.Buffer that a test may read while the process
// writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (c cli) cmd(ctx context.Context, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "LOCKSTEP_ENDPOINTS="+c.url)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 2 * time.Second // a killed lockstep's command may hold the pipes
	return cmd, &out, &errb
}

// run runs a command to its end (bounded) and answers its exit code and
// output.
func (c cli) run(limit time.Duration, args ...string) (int, string, string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd, out, errb := c.cmd(ctx, args...)
	err := cmd.Run()
	if ctx.Err() != nil {
		c.t.Fatalf("lockstep %v: not done within %v\nstdout: %s\nstderr: %s", args, limit, out, errb)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		c.t.Fatalf("lockstep %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// start starts a long-running command; the test ends it.
func (c cli) start(args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer, chan error) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd, out, errb := c.cmd(ctx, args...)
	if err := cmd.Start(); err != nil {
		cancel()
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); cancel(); close(exited) }()
	c.t.Cleanup(func() { cancel(); <-exited })
	return cmd, out, errb, done
}

func (c cli) file(name string) string { return filepath.Join(c.dir, name) }

// TestCLI runs the client commands against one node: commands under one
// lock never overlap, exit codes come through, --wait 0 fails fast on a held
// lock, status and list show holders and waiters in order, and a lost
// session stops the command.
func TestCLI(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)
	l := cli{t: t, url: n.url(), dir: t.TempDir()}

	t.Run("NoOverlap", func(t *testing.T) {
		l.t = t
		log := l.file("overlap.log")
		script := `echo "start $LOCKSTEP_FENCING_TOKEN" >> ` + log + `; sleep 0.4; echo "end $LOCKSTEP_FENCING_TOKEN" >> ` + log
		var dones []chan error
		for i := 0; i < 2; i++ {
			_, _, _, done := l.start("lock", "cli/overlap", "--", "sh", "-c", script)
			dones = append(dones, done)
		}
		for _, d := range dones {
			select {
			case err := <-d:
				if err != nil {
					t.Fatalf("lock: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("two short locked commands took over 30s")
			}
		}
		b, _ := os.ReadFile(log)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 4 {
			t.Fatalf("log: %q", b)
		}
		for i := 0; i < 4; i += 2 {
			s, e := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if s[0] != "start" || e[0] != "end" || s[1] != e[1] {
				t.Fatalf("the commands overlapped:\n%s", b)
			}
		}
		if strings.Fields(lines[0])[1] >= strings.Fields(lines[2])[1] && len(lines[0]) == len(lines[2]) {
			t.Fatalf("fencing tokens did not increase:\n%s", b)
		}
	})

	t.Run("ExitCode", func(t *testing.T) {
		l.t = t
		code, out, _ := l.run(20*time.Second, "lock", "cli/exit", "--", "sh", "-c", `echo "$LOCKSTEP_LOCK_NAME"; exit 7`)
		want(t, "exit code", code, 7)
		want(t, "LOCKSTEP_LOCK_NAME", strings.TrimSpace(out), "cli/exit")
		code, _, _ = l.run(20*time.Second, "sem", "cli/sem", "--limit", "2", "--", "sh", "-c", "exit 3")
		want(t, "sem exit code", code, 3)
	})

	t.Run("WaitZeroFailsFast", func(t *testing.T) {
		l.t = t
		ready := l.file("held")
		_, _, _, _ = l.start("lock", "cli/held", "--", "sh", "-c", "touch "+ready+"; sleep 8")
		eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(ready); return err })
		start := time.Now()
		code, _, errOut := l.run(10*time.Second, "lock", "cli/held", "--wait", "0", "--", "touch", l.file("must-not-run"))
		want(t, "exit code", code, 2)
		if time.Since(start) > 5*time.Second {
			t.Fatalf("--wait 0 took %v", time.Since(start))
		}
		if !strings.Contains(errOut, "held by someone else") {
			t.Fatalf("stderr does not say it is held: %s", errOut)
		}
		if _, err := os.Stat(l.file("must-not-run")); err == nil {
			t.Fatal("the command ran without the lock")
		}
		for i := 0; i < 5; i++ {
			code, _, errOut = l.run(10*time.Second, "lock", "cli/held", "--wait", "300ms", "--", "true")
			if code != 2 {
				t.Fatalf("--wait 300ms on a held lock: exit %d, want 2; stderr:\n%s", code, errOut)
			}
		}
	})

	t.Run("LockDelayReachesTheGrant", func(t *testing.T) {
		l.t = t
		ready := l.file("delay-held")
		_, _, _, _ = l.start("lock", "cli/delay", "--lock-delay", "20s", "--", "sh", "-c", "touch "+ready+"; sleep 5")
		eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(ready); return err })
		_, out, _ := l.run(10*time.Second, "status", "cli/delay", "-o", "json")
		if !regexp.MustCompile(`"lock_delay_ms":\s*"20000"`).MatchString(out) {
			t.Fatalf("the grant of lock --lock-delay 20s has no lock delay of 20000 ms:\n%s", out)
		}
		// Without --lock-delay, the grant keeps the lock for --grace after
		// a failure: the time a cut-off command has after SIGTERM.
		ready2 := l.file("delay-default-held")
		_, _, _, _ = l.start("lock", "cli/delay-default", "--grace", "7s", "--", "sh", "-c", "touch "+ready2+"; sleep 5")
		eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(ready2); return err })
		_, out, _ = l.run(10*time.Second, "status", "cli/delay-default", "-o", "json")
		if !regexp.MustCompile(`"lock_delay_ms":\s*"7000"`).MatchString(out) {
			t.Fatalf("the grant of lock --grace 7s has no lock delay of 7000 ms:\n%s", out)
		}
		// A holder whose session fails leaves the name to nobody for its
		// lock-delay: status and a refused lock say so ("(free)" and "held
		// by someone else" did).
		ready3 := l.file("delay-failed-held")
		failed, _, _, failedDone := l.start("lock", "cli/delay-failed", "--ttl", "2s", "--lock-delay", "30s", "--", "sh", "-c", "touch "+ready3+"; sleep 60")
		eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(ready3); return err })
		_ = failed.Process.Kill() // kill -9: its session expires a TTL later
		<-failedDone
		eventually(t, 10*time.Second, "the lock-delay shows in status", func() error {
			if _, out, _ := l.run(10*time.Second, "status", "cli/delay-failed"); !strings.Contains(out, "a lock-delay keeps it from everyone until") {
				return fmt.Errorf("status says:\n%s", out)
			}
			return nil
		})
		code, _, errOut := l.run(10*time.Second, "lock", "cli/delay-failed", "--wait", "0", "--", "true")
		if code != 2 || !strings.Contains(errOut, "is kept from everyone by a lock-delay until") {
			t.Fatalf("lock --wait 0 during a lock-delay: exit %d, stderr:\n%s\nwant exit 2 naming the lock-delay", code, errOut)
		}
		code, _, errOut = l.run(10*time.Second, "lock", "cli/delay-bad", "--lock-delay", "2m", "--", "true")
		if code == 0 || !strings.Contains(errOut, "lock_delay_ms") {
			t.Fatalf("--lock-delay 2m: exit %d, want a refusal naming lock_delay_ms; stderr:\n%s", code, errOut)
		}
	})

	t.Run("StatusAndListShowTheQueue", func(t *testing.T) {
		l.t = t
		ready := l.file("q-held")
		_, _, _, _ = l.start("lock", "cli/queue", "--owner", "holder", "--", "sh", "-c", "touch "+ready+"; sleep 8")
		eventually(t, 10*time.Second, "the holder runs", func() error { _, err := os.Stat(ready); return err })
		for _, w := range []string{"first", "second"} {
			_, _, _, _ = l.start("lock", "cli/queue", "--owner", w, "--", "true")
			eventually(t, 10*time.Second, w+" queued", func() error {
				_, out, _ := l.run(10*time.Second, "status", "cli/queue")
				if !strings.Contains(out, w) {
					return errors.New(out)
				}
				return nil
			})
		}
		code, out, _ := l.run(10*time.Second, "status", "cli/queue")
		want(t, "status exit", code, 0)
		order := regexp.MustCompile(`(?s)holder\s+holder\s.*waiter 1\s+first\s.*waiter 2\s+second\s`)
		if !order.MatchString(out) {
			t.Fatalf("status does not show holder, first, second in order:\n%s", out)
		}
		_, out, _ = l.run(10*time.Second, "list", "cli/")
		if !regexp.MustCompile(`mutex\s+cli/queue\s+1\s+2`).MatchString(out) {
			t.Fatalf("list does not show 1 holder and 2 waiters:\n%s", out)
		}
		_, out, _ = l.run(10*time.Second, "status", "cli/queue", "-o", "json")
		if !strings.Contains(out, `"owner": "first"`) {
			t.Fatalf("json status: %s", out)
		}
	})

	t.Run("LostSessionStopsTheCommand", func(t *testing.T) {
		l.t = t
		sid, term := l.file("sid"), l.file("term")
		script := `trap 'echo term > ` + term + `; exit 0' TERM; echo $LOCKSTEP_SESSION_ID > ` + sid + `; sleep 30 & wait`
		_, _, errb, done := l.start("lock", "cli/lost", "--ttl", "3s", "--grace", "5s", "--", "sh", "-c", script)
		var id string
		eventually(t, 10*time.Second, "the command runs", func() error {
			b, err := os.ReadFile(sid)
			id = strings.TrimSpace(string(b))
			if err == nil && id == "" {
				err = errors.New("empty")
			}
			return err
		})
		// An operator looks at the session, then ends it (as an expiry
		// would): the force-release of a stuck holder.
		if code, out, errOut := l.run(10*time.Second, "session", "show", id); code != 0 ||
			!regexp.MustCompile(`holds\s+mutex\s+cli/lost\s+\d+`).MatchString(out) {
			t.Fatalf("session show %s: exit %d\n%s%s\nwant the mutex it holds", id, code, out, errOut)
		}
		if code, out, errOut := l.run(10*time.Second, "session", "close", id); code != 0 || !strings.Contains(out, "closed session "+id) {
			t.Fatalf("session close %s: exit %d\n%s%s", id, code, out, errOut)
		}
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("lockstep lock after losing its session: %v, want exit 3; stderr:\n%s", err, errb)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the command still runs 15s after its session was closed")
		}
		if _, err := os.Stat(term); err != nil {
			t.Fatal("the command did not get SIGTERM")
		}
		if !strings.Contains(errb.String(), "lost the hold") {
			t.Fatalf("stderr does not say why: %s", errb)
		}
		// Gone now: closing or showing it again says so; a bad id is a
		// usage error.
		if code, _, errOut := l.run(10*time.Second, "session", "close", id); code == 0 || !strings.Contains(errOut, "does not exist") {
			t.Fatalf("session close of a closed session: exit %d, stderr:\n%s", code, errOut)
		}
		if code, _, errOut := l.run(10*time.Second, "session", "show", "abc"); code != 2 || !strings.Contains(errOut, "not a session id") {
			t.Fatalf("session show abc: exit %d, stderr:\n%s", code, errOut)
		}
	})

	t.Run("MaxHoldStopsAHungCommand", func(t *testing.T) {
		l.t = t
		term := l.file("max-hold-term")
		script := `trap 'echo term > ` + term + `; exit 0' TERM; sleep 30 & wait`
		start := time.Now()
		code, _, errOut := l.run(20*time.Second, "lock", "cli/max-hold", "--max-hold", "2s", "--grace", "3s", "--", "sh", "-c", script)
		if code != 3 || !strings.Contains(errOut, "--max-hold of 2s passed") || strings.Contains(errOut, "releasing") {
			t.Fatalf("lock --max-hold 2s of a hung command: exit %d after %v, stderr:\n%s\nwant exit 3 naming the max hold, and no release of the grant the servers ended", code, time.Since(start), errOut)
		}
		if _, err := os.Stat(term); err != nil {
			t.Fatal("the hung command did not get SIGTERM")
		}
		// The command stopped, so lockstep released the hold: the next
		// holder need not wait out the lock-delay, which covers only a
		// command that could not be stopped.
		if code, _, errOut := l.run(10*time.Second, "lock", "cli/max-hold", "--wait", "0", "--", "true"); code != 0 {
			t.Fatalf("lock --wait 0 after the stopped command's hold was released: exit %d, stderr:\n%s", code, errOut)
		}
	})

	t.Run("ReleaseByAnotherStopsTheCommand", func(t *testing.T) {
		// The user trial: A holds jobs/rel while its command runs; another
		// client of the same principal releases A's grant over REST by
		// owner label and fencing token; B then takes the lock. A's
		// command ran on beside B's, and A said at its very end that its
		// release was refused as stale and exited 0. Now A is told at
		// once: its command gets SIGTERM, A says another caller released
		// its grant (with the token), sends no release, and exits 3.
		l.t = t
		tok, term, aEnd := l.file("rel-token"), l.file("rel-term"), l.file("rel-a-end")
		script := `trap 'echo term > ` + term + `; exit 0' TERM; echo A-start; echo $LOCKSTEP_FENCING_TOKEN > ` + tok +
			`; sleep 8 & wait; echo A-end > ` + aEnd
		_, aOut, aErr, aDone := l.start("lock", "cli/jobs/rel", "--ttl", "10s", "--owner", "vm/pid-16744", "--", "sh", "-c", script)
		var token string
		eventually(t, 10*time.Second, "A's command runs", func() error {
			b, err := os.ReadFile(tok)
			token = strings.TrimSpace(string(b))
			if err == nil && token == "" {
				err = errors.New("empty")
			}
			return err
		})
		body := `{"owner":"vm/pid-16744","fencing_token":"` + token + `"}`
		resp, err := http.Post(l.url+"/locks/"+url.PathEscape("cli/jobs/rel")+"/release", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"released":true`) {
			t.Fatalf("the other client's release by owner and token: %d %s", resp.StatusCode, answer)
		}
		released := time.Now()
		code, bOut, bErr := l.run(20*time.Second, "lock", "cli/jobs/rel", "--wait", "10s", "--", "sh", "-c", "echo B-start; echo B-end")
		if code != 0 || !strings.Contains(bOut, "B-end") {
			t.Fatalf("B after A's grant was released: exit %d\n%s%s", code, bOut, bErr)
		}
		select {
		case err := <-aDone:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("A after another caller released its grant: %v, want exit 3; stderr:\n%s", err, aErr)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("A still runs 5 s after another caller released its grant (%v ago); stdout:\n%s\nstderr:\n%s", time.Since(released), aOut, aErr)
		}
		if d := time.Since(released); d > 6*time.Second {
			t.Fatalf("A ended %v after the release, later than a push and its --grace allow", d)
		}
		if _, err := os.Stat(term); err != nil {
			t.Fatal("A's command did not get SIGTERM")
		}
		if _, err := os.Stat(aEnd); err == nil {
			t.Fatal("A's command ran to its end after its grant was released")
		}
		for _, want := range []string{"released by another caller", "token " + token} {
			if !strings.Contains(aErr.String(), want) {
				t.Fatalf("A's stderr lacks %q:\n%s", want, aErr)
			}
		}
		if strings.Contains(aErr.String(), "releasing mutex") {
			t.Fatalf("A tried to release a grant another caller had released:\n%s", aErr)
		}
	})

	t.Run("Help", func(t *testing.T) {
		l.t = t
		for _, cmd := range []string{"lock", "sem", "rwlock", "barrier", "elect", "status", "list", "watch", "cluster", "session", "completion"} {
			code, out, errOut := l.run(5*time.Second, cmd, "-h")
			if code != 0 || !strings.Contains(out+errOut, "Examples:") {
				t.Fatalf("%s -h: exit %d, no examples:\n%s%s", cmd, code, out, errOut)
			}
		}
		code, out, _ := l.run(5*time.Second, "completion", "bash")
		if code != 0 || !strings.Contains(out, "complete -o default -F _lockstep lockstep") {
			t.Fatalf("completion bash: %d %s", code, out)
		}
	})
}

// TestCLIElectAndBarrier: a second candidate takes over when the leader is
// interrupted (it resigns), --observe shows both, and a barrier lets its
// parties go together.
func TestCLIElectAndBarrier(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)
	l := cli{t: t, url: n.url(), dir: t.TempDir()}

	_, obsOut, _, _ := l.start("elect", "cli/leader", "--observe")
	a, aOut, _, aDone := l.start("elect", "cli/leader", "10.0.0.1", "--owner", "a")
	eventually(t, 10*time.Second, "a elected", func() error {
		if !strings.Contains(aOut.String(), "elected leader of cli/leader as a") {
			return errors.New(aOut.String())
		}
		return nil
	})
	_, bOut, _, _ := l.start("elect", "cli/leader", "10.0.0.2", "--owner", "b")
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(bOut.String(), "elected") {
		t.Fatal("b elected while a leads")
	}
	_ = a.Process.Signal(os.Interrupt)
	select {
	case err := <-aDone:
		if err != nil {
			t.Fatalf("interrupted leader: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leader did not resign within 10s of Ctrl-C")
	}
	eventually(t, 10*time.Second, "b elected after a resigned", func() error {
		if !strings.Contains(bOut.String(), "elected leader of cli/leader as b") {
			return errors.New(bOut.String())
		}
		return nil
	})
	eventually(t, 10*time.Second, "observe shows a then b", func() error {
		o := obsOut.String()
		ia, ib := strings.Index(o, `a value="10.0.0.1"`), strings.Index(o, `b value="10.0.0.2"`)
		if ia < 0 || ib < ia {
			return errors.New(o)
		}
		return nil
	})

	_, _, _, first := l.start("barrier", "cli/barrier", "--parties", "2")
	select {
	case <-first:
		t.Fatal("one party passed a 2-party barrier alone")
	case <-time.After(300 * time.Millisecond):
	}
	code, out, _ := l.run(10*time.Second, "barrier", "cli/barrier", "--parties", "2")
	want(t, "second party's exit", code, 0)
	if !strings.Contains(out, "released") {
		t.Fatalf("barrier output: %s", out)
	}
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first party was not released")
	}
}
