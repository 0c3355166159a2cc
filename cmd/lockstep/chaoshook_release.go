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

// nodeClock and nodeMonotonic are nil: the runtime's defaults, time.Now
// and Go's monotonic clock.
func nodeClock() func() time.Time { return nil }

func nodeMonotonic() func() time.Duration { return nil }

func chaosHooks(*http.ServeMux, *runtime.Node, *slog.Logger) {}

// nodeOptions changes nothing: only the chaos build names other versions.
func nodeOptions(o runtime.Options) runtime.Options { return o }
