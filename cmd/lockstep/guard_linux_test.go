//go:build linux

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
)

// TestStoppedLockStopsItsCommand is the user trial: 'lockstep lock'
// stopped (SIGSTOP; Ctrl-Z in a shell stops it alone, its command being in
// a process group of its own) renews nothing, and its session expired
// while the command ran on beside the next holder, for as long as the stop
// lasted. The guard now stops the command once the hold's lease, as the
// client counted it, passes without word from lockstep: SIGTERM, then
// SIGKILL after --grace, within the mutex's lock-delay.
func TestStoppedLockStopsItsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	api := devServer(t)
	dir := t.TempDir()
	tokenFile, termFile := filepath.Join(dir, "token"), filepath.Join(dir, "term")
	fdFile := filepath.Join(dir, "fd3")
	script := `trap 'echo term > ` + termFile + `; exit 143' TERM; if [ -e /proc/$$/fd/3 ]; then echo open > ` + fdFile + `; fi; ` +
		`echo "$LOCKSTEP_FENCING_TOKEN" > ` + tokenFile + `; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done`
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := lockstepCommand(t, ctx, os.Args[0], "lock", "jobs/stopped", "--ttl", "2s", "--grace", "1s",
		"--endpoints", api, "--", "sh", "-c", script)
	var errb lockedBuffer
	cmd.Stdout, cmd.Stderr = io.Discard, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
	})
	waitFile(t, tokenFile, 20*time.Second)
	if _, err := os.Stat(fdFile); err == nil {
		t.Error("the command inherited an fd 3: the guard's lease pipe")
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	if got := waitFile(t, termFile, 15*time.Second); got != "term" {
		t.Fatalf("the command's SIGTERM file: %q", got)
	}
	t.Logf("SIGTERM %v after lockstep was stopped (a 2 s lease)", time.Since(stopped).Round(time.Millisecond))
	// Resumed, lockstep finds its command gone and the hold lost: exit 3,
	// saying why. It exited with the command's own code (143) and said
	// nothing, when the command's end came before its session's loss.
	time.Sleep(500 * time.Millisecond) // the command's exit has reached lockstep's wait
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitSessionLost {
		t.Errorf("lockstep resumed after its hold's lease ran out: %v, want exit %d\nstderr:\n%s", err, exitSessionLost, errb.String())
	}
	// Resumed, lockstep learns of the command's end and of its session's
	// loss in either order: it says one or the other, never another caller.
	out := errb.String()
	if !strings.Contains(out, "lockstep lock: the command was stopped because the session") || strings.Contains(out, "another caller released") {
		t.Errorf("stderr does not say the session's lease ran out or was lost, or blames another caller:\n%s", out)
	}
	// lockstep, stopped, could not say why its command got SIGTERM: the
	// guard says it, once, though it waits a moment for lockstep's word.
	if n := strings.Count(out, "as lockstep last reported it"); n != 1 || !strings.Contains(out, "another holder may start once its lock-delay ends") {
		t.Errorf("the guard announced the SIGTERM %d times, want once, naming the lock-delay:\n%s", n, out)
	}
}

// silentKeepalives is a backend that answers no keepalive once mute is
// set (each waits for its caller to give up): a cluster that stopped
// renewing this client's session while lockstep runs on, as when its
// client certificate expired.
type silentKeepalives struct {
	rpc.Backend
	mute *atomic.Bool
}

func (b silentKeepalives) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if cmd.Op == core.OpSessionKeepAlive && b.mute.Load() {
		<-ctx.Done()
		return core.Result{}, ctx.Err()
	}
	return b.Backend.DoBy(ctx, cmd, deadline)
}

// The user trial: with an expired client certificate, 'lockstep lock'
// printed two lines announcing the one SIGTERM of its command, its own
// ("another holder may be running now") and its guard's ("another holder
// may start once its lock-delay ends"): lockstep, running, and its guard
// both saw the hold's lease run out, within a beat of each other. Now the
// stop is announced once, by lockstep, which runs, in the accurate words:
// a mutex's lock-delay keeps the next holder out; a semaphore has none.
func TestLeaseRunOutWhileLockRunsIsAnnouncedOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	var mute atomic.Bool
	api := devServerWith(t, func(b rpc.Backend) rpc.Backend { return silentKeepalives{b, &mute} })
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lock", "jobs/muted"}, "another holder may start once its lock-delay ends"},
		{[]string{"sem", "jobs/muted-sem", "--limit", "1"}, "another holder may be running now"},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			mute.Store(false)
			dir := t.TempDir()
			tokenFile, termFile := filepath.Join(dir, "token"), filepath.Join(dir, "term")
			// The command takes a moment to stop, so that lockstep's
			// word on the loss finds it running.
			script := `trap 'echo term > ` + termFile + `; sleep 0.5; exit 143' TERM; echo "$LOCKSTEP_FENCING_TOKEN" > ` + tokenFile +
				`; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`
			done := make(chan int, 1)
			var out, errb lockedBuffer
			go func() {
				done <- run(append(tc.args, "--ttl", "2s", "--grace", "2s", "--endpoints", api, "--", "sh", "-c", script), &out, &errb)
			}()
			waitFile(t, tokenFile, 20*time.Second)
			mute.Store(true)
			var code int
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("lockstep did not end within 20 s of its keepalives going unanswered (a 2 s lease); stderr:\n%s", errb.String())
			}
			stderr := errb.String()
			t.Logf("exit %d, stderr:\n%s", code, stderr)
			if got := waitFile(t, termFile, time.Second); got != "term" {
				t.Errorf("the command was not sent SIGTERM: %q", got)
			}
			if code != exitSessionLost {
				t.Errorf("exit %d, want %d", code, exitSessionLost)
			}
			var said []string
			for _, line := range strings.Split(stderr, "\n") {
				if strings.Contains(line, "SIGTERM") {
					said = append(said, line)
				}
			}
			if len(said) != 1 {
				t.Fatalf("the command's SIGTERM was announced %d times, want once:\n%s", len(said), stderr)
			}
			if !strings.Contains(said[0], tc.want) {
				t.Errorf("the announcement %q does not say %q", said[0], tc.want)
			}
		})
	}
}

// TestGuardKeepsItsSettingsFromTheCommand: the command run under a hold
// sees the LOCKSTEP_ variables docs/client.md names, and none of the
// guard's own (it saw LOCKSTEP_GUARD_PARENT, _GRACE and _LOCK_DELAY).
func TestGuardKeepsItsSettingsFromTheCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	api := devServer(t)
	envFile := filepath.Join(t.TempDir(), "env")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := lockstepCommand(t, ctx, os.Args[0], "lock", "jobs/env", "--endpoints", api, "--", "sh", "-c", "env > "+envFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("lockstep lock: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := string(raw)
	for _, want := range []string{"LOCKSTEP_FENCING_TOKEN=", "LOCKSTEP_LOCK_NAME=jobs/env", "LOCKSTEP_SESSION_ID="} {
		if !strings.Contains(env, want) {
			t.Errorf("the command's environment lacks %s", want)
		}
	}
	if strings.Contains(env, "LOCKSTEP_GUARD_") {
		t.Errorf("the command sees the guard's settings:\n%s", env)
	}
}
