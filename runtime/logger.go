package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	dblogger "github.com/lni/dragonboat/v4/logger"
)

// Dragonboat's loggers are process-wide and its factory may be set only
// once, so they write to whichever slog.Logger the last Start named. Only
// warnings and errors pass: its info level is several lines per election.
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
	l := dragonboatLog.Load()
	if l == nil {
		l = slog.Default()
	}
	l.Log(context.Background(), level, fmt.Sprintf(f, v...), "component", "dragonboat/"+a.pkg)
}
