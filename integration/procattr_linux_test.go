//go:build integration && linux

package integration

import "syscall"

// childAttr makes a node die with the test process, even when the test
// binary is killed (a timeout), so that no lockstep process outlives it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
