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
// a node). Only warnings and errors pass: its info level is several lines
// per election. A few warnings that our settings cause on purpose are
// dropped too (see quiet).
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
func (a slogAdapter) Warningf(f string, v ...any) { a.log(slog.LevelWarn, f, v) }
func (a slogAdapter) Errorf(f string, v ...any)   { a.log(slog.LevelError, f, v) }
func (a slogAdapter) Panicf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	a.log(slog.LevelError, "%s", []any{msg})
	panic(msg)
}

func (a slogAdapter) log(level slog.Level, f string, v []any) {
	msg := fmt.Sprintf(f, v...)
	if level < slog.LevelError && quiet(a.pkg, msg) {
		return
	}
	l := dragonboatLog.Load()
	if l == nil {
		l = slog.Default()
	}
	l.Log(context.Background(), level, msg, "component", "dragonboat/"+a.pkg)
}

// quiet lists the warnings that say nothing an operator can act on: the
// vote-by-vote story of each election (the outcome is logged as "became
// leader/follower", and the runtime logs each new leader), the default
// heartbeat of a third of the election timeout that DESIGN.md prescribes,
// and the notice that stale reads are stale.
func quiet(pkg, msg string) bool {
	switch pkg {
	case "raft":
		for _, s := range []string{"RequestPreVote", "RequestVote", "cast preVote", "cast vote", "preVotes and", "votes and"} {
			if strings.Contains(msg, s) {
				return true
			}
		}
	case "config":
		return strings.Contains(msg, "ElectionRTT is not a magnitude larger")
	case "dragonboat":
		return strings.HasPrefix(msg, "StaleRead called") // Read(stale=true) is asked for explicitly
	}
	return false
}
