package runtime

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	dblogger "github.com/lni/dragonboat/v4/logger"
)

// The format strings are Dragonboat's own (internal/raft/raft.go,
// config/config.go, nodehost.go, internal/transport/transport.go).
func TestDragonboatLevels(t *testing.T) {
	const warn, errl = slog.LevelWarn, slog.LevelError
	tests := []struct {
		pkg, format string
		given, want slog.Level
	}{
		// An election's states: info.
		{"raft", "%s became PreVote candidate", warn, slog.LevelInfo},
		{"raft", "%s became candidate", warn, slog.LevelInfo},
		{"raft", "%s become followerKE after receiving higher term from %s", warn, slog.LevelInfo},
		{"raft", "%s become follower after receiving higher term from %s", warn, slog.LevelInfo},
		{"raft", "%s campaign skipped, pending config change", warn, slog.LevelInfo},
		// Its vote-by-vote story and the requests dropped meanwhile: debug.
		{"raft", "%s sent RequestPreVote to %s", warn, slog.LevelDebug},
		{"raft", "%s sent RequestVote to %s", warn, slog.LevelDebug},
		{"raft", "%s cast preVote from %s index %d term %d, log term: %d", warn, slog.LevelDebug},
		{"raft", "%s rejected preVote %s index %d term %d,logterm %d, utd %t", warn, slog.LevelDebug},
		{"raft", "%s cast vote from %s index %d term %d, log term: %d", warn, slog.LevelDebug},
		{"raft", "%s rejected vote %s index%d term%d,logterm%d,grant%v,utd%v", warn, slog.LevelDebug},
		{"raft", "%s received %d votes and %d rejections, quorum is %d", warn, slog.LevelDebug},
		{"raft", "%s received %d preVotes and %d rejections, quorum is %d", warn, slog.LevelDebug},
		{"raft", "%s received %s rejection from %s", warn, slog.LevelDebug},
		{"raft", "%s received %s from %s", warn, slog.LevelDebug},
		{"raft", "%s received %s with higher term (%d) from %s", warn, slog.LevelDebug},
		{"raft", "%s dropped RequestVote at term %d from %s, leader available", warn, slog.LevelDebug},
		{"raft", "%s dropped proposal, no leader", warn, slog.LevelDebug},
		{"raft", "%s dropped proposal, leader transferring", warn, slog.LevelDebug},
		{"raft", "LeaderTransfer ignored, leader transfer is ongoing", warn, slog.LevelDebug},
		{"raft", "%s dropped ReadIndex, no leader", warn, slog.LevelDebug},
		{"raft", "%s dropped read index, no leader", warn, slog.LevelDebug},
		{"config", "ElectionRTT is not a magnitude larger than HeartbeatRTT", warn, slog.LevelDebug},
		{"dragonboat", "StaleRead called, linearizability not guaranteed for stale read", warn, slog.LevelDebug},
		// Genuine warnings stay warnings; errors stay errors.
		{"raft", "%s has lost quorum", warn, warn},
		{"raft", "%s, %s is not active, sending snapshot is skipped", warn, warn},
		{"raft", "%s snapshot failed, %s is now in wait state", warn, warn},
		{"raft", "%s no remote for %s", warn, warn},
		{"raft", "%s dropped config change, pending change", warn, warn},
		// (A peer's connection failures, below, go to the peer tracker
		// before this mapping: TestPeerEvents.)
		{"transport", "%s became unreachable, affected %d nodes", warn, warn},
		{"transport", "breaker %s to %s failed, connect and process failed: %s", warn, warn},
		{"config", "mutual TLS disabled, communication is insecure", warn, warn},
		{"transport", "send batch failed, target %s (%v), %d", errl, errl},
		// An election word in another package, or at error level, is not demoted.
		{"transport", "%s became candidate", warn, warn},
		{"raft", "%s became candidate", errl, errl},
	}
	for _, tc := range tests {
		if got := dragonboatLevel(tc.pkg, tc.format, tc.given); got != tc.want {
			t.Errorf("%s %q at %v: %v, want %v", tc.pkg, tc.format, tc.given, got, tc.want)
		}
	}
}

// formatted records whether a line's arguments were formatted.
type formatted struct{ called *bool }

func (f formatted) String() string { *f.called = true; return "n00001" }

// testTarget is a logTarget writing text lines to buf at level, that knows
// replica 24640 as node-2 and 00001 as node-1, and whose clock is *now.
func testTarget(buf *bytes.Buffer, level slog.Level, now *time.Time, closing *bool) *logTarget {
	l := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level})).With("node", "node-1")
	names := map[uint64]string{1: "node-1", 24640: "node-2"}
	t := newLogTarget(l, func(short uint64) (string, bool) { n, ok := names[short]; return n, ok },
		func() bool { return closing != nil && *closing })
	t.now = func() time.Time { return *now }
	t.addrs["127.0.0.1:7002"] = "node-2"
	return t
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestDragonboatAdapterWritesAtTheMappedLevel(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	target := testTarget(&buf, slog.LevelInfo, &now, nil)
	raft := slogAdapter{pkg: "raft"}

	called := false
	raft.log(target, slog.LevelWarn, "%s sent RequestVote to %s", []any{formatted{&called}, "n2"})
	if buf.Len() != 0 || called {
		t.Fatalf("a debug line passed an info logger (formatted: %v): %q", called, buf.String())
	}
	raft.log(target, slog.LevelWarn, "%s became candidate", []any{formatted{&called}})
	raft.log(target, slog.LevelWarn, "%s has lost quorum", []any{"n00001"})
	got := lines(&buf)
	if len(got) != 2 {
		t.Fatalf("want two lines, got %q", buf.String())
	}
	for i, want := range []string{`level=INFO msg="node-1 became candidate" node=node-1 component=dragonboat/raft`,
		`level=WARN msg="node-1 has lost quorum" node=node-1 component=dragonboat/raft`} {
		if !strings.Contains(got[i], want) {
			t.Errorf("line %d: %q, want it to hold %q", i, got[i], want)
		}
	}
}

// Dragonboat's raft lines start with raft.describe(); the adapter turns it
// into fields, and its replica ids into node ids.
func TestDragonboatAdapterFormatsRaftLines(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	target := testTarget(&buf, slog.LevelDebug, &now, nil)
	raft := slogAdapter{pkg: "raft"}
	describe := "[f:1,l:5,t:1,c:5,a:5] [00001:00001] t2"
	raft.log(target, slog.LevelWarn, "%s become followerKE after receiving higher term from %s", []any{describe, "n24640"})
	raft.log(target, slog.LevelWarn, "%s no remote for %s", []any{describe, "n12345"})
	raft.log(target, slog.LevelWarn, "%s snapshot failed, %s is now in wait state", []any{"[00002:24640]"})
	raft.log(target, slog.LevelError, "%s sent %d", []any{"x"})
	got := lines(&buf)
	want := []string{
		`level=INFO msg="become follower after receiving higher term from node-2" node=node-1 shard=0 replica=node-1 term=2 component=dragonboat/raft`,
		// An id no member has stays as Dragonboat wrote it.
		`level=WARN msg="no remote for n12345" node=node-1 shard=0 replica=node-1 term=2 component=dragonboat/raft`,
		// Too few arguments: the format and the arguments, apart.
		`level=WARN msg="%s snapshot failed, %s is now in wait state [shard 1 node-2]" node=node-1 component=dragonboat/raft`,
		`level=ERROR msg="%s sent %d [x]" node=node-1`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d: %q", len(got), len(want), buf.String())
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to hold %q", i, got[i], want[i])
		}
		if !strings.Contains(got[i], "node=node-1") {
			t.Errorf("line %d has no node field: %q", i, got[i])
		}
	}
}

// A peer's connection failures: one warning, debug lines, a summary at most
// every peerSummaryEvery, info when it is reachable again; nothing above
// debug while this node closes.
func TestDragonboatAdapterSummarisesPeerFailures(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	closing := false
	target := testTarget(&buf, slog.LevelInfo, &now, &closing)
	tr := slogAdapter{pkg: "transport"}
	fail := func() {
		tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v",
			[]any{"127.0.0.1:7001", "127.0.0.1:7002", "connection refused"})
		tr.log(target, slog.LevelWarn, "breaker %s to %s failed, connect and process failed: %s",
			[]any{"127.0.0.1:7001", "127.0.0.1:7002", "connection refused"})
	}
	// Two failures four times a second for 65 seconds.
	for i := 0; i < 65*4; i++ {
		fail()
		now = now.Add(time.Second / 4)
	}
	tr.debug(target, "message streaming to %s established", []any{"127.0.0.1:7002"})
	tr.debug(target, "message streaming to %s established", []any{"127.0.0.1:7002"}) // not down: nothing
	got := lines(&buf)
	want := []string{
		`level=WARN msg="peer unreachable" node=node-1 peer=node-2 error="Nodehost 127.0.0.1:7001 failed to get a connection to 127.0.0.1:7002, connection refused"`,
		`level=WARN msg="peer still unreachable" node=node-1 peer=node-2 attempts=240 over=30s down_for=30s`,
		`level=WARN msg="peer still unreachable" node=node-1 peer=node-2 attempts=240 over=30s down_for=1m0s`,
		`level=INFO msg="peer reachable again" node=node-1 peer=node-2 down_for=1m5s`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), buf.String())
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to hold %q", i, got[i], want[i])
		}
	}

	// Down again: warned again. An unknown address is named by itself.
	buf.Reset()
	tr.log(target, slog.LevelError, "send batch failed, target %s (%v), %d", []any{"127.0.0.1:7002", "EOF", 3})
	tr.log(target, slog.LevelWarn, "%s became unreachable, affected %d nodes", []any{"127.0.0.1:7009", 1})
	tr.log(target, slog.LevelError, "failed to connect to %s", []any{"[00001:24640]"})
	got = lines(&buf)
	if len(got) != 3 || !strings.Contains(got[0], `level=WARN msg="peer unreachable" node=node-1 peer=node-2`) ||
		!strings.Contains(got[1], `level=WARN msg="peer unreachable" node=node-1 peer=127.0.0.1:7009`) ||
		!strings.Contains(got[2], `level=WARN msg="peer unreachable" node=node-1 peer="shard 0 node-2" error="failed to connect to shard 0 node-2"`) {
		t.Fatalf("a second spell and an unknown peer: %q", buf.String())
	}

	// While this node closes, its own send failures are debug.
	buf.Reset()
	closing = true
	tr.log(target, slog.LevelError, "send batch failed, target %s (%v), %d", []any{"127.0.0.1:7003", "closed", 1})
	if buf.Len() != 0 {
		t.Fatalf("a send failure while closing was logged above debug: %q", buf.String())
	}
	// Other transport errors are not peer events.
	tr.log(target, slog.LevelError, "invalid payload checksum", nil)
	if !strings.Contains(buf.String(), `level=ERROR msg="invalid payload checksum"`) {
		t.Fatalf("a genuine transport error was not an error: %q", buf.String())
	}
}

// The format strings are Dragonboat's (internal/transport); the address is
// the peer's.
func TestPeerEvents(t *testing.T) {
	const self, peer = "127.0.0.1:7001", "127.0.0.1:7002"
	tests := []struct {
		pkg, format string
		args        []any
		want        string // "": not a peer event
	}{
		{"transport", "breaker %s to %s failed, connect and process failed: %s", []any{self, peer, "refused"}, peer},
		{"transport", "Nodehost %s failed to get a connection to %s, %v", []any{self, peer, "refused"}, peer},
		{"transport", "%s became unreachable, affected %d nodes", []any{peer, 1}, peer},
		{"transport", "send batch failed, target %s (%v), %d", []any{peer, "EOF", 1}, peer},
		{"transport", "send batch failed, taret node %s (%v), %d", []any{peer, "EOF", 1}, peer},
		{"transport", "circuit breaker for %s is not ready", []any{peer}, peer},
		{"transport", "failed to connect to %s", []any{"[00001:00002]"}, "[00001:00002]"},
		{"transport", "failed to get snapshot conn to %s", []any{"[00001:00002]"}, "[00001:00002]"},
		{"transport", "invalid payload checksum", nil, ""},
		{"transport", "Nodehost %s failed to get a connection to %s, %v", []any{self}, ""}, // too few args
		{"raft", "%s became unreachable, affected %d nodes", []any{peer, 1}, ""},
	}
	for _, tc := range tests {
		got, ok := peerEvent(tc.pkg, tc.format, tc.args)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%s %q: %q, %v; want %q", tc.pkg, tc.format, got, ok, tc.want)
		}
	}
}

// A peer whose certificate is refused is not a peer that is down: it is
// said at warn with the error, at most once per summary interval, however
// often Dragonboat retries. A TLS close alert to a peer that went away is
// debug.
func TestDragonboatAdapterSaysCertificateRefusals(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	closing := false
	target := testTarget(&buf, slog.LevelInfo, &now, &closing)
	tr := slogAdapter{pkg: "transport"}
	for i := 0; i < 40*4; i++ { // four retries a second for 40 seconds
		tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v",
			[]any{"127.0.0.1:7001", "127.0.0.1:7009", "tls: failed to verify certificate: x509: certificate signed by unknown authority"})
		now = now.Add(time.Second / 4)
	}
	tr.log(target, slog.LevelError, "failed to close the connection %v", []any{"tls: failed to send closeNotify alert"})
	tr.log(target, slog.LevelError, "failed to get the header", nil) // a peer's connection ended
	refusals := 0
	for _, l := range lines(&buf) {
		if strings.Contains(l, `msg="peer's TLS handshake refused"`) {
			refusals++
			if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "certificate signed by unknown authority") {
				t.Errorf("refusal line %q", l)
			}
		}
		if strings.Contains(l, "closeNotify") || strings.Contains(l, "failed to get the header") {
			t.Errorf("a connection a peer ended logged at info or above: %q", l)
		}
	}
	if refusals != 2 {
		t.Fatalf("%d refusal lines over 40 s, want 2 (one per 30 s):\n%s", refusals, buf.String())
	}
}

// TestMisaddressedMessagesWarnOnceAMinute: a member that runs under
// another incarnation than the cluster added it with gets every heartbeat
// addressed to a replica it is not, and Dragonboat warned at each, ten
// lines a second (an on-call walk-through); it is said once a minute, with
// what it means, and the rest at DEBUG.
func TestMisaddressedMessagesWarnOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	target := testTarget(&buf, slog.LevelInfo, &now, nil)
	db := slogAdapter{pkg: "dragonboat"}
	const f = "ignored a %s message sent to %s but received by %s"
	for range 50 {
		db.log(target, slog.LevelWarn, f, []any{"Heartbeat", "shard 0 n52929", "shard 0 node-2"})
		now = now.Add(100 * time.Millisecond)
	}
	got := lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "another incarnation") {
		t.Fatalf("5 s of misaddressed heartbeats: %d lines, want one warning that says what it means:\n%s", len(got), buf.String())
	}
	now = now.Add(time.Minute)
	db.log(target, slog.LevelWarn, f, []any{"Heartbeat", "shard 0 n52929", "shard 0 node-2"})
	if got := lines(&buf); len(got) != 2 {
		t.Fatalf("a minute later: %d lines, want the warning again", len(got))
	}
}

// TestDroppedMessagesWarnOnceAMinute: Dragonboat's "dropped an incoming
// message" (a replica's receive queue full) came 1,084 times in one
// second after an operator resumed a paused member, as WARNs naming
// nothing; it is said once a minute, with what it means and how many were
// left unsaid, and the rest at DEBUG.
func TestDroppedMessagesWarnOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	target := testTarget(&buf, slog.LevelInfo, &now, nil)
	db := slogAdapter{pkg: "dragonboat"}
	for range 1000 {
		db.log(target, slog.LevelWarn, "dropped an incoming message", nil)
		now = now.Add(time.Millisecond)
	}
	got := lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "receive queue was full") {
		t.Fatalf("1,000 dropped messages in a second: %d lines, want one warning that says what it means:\n%s", len(got), buf.String())
	}
	now = now.Add(time.Minute)
	db.log(target, slog.LevelWarn, "dropped an incoming message", nil)
	if got := lines(&buf); len(got) != 2 || !strings.Contains(got[1], "999 more since last said") {
		t.Fatalf("a minute later: %d lines, want the warning again counting the 999 unsaid:\n%s", len(got), buf.String())
	}
}

// TestStalledLoopWarnsOnceAMinute: Dragonboat's "had N LocalTick msgs in
// one batch" (a replica's loop did not run for half an election timeout)
// came for each replica at each stall, 41 lines in a reviewer's busy hour,
// in words an operator could not place; it is said once a minute, with
// what it means, and the rest at DEBUG.
func TestStalledLoopWarnsOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	target := testTarget(&buf, slog.LevelInfo, &now, nil)
	db := slogAdapter{pkg: "dragonboat"}
	const f = "%s had %d LocalTick msgs in one batch"
	for i := range 20 {
		db.log(target, slog.LevelWarn, f, []any{"[00000:24640]", 25 + i})
		now = now.Add(time.Second)
	}
	got := lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "the machine is overloaded, the process was paused, or the disk stalled") {
		t.Fatalf("20 s of stalls: %d lines, want one warning that says what it means:\n%s", len(got), buf.String())
	}
	now = now.Add(time.Minute)
	db.log(target, slog.LevelWarn, f, []any{"[00000:24640]", 30})
	if got := lines(&buf); len(got) != 2 {
		t.Fatalf("a minute later: %d lines, want the warning again", len(got))
	}
	// A far longer stall within the minute (a 15 s SIGSTOP after a 300 ms
	// hiccup) is said too: once a minute alone kept it at DEBUG.
	now = now.Add(time.Second)
	db.log(target, slog.LevelWarn, f, []any{"[00000:24640]", 150})
	if got := lines(&buf); len(got) != 3 || !strings.Contains(got[2], "level=WARN") {
		t.Fatalf("a stall five times the last said, within the minute: %d lines, want it warned:\n%s", len(got), buf.String())
	}
	now = now.Add(time.Second)
	db.log(target, slog.LevelWarn, f, []any{"[00000:24640]", 200})
	if got := lines(&buf); len(got) != 3 {
		t.Fatalf("a stall under twice the last said: %d lines, want it at DEBUG", len(got))
	}
}

// A peer the transport holds off after a refusal (here, one that lost its
// log) connects again every 3 s and is refused again: one warning and the
// summaries, not "unreachable" and "reachable again" every 3 s; a new
// spell after a quiet one warns again.
func TestHeldOffPeerIsOneSpell(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	closing := false
	target := testTarget(&buf, slog.LevelInfo, &now, &closing)
	tr := slogAdapter{pkg: "transport"}
	for range 22 { // 66 s
		tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v",
			[]any{"127.0.0.1:7001", "127.0.0.1:7002", "transport: a member lost its log (its data directory was made anew under a replica id that took part before): " +
				"it must be removed and added back, not restarted as it is"})
		now = now.Add(time.Second)
		tr.debug(target, "message streaming to %s established", []any{"127.0.0.1:7002"})
		now = now.Add(2 * time.Second)
	}
	got := lines(&buf)
	if len(got) != 3 || !strings.Contains(got[0], `msg="peer unreachable"`) || !strings.Contains(got[1], `msg="peer still unreachable"`) ||
		!strings.Contains(got[2], `msg="peer still unreachable"`) {
		t.Fatalf("a held-off peer's 66 s: %d lines, want one warning and two summaries:\n%s", len(got), buf.String())
	}
	buf.Reset()
	now = now.Add(time.Minute) // healed: no failure for a minute
	tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v", []any{"127.0.0.1:7001", "127.0.0.1:7002", "connection refused"})
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], `msg="peer unreachable"`) {
		t.Fatalf("a failure after a quiet minute: %q, want a new spell's warning", buf.String())
	}
}

// A member that cannot win campaigns at every election timeout: "became
// PreVote candidate" is said at info once every preVoteEvery, at debug
// between.
func TestPreVoteCampaignsSaidTwiceAMinute(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	closing := false
	target := testTarget(&buf, slog.LevelInfo, &now, &closing)
	r := slogAdapter{pkg: "raft"}
	for range 120 { // a minute of campaigns, two a second
		r.log(target, slog.LevelWarn, "%s became PreVote candidate", []any{"[00001:24640]"})
		now = now.Add(time.Second / 2)
	}
	if got := lines(&buf); len(got) != 2 {
		t.Fatalf("%d lines in a minute of campaigns, want 2:\n%s", len(got), buf.String())
	}
}

// TestLentDragonboatLogsAreGivenBack: while Restore runs Dragonboat, its
// logger gets Dragonboat's warnings and errors (an error must reach the
// user) and none of its info lines; after, the target before (a node's,
// in a process that runs one) gets them again.
func TestLentDragonboatLogsAreGivenBack(t *testing.T) {
	var before, lent bytes.Buffer
	now := time.Unix(1000, 0)
	defer lendDragonboatLogs(testTarget(&before, slog.LevelInfo, &now, nil))()
	l := dblogger.GetLogger("lockstep-restore-test")
	giveBack := lendDragonboatLogs(testTarget(&lent, slog.LevelWarn, &now, nil))
	l.Infof("using plain logdb")
	l.Warningf("slow disk %s", "a")
	l.Errorf("failed to import %s", "b")
	giveBack()
	l.Errorf("after %s", "c")
	got := lines(&lent)
	if len(got) != 2 || !strings.Contains(got[0], `level=WARN msg="slow disk a"`) ||
		!strings.Contains(got[1], `level=ERROR msg="failed to import b"`) {
		t.Errorf("the lent logger got %q, want the warning and the error only", got)
	}
	if got := lines(&before); len(got) != 1 || !strings.Contains(got[0], `msg="after c"`) {
		t.Errorf("the target before got %q, want only the line after the restore", got)
	}
}

// The peers in a spell of failed connections are what a member without a
// leader names on /health: by node id and address, until reached again or
// quiet for peerSummaryEvery; a peer held off after a refusal is not.
func TestUnreachablePeersAreNamed(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	closing := false
	target := testTarget(&buf, slog.LevelInfo, &now, &closing)
	tr := slogAdapter{pkg: "transport"}
	if got := target.unreachablePeers(); len(got) != 0 {
		t.Fatalf("before any failure: %q", got)
	}
	tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v", []any{"127.0.0.1:7001", "127.0.0.1:7002", "connection refused"})
	tr.log(target, slog.LevelWarn, "%s became unreachable, affected %d nodes", []any{"127.0.0.1:7009", 1})
	tr.log(target, slog.LevelError, "Nodehost %s failed to get a connection to %s, %v",
		[]any{"127.0.0.1:7001", "127.0.0.1:7003", "transport: a member lost its log (its data directory was made anew under a replica id that took part before): " +
			"it must be removed and added back, not restarted as it is"})
	if got := strings.Join(target.unreachablePeers(), "; "); got != "127.0.0.1:7009; node-2 at 127.0.0.1:7002" {
		t.Fatalf("after failures: %q, want node-2 by id and address and the unknown 7009 by address, not the held-off 7003", got)
	}
	tr.debug(target, "message streaming to %s established", []any{"127.0.0.1:7002"})
	if got := strings.Join(target.unreachablePeers(), "; "); got != "127.0.0.1:7009" {
		t.Fatalf("after node-2 was reached: %q", got)
	}
	now = now.Add(peerSummaryEvery)
	if got := target.unreachablePeers(); len(got) != 0 {
		t.Fatalf("after %v without a failure: %q", peerSummaryEvery, got)
	}
}
