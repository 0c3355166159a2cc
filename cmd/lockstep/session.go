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
Usage: lockstep session list [--owner PREFIX] [--stale]
       lockstep session show ID
       lockstep session close [--no-lock-delay] ID

list prints the live sessions, in id order: each one's id, owner label,
TTL, when its lease ends unless kept alive, and how many grants it holds
and requests it waits for; --owner keeps those whose owner label starts
with PREFIX (as listed: with authentication, "PRINCIPAL:label"; a session
the server made for one request, "auto:..."). It reads every page, up to
100 of 1,000 sessions (every session a cluster may have), and says so if
there were more. With authentication, a principal lists its own sessions
only.
show prints a session's owner, lease, and what it holds and waits for.
close ends it on the servers at once, whoever keeps it alive: everything it
holds is released and everything it waits for is withdrawn; the process
that kept it learns it at its next request or keepalive. It is the
operator's force-release of a stuck holder (etcd's lease revoke, Consul's
session destroy); the ID is the SESSION column of 'lockstep status NAME',
'lockstep session list', or a command's LOCKSTEP_SESSION_ID. With
authentication, a principal sees and closes its own sessions only.

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
  lockstep session list --owner ci:     # every session labelled ci:...
  lockstep status jobs/nightly          # who holds it, and its SESSION
  lockstep session show 30408704
  lockstep session close 30408704
  lockstep session close --no-lock-delay 30408704   # its process is stopped
`, stdout, stderr)
	noLockDelay := c.fs.Bool("no-lock-delay", false, "close: hand every lock the session held on at once, as a release does, with no lock-delay (only when its process is known to be stopped)")
	owner := c.fs.String("owner", "", "list: only the sessions whose owner label starts with this `prefix`")
	stale := c.fs.Bool("stale", false, "list: read the answering member's own state, without a quorum (faster, but it may be behind)")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr("want a subcommand: list, show or close")
	}
	if pos[0] != "list" && pos[0] != "show" && pos[0] != "close" {
		return c.usageErr("unknown subcommand %q: use list, show or close", pos[0])
	}
	if pos[0] != "list" {
		for _, f := range []string{"owner", "stale"} {
			if flagGiven(c.fs, f) {
				return c.usageErr("--%s is for session list: %s takes a session ID", f, pos[0])
			}
		}
	}
	if pos[0] == "list" {
		if len(pos) != 1 {
			return c.usageErr("list takes no arguments, got %d: filter with --owner PREFIX", len(pos)-1)
		}
		if flagGiven(c.fs, "no-lock-delay") {
			return c.usageErr("--no-lock-delay is for session close: list changes nothing")
		}
		return c.sessionList(*owner, *stale)
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

// maxSessionPages bounds the pages 'session list' reads: 100 pages of the
// server's 1,000 hold every session a cluster may have (MaxSessions,
// 100,000), so only pages cut short (sessions lost in a shard, left out)
// or a server that keeps answering a next page reach it.
const maxSessionPages = 100

// sessionList prints every live session the caller may see, page by page,
// at most maxSessionPages of them.
func (c *common) sessionList(owner string, stale bool) int {
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	list := []*client.SessionSummary{}
	q := client.SessionQuery{OwnerPrefix: owner, Stale: stale}
	more := false
	for pages := 0; ; pages++ {
		if pages == maxSessionPages {
			more = true
			break
		}
		page, next, err := cl.ListSessions(ctx, q)
		if err != nil {
			return c.fail(asked(err, "list sessions", "")) // the command's name says it
		}
		list = append(list, page...)
		if next == "" {
			break
		}
		q.PageToken = next
	}
	if c.output == "json" {
		c.json(list)
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SESSION\tOWNER\tTTL\tLEASE UNTIL\tHOLDS\tWAITS")
		for _, s := range list {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\n", s.SessionId, orDash(s.Owner), msDuration(s.TtlMs), ms(s.ExpiresAtMs), s.HoldCount, s.WaitCount)
		}
		_ = tw.Flush()
	}
	if more {
		fmt.Fprintf(c.stderr, "%s: stopped after %d pages (%d sessions); there are more: narrow the list with --owner PREFIX\n", c.fs.Name(), maxSessionPages, len(list))
		return exitError
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
	return c.failWith(err, "No live session has that id (it expired, was closed, or never was), so it holds nothing: 'lockstep status NAME' shows the sessions that hold or wait for a name. "+
		"With authentication on, another principal's session is answered so too: only a principal allowed admin on every name (an acl rule of prefix \"\") shows and closes others' sessions.")
}

// kindWord is a proto kind as the CLI names kinds ("KIND_MUTEX": mutex).
func kindWord(k pb.Kind) string { return strings.ToLower(strings.TrimPrefix(k.String(), "KIND_")) }

// msDuration is a count of milliseconds as a duration.
func msDuration(v int64) string { return (time.Duration(v) * time.Millisecond).String() }
