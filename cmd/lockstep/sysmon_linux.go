//go:build linux

package main

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"syscall"
	"unsafe"
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

// prSetName is prctl's PR_SET_NAME: the calling thread's name, which for
// the main thread is the process's (ps -C, pgrep, top).
const prSetName = 15

// The restart execs /proc/self/exe, so the kernel names the process "exe"
// after that path, and `pgrep lockstep` found no server. Package init runs
// on the main thread, and the threads the runtime starts after take its
// name, so the server is called again what its binary is called.
func init() {
	if comm, err := os.ReadFile("/proc/self/comm"); err != nil || string(comm) != "exe\n" {
		return
	}
	if name := filepath.Base(os.Args[0]); name != "exe" && name != "." {
		setProcessName(name)
	}
}

// setProcessName gives the calling thread the name name (at most 15
// bytes, as the kernel keeps it), and says whether it could.
func setProcessName(name string) bool {
	b := make([]byte, 16)
	copy(b[:15], name)
	_, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetName, uintptr(unsafe.Pointer(&b[0])), 0)
	return errno == 0
}
