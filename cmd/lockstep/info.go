package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

func barrierCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("barrier", `
Usage: lockstep barrier NAME --parties N [flags]

Arrives at the barrier NAME and waits until N parties have arrived, then
exits 0 (all N return together). Exit 2 when --wait runs out first, or
when the servers refuse the arguments (the barrier counts other --parties
than N: the message says how many).

Examples:
  lockstep barrier stage-2 --parties 3            # run on three machines
  lockstep barrier stage-2 --parties 3 --wait 5m
`, stdout, stderr)
	parties := c.fs.Int64("parties", 0, "how many parties the barrier waits for (required)")
	wait := c.fs.Duration("wait", 0, "give up after this long; 0 waits until released")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr("want one NAME, got %d arguments", len(pos))
	}
	switch {
	case *parties == 0:
		return c.usageErr("--parties N is required (at least 2)")
	case *parties < 2:
		return c.usageErr("--parties %d: give at least 2 (a barrier of one party waits for nobody)", *parties)
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	s, err := c.session(ctx, cl)
	if err != nil {
		return c.fail(err)
	}
	defer func() { cctx, cancel := cleanupCtx(); defer cancel(); _ = s.Close(cctx) }()
	wctx := ctx
	if *wait > 0 {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	gen, err := client.NewBarrier(s, pos[0], *parties).Wait(wctx)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "lockstep barrier: interrupted; left barrier %q.\n", pos[0])
		return exitInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "lockstep barrier: the %d parties of %q did not all arrive within %v; this one left. See 'lockstep status %s'.\n",
			*parties, pos[0], *wait, pos[0])
		return exitHeld
	default:
		return c.fail(err)
	}
	if c.output == "json" {
		c.json(map[string]any{"name": pos[0], "released": true, "generation": gen})
	} else {
		fmt.Fprintf(stdout, "barrier %s released (generation %d)\n", pos[0], gen)
	}
	return exitOK
}

func electCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("elect", `
Usage: lockstep elect NAME VALUE [flags]
       lockstep elect NAME --observe

Campaigns in the election NAME with VALUE (for example this machine's
address), prints when elected, and holds the leadership until interrupted
(Ctrl-C or SIGTERM), then resigns so the next candidate takes over at once.
Exit 3 if the session is lost while leading, if another caller resigns
the leadership by its token, or if the resign at the end is refused
because the leadership had already ended (the session gone, or resigned
by another caller with no word of it).

With --observe, prints the leader now and on every change (of session,
token or value), until interrupted; a reconnect to another endpoint
prints nothing new. A refusal ends it: exit 2 when the servers refuse
the arguments (an invalid name), 1 otherwise (missing credentials).

Examples:
  lockstep elect scheduler 10.0.0.7:8080
  lockstep elect scheduler --observe
  lockstep elect scheduler --observe -o json
`, stdout, stderr)
	observe := c.fs.Bool("observe", false, "print the leader and its changes instead of campaigning")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	if *observe {
		if len(pos) != 1 {
			return c.usageErr("want one NAME with --observe, got %d arguments", len(pos))
		}
		if _, err := cl.ClusterStatus(ctx); err != nil {
			// A first call, to fail at once on a cluster that cannot
			// be reached or refuses: not what was asked.
			return c.fail(asked(err, "cluster status", fmt.Sprintf("observe %q", pos[0])))
		}
		// A reopened stream (a failover, a reconnect) starts again with
		// the current leader: print only a change.
		var last *client.Leader
		for l := range cl.Observe(ctx, pos[0]) {
			if l.Err != nil {
				return c.fail(l.Err)
			}
			if last != nil && sameLeader(*last, l) {
				continue
			}
			c.printLeader(l)
			last = &l
		}
		return exitOK
	}
	if len(pos) != 2 {
		return c.usageErr("want NAME and VALUE, got %d arguments", len(pos))
	}
	s, err := c.session(ctx, cl)
	if err != nil {
		return c.fail(err)
	}
	defer func() { cctx, cancel := cleanupCtx(); defer cancel(); _ = s.Close(cctx) }()
	e := client.NewElection(s, pos[0])
	fmt.Fprintf(stderr, "campaigning for %s as %s...\n", pos[0], s.Owner())
	if err := e.Campaign(ctx, []byte(pos[1])); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "lockstep elect: interrupted; the candidacy was withdrawn.")
			return exitInterrupted
		}
		return c.fail(err)
	}
	if c.output == "json" {
		c.json(map[string]any{"name": pos[0], "elected": true, "candidate": s.Owner(), "value": pos[1], "fencing_token": e.Token()})
	} else {
		fmt.Fprintf(stdout, "elected leader of %s as %s (token %d)\n", pos[0], s.Owner(), e.Token())
	}
	select {
	case <-ctx.Done():
		cctx, cancel := cleanupCtx()
		defer cancel()
		err := e.Resign(cctx)
		switch {
		case errors.Is(err, client.ErrSessionLost):
			// The servers no longer have the session (it expired, was
			// closed, or a restore put the cluster back before it), and
			// with it the leadership: it ended before lockstep resigned
			// it, maybe long before, as when the push of the session's
			// loss arrives; lock, sem and rwlock say the same of their
			// release. Creating a new session, the advice that rides on
			// the refusal, would change nothing.
			fmt.Fprintf(stderr, "lockstep elect: lost the leadership of %s before it was resigned: the resign was refused: %s\n"+
				"lockstep elect: the leadership ended with the session, so another candidate may have led beside this one: see 'lockstep status %s --kind election'.\n",
				pos[0], sessionGone(err), pos[0])
			return exitSessionLost
		case errors.Is(err, client.ErrNotHeld):
			// The servers had ended the leadership (another caller
			// resigned it by its token) and no word of it came: a loss,
			// as when the push arrives.
			fmt.Fprintf(stderr, "lockstep elect: lost the leadership of %s before it was resigned: the resign was refused: %v\n"+
				"lockstep elect: another candidate may have led beside this one: see 'lockstep status %s --kind election'.\n",
				pos[0], err, pos[0])
			return exitSessionLost
		case err != nil:
			return c.fail(err)
		}
		fmt.Fprintf(stderr, "resigned leadership of %s\n", pos[0])
		return exitOK
	case <-s.Done():
		fmt.Fprintf(stderr, "lockstep elect: lost the leadership of %s: %v\nAnother candidate may lead now; %s.\n", pos[0], s.Err(), lostAdvice(s.Err()))
		return exitSessionLost
	case <-e.Lost():
		// The session lives on (Done above says a loss of it), and the
		// leadership ended: another caller resigned it by its token.
		// Nothing is left to resign.
		if s.Err() != nil {
			fmt.Fprintf(stderr, "lockstep elect: lost the leadership of %s: %v\nAnother candidate may lead now; %s.\n", pos[0], s.Err(), lostAdvice(s.Err()))
			return exitSessionLost
		}
		fmt.Fprintf(stderr, "lockstep elect: lost the leadership of %s: %v\nAnother candidate may lead now: see 'lockstep status %s --kind election'.\n",
			pos[0], e.LostErr(), pos[0])
		return exitSessionLost
	}
}

// sameLeader says whether b is a's leadership unchanged: the same session,
// token and value (nobody leading, both times).
func sameLeader(a, b client.Leader) bool {
	return a.SessionID == b.SessionID && a.FencingToken == b.FencingToken && bytes.Equal(a.Value, b.Value)
}

func (c *common) printLeader(l client.Leader) {
	if c.output == "json" {
		b, _ := json.Marshal(map[string]any{"name": l.Name, "has_leader": l.SessionID != 0, "candidate": l.Candidate,
			"value": string(l.Value), "session_id": l.SessionID, "fencing_token": l.FencingToken})
		fmt.Fprintln(c.stdout, string(b))
		return
	}
	if l.SessionID == 0 {
		fmt.Fprintf(c.stdout, "%s  %s: no leader\n", time.Now().Format(time.TimeOnly), l.Name)
		return
	}
	fmt.Fprintf(c.stdout, "%s  %s: %s value=%q session=%d token=%d\n", time.Now().Format(time.TimeOnly),
		l.Name, l.Candidate, l.Value, l.SessionID, l.FencingToken)
}

func statusCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("status", `
Usage: lockstep status NAME [--kind KIND] [flags]

Shows who holds NAME (owner, session, fencing token, since when, until when)
and who waits for it, in the order they will be served; for an election,
the leader and the queued candidates, with the value each holds or will
hold. Without --kind, every kind of object with that name is shown.

Examples:
  lockstep status jobs/nightly
  lockstep status gpu --kind semaphore -o json
`, stdout, stderr)
	kind := c.fs.String("kind", "", "only this kind: mutex, semaphore, rwlock, barrier or election")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr("want one NAME, got %d arguments", len(pos))
	}
	switch client.Kind(*kind) {
	case "", client.KindMutex, client.KindSemaphore, client.KindRWLock, client.KindBarrier, client.KindElection:
	default:
		return c.usageErr("--kind %q: use mutex, semaphore, rwlock, barrier or election", *kind)
	}
	name := pos[0]
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	var kinds []client.Kind
	if *kind != "" {
		kinds = []client.Kind{client.Kind(*kind)}
	} else {
		objs, err := cl.List(ctx, name)
		if errors.Is(err, client.ErrInvalid) {
			// NAME as a list's prefix: the refusal would speak of a
			// prefix the user never gave. Ask for the name itself, whose
			// refusal speaks of the name.
			_, err = cl.Status(ctx, client.KindMutex, name)
			return c.fail(err)
		}
		if err != nil {
			// The list is how status finds NAME's kinds, which the user
			// did not ask for: name what was asked.
			return c.fail(asked(err, "list", "status of "+quote.Bounded(name)))
		}
		for _, o := range objs {
			if o.Name == name {
				kinds = append(kinds, o.Kind)
			}
		}
		if len(kinds) == 0 {
			// A list leaves out what the ACL hides from the caller, so an
			// empty one cannot tell free from hidden: ask for the name
			// itself, which is refused when hidden (as REST answers 403).
			st, err := cl.Status(ctx, client.KindMutex, name)
			if err != nil {
				return c.fail(err)
			}
			if len(st.Holders)+len(st.Waiters) > 0 {
				kinds = append(kinds, client.KindMutex) // taken since the list
			}
		}
	}
	sts := []*client.Status{}
	for _, k := range kinds {
		st, err := cl.Status(ctx, k, name)
		if err != nil {
			return c.fail(err)
		}
		sts = append(sts, st)
	}
	if c.output == "json" {
		for _, st := range sts {
			// [] for none, as the REST API writes an empty queue.
			if st.Holders == nil {
				st.Holders = []*client.Holder{}
			}
			if st.Waiters == nil {
				st.Waiters = []*client.Waiter{}
			}
		}
		c.json(sts)
		return exitOK
	}
	if len(sts) == 0 {
		fmt.Fprintf(stdout, "%s: free (nothing holds or waits for it)\n", name)
		return exitOK
	}
	for i, st := range sts {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printStatus(stdout, st)
	}
	return exitOK
}

func printStatus(w io.Writer, st *client.Status) {
	extra := ""
	switch st.Kind {
	case client.KindSemaphore:
		if st.Limit == 0 {
			// No semaphore by that name: the first acquire sets its limit.
			// "(limit 0, 0 available)" read as a semaphore nobody can take.
			extra = " (not in use: the first acquire sets its limit)"
		} else {
			extra = fmt.Sprintf(" (limit %d, %d available)", st.Limit, st.Available)
		}
	case client.KindRWLock:
		if st.Mode != "" {
			extra = fmt.Sprintf(" (held for %s)", st.Mode)
		}
	case client.KindBarrier:
		extra = fmt.Sprintf(" (%d parties, generation %d)", st.Parties, st.Generation)
	}
	fmt.Fprintf(w, "%s %s%s\n", st.Kind, st.Name, extra)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if st.Kind == client.KindElection {
		// A leader and its queued candidates: no permits or modes, but
		// the value each holds or will hold once elected.
		fmt.Fprintln(tw, "ROLE\tCANDIDATE\tSESSION\tTOKEN\tSINCE\tUNTIL\tVALUE")
		for _, h := range st.Holders {
			fmt.Fprintf(tw, "leader\t%s\t%d\t%d\t%s\t%s\t%s\n", orDash(h.Owner), h.SessionId, h.FencingToken,
				ms(h.AcquiredAtMs), ms(h.ExpiresAtMs), orDash(string(h.Value)))
		}
		for i, wt := range st.Waiters {
			fmt.Fprintf(tw, "candidate %d\t%s\t%d\t-\t%s\t%s\t%s\n", i+1, orDash(wt.Owner), wt.SessionId,
				ms(wt.EnqueuedAtMs), ms(wt.DeadlineMs), orDash(string(wt.Value)))
		}
		_ = tw.Flush()
		if len(st.Holders) == 0 && len(st.Waiters) == 0 {
			fmt.Fprintln(w, "(no leader, no candidates)")
		}
		return
	}
	fmt.Fprintln(tw, "ROLE\tOWNER\tSESSION\tTOKEN\tSINCE\tUNTIL\tPERMITS\tMODE")
	for _, h := range st.Holders {
		fmt.Fprintf(tw, "holder\t%s\t%d\t%d\t%s\t%s\t%d\t%s\n", orDash(h.Owner), h.SessionId, h.FencingToken,
			ms(h.AcquiredAtMs), ms(h.ExpiresAtMs), h.Permits, orDash(h.Mode))
	}
	for i, wt := range st.Waiters {
		owner := wt.Owner
		if wt.Participant != "" {
			owner = wt.Participant
		}
		fmt.Fprintf(tw, "waiter %d\t%s\t%d\t-\t%s\t%s\t%d\t%s\n", i+1, orDash(owner), wt.SessionId,
			ms(wt.EnqueuedAtMs), ms(wt.DeadlineMs), wt.Permits, orDash(wt.Mode))
	}
	_ = tw.Flush()
	switch {
	case st.BlockedUntilMs != 0 && len(st.Holders) == 0:
		fmt.Fprintf(w, "(nobody holds it: a lock-delay keeps it from everyone until %s, after its holder failed (its session was lost or its maximum hold passed) or its session was closed by an operator)\n", ms(st.BlockedUntilMs))
	case len(st.Holders) == 0 && len(st.Waiters) == 0:
		fmt.Fprintln(w, "(free)")
	}
}

// orDash prints a label from the server: "-" for none, and quoted (Go
// escapes) when it holds a character a terminal would act on, which labels
// stored before the server refused them may.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}

func ms(v int64) string {
	if v == 0 {
		return "-"
	}
	return time.UnixMilli(v).Local().Format("15:04:05.000")
}

func listCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("list", `
Usage: lockstep list [PREFIX] [flags]

Lists the live objects (held or waited for) whose names start with PREFIX,
with their numbers of holders and waiters. 'lockstep status NAME' shows one
in detail.

Examples:
  lockstep list
  lockstep list jobs/ -o json
`, stdout, stderr)
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		return c.usageErr("want at most one PREFIX, got %d arguments", len(pos))
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	objs, err := cl.List(ctx, prefix)
	if err != nil {
		return c.fail(asked(err, "list", "")) // the command's name says it
	}
	if c.output == "json" {
		if objs == nil {
			objs = []client.Object{}
		}
		c.json(objs)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tHOLDERS\tWAITERS")
	for _, o := range objs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", o.Kind, o.Name, o.HolderCount, o.WaiterCount)
	}
	_ = tw.Flush()
	return exitOK
}

func watchCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("watch", `
Usage: lockstep watch PREFIX [flags]

Prints every change (grants, releases, expiries, waits ending, leader
changes, barrier releases) of the objects whose names start with PREFIX,
and sessions ending (KIND session), one line per event, until
interrupted. "" watches everything. A lost
connection (a node failing over or restarting) is resumed on another
endpoint without missing or repeating an event, whatever the number of
shards. With several shards, each shard has its own log and INDEX is in
the log of the event's shard: the SHARD column says which (shard_id in -o
json), and indexes of different shards are not comparable.

Examples:
  lockstep watch jobs/
  lockstep watch "" -o json
`, stdout, stderr)
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr("want one PREFIX (\"\" for everything), got %d arguments", len(pos))
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	st, err := cl.ClusterStatus(ctx)
	if err != nil {
		return c.fail(asked(err, "cluster status", fmt.Sprintf("watch %q", pos[0])))
	}
	// With one shard there is one log, and a SHARD column of zeros says
	// nothing; with several, INDEX alone read as one sequence that jumped
	// back and forth.
	sharded := len(st.Shards) > 1
	// Lines go out as events come, so the columns cannot be sized from
	// all of them (a tabwriter flushed per batch aligned neither with the
	// header nor across batches): each column starts wide enough for the
	// usual values and widens, from that line on, for a wider one.
	table := &streamTable{w: stdout, widths: []int{7, 12, 15, 9, 16, 12, 12}}
	header := []string{"INDEX", "AT", "EVENT", "KIND", "NAME", "SESSION", "TOKEN", "REASON"}
	if sharded {
		table.widths = append([]int{5}, table.widths...)
		header = append([]string{"SHARD"}, header...)
	}
	if c.output != "json" {
		table.row(header...)
	}
	for r := range cl.Watch(ctx, pos[0]) {
		if r.Err != nil {
			return c.fail(r.Err)
		}
		for _, ev := range r.Events {
			if c.output == "json" {
				b, _ := json.Marshal(map[string]any{"shard_id": ev.ShardId, "index": ev.Index, "at_ms": ev.AtMs, "type": eventName(ev.Type.String()),
					"reason": ev.Reason.String(), "kind": eventKind(ev),
					"name": ev.Name, "session_id": ev.SessionId, "waiter_id": ev.WaiterId, "fencing_token": ev.FencingToken})
				fmt.Fprintln(stdout, string(b))
				continue
			}
			reason := strings.ToLower(strings.TrimPrefix(ev.Reason.String(), "REASON_"))
			if ev.Reason == 0 {
				reason = "-" // a grant, a leader change: nothing ended
			}
			kind := eventKind(ev)
			if kind == "" {
				kind = "-"
			}
			row := []string{strconv.FormatUint(ev.Index, 10), ms(ev.AtMs), eventName(ev.Type.String()), kind, orDash(ev.Name),
				idOrDash(ev.SessionId), idOrDash(ev.FencingToken), reason}
			if sharded {
				row = append([]string{strconv.FormatUint(ev.ShardId, 10)}, row...)
			}
			table.row(row...)
		}
	}
	return exitOK
}

// idOrDash prints a session id or a fencing token, "-" for none (a
// session's end carries no token, a leader gone no session).
func idOrDash(v uint64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatUint(v, 10)
}

func eventName(s string) string { return strings.ToLower(strings.TrimPrefix(s, "EVENT_TYPE_")) }

// eventKind names the kind of object an event is about: "session" for a
// session's own end (an event of no object), "" for another event of no
// kind.
func eventKind(ev *client.Event) string {
	if ev.Kind != pb.Kind_KIND_UNSPECIFIED {
		return kindWord(ev.Kind)
	}
	switch ev.Type {
	case pb.EventType_EVENT_TYPE_SESSION_EXPIRED, pb.EventType_EVENT_TYPE_SESSION_CLOSED:
		return "session"
	}
	return ""
}

// streamTable writes a table a line at a time: each cell but the last
// padded to its column's width, which grows to the widest cell seen.
type streamTable struct {
	w      io.Writer
	widths []int
}

func (t *streamTable) row(cells ...string) {
	var b strings.Builder
	for i, cell := range cells {
		if i == len(cells)-1 {
			b.WriteString(cell)
			continue
		}
		if i >= len(t.widths) {
			t.widths = append(t.widths, 0)
		}
		t.widths[i] = max(t.widths[i], utf8.RuneCountInString(cell))
		b.WriteString(cell)
		b.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(cell)+2))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(t.w, b.String())
}

func clusterCmd(args []string, stdout, stderr io.Writer) int {
	c := newCommand("cluster", `
Usage: lockstep cluster status
       lockstep cluster add NODE_ID RAFT_ADDRESS
       lockstep cluster remove NODE_ID
       lockstep cluster transfer NODE_ID [--shard N]

status asks every endpoint given (--endpoints, LOCKSTEP_ENDPOINTS: list
every member) for its own view, at once: per member and shard, whether it
answered, its role, the leader it follows, the term, its applied index and
its lag behind the most advanced member of the shard, and its version;
under the table, warnings of what needs a person, such as a member that
is degraded (its /health answers "degraded") and why.

add and remove change membership one node at a time (see
docs/operations.md); transfer hands a shard's leadership (--shard, 0 by
default) to NODE_ID and returns once NODE_ID leads it.

Examples:
  lockstep cluster status
  lockstep cluster add node-4 10.0.0.4:7001
  lockstep cluster transfer node-2 --endpoints http://10.0.0.1:8080
  lockstep cluster transfer node-3 --shard 2
`, stdout, stderr)
	shard := c.fs.Uint64("shard", 0, "transfer: the `shard` whose leadership moves (consensus.shards: 0..N-1)")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr("want a subcommand: status, add, remove or transfer")
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	switch pos[0] {
	case "status":
		return c.clusterStatus(ctx, cl)
	case "add":
		if len(pos) != 3 {
			return c.usageErr("add wants NODE_ID and RAFT_ADDRESS")
		}
		added, err := cl.AddMember(ctx, pos[1], pos[2])
		if err != nil {
			return c.fail(err)
		}
		inc := added.Incarnation
		if inc == "" {
			inc = "0"
		}
		flags := "--join --incarnation " + inc
		if added.Deployment != "" {
			// A cluster restored from a backup: its members refuse a
			// node of another deployment, which only their own data
			// directories recorded.
			flags += " --deployment " + added.Deployment
		}
		if added.AlreadyMember {
			// AddNode is idempotent: the advice for a new member would
			// start a second process for one that may be running. The
			// advice stays for one added but never started (or added by
			// a retried call whose first answer was lost).
			fmt.Fprintf(stdout, "%s is already a member at %s, incarnation %s: nothing changed; if it has never run (an empty data directory), start it with %s\n",
				pos[1], pos[2], inc, flags)
		} else {
			fmt.Fprintf(stdout, "added %s at %s; start it with %s\n", pos[1], pos[2], flags)
		}
	case "remove":
		if len(pos) != 2 {
			return c.usageErr("remove wants NODE_ID")
		}
		removed, err := cl.RemoveMember(ctx, pos[1])
		if err != nil {
			return c.fail(err)
		}
		if removed.NotAMember {
			// "removed ..., delete its data directory" was the answer to
			// an id no member had, though the node may run and vote under
			// another name (a member restored under an id its backed-up
			// cluster had removed is known by its replica id).
			fmt.Fprintf(stdout, "%s is not a member: nothing changed (members: %s). It was removed before, or the members know it by another name: "+
				"'lockstep cluster status' shows which member runs at its address, and that name is the one to remove. "+
				"Delete its data directory only once it is in no member list; if this command removed it a moment ago and its answer was lost, stop its process first\n",
				pos[1], strings.Join(removed.Members, ", "))
			return exitOK
		}
		fmt.Fprintf(stdout, "removed %s; stop its process and delete (or archive) its data directory: started on it again, it is not a member\n", pos[1])
	case "transfer":
		if len(pos) != 2 {
			return c.usageErr("transfer wants the target NODE_ID")
		}
		if err := cl.TransferShardLeadership(ctx, *shard, pos[1]); err != nil {
			return c.fail(err)
		}
		// The call answers only once the target leads (docs/operations.md).
		fmt.Fprintf(stdout, "leadership moved: %s leads shard %d now\n", pos[1], *shard)
	default:
		return c.usageErr("unknown subcommand %q: use status, add, remove or transfer", pos[0])
	}
	return exitOK
}

// clusterStatus prints every endpoint's view, a row per member and shard,
// with each member's lag behind the most advanced member of the shard. It
// fails (exit 1) when no endpoint answered.
func (c *common) clusterStatus(ctx context.Context, cl *client.Client) int {
	views := cl.ClusterStatusEach(ctx)
	top := map[uint64]uint64{} // shard -> highest applied index seen
	answered := 0
	for _, v := range views {
		if v.Status == nil {
			continue
		}
		answered++
		for _, sh := range v.Status.Shards {
			top[sh.ShardId] = max(top[sh.ShardId], sh.AppliedIndex)
		}
	}
	if c.output == "json" {
		var rows []map[string]any
		for _, v := range views {
			row := map[string]any{"endpoint": v.Endpoint, "reachable": v.Status != nil, "state": endpointState(v)}
			if v.Status == nil {
				row["error"] = v.Err.Error()
			} else {
				row["status"] = v.Status
				lag := map[string]any{}
				for _, sh := range v.Status.Shards {
					lag[fmt.Sprint(sh.ShardId)] = top[sh.ShardId] - sh.AppliedIndex
				}
				row["lag"] = lag
			}
			rows = append(rows, row)
		}
		c.json(rows)
	} else {
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ENDPOINT\tNODE\tSHARD\tROLE\tLEADER\tTERM\tAPPLIED\tLAG\tVERSION")
		for _, v := range views {
			if v.Status == nil {
				fmt.Fprintf(tw, "%s\t-\t-\t%s\t-\t-\t-\t-\t-\n", v.Endpoint, endpointState(v))
				continue
			}
			for _, sh := range v.Status.Shards {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n", v.Endpoint, v.Status.NodeId, sh.ShardId, sh.Role,
					orDash(sh.LeaderId), sh.Term, sh.AppliedIndex, top[sh.ShardId]-sh.AppliedIndex, orDash(v.Status.Version))
			}
		}
		_ = tw.Flush()
		for _, v := range views {
			if v.Status != nil && len(v.Status.Shards) > 0 {
				var m []string
				for _, mb := range v.Status.Shards[0].Members {
					m = append(m, mb.NodeId+"="+mb.RaftAddress)
				}
				fmt.Fprintf(c.stdout, "members (as %s sees them): %s\n", v.Status.NodeId, strings.Join(m, ", "))
				break
			}
		}
		printVersions(c, views)
		for _, w := range clusterWarnings(views) {
			fmt.Fprintf(c.stderr, "warning: %s\n", w)
		}
		for _, v := range views {
			if v.Err != nil {
				fmt.Fprintf(c.stderr, "%s: %v\n", v.Endpoint, v.Err)
			}
		}
	}
	if answered == 0 {
		return c.fail(noStatusErr(views))
	}
	return exitOK
}

// clusterWarnings says what the members' views show that one member's
// alone does not: a node id that answered from two endpoints (a second
// process started with a running member's node id), two members that
// each say they lead one shard (the one at the lower term is behind:
// paused, on a stalled disk, or cut off, and serves nothing), and members
// that see different member lists (one started with other cluster.peers:
// it cannot take part as the others expect, and may stop when the leader
// changes). Each showed only as rows a reader had to compare. It also
// says which members are degraded, and why, as their /health does.
func clusterWarnings(views []client.MemberStatus) []string {
	var out []string
	endpoints := map[string][]string{}
	var ids []string
	type leading struct {
		node string
		term uint64
	}
	leaders := map[uint64][]leading{}
	knownLeader := map[uint64]bool{}          // some view names the shard's leader
	answered := map[uint64]int{}              // views that answered for the shard
	sizes := map[uint64]int{}                 // the largest member list seen
	lists := map[uint64]map[string][]string{} // shard -> member list -> who sees it
	var shardsSeen []uint64
	for _, v := range views {
		if v.Status == nil {
			continue
		}
		id := v.Status.NodeId
		if _, ok := endpoints[id]; !ok {
			ids = append(ids, id)
		}
		endpoints[id] = append(endpoints[id], v.Endpoint)
		for _, sh := range v.Status.Shards {
			if sh.Role == "leader" {
				leaders[sh.ShardId] = append(leaders[sh.ShardId], leading{id, sh.Term})
			}
			if sh.LeaderId != "" || sh.Role == "leader" {
				knownLeader[sh.ShardId] = true
			}
			answered[sh.ShardId]++
			sizes[sh.ShardId] = max(sizes[sh.ShardId], len(sh.Members))
			if sh.Role != "leader" && sh.Role != "follower" || len(sh.Members) == 0 {
				// A member its peers refuse (removed, lost-log,
				// other-replica) shows so in its row; the list it sees
				// (none, or the one it had) says nothing of the others',
				// and was advised on as started with other peers.
				continue
			}
			var m []string
			for _, mb := range sh.Members {
				m = append(m, mb.NodeId+"="+mb.RaftAddress)
			}
			slices.Sort(m)
			if lists[sh.ShardId] == nil {
				lists[sh.ShardId] = map[string][]string{}
				shardsSeen = append(shardsSeen, sh.ShardId)
			}
			key := strings.Join(m, ", ")
			lists[sh.ShardId][key] = append(lists[sh.ShardId][key], id)
		}
	}
	// A member that serves but needs a person soon (restored from a
	// backup, it grants nothing until the backup's sessions are closed and
	// their leases have run out; its data directory nearly full) looked
	// like any other in its rows: only its /health said so.
	for _, v := range views {
		if v.Status != nil && v.Status.DegradedReason != "" {
			out = append(out, fmt.Sprintf("%s is degraded (it serves; its /health answers \"degraded\"): %s", v.Status.NodeId, v.Status.DegradedReason))
		}
	}
	for _, id := range ids {
		if eps := endpoints[id]; len(eps) > 1 {
			out = append(out, fmt.Sprintf("node id %s answered from %s: two processes run as one member; the one the membership "+
				"does not have at its address is refused by its peers (lost-log): stop it, and do not remove the node id, which would "+
				"remove the member that runs (docs/operations.md, A member whose disk is lost or suspect)", id, strings.Join(eps, " and ")))
		}
	}
	slices.Sort(shardsSeen)
	for _, sh := range shardsSeen {
		if !knownLeader[sh] && sizes[sh] > 0 {
			// The rows showed "leader -" and unreachable members, which a
			// reader had to add up in a quorum loss.
			out = append(out, fmt.Sprintf("shard %d has no leader: %d of its %d members answered, and it needs %d up and reaching each other "+
				"to elect one: bring back the members that are down (a member that answered may still be cut off from the others)",
				sh, answered[sh], sizes[sh], sizes[sh]/2+1))
		}
		if ls := leaders[sh]; len(ls) > 1 {
			slices.SortFunc(ls, func(a, b leading) int { return cmp.Compare(b.term, a.term) })
			var parts []string
			for _, l := range ls {
				parts = append(parts, fmt.Sprintf("%s (term %d)", l.node, l.term))
			}
			out = append(out, fmt.Sprintf("shard %d: %s each say they lead: all but the one of the highest term are behind "+
				"(paused, on a stalled disk, or cut off from the others) and serve nothing; look at them", sh, strings.Join(parts, ", ")))
		}
		if byList := lists[sh]; len(byList) > 1 {
			var parts []string
			for _, key := range slices.Sorted(maps.Keys(byList)) {
				parts = append(parts, fmt.Sprintf("%s see %s", strings.Join(byList[key], ", "), key))
			}
			out = append(out, fmt.Sprintf("shard %d: the members see different member lists: %s; a member that was started with "+
				"other cluster.peers keeps them in its data directory and may stop when the leader changes: replace it "+
				"(docs/operations.md, Membership changes); while a member is added or removed, lists differ for a moment",
				sh, strings.Join(parts, "; ")))
		}
	}
	// Members of the membership that no endpoint answered as: given
	// several endpoints, the user asks for the cluster, and a member added
	// but never started (or down, or not among the endpoints) showed only
	// in the members line, while the cluster was one failure from losing
	// its quorum.
	if len(views) > 1 && len(ids) > 0 {
		heard := map[string]bool{}
		for _, id := range ids {
			heard[id] = true
		}
		unheard := map[string]bool{}
		for _, byList := range lists {
			for key := range byList {
				for _, m := range strings.Split(key, ", ") {
					if id, _, ok := strings.Cut(m, "="); ok && !heard[id] {
						unheard[id] = true
					}
				}
			}
		}
		if len(unheard) > 0 {
			out = append(out, fmt.Sprintf("members %s did not answer from any endpoint given: each is down, never started (a member "+
				"added with cluster add and not started yet), or not among the endpoints (give its API address to see it); "+
				"a member that does not run counts against the quorum", strings.Join(slices.Sorted(maps.Keys(unheard)), ", ")))
		}
	}
	if w := settingsWarning(views); w != "" {
		out = append(out, w)
	}
	return out
}

// endpointState labels an endpoint's row: "ok" when it gave its status;
// "refused:CODE" when its server answered with an error (401
// unauthenticated, 403 permission_denied, 503 unavailable...);
// "tls-failed" when the TLS handshake failed (a certificate this client
// does not trust, or a client certificate the server wants, or an
// https:// endpoint that answers plaintext); "not-the-api" when a server
// answered that does not serve the Lockstep API (a bare 404: a metrics
// port, another service); "unreachable" when nothing answered. A server's
// answer is a refusal whatever its words: a 401 for a client certificate
// of another CA quotes x509's error, and showed as tls-failed, with advice
// about --cacert. The last two showed as unreachable, with the advice to
// check that a server runs there, where one had answered.
func endpointState(v client.MemberStatus) string {
	switch {
	case v.Status != nil:
		return "ok"
	case connect.IsWireError(v.Err):
		return "refused:" + connect.CodeOf(v.Err).String()
	case isTLSErr(v.Err):
		return "tls-failed"
	case notTheAPI(v.Err):
		return "not-the-api"
	}
	return "unreachable"
}

// notTheAPI says whether err is the answer of a server that does not
// serve the Lockstep API (the client's words for a bare 404).
func notTheAPI(err error) bool {
	return err != nil && strings.Contains(err.Error(), "does not serve the Lockstep API")
}

// isTLSErr says whether err is a failed TLS handshake, or a plaintext
// server's answer to one; not an answer of the server, whose message may
// quote x509's words.
func isTLSErr(err error) bool {
	return err != nil && !connect.IsWireError(err) && (strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") ||
		// Go's TLS server's bare answer to a plaintext request (an
		// http:// endpoint of a cluster that serves TLS): the API's own
		// refusals carry a code, and are wire errors.
		strings.Contains(err.Error(), "400 Bad Request"))
}

// noStatusErr says why no endpoint gave its status: what the servers that
// answered said, when any did (so that the hint is about credentials or
// the CA), else that none answered.
func noStatusErr(views []client.MemberStatus) error {
	var said error
	refused, tlsFailed, notAPI := 0, 0, 0
	for _, v := range views {
		switch st := endpointState(v); {
		case st == "tls-failed":
			tlsFailed++
		case st == "not-the-api":
			notAPI++
		case strings.HasPrefix(st, "refused:"):
			refused++
		default:
			continue
		}
		if said == nil {
			said = v.Err
		}
	}
	if said == nil {
		return fmt.Errorf("%w: none of the %d endpoint(s) answered", client.ErrUnavailable, len(views))
	}
	var parts []string
	if refused > 0 {
		parts = append(parts, fmt.Sprintf("%d refused the request", refused))
	}
	if tlsFailed > 0 {
		parts = append(parts, fmt.Sprintf("the TLS handshake failed with %d", tlsFailed))
	}
	if notAPI > 0 {
		parts = append(parts, fmt.Sprintf("%d do not serve the Lockstep API", notAPI))
	}
	if rest := len(views) - refused - tlsFailed - notAPI; rest > 0 {
		parts = append(parts, fmt.Sprintf("%d did not answer", rest))
	}
	return saidErr{fmt.Sprintf("no endpoint gave its status (of %d, %s): %s", len(views), strings.Join(parts, ", "),
		// connect names a failed handshake "unavailable", as it does a
		// refused connection; the server was there.
		strings.TrimPrefix(strings.TrimPrefix(said.Error(), "cluster status: "), "unavailable: ")), said}
}

// asked names in err what the user asked for (what, or nothing when ""),
// in place of the client's name for the call that failed (op: the list
// that status starts with, the cluster status that watch starts with).
func asked(err error, op, what string) error {
	msg, ok := strings.CutPrefix(err.Error(), op+": ")
	if !ok {
		return err // no endpoint answered: fail shows only that part
	}
	if what != "" {
		msg = what + ": " + msg
	}
	return saidErr{msg, err}
}

// saidErr is a message in place of err's, still wrapping it.
type saidErr struct {
	msg string
	err error
}

func (e saidErr) Error() string { return e.msg }
func (e saidErr) Unwrap() error { return e.err }

// printVersions says which log versions the nodes that answered apply by,
// with their shard count, as their Raft hellos name them, and warns when
// they differ: such members refuse each other's Raft traffic
// (docs/operations.md, Upgrading).
func printVersions(c *common, views []client.MemberStatus) {
	byVersions := map[string][]string{}
	var order []string
	for _, v := range views {
		if v.Status == nil {
			continue
		}
		key := fmt.Sprintf("%s, shards %d", orDash(v.Status.Versions), len(v.Status.Shards))
		if _, ok := byVersions[key]; !ok {
			order = append(order, key)
		}
		byVersions[key] = append(byVersions[key], v.Status.NodeId)
	}
	switch len(order) {
	case 0:
	case 1:
		fmt.Fprintf(c.stdout, "versions: %s\n", order[0])
	default:
		var parts []string
		for _, k := range order {
			parts = append(parts, strings.Join(byVersions[k], ", ")+": "+k)
		}
		fmt.Fprintf(c.stderr, "warning: the members run builds of different versions or shard counts, and refuse each other's Raft traffic "+
			"(docs/operations.md, Upgrading): %s\n", strings.Join(parts, "; "))
	}
}
