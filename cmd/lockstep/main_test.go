package main

import (
	"os"
	"testing"
)

// TestMain lets a test run 'lockstep lock' in this process: on Linux the
// command runs under a guard, which is this binary started again as the
// hidden subcommand guardCommand (guard_linux.go); started as such, the
// test binary is that guard, not the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == guardCommand {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
