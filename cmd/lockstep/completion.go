package main

import (
	"fmt"
	"io"
)

// clientCommands are the client subcommands, dispatched by run.
var clientCommands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"lock":       lockCmd,
	"sem":        semCmd,
	"rwlock":     rwlockCmd,
	"barrier":    barrierCmd,
	"elect":      electCmd,
	"status":     statusCmd,
	"list":       listCmd,
	"watch":      watchCmd,
	"cluster":    clusterCmd,
	"session":    sessionCmd,
	"completion": completionCmd,
}

// bashCompletion completes the subcommands and each one's flags, as its -h
// lists them (TestCompletionFlagsMatchHelp keeps the two the same).
const bashCompletion = `# bash completion for lockstep; load with: source <(lockstep completion bash)
_lockstep() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "serve certs keys snapshot lock sem rwlock barrier elect status list watch cluster session completion version help" -- "$cur")); return
  fi
  local common="--endpoints -o --cacert --cert --key --api-key --insecure -h"
  local session="--owner --ttl"
  case $cmd in
    lock)    COMPREPLY=($(compgen -W "$common $session --wait --grace --max-hold --lock-delay --" -- "$cur")) ;;
    sem)     COMPREPLY=($(compgen -W "$common $session --limit --permits --wait --grace --max-hold --" -- "$cur")) ;;
    rwlock)  COMPREPLY=($(compgen -W "$common $session --read --write --wait --grace --max-hold --" -- "$cur")) ;;
    barrier) COMPREPLY=($(compgen -W "$common $session --parties --wait" -- "$cur")) ;;
    elect)   COMPREPLY=($(compgen -W "$common $session --observe" -- "$cur")) ;;
    status)  COMPREPLY=($(compgen -W "$common --kind" -- "$cur")) ;;
    list)    COMPREPLY=($(compgen -W "$common" -- "$cur")) ;;
    watch)   COMPREPLY=($(compgen -W "$common" -- "$cur")) ;;
    cluster) COMPREPLY=($(compgen -W "status add remove transfer --shard $common" -- "$cur")) ;;
    session) COMPREPLY=($(compgen -W "list show close $common --owner --stale --no-lock-delay" -- "$cur")) ;;
    certs)   COMPREPLY=($(compgen -W "--ca --hosts --name --out --valid-for -h" -- "$cur")) ;;
    keys)    COMPREPLY=($(compgen -W "create -h" -- "$cur")) ;;
    snapshot)
      case ${COMP_WORDS[2]} in
        save)    COMPREPLY=($(compgen -W "$common --stale --force" -- "$cur")) ;;
        restore) COMPREPLY=($(compgen -W "--config --data-dir --bump-index --keep-sessions --hold-grants --incarnation --node-id --raft-address --peers --shards --insecure -h" -- "$cur")) ;;
        *)       COMPREPLY=($(compgen -W "save restore -h" -- "$cur")) ;;
      esac ;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
    version) COMPREPLY=($(compgen -W "-o -h" -- "$cur")) ;;
    serve)   COMPREPLY=($(compgen -W "--config --check --dev --insecure --pprof --node-id --data-dir --api-address --raft-address --metrics-address --peers --join --incarnation --deployment --election-timeout-ms --heartbeat-interval-ms --shards --tick-interval-ms --snapshot-entries --compaction-overhead --max-batch --ride-along-ms --default-ttl-seconds --max-wait-time-seconds --cleanup-interval-seconds --log-format --log-level --drain-timeout -h" -- "$cur")) ;;
  esac
}
complete -o default -F _lockstep lockstep
`

func completionCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
		fmt.Fprint(stdout, `Usage: lockstep completion bash|zsh

Prints a shell completion script.

Examples:
  source <(lockstep completion bash)                 # this shell
  lockstep completion bash > /etc/bash_completion.d/lockstep
  autoload -U bashcompinit && bashcompinit && source <(lockstep completion zsh)
`)
		return exitOK
	}
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprintln(stderr, "lockstep completion: want bash or zsh, like: source <(lockstep completion bash)")
		return exitUsage
	}
	// zsh loads bash completions through bashcompinit.
	fmt.Fprint(stdout, bashCompletion)
	return exitOK
}
