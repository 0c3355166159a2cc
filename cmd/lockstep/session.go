package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

func sessionCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("session", `
Usage: lockstep session show ID
       lockstep session close [--no-lock-delay] ID

show prints a session's owner, lease, and what it holds and waits for.
close ends it on the servers at once, whoever keeps it alive: everything it
holds is released and everything it waits for is withdrawn; the process
that kept it learns it at its next request or keepalive. It is the
operator's force-release of a stuck holder (etcd's lease revoke, Consul's
session destroy); the ID is the SESSION column of 'lockstep status NAME',
or a command's LOCKSTEP_SESSION_ID. With authentication, a principal sees
and closes its own sessions only.

The process that held a lock may still run until it notices (a 'lockstep
lock' command gets SIGTERM, then SIGKILL after its --grace). So close ends
the session's holds as a failure, as its expiry would: a lock taken with a
lock-delay ('lockstep lock' takes one of --grace by default) stays locked
to everyone for it, and the next holder starts after it. A lock taken
without one is handed on at once. --no-lock-delay hands every lock on at
once, as a release does: use it only when that process is known to be
stopped. A cluster that has not elected a leader since its upgrade to this
release refuses the lock-delay: try again shortly. With several shards,
those whose leader was elected since may have closed it meanwhile (the
refusal says in how many); trying again closes it in the rest.

Examples:
  lockstep status jobs/nightly          # who holds it, and its SESSION
  lockstep session show 30408704
  lockstep session close 30408704
  lockstep session close --no-lock-delay 30408704   # its process is stopped
`, stdout, stderr)
	noLockDelay := c.fs.Bool("no-lock-delay", false, "close: hand every lock the session held on at once, as a release does, with no lock-delay (only when its process is known to be stopped)")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr("want a subcommand: show or close")
	}
	if pos[0] != "show" && pos[0] != "close" {
		return c.usageErr("unknown subcommand %q: use show or close", pos[0])
	}
	if len(pos) != 2 {
		return c.usageErr("%s wants one session ID, got %d arguments", pos[0], len(pos)-1)
	}
	if pos[0] == "show" && flagGiven(c.fs, "no-lock-delay") {
		return c.usageErr("--no-lock-delay is for session close: show changes nothing")
	}
	id, err := strconv.ParseUint(pos[1], 10, 64)
	if err != nil || id == 0 {
		return c.usageErr("session ID %q is not a session id: a positive whole number (the SESSION column of 'lockstep status NAME')", pos[1])
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	if pos[0] == "close" {
		var opts []client.CloseOption
		if *noLockDelay {
			opts = append(opts, client.WithoutLockDelay())
		}
		if err := cl.CloseSession(ctx, id, opts...); err != nil {
			return c.failSession(err)
		}
		if c.output == "json" {
			c.json(map[string]any{"session_id": id, "closed": true, "lock_delay": !*noLockDelay})
		} else if *noLockDelay {
			fmt.Fprintf(stdout, "closed session %d: what it held is released and its waits are withdrawn\n", id)
			fmt.Fprintf(stderr, "lockstep session: --no-lock-delay: the next holder starts now, while the process that held it may run until it notices (a 'lockstep lock' command: up to its --grace)\n")
		} else {
			fmt.Fprintf(stdout, "closed session %d: what it held is released, each lock after its lock-delay, and its waits are withdrawn\n", id)
		}
		return exitOK
	}
	s, err := cl.SessionInfo(ctx, id)
	if err != nil {
		return c.failSession(err)
	}
	if c.output == "json" {
		c.json(s)
		return exitOK
	}
	fmt.Fprintf(stdout, "session %d, owner %s, TTL %v, created %s, lease until %s\n", s.SessionId, orDash(s.Owner),
		msDuration(s.TtlMs), ms(s.CreatedAtMs), ms(s.ExpiresAtMs))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tKIND\tNAME\tTOKEN / WAITER\tUNTIL")
	for _, h := range s.Holds {
		fmt.Fprintf(tw, "holds\t%s\t%s\t%d\t-\n", kindWord(h.Kind), orDash(h.Name), h.FencingToken)
	}
	for _, w := range s.Waits {
		fmt.Fprintf(tw, "waits\t%s\t%s\t%d\t%s\n", kindWord(w.Kind), orDash(w.Name), w.WaiterId, ms(w.DeadlineMs))
	}
	_ = tw.Flush()
	if len(s.Holds) == 0 && len(s.Waits) == 0 {
		fmt.Fprintln(stdout, "(holds and waits for nothing)")
	}
	return exitOK
}

// failSession is fail for 'session show' and 'session close', which look
// at another process's session by id: a session the servers do not have is
// advised on as such, not as this command's own session lost (the network,
// --ttl), which it has none of.
func (c *common) failSession(err error) int {
	if !errors.Is(err, client.ErrSessionLost) {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "%s: %s\n", c.fs.Name(), strings.TrimPrefix(err.Error(), "lockstep: "))
	fmt.Fprintln(c.stderr, "No live session has that id (it expired, was closed, or never was), so it holds nothing: 'lockstep status NAME' shows the sessions that hold or wait for a name.")
	return exitError
}

// kindWord is a proto kind as the CLI names kinds ("KIND_MUTEX": mutex).
func kindWord(k pb.Kind) string { return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_")) }

// msDuration is a count of milliseconds as a duration.
func msDuration(v int64) string { return (time.Duration(v) * time.Millisecond).String() }
