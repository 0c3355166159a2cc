package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	dblogger "github.com/lni/dragonboat/v4/logger"
)

// Dragonboat's loggers are process-wide and its factory may be set only
// once, so they write to whichever slog.Logger the last Start named (one
// node per process in production; in tests the lines are not attributed to
// a node). Its debug and info levels are dropped: several lines per
// election. Its warnings and errors pass, except that the warnings an
// election is made of are demoted (see dragonboatLevel): an election is
// routine, and the runtime logs its outcome ("leader elected").
var (
	dragonboatLog     atomic.Pointer[slog.Logger]
	dragonboatLogOnce sync.Once
)

func routeDragonboatLogs(l *slog.Logger) {
	dragonboatLog.Store(l)
	dragonboatLogOnce.Do(func() {
		dblogger.SetLoggerFactory(func(pkg string) dblogger.ILogger { return slogAdapter{pkg: pkg} })
	})
}

type slogAdapter struct{ pkg string }

func (slogAdapter) SetLevel(dblogger.LogLevel)    {}
func (slogAdapter) Debugf(string, ...any)         {}
func (slogAdapter) Infof(string, ...any)          {}
func (a slogAdapter) Warningf(f string, v ...any) { a.log(current(), slog.LevelWarn, f, v) }
func (a slogAdapter) Errorf(f string, v ...any)   { a.log(current(), slog.LevelError, f, v) }
func (a slogAdapter) Panicf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	a.log(current(), slog.LevelError, "%s", []any{msg})
	panic(msg)
}

func current() *slog.Logger {
	if l := dragonboatLog.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// log writes one Dragonboat line at the level dragonboatLevel gives it,
// formatting it only when l would keep it (some demoted lines come once per
// request).
func (a slogAdapter) log(l *slog.Logger, level slog.Level, f string, v []any) {
	level = dragonboatLevel(a.pkg, f, level)
	if !l.Enabled(context.Background(), level) {
		return
	}
	l.Log(context.Background(), level, fmt.Sprintf(f, v...), "component", "dragonboat/"+a.pkg)
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
//   - Warn: everything else, among them a leader that lost its quorum, a
//     peer that became unreachable and anything about snapshots: an
//     operator can act on those.
func dragonboatLevel(pkg, format string, level slog.Level) slog.Level {
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
