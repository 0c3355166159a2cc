//go:build !chaos

package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/lockstepd/lockstep/runtime"
)

// The release build has no chaos hook (chaoshook.go, built only with
// -tags chaos): the runtime reads the wall clock and the metrics listener
// serves nothing under /debug/chaos/.

// nodeClock is nil: the runtime's default, time.Now.
func nodeClock() func() time.Time { return nil }

func chaosHooks(*http.ServeMux, *runtime.Node, *slog.Logger) {}
