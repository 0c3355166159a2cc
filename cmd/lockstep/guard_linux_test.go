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
	"syscall"
	"testing"
	"time"
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
}
