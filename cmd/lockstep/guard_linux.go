//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
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
//
// A CLI that is stopped rather than killed (SIGSTOP, Ctrl-Z in a shell:
// the command is in a group of its own, so the stop reaches the CLI alone)
// renews nothing, and its session expires while the command runs on. So
// the CLI tells the guard, on a pipe, how long the hold is good for (the
// lease as the client counts it, or the max hold if sooner) every
// guardBeat; when that passes without a newer word, the guard stops the
// command as the CLI would on a loss: SIGTERM to the group, SIGKILL after
// the grace period. The mutex's lock-delay (--grace by default) keeps the
// next holder out meanwhile.

// guardCommand is the hidden subcommand that runs the guard.
const guardCommand = "__guard"

// guardParentEnv tells the guard which process must outlive it.
const guardParentEnv = "LOCKSTEP_GUARD_PARENT"

// guardBeat is how often the CLI tells the guard how long the hold is good
// for.
const guardBeat = 250 * time.Millisecond

// guardLeaseFD is the guard's end of that pipe (the first of ExtraFiles),
// and guardGraceEnv the grace period between its SIGTERM and SIGKILL.
// guardLockDelayEnv the lock-delay that keeps the next holder out after
// it (a mutex's; none for the other kinds), which its word on the stop
// names.
const (
	guardLeaseFD      = 3
	guardGraceEnv     = "LOCKSTEP_GUARD_GRACE"
	guardLockDelayEnv = "LOCKSTEP_GUARD_LOCK_DELAY"
)

// guardQuiet is how long the guard, having stopped the command when the
// hold's lease ran out as last reported, waits for a word from lockstep
// before it says so itself: a lockstep that still runs says a word every
// guardBeat, and it saw the same lease run out, so it says why it stops the
// command itself, once (its last word came a moment before the lease ran
// out, and its loss of the session a moment after the guard's timer). Only
// the announcement waits; the SIGTERM does not.
const guardQuiet = 2 * guardBeat

// parentDeathSignal is what the kernel sends the guard when the CLI dies.
// It is one no command would be sent by the CLI, so the guard can tell it
// from a signal meant for the group.
const parentDeathSignal = syscall.SIGUSR2

// guardedCommand returns the command that runs argv under the guard, and
// starts it. The PDEATHSIG is tied to the thread that forked the guard, so
// the start happens on a thread locked for as long as the guard runs.
// goodFor says how long the hold is good for now; it is told to the guard
// every guardBeat until the guard is gone, and grace is the guard's wait
// between SIGTERM and SIGKILL when that runs out; lockDelay the hold's
// lock-delay (0: none), which the guard's word on such a stop names.
func guardedCommand(argv []string, setup func(*exec.Cmd), goodFor func() time.Duration, grace, lockDelay time.Duration) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, append([]string{guardCommand, "--"}, argv...)...)
	setup(cmd)
	cmd.Env = append(cmd.Env, guardParentEnv+"="+strconv.Itoa(os.Getpid()), guardGraceEnv+"="+grace.String(),
		guardLockDelayEnv+"="+lockDelay.String())
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: parentDeathSignal}
	tell := func() error {
		_, err := fmt.Fprintf(w, "%d\n", goodFor().Milliseconds())
		return err
	}
	if err := tell(); err != nil { // before the start: the guard has it at once
		r.Close()
		w.Close()
		return nil, err
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread must outlive the guard
		started <- cmd.Start()
		select {} // a locked goroutine that exits would end its thread, and fire the signal
	}()
	err = <-started
	r.Close() // the guard's now
	if err != nil {
		w.Close()
		return nil, err
	}
	go func() {
		defer w.Close()
		t := time.NewTicker(guardBeat)
		defer t.Stop()
		for range t.C {
			if tell() != nil {
				return // the guard is gone
			}
		}
	}()
	return cmd, nil
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
	// The guard's own settings are not the command's: it sees the
	// environment it would without a guard (docs/client.md names the
	// three LOCKSTEP_ variables it gets).
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == guardParentEnv || name == guardGraceEnv || name == guardLockDelayEnv
	})
	// The lease pipe is the guard's: the command would inherit it (an
	// extra file is passed without close-on-exec) and find an fd 3 it
	// never opened.
	syscall.CloseOnExec(guardLeaseFD)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "lockstep: cannot start %q: %v; check the command and PATH.\n", args[0], err)
		return 127
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	goodFor := readGoodFor(os.NewFile(guardLeaseFD, "lease"))
	grace, _ := time.ParseDuration(os.Getenv(guardGraceEnv))
	lockDelay, _ := time.ParseDuration(os.Getenv(guardLockDelayEnv))
	say := func() {
		fmt.Fprintf(stderr, "lockstep: the hold's lease, as lockstep last reported it, ran out unrenewed (lockstep stopped, stuck, or cut off from the cluster): "+
			"sent SIGTERM to the command (SIGKILL in %v); %s.\n", grace, nextHolder(lockDelay, false))
	}
	var expiry, kill <-chan time.Time
	// announce fires when the guard is to say why it stopped the command,
	// lockstep having said no word since (guardQuiet); nil: nothing to say.
	var announce <-chan time.Time
	var deadline *time.Timer
	var said time.Duration // the last word: 0 when lockstep said the hold ended
	for {
		select {
		case <-passed:
		case <-died:
			_ = syscall.Kill(0, syscall.SIGKILL) // the group, this guard included
			return 128 + int(syscall.SIGKILL)
		case d, ok := <-goodFor:
			if !ok {
				goodFor = nil // no word will come: the CLI's own death is the guard's cue
				continue
			}
			announce = nil // lockstep runs: it says why the command is stopped itself
			if kill != nil {
				continue // stopping already
			}
			said = d
			if deadline == nil {
				deadline = time.NewTimer(d)
				expiry = deadline.C
			} else {
				deadline.Reset(d)
			}
		case <-expiry:
			// The CLI said nothing for as long as the hold was good for:
			// it is stopped (or stuck), and its session has expired or is
			// about to, while the command runs. When its last word was
			// that the hold ended, it is stopping the command itself and
			// has said why; the guard makes sure of it, silently. And
			// when a word comes soon after all (guardQuiet), lockstep runs,
			// and says it itself: the guard's own word would announce the
			// same SIGTERM twice.
			if said > 0 {
				announce = time.After(guardQuiet)
			}
			expiry = nil
			_ = syscall.Kill(0, syscall.SIGTERM) // the group; the guard, Notified, waits for the command
			kill = time.After(grace)
		case <-announce:
			announce = nil
			say()
		case <-kill:
			_ = syscall.Kill(0, syscall.SIGKILL) // the group, this guard included
			return 128 + int(syscall.SIGKILL)
		case <-exited:
			if announce != nil {
				// The command went at once: say why before going too,
				// unless lockstep speaks first.
				select {
				case <-announce:
					say()
				case <-died:
				case _, ok := <-goodFor:
					if !ok {
						say() // lockstep is gone: nobody else will
					}
				}
			}
			st := cmd.ProcessState
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return st.ExitCode()
		}
	}
}

// readGoodFor yields each "how long the hold is good for" the CLI writes
// on f, in milliseconds a line, and closes at its end.
func readGoodFor(f *os.File) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	if f == nil {
		close(out)
		return out
	}
	go func() {
		defer close(out)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ms, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				return
			}
			select { // only the latest word matters
			case <-out:
			default:
			}
			out <- time.Duration(max(ms, 0)) * time.Millisecond
		}
	}()
	return out
}
