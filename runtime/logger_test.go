package runtime

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
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

func (f formatted) String() string { *f.called = true; return "n1" }

func TestDragonboatAdapterWritesAtTheMappedLevel(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	raft := slogAdapter{pkg: "raft"}

	called := false
	raft.log(l, slog.LevelWarn, "%s sent RequestVote to %s", []any{formatted{&called}, "n2"})
	if buf.Len() != 0 || called {
		t.Fatalf("a debug line passed an info logger (formatted: %v): %q", called, buf.String())
	}
	raft.log(l, slog.LevelWarn, "%s became candidate", []any{formatted{&called}})
	raft.log(l, slog.LevelWarn, "%s has lost quorum", []any{"n1"})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want two lines, got %q", buf.String())
	}
	for i, want := range []string{`level=INFO msg="n1 became candidate" component=dragonboat/raft`,
		`level=WARN msg="n1 has lost quorum" component=dragonboat/raft`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want it to hold %q", i, lines[i], want)
		}
	}
}
