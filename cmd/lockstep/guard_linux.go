//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
)

// A command run under a hold must never outlive the process that holds it:
// if `lockstep lock` is killed with -9, its session expires after the TTL,
// the next holder starts its own copy of the command, and two copies of a
// job that must run alone would run at once.
//
// On Linux the command is started under a guard: this binary again, as the
// hidden subcommand guardCommand, in a process group of its own that the
// command joins. The kernel signals the guard when its parent dies
// (PR_SET_PDEATHSIG), and the guard then kills the whole group, the
// command's children included. The guard forwards nothing itself: signals
// the CLI sends reach the whole group.

// guardCommand is the hidden subcommand that runs the guard.
const guardCommand = "__guard"

// guardParentEnv tells the guard which process must outlive it.
const guardParentEnv = "LOCKSTEP_GUARD_PARENT"

// parentDeathSignal is what the kernel sends the guard when the CLI dies.
// It is one no command would be sent by the CLI, so the guard can tell it
// from a signal meant for the group.
const parentDeathSignal = syscall.SIGUSR2

// guardedCommand returns the command that runs argv under the guard, and
// starts it. The PDEATHSIG is tied to the thread that forked the guard, so
// the start happens on a thread locked for as long as the guard runs.
func guardedCommand(argv []string, setup func(*exec.Cmd)) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{guardCommand, "--"}, argv...)...)
	setup(cmd)
	cmd.Env = append(cmd.Env, guardParentEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeathSignal}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must outlive the guard
		started <- cmd.Start()
		select {} // a locked goroutine that exits would end its thread, and fire the signal
	}()
	return cmd, <-started
}

// guard runs argv in its own process group and answers its exit code; when
// its parent dies first, it kills the group and exits.
func guard(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "lockstep: __guard runs a command for lockstep lock; it is not for use by hand")
		return exitUsage
	}
	died := make(chan os.Signal, 1)
	signal.Notify(died, parentDeathSignal)
	// The group's signals (an interrupt the CLI passes on) are the command's
	// to act on; the guard waits for the command's answer. Notify, not
	// Ignore: an ignored signal would stay ignored in the command.
	passed := make(chan os.Signal, 8)
	signal.Notify(passed, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if want := os.Getenv(guardParentEnv); want != "" && strconv.Itoa(os.Getppid()) != want {
		return 128 + int(syscall.SIGKILL) // the parent died before the signal was armed
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "lockstep: cannot start %q: %v; check the command and PATH.\n", args[0], err)
		return 127
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	for {
		select {
		case <-passed:
		case <-died:
			_ = syscall.Kill(0, syscall.SIGKILL) // the group, this guard included
			return 128 + int(syscall.SIGKILL)
		case <-exited:
			st := cmd.ProcessState
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return st.ExitCode()
		}
	}
}
