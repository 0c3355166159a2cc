//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the command in a process group of its own, so that a
// lost session stops what the command started too (a shell's children), not
// only the command itself.
func ownProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalGroup signals the command's process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	return syscall.Kill(-cmd.Process.Pid, sig)
}
