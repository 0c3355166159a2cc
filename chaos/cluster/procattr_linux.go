//go:build linux

package cluster

import "syscall"

// childAttr makes a node die with the process that started it, even when
// that one is killed (a test timeout), so that no lockstep process
// outlives a run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
