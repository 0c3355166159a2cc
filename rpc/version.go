package rpc

import (
	"runtime/debug"
	"sync"
)

// linkedVersion is the version the build stamped in with
// -ldflags "-X github.com/lockstepd/lockstep/rpc.linkedVersion=V": the
// Makefile and the Dockerfile pass `git describe`, since Go records no VCS
// revision where GOFLAGS has -buildvcs=false (as on machines whose git
// refuses a checkout it does not own), nor in a build without .git.
var linkedVersion string

// Version is the version of this binary, as cluster status answers it: the
// version stamped in at link time, else the module version when built from
// a released module, else "devel" and the VCS revision the build recorded
// (with "+dirty" for uncommitted changes).
var Version = sync.OnceValue(versionNow)

func versionNow() string {
	if linkedVersion != "" {
		return linkedVersion
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return "devel-" + rev
}
