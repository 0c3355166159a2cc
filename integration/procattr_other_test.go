//go:build integration && !linux

package integration

import "syscall"

// childAttr: without Pdeathsig, nodes are killed by the tests' cleanup only.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
