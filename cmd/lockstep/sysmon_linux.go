//go:build linux

package main

import (
	"os"
	"syscall"
)

// quietSysmon starts this process again, the same binary with the same
// arguments and process id, with quietSchedtrace in GODEBUG (sysmon.go),
// unless GODEBUG sets schedtrace already. If that fails, the server runs
// as it is.
func quietSysmon() {
	env, again := quietSysmonEnviron(os.Environ())
	if !again {
		return
	}
	_ = syscall.Exec("/proc/self/exe", os.Args, env) // returns only when it failed
}
