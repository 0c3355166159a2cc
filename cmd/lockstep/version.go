package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
)

// versionCmd prints this binary's version and the log versions it applies
// by, offline: before a rolling upgrade, an operator compares the new
// binary's log versions with the running members' (`lockstep cluster
// status`); when they differ, the upgrade pauses the cluster once
// (docs/operations.md, Upgrading).
func versionCmd(args []string, stdout, stderr io.Writer) int {
	asJSON := false
	switch {
	case len(args) == 0:
	case len(args) == 2 && args[0] == "-o" && args[1] == "json", len(args) == 1 && args[0] == "-o=json":
		asJSON = true
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help"):
		fmt.Fprint(stdout, `Usage: lockstep version [-o json]

Prints this binary's version, the log versions it applies by (members whose
log versions differ refuse each other: docs/operations.md, Upgrading), and
the Go release it was built with.
`)
		return exitOK
	default:
		fmt.Fprintf(stderr, "lockstep version: unexpected arguments %q: it takes only -o json\n", args)
		return exitUsage
	}
	goVersion := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if asJSON {
		b, _ := json.MarshalIndent(map[string]string{"version": rpc.Version(), "versions": core.Compatibility(), "go": goVersion}, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	fmt.Fprintf(stdout, "lockstep %s\nlog versions: %s\n%s\n", rpc.Version(), core.Compatibility(), goVersion)
	return exitOK
}
