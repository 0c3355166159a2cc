package main

import "strings"

// The Go runtime's system monitor (sysmon) is a thread of its own that
// sleeps 20 µs between rounds (taking back the processor of a goroutine
// stuck in a system call, preempting, polling the network) and doubles its
// sleep only after 50 rounds with nothing to take back. When every
// processor is idle it sleeps until woken, and the next system call wakes
// it and starts it again at 20 µs. A member goes idle between log entries
// hundreds of times a second, so its sysmon sleeps 20 µs at a time nearly
// always: on the three-node cluster of docs/performance.md ("History",
// 2026-12-06 11:45) its thread was 16% of the leader's CPU and 27% of each
// follower's, every round a thread switch, which a virtual machine makes
// dear.
//
// With GODEBUG's schedtrace set, sysmon never takes that deep sleep (it
// must stay awake to print the trace), so no system call restarts it at
// 20 µs: it backs off to 10 ms whenever it has nothing to take back. At
// its longest period, 2^31-1 ms (24.8 days), the trace itself is one line
// on standard error that often, the first at start on a machine up longer
// than that, and a fatal error prints the scheduler's state before the
// stacks. The price: a processor whose goroutine waits in a long system
// call (an fdatasync on a slow disk) goes to another goroutine a sysmon
// period later, up to 10 ms instead of 20 µs, when no other processor is
// idle. Sixteen interleaved pairs measured no latency lost for it, and
// 6–28% less CPU per operation over all processes.
//
// The runtime reads schedtrace only when it starts, so `lockstep serve`
// starts itself again with it set (quietSysmon), before anything else. An
// operator's own schedtrace in GODEBUG is kept as it is: GODEBUG=
// schedtrace=0 keeps the runtime's own sysmon.

// The same restart sets the server's timer slack to quietTimerSlack. Linux
// lets a thread's timed sleeps and waits end up to its timer slack late,
// 50 µs by default, so that it can wake for several timers at once. The Go
// scheduler sleeps far shorter than that: a thread looking for work that
// finds a goroutine just readied by a running one (in that processor's
// runnext) sleeps 3 µs before it takes it, so that the processor that
// readied it may run it first, and that sleep lasted 50-100 µs here, about
// once per log entry on every member, while the goroutine waited for its
// processor (docs/performance.md, History, 2026-12-06 14:30). The slack is
// per thread, inherited by the threads a thread starts and kept across
// execve, so the thread that starts the server again sets it.

// quietTimerSlack is the server's timer slack, in nanoseconds: 1, as
// exact as the kernel's timers are.
const quietTimerSlack = 1

// quietSchedtrace is the GODEBUG setting quietSysmon adds.
const quietSchedtrace = "schedtrace=2147483647"

// quietSysmonEnviron returns environ with quietSchedtrace added to GODEBUG,
// and true; or environ and false when GODEBUG already sets schedtrace (the
// operator's choice, or a server already started again).
func quietSysmonEnviron(environ []string) ([]string, bool) {
	godebug, found := "", false
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		v, ok := strings.CutPrefix(kv, "GODEBUG=")
		if !ok {
			out = append(out, kv)
			continue
		}
		if !found { // the first one counts, as for the runtime
			godebug, found = v, true
		}
	}
	for _, f := range strings.Split(godebug, ",") { // as the runtime reads it: no spaces trimmed
		if k, _, _ := strings.Cut(f, "="); k == "schedtrace" {
			return environ, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return append(out, "GODEBUG="+godebug+quietSchedtrace), true
}

// isServe reports whether the command line runs the server (as run
// dispatches it).
func isServe(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch a := args[0]; {
	case a == "serve", a == "--config", a == "-config":
		return true
	default:
		return strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config=")
	}
}
