//go:build linux

package main

import (
	"os"
	goruntime "runtime"
	"syscall"
)

// quietSysmon starts this process again, the same binary with the same
// arguments and process id, with quietSchedtrace in GODEBUG (sysmon.go),
// unless GODEBUG sets schedtrace already. If that fails, the server runs
// as it is.
//
// The thread that starts it again first sets its timer slack
// (quietTimerSlack): execve keeps it, and every thread the runtime starts
// after takes its creator's, so the whole server runs with it.
func quietSysmon() {
	env, again := quietSysmonEnviron(os.Environ())
	if !again {
		return
	}
	goruntime.LockOSThread() // the slack is the calling thread's: exec from the same one
	defer goruntime.UnlockOSThread()
	setTimerSlack(quietTimerSlack)
	_ = syscall.Exec("/proc/self/exe", os.Args, env) // returns only when it failed
}

// prSetTimerslack is prctl's PR_SET_TIMERSLACK (linux/prctl.h).
const prSetTimerslack = 29

// setTimerSlack sets the calling thread's timer slack to ns nanoseconds
// (0: back to the thread's default), and says whether it could.
func setTimerSlack(ns uintptr) bool {
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, ns, 0)
	return errno == 0
}
