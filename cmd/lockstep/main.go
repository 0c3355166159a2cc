// Command lockstep is the Lockstep server and its command-line client.
//
//	lockstep serve --config FILE [flags]   run one member of a cluster
//	lockstep serve --dev [flags]           run a single node for trying it out
//	lockstep lock NAME -- CMD ARGS...      run a command while holding a lock
//
// Flags override the keys of the configuration file; `lockstep serve -h`
// lists them. See docs/operations.md, and docs/client.md for the client
// commands (each has -h with examples).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the server failed to start or stopped with an error
	exitUsage = 2 // the command line or the configuration is wrong
)

func main() {
	if isServe(os.Args[1:]) {
		quietSysmon() // sysmon.go: before anything else, since it may start the process again
	}
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
	case "--config", "-config", "--check":
		// `lockstep --config FILE` is the service description's invocation
		// of the server: the same as `lockstep serve --config FILE`.
		return serve(args, stdout, stderr)
	case guardCommand:
		return guard(args[1:], stderr)
	case "certs":
		return certsCmd(args[1:], stdout, stderr)
	case "keys":
		return keysCmd(args[1:], stdout, stderr)
	case "snapshot":
		return snapshotCmd(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		return versionCmd(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		return help(args[1:], stdout, stderr)
	}
	if strings.HasPrefix(args[0], "--config=") || strings.HasPrefix(args[0], "-config=") {
		return serve(args, stdout, stderr)
	}
	if cmd, ok := clientCommands[args[0]]; ok {
		return cmd(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "lockstep: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

// commandsWithHelp are the commands besides the client ones
// (clientCommands) that answer -h with their own help.
var commandsWithHelp = map[string]func(args []string, stdout, stderr io.Writer) int{
	"serve":    serve,
	"certs":    certsCmd,
	"keys":     keysCmd,
	"snapshot": snapshotCmd,
	"version":  versionCmd,
}

// help is `lockstep help [COMMAND [SUBCOMMAND...]]`: the command's own
// help, as `lockstep COMMAND [SUBCOMMAND...] -h` gives it, or without one
// the overview. A name that is no command is a usage error.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	cmd, ok := commandsWithHelp[args[0]]
	if !ok {
		cmd, ok = clientCommands[args[0]]
	}
	if !ok {
		fmt.Fprintf(stderr, "lockstep help: no command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd(append(args[1:len(args):len(args)], "-h"), stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Lockstep is a distributed lock coordinator.

Usage:
  lockstep serve --config FILE [flags]   run one member of a cluster
                                         (lockstep --config FILE is the same;
                                         --check only checks the file)
  lockstep serve --dev [flags]           run a single node on 127.0.0.1 with
                                         defaults, in a fresh data directory

Backup and restore (see docs/operations.md):
  lockstep snapshot save FILE [--stale]  write a backup of the whole state
  lockstep snapshot restore FILE --config FILE
                                         make a new cluster's member from one

Security (see docs/security.md):
  lockstep certs ca|node|client ...      make a CA and certificates
  lockstep keys create PRINCIPAL         make an API key (shown once)

Client commands (each takes -h for its flags and examples):
  lockstep lock NAME [--wait D] [--ttl D] -- CMD ARGS...
                                         run CMD holding the mutex NAME
  lockstep sem NAME --limit N [--permits K] -- CMD...
                                         run CMD holding K of N permits
  lockstep rwlock NAME --read|--write -- CMD...
  lockstep barrier NAME --parties N      wait until N parties arrive
  lockstep elect NAME VALUE              campaign; hold leadership until Ctrl-C
  lockstep elect NAME --observe          print the leader and its changes
  lockstep status NAME                   holders and waiters, in order
  lockstep list [PREFIX]                 live objects
  lockstep watch PREFIX                  print changes as they happen
  lockstep cluster status|add|remove|transfer
  lockstep session list [--owner PREFIX]
                                         live sessions: owner, lease, holds, waits
  lockstep session show|close ID         a session's holds; end it (force-release)
  lockstep completion bash|zsh           shell completion
  lockstep version                       this binary's version and log versions

Client commands talk to --endpoints (or LOCKSTEP_ENDPOINTS), default
http://127.0.0.1:8080, and print tables, or JSON with -o json.

Run 'lockstep serve -h' for the server's flags, and 'lockstep help COMMAND'
(or 'lockstep COMMAND -h') for any command's. See docs/operations.md and
docs/client.md.
`)
}
