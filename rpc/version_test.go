package rpc

import (
	"strings"
	"testing"
)

// TestLinkedVersionWins: a version stamped in at link time is what the
// binary names; without one it falls back to the build's own record.
func TestLinkedVersionWins(t *testing.T) {
	saved := linkedVersion
	t.Cleanup(func() { linkedVersion = saved })

	linkedVersion = ""
	if v := Version(); v == "" || v == "v1.2.3-4-gabcdef012345" {
		t.Fatalf("Version() = %q before any stamp", v)
	}
	// Version is computed once; call the function it wraps afresh.
	linkedVersion = "v1.2.3-4-gabcdef012345"
	if v := versionNow(); v != linkedVersion {
		t.Fatalf("with a linked version, versionNow() = %q, want %q", v, linkedVersion)
	}
	linkedVersion = ""
	if v := versionNow(); !strings.HasPrefix(v, "devel") && !strings.HasPrefix(v, "v") && v != "unknown" {
		t.Fatalf("without a linked version, versionNow() = %q, want devel…, a module version or unknown", v)
	}
}
