//go:build !linux

package main

import (
	"fmt"
	"io"
	"os/exec"
	"time"
)

// Without PR_SET_PDEATHSIG there is no guard: a command run under a hold is
// started directly, and if `lockstep lock` is killed with -9 the command
// keeps running (docs/client.md says so).

const guardCommand = "__guard"

func guardedCommand(argv []string, setup func(*exec.Cmd), _ func() time.Duration, _, _ time.Duration) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	setup(cmd)
	ownProcessGroup(cmd)
	return cmd, cmd.Start()
}

func guard(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "lockstep: __guard exists on Linux only")
	return exitUsage
}
