// Command lockstep is the Lockstep server.
//
//	lockstep serve --config FILE [flags]   run one member of a cluster
//	lockstep serve --dev [flags]           run a single node for trying it out
//
// Flags override the keys of the configuration file; `lockstep serve -h`
// lists them. See docs/operations.md.
package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the server failed to start or stopped with an error
	exitUsage = 2 // the command line or the configuration is wrong
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "lockstep: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Lockstep is a distributed lock coordinator.

Usage:
  lockstep serve --config FILE [flags]   run one member of a cluster
  lockstep serve --dev [flags]           run a single node on 127.0.0.1 with
                                         defaults, in a fresh data directory

Run 'lockstep serve -h' for the flags. See docs/operations.md.
`)
}
