package runtime

import (
	"context"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dblogger "github.com/lni/dragonboat/v4/logger"

	"github.com/lockstepd/lockstep/runtime/transport"
)

// Dragonboat's loggers are process-wide and its factory may be set only
// once, so they write to the target the last Start registered (one node per
// process in production; in tests with several nodes in one process the
// lines carry the last node's id). Every line gets that node's `node`
// field, Dragonboat's replica ids are translated to node ids, and its raft
// prefix ("[f:1,l:5,t:1,c:5,a:5] [00001:24640] t1") becomes the fields
// shard and term.
//
// Levels (dragonboatLevel, peerEvent): its debug and info lines are
// dropped; its warnings and errors pass, except that an election's
// warnings are demoted (an election is routine; the runtime logs its
// outcome) and that a peer's connection failures, expected while a member
// is down or restarting, are summarised by peerTracker: "peer unreachable"
// once at warn, then at most one "peer still unreachable" summary per
// peerSummaryEvery with the number of failed attempts, and "peer reachable
// again" at info. Failures while this node is closing are debug.
var (
	dragonboatTarget  atomic.Pointer[logTarget]
	dragonboatLogOnce sync.Once
)

// peerSummaryEvery is the least time between two "peer still unreachable"
// summaries for one peer.
const peerSummaryEvery = 30 * time.Second

// logTarget is where Dragonboat's lines go and what they are told about.
type logTarget struct {
	log     *slog.Logger // already carries node
	names   func(short uint64) (string, bool)
	closing func() bool
	now     func() time.Time
	peers   *peerTracker
	addrs   map[string]string // raft address → node id, from the config's peers

	misaddressedMu   sync.Mutex // guards the six below (due)
	lastMisaddressed time.Time  // the last "ignored a ... message ... received by" said at its level
	lastPreVote      time.Time  // the last "became PreVote candidate" said at info
	lastStall        time.Time  // the last "had N LocalTick msgs in one batch" said at its level
	lastStallTicks   int        // its N
	lastDropped      time.Time  // the last "dropped an incoming message" said at its level
	droppedSince     int        // those demoted since

	// gone, once the node started, says whether its data directory is
	// gone (dataDirWatch.gone: said at ERROR and told to Node.Fatal the
	// first time); nil before.
	gone atomic.Pointer[func() error]
}

func (t *logTarget) setGone(f func() error) *func() error {
	t.gone.Store(&f)
	return &f
}

// parkForever holds the goroutine that found the data directory gone
// before it panics: the process exits on Node.Fatal first. A test
// stands in one that returns.
var parkForever = func() { select {} }

// stopIfGone holds the calling goroutine of Pebble or Dragonboat, about
// to panic (Pebble's Fatalf writes its line to the standard logger just
// before, Dragonboat's Panicf to its logger), when the node's data
// directory is gone: the member stops on Node.Fatal with one ERROR line
// saying what happened and what to do, where it stopped with the raw
// panic of the first file it missed ("000004.log: ... no such file or
// directory") and 180 lines of goroutine dump. msg is their line, kept
// at DEBUG. It returns when the directory is there.
func (t *logTarget) stopIfGone(msg string) {
	f := t.gone.Load()
	if f == nil || throughStdLog(t.log.Handler()) {
		// With slog's default handler the ERROR line would go through
		// the standard logger, whose lock Pebble's line holds here: it
		// would wait for ever, and Fatal with it. Such a node (started
		// without a Logger; lockstep serve gives one) panics as before.
		return
	}
	if err := (*f)(); err != nil {
		t.log.Debug("the log store's last words, the data directory being gone", "said", msg)
		parkForever()
	}
}

// preVoteEvery bounds "became PreVote candidate" at info: a member that
// cannot win an election (cut off from its peers, refused by them, or
// without a quorum) campaigns at every election timeout, twice a second.
const preVoteEvery = 30 * time.Second

// misaddressedEvery bounds Dragonboat's warning that a message came for
// another replica than this node's (a member started under another
// incarnation than the cluster knows it by, or another process on a
// member's Raft address): it comes with every heartbeat, ten a second, and
// says the same thing each time.
const misaddressedEvery = time.Minute

func newLogTarget(l *slog.Logger, names func(uint64) (string, bool), closing func() bool) *logTarget {
	if names == nil {
		names = func(uint64) (string, bool) { return "", false }
	}
	if closing == nil {
		closing = func() bool { return false }
	}
	return &logTarget{log: l, names: names, closing: closing, now: time.Now,
		peers: &peerTracker{peers: map[string]*peerState{}}, addrs: map[string]string{}}
}

func routeDragonboatLogs(t *logTarget) {
	dragonboatTarget.Store(t)
	dragonboatLogOnce.Do(func() {
		dblogger.SetLoggerFactory(func(pkg string) dblogger.ILogger { return slogAdapter{pkg: pkg} })
		stdFlags = stdlog.Flags()
		stdlog.SetFlags(0)
		stdlog.SetOutput(pebbleLines{})
	})
}

// pebbleLines takes the lines of Go's standard logger, where Pebble, the
// log store under Dragonboat, writes the error it dies of (a write that
// failed: "no space left on device", "input/output error") just before
// Dragonboat's panic. They came out in the format Dragonboat's logging
// library gave the standard logger ("2026-12-06 04:18:51.789684 I |
// write ...: no space left on device"), neither JSON nor at a level an
// alert looks for. The servers here give their own ErrorLog, so nothing
// else is known to write there; a line that is not a disk's failure is
// kept as it is, at ERROR too.
type pebbleLines struct{}

var (
	// stdFlags are the standard logger's flags before the node took it
	// over, and stdOut where a line for slog's default handler goes.
	stdFlags           = stdlog.LstdFlags
	stdOut   io.Writer = os.Stderr
)

// diskFailures are the words of the write errors that stop a member.
var diskFailures = []string{"no space left on device", "input/output error", "read-only file system", "disk quota exceeded"}

func (pebbleLines) Write(p []byte) (int, error) {
	t := current()
	msg := strings.TrimRight(string(p), "\n")
	t.stopIfGone(msg)
	for _, w := range diskFailures {
		if strings.Contains(msg, w) {
			msg = "the log store failed: " + msg + ": the disk under cluster.data_dir is full or failing, and the member stops " +
				"(docs/operations.md, Disk problems)"
			break
		}
	}
	if throughStdLog(t.log.Handler()) {
		// slog's own default handler writes through Go's standard logger,
		// whose lock this call holds: through it, the line would wait for
		// itself for ever (a node started without a Logger did). Every
		// line of that handler comes here too, each already with its
		// level, so it goes out as the standard logger would have written
		// it; only a disk's failure is marked, in that handler's words.
		if msg != strings.TrimRight(string(p), "\n") {
			msg = "ERROR " + msg
		}
		return len(p), stdlog.New(stdOut, "", stdFlags).Output(2, msg)
	}
	t.log.LogAttrs(context.Background(), slog.LevelError, msg, slog.String("component", "stdlog"))
	return len(p), nil
}

// throughStdLog says whether h is slog's default handler (a logger never
// given one of its own), which writes through Go's standard logger.
func throughStdLog(h slog.Handler) bool {
	return fmt.Sprintf("%T", h) == "*slog.defaultHandler"
}

// lendDragonboatLogs routes Dragonboat's lines to t until the returned
// func is called, which gives them back to the target they had (none, in
// a process that runs no node): Restore runs Dragonboat without a node,
// and its lines, warnings and errors only, go to its own logger, not to
// stderr in Dragonboat's format.
func lendDragonboatLogs(t *logTarget) (giveBack func()) {
	prev := dragonboatTarget.Load()
	routeDragonboatLogs(t)
	return func() { dragonboatTarget.CompareAndSwap(t, prev) }
}

type slogAdapter struct{ pkg string }

func (slogAdapter) SetLevel(dblogger.LogLevel)  {}
func (a slogAdapter) Debugf(f string, v ...any) { a.debug(current(), f, v) }

// debug reads the one debug line used: a connection (re-)established,
// which ends a peer's unreachable spell.
func (a slogAdapter) debug(t *logTarget, f string, v []any) {
	if a.pkg == "transport" && strings.HasPrefix(f, "message streaming to %s established") && len(v) == 1 {
		t.peers.reachable(t, fmt.Sprint(v[0]))
	}
}
func (slogAdapter) Infof(string, ...any)          {}
func (a slogAdapter) Warningf(f string, v ...any) { a.log(current(), slog.LevelWarn, f, v) }
func (a slogAdapter) Errorf(f string, v ...any)   { a.log(current(), slog.LevelError, f, v) }
func (a slogAdapter) Panicf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	current().stopIfGone(msg)
	a.log(current(), slog.LevelError, "%s", []any{msg})
	panic(msg)
}

func current() *logTarget {
	if t := dragonboatTarget.Load(); t != nil {
		return t
	}
	t := newLogTarget(slog.Default(), nil, nil)
	if dragonboatTarget.CompareAndSwap(nil, t) {
		return t
	}
	return dragonboatTarget.Load()
}

// log writes one Dragonboat line at the level dragonboatLevel gives it,
// formatting it only when it would be kept (some demoted lines come once
// per request); a peer's connection failure goes to the peer tracker.
func (a slogAdapter) log(t *logTarget, level slog.Level, f string, v []any) {
	if peer, ok := peerEvent(a.pkg, f, v); ok {
		if t.closing() {
			a.write(t, slog.LevelDebug, f, v)
			return
		}
		t.peers.failed(t, peer, func() string { return t.translate(a.format(f, v)) })
		return
	}
	level = dragonboatLevel(a.pkg, f, level)
	if a.pkg == "raft" && strings.Contains(f, "became PreVote candidate") && level == slog.LevelInfo && !t.due(&t.lastPreVote, preVoteEvery) {
		level = slog.LevelDebug
	}
	if a.pkg == "dragonboat" && strings.HasPrefix(f, "ignored a %s message sent to") && level >= slog.LevelWarn {
		if t.due(&t.lastMisaddressed, misaddressedEvery) {
			f += " (said at most once a minute: a member that runs under another incarnation than the cluster added it with, " +
				"or another process on a member's Raft address)"
		} else {
			level = slog.LevelDebug
		}
	}
	if a.pkg == "dragonboat" && strings.HasSuffix(f, "LocalTick msgs in one batch") && level >= slog.LevelWarn {
		// The step loop of a replica was not run for over half an
		// election timeout: the process was not scheduled (a machine
		// overloaded, a paused VM) or waited on its disk. Worth a WARN,
		// but it comes for each replica and each stall, 41 lines in one
		// reviewer's busy hour, in words an operator cannot place.
		if t.stallDue(v) {
			f += " (its Raft loop did not run for over half an election timeout: the machine is overloaded, the process was " +
				"paused, or the disk stalled; an election may follow. Said at most once a minute)"
		} else {
			level = slog.LevelDebug
		}
	}
	if a.pkg == "dragonboat" && f == "dropped an incoming message" && level >= slog.LevelWarn {
		// A replica's receive queue was full: after a pause (SIGSTOP, a
		// frozen VM) or a stall its peers' messages piled up, and each one
		// dropped was a WARN without a peer or a reason, 1,084 lines in one
		// second in an operator's trial. Raft resends what matters.
		if n, ok := t.droppedDue(); ok {
			f = fmt.Sprintf("dropped incoming Raft messages (%d more since last said): this member's receive queue was full, "+
				"as after a pause or a stall of the process or its disk; Raft resends them. Said at most once a minute", n)
		} else {
			level = slog.LevelDebug
		}
	}
	a.write(t, level, f, v)
}

// droppedEvery bounds Dragonboat's warning that it dropped an incoming
// message (droppedDue).
const droppedEvery = time.Minute

// droppedDue says whether a dropped message's warning is due (once a
// minute), and how many were demoted since the last one said.
func (t *logTarget) droppedDue() (int, bool) {
	now := t.now()
	t.misaddressedMu.Lock()
	defer t.misaddressedMu.Unlock()
	if !t.lastDropped.IsZero() && now.Sub(t.lastDropped) < droppedEvery {
		t.droppedSince++
		return 0, false
	}
	n := t.droppedSince
	t.lastDropped, t.droppedSince = now, 0
	return n, true
}

// stallEvery bounds Dragonboat's warning that a replica's ticks came in a
// batch (its loop stalled).
const stallEvery = time.Minute

// stallDue says whether a stall's warning is due: once a minute, and
// besides for a stall of at least twice the ticks of the one last said,
// so that a 200 ms hiccup does not silence the 15 s pause (a SIGSTOP, a
// frozen VM) that follows it within the minute. v is Dragonboat's
// arguments: the replica, then the count of ticks.
func (t *logTarget) stallDue(v []any) bool {
	ticks := 0
	if len(v) >= 2 {
		ticks, _ = v[1].(int)
	}
	now := t.now()
	t.misaddressedMu.Lock()
	defer t.misaddressedMu.Unlock()
	if now.Sub(t.lastStall) < stallEvery && (ticks == 0 || ticks < 2*t.lastStallTicks) {
		return false
	}
	t.lastStall, t.lastStallTicks = now, ticks
	return true
}

// due says whether a line said at most once every every is due now, and
// if so notes that it was said (last is one of t's times).
func (t *logTarget) due(last *time.Time, every time.Duration) bool {
	now := t.now()
	t.misaddressedMu.Lock()
	defer t.misaddressedMu.Unlock()
	if now.Sub(*last) < every {
		return false
	}
	*last = now
	return true
}

func (a slogAdapter) write(t *logTarget, level slog.Level, f string, v []any) {
	if !t.log.Enabled(context.Background(), level) {
		return
	}
	msg, attrs := t.split(a.format(f, v))
	msg = t.translate(msg)
	attrs = append(attrs, slog.String("component", "dragonboat/"+a.pkg))
	t.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// format formats a line; should the arguments not match the verbs (fmt
// writes %!v(MISSING) or %!(EXTRA ...)), the format and the arguments are
// written apart instead of a garbled mix.
func (a slogAdapter) format(f string, v []any) string {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "%!") && !strings.Contains(f, "%!") {
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = fmt.Sprint(x)
		}
		msg = f + " [" + strings.Join(parts, ", ") + "]"
	}
	return msg
}

// raftPrefix is Dragonboat's raft.describe(): first, last, term of the last
// entry, committed, applied, then the shard and replica, and the term.
var raftPrefix = regexp.MustCompile(`^\[f:\d+,l:\d+,t:\d+,c:\d+,a:\d+\] \[(\d{5}):(\d{5})\] t(\d+) `)

// split takes Dragonboat's raft prefix off a message, as the fields shard
// (Lockstep's index), replica (a node id when known) and term.
func (t *logTarget) split(msg string) (string, []slog.Attr) {
	m := raftPrefix.FindStringSubmatch(msg)
	if m == nil {
		return msg, nil
	}
	rest := strings.Replace(msg[len(m[0]):], "become followerKE", "become follower", 1)
	var attrs []slog.Attr
	if shard, err := strconv.ParseUint(m[1], 10, 64); err == nil && shard > 0 {
		attrs = append(attrs, slog.Uint64("shard", shard-1))
	}
	attrs = append(attrs, slog.String("replica", t.replicaName(m[2])))
	if term, err := strconv.ParseUint(m[3], 10, 64); err == nil {
		attrs = append(attrs, slog.Uint64("term", term))
	}
	return rest, attrs
}

// Dragonboat names a replica "n%05d" and a replica of a shard
// "[%05d:%05d]" (shard id, replica id), both modulo 100000
// (github.com/lni/goutils/logutil). Lockstep's shard index is the
// Dragonboat shard id less one.
var (
	dbReplica = regexp.MustCompile(`\bn(\d{5})\b`)
	dbNode    = regexp.MustCompile(`\[(\d{5}):(\d{5})\]`)
)

// translate rewrites Dragonboat's replica ids as node ids ("node-2",
// "shard 0 node-2") where the runtime knows the replica; an id it does not
// know stays as Dragonboat wrote it (its low five decimal digits cannot be
// turned back into Lockstep's hex form).
func (t *logTarget) translate(msg string) string {
	if !strings.Contains(msg, "n") && !strings.Contains(msg, "[") {
		return msg
	}
	msg = dbNode.ReplaceAllStringFunc(msg, func(s string) string {
		m := dbNode.FindStringSubmatch(s)
		shard, _ := strconv.ParseUint(m[1], 10, 64)
		if shard == 0 {
			return t.replicaName(m[2])
		}
		return fmt.Sprintf("shard %d %s", shard-1, t.replicaName(m[2]))
	})
	return dbReplica.ReplaceAllStringFunc(msg, func(s string) string { return t.replicaName(s[1:]) })
}

// replicaName is a node id for Dragonboat's five digits of a replica id, or
// "n" and the digits when no known replica has them.
func (t *logTarget) replicaName(digits string) string {
	if short, err := strconv.ParseUint(digits, 10, 64); err == nil {
		if name, ok := t.names(short); ok {
			return name
		}
	}
	return "n" + digits
}

// peerEvent reports whether a Dragonboat line is a connection failure to a
// peer, and the peer's address: the failures a member being down or
// restarting causes on every other member, several a second.
func peerEvent(pkg, f string, v []any) (string, bool) {
	if pkg != "transport" {
		return "", false
	}
	arg := -1
	switch {
	case strings.HasPrefix(f, "breaker %s to %s failed"),
		strings.HasPrefix(f, "Nodehost %s failed to get a connection to %s"):
		arg = 1
	case strings.HasPrefix(f, "%s became unreachable"),
		strings.HasPrefix(f, "send batch failed, ta"), // "target" and Dragonboat's "taret"
		strings.HasPrefix(f, "circuit breaker for %s is not ready"),
		strings.HasPrefix(f, "failed to connect to %s"),
		strings.HasPrefix(f, "failed to get snapshot conn to %s"):
		arg = 0
	}
	if arg < 0 || arg >= len(v) {
		return "", false
	}
	return fmt.Sprint(v[arg]), true
}

// peerTracker turns a peer's repeated connection failures into one warning,
// periodic summaries and a recovery line.
type peerTracker struct {
	mu    sync.Mutex
	peers map[string]*peerState
}

type peerState struct {
	down        bool
	since       time.Time // first failure of this spell
	lastSummary time.Time
	lastFailure time.Time
	attempts    int       // failures since lastSummary
	lastRefusal time.Time // the last certificate refusal said at warn
	// heldOff: the last failure was the transport holding the peer off
	// after it refused this member, or this member it (its versions, a
	// lost log, a removal, another replica at its address). Its next dial,
	// 3 s on, connects and is refused again: that connection does not end
	// the spell.
	heldOff bool
}

// refusedByTLS says whether a connection failure is a refused certificate
// rather than a peer that is down: a node from another CA, an expired or
// misissued certificate. That is a security event an operator must see, so
// it is said at warn (at most once per peerSummaryEvery), never folded into
// the unreachable summary.
func refusedByTLS(detail string) bool {
	return strings.Contains(detail, "x509:") || strings.Contains(detail, "tls: ")
}

// failed records a connection failure to addr; line formats Dragonboat's own
// line, which is written at debug.
func (p *peerTracker) failed(t *logTarget, addr string, line func() string) {
	now := t.now()
	p.mu.Lock()
	st := p.peers[addr]
	if st == nil {
		st = &peerState{}
		p.peers[addr] = st
	}
	var level slog.Level
	var msg string
	var attempts int
	var since time.Time
	switch {
	case !st.down || now.Sub(st.lastFailure) >= peerSummaryEvery: // a new spell after a quiet one
		*st = peerState{down: true, since: now, lastSummary: now}
		level, msg = slog.LevelWarn, "peer unreachable"
	default:
		st.attempts++
		if now.Sub(st.lastSummary) >= peerSummaryEvery {
			level, msg, attempts, since = slog.LevelWarn, "peer still unreachable", st.attempts, st.lastSummary
			st.attempts, st.lastSummary = 0, now
		}
	}
	down := st.since
	detail := line()
	st.lastFailure, st.heldOff = now, st.heldOff || transport.HeldOff(detail) // for the rest of the spell
	refused := refusedByTLS(detail) && now.Sub(st.lastRefusal) >= peerSummaryEvery
	if refused {
		st.lastRefusal = now
	}
	p.mu.Unlock()

	ctx := context.Background()
	if refused {
		t.log.LogAttrs(ctx, slog.LevelWarn, "peer's TLS handshake refused", t.peerAttr(addr), slog.String("error", detail),
			slog.String("component", "dragonboat/transport"))
	}
	if t.log.Enabled(ctx, slog.LevelDebug) {
		t.log.LogAttrs(ctx, slog.LevelDebug, detail, slog.String("component", "dragonboat/transport"))
	}
	switch msg {
	case "":
	case "peer unreachable":
		t.log.LogAttrs(ctx, level, msg, t.peerAttr(addr), slog.String("error", detail),
			slog.String("component", "dragonboat/transport"))
	default:
		t.log.LogAttrs(ctx, level, msg, t.peerAttr(addr), slog.Int("attempts", attempts),
			slog.Duration("over", now.Sub(since).Round(time.Second)),
			slog.Duration("down_for", now.Sub(down).Round(time.Second)),
			slog.String("last_error", detail), slog.String("component", "dragonboat/transport"))
	}
}

// unreachablePeers names the peers this node failed to connect to within
// the last peerSummaryEvery and has not reached since, each as "ID at
// ADDRESS" (the address alone for a peer the config does not name): what
// a member without a leader says on /health, so that a mistyped address in
// cluster.peers or a peer that is down is named there too, not only in
// the log. Peers the transport holds off after a refusal are left out:
// that refusal is said on its own.
func (t *logTarget) unreachablePeers() []string {
	now := t.now()
	t.peers.mu.Lock()
	defer t.peers.mu.Unlock()
	var out []string
	for addr, st := range t.peers.peers {
		if !st.down || st.heldOff || now.Sub(st.lastFailure) >= peerSummaryEvery {
			continue
		}
		if id, ok := t.addrs[addr]; ok {
			out = append(out, id+" at "+addr)
		} else {
			out = append(out, t.translate(addr))
		}
	}
	slices.Sort(out)
	return out
}

// reachable ends addr's unreachable spell, if it had one.
func (p *peerTracker) reachable(t *logTarget, addr string) {
	now := t.now()
	p.mu.Lock()
	st := p.peers[addr]
	if st == nil || !st.down || st.heldOff {
		p.mu.Unlock()
		return
	}
	down := now.Sub(st.since).Round(time.Second)
	delete(p.peers, addr)
	p.mu.Unlock()
	t.log.LogAttrs(context.Background(), slog.LevelInfo, "peer reachable again", t.peerAttr(addr),
		slog.Duration("down_for", down), slog.String("component", "dragonboat/transport"))
}

// dragonboatLevel maps a Dragonboat warning, by its package and format
// string, to the level it deserves here. Errors keep theirs.
//
//   - Info: the states an election goes through (PreVote candidate,
//     candidate, a step down to follower on a higher term, a campaign put
//     off by a membership change). They say an election happened; the
//     runtime logs who won.
//   - Debug: its vote-by-vote story (votes sent, cast, rejected and
//     counted), the requests dropped while there is no leader or one is
//     being handed over (the runtime retries them, and they come once per
//     request), the notice that the heartbeat is not ten times shorter than
//     the election timeout (docs/design.md's defaults are 100 and 300 ms), and
//     the notice that stale reads are stale (asked for explicitly).
//   - Warn: everything else, among them a leader that lost its quorum and
//     anything about snapshots: an operator can act on those.
//
// A peer's connection failures never get here: peerEvent picks them out
// first, for the peer tracker.
func dragonboatLevel(pkg, format string, level slog.Level) slog.Level {
	if pkg == "transport" && (strings.HasPrefix(format, "failed to close the connection") || format == "failed to get the header") {
		// A connection whose other end went away (a peer stopped or
		// restarted, or this node is stopping): a TLS close alert that
		// cannot be sent, or an incoming connection that ended before its
		// next message. The sending side reports an unreachable peer;
		// nothing was lost here.
		return slog.LevelDebug
	}
	if level != slog.LevelWarn {
		return level
	}
	has := func(parts ...string) bool {
		for _, p := range parts {
			if strings.Contains(format, p) {
				return true
			}
		}
		return false
	}
	switch pkg {
	case "raft":
		switch {
		case has("became PreVote candidate", "became candidate", "become follower", "campaign skipped"):
			return slog.LevelInfo
		case has("RequestPreVote", "RequestVote", "preVote", "cast vote", "rejected vote", "votes and",
			"rejection from", "received %s from", "with higher term",
			"dropped proposal, no leader", "dropped proposal, leader transferring",
			// Close asks again while a lost request may still stand.
			"LeaderTransfer ignored, leader transfer is ongoing",
			"dropped ReadIndex, no leader", "dropped read index, no leader", "dropped ReadIndex, not ready"):
			return slog.LevelDebug
		}
	case "config":
		if has("ElectionRTT is not a magnitude larger") {
			return slog.LevelDebug
		}
	case "dragonboat":
		if strings.HasPrefix(format, "StaleRead called") {
			return slog.LevelDebug
		}
	}
	return level
}

// peerAttr names a peer by its node id when the config's peers list its
// raft address (or, for snapshot connections, which Dragonboat names by
// replica, when a member has the replica), else as Dragonboat named it.
func (t *logTarget) peerAttr(addr string) slog.Attr {
	if id, ok := t.addrs[addr]; ok {
		return slog.String("peer", id)
	}
	return slog.String("peer", t.translate(addr))
}
