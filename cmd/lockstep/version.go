package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	goruntime "runtime"

	"github.com/lockstepd/lockstep/rpc"
	"github.com/lockstepd/lockstep/runtime"
)

const versionHelp = `Usage: lockstep version [-o table|json]

Prints this binary's version, the log versions it applies by (members whose
log versions differ refuse each other: docs/operations.md, Upgrading), and
the Go release it was built with. It needs no cluster.

Examples:
  lockstep version
  lockstep version -o json | jq -r .version
`

// versionCmd prints this binary's version and the log versions it applies
// by, offline: before a rolling upgrade, an operator compares the new
// binary's log versions with the running members' (`lockstep cluster
// status`); when they differ, the upgrade pauses the cluster once
// (docs/operations.md, Upgrading). It takes only -o, so it does not use
// the client commands' flag set (common.go), whose endpoints and
// credentials would mean nothing here.
func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockstep version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	output := fs.String("o", "table", "output `format`: table or json")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), versionHelp)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "lockstep version: %s\nRun 'lockstep version -h' for usage.\n", fmt.Sprintf(format, a...))
		return exitUsage
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usageErr("unexpected arguments %q: it takes only -o", fs.Args())
	case *output != "table" && *output != "json":
		return usageErr("-o %q: use table or json", *output)
	}
	goVersion := goruntime.Version() + " " + goruntime.GOOS + "/" + goruntime.GOARCH
	if *output == "json" {
		b, _ := json.MarshalIndent(map[string]string{"version": rpc.Version(), "versions": runtime.Compatibility(), "go": goVersion}, "", "  ")
		fmt.Fprintln(stdout, string(b))
		return exitOK
	}
	fmt.Fprintf(stdout, "lockstep %s\nlog versions: %s\n%s\n", rpc.Version(), runtime.Compatibility(), goVersion)
	return exitOK
}
