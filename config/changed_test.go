package config

import (
	"slices"
	"strings"
	"testing"
)

// TestChanged names the keys outside security whose values differ, by
// their yaml names, and nothing for security or for equal files.
func TestChanged(t *testing.T) {
	a := Defaults()
	a.Cluster.Peers = map[string]string{"node-1": "127.0.0.1:7001"}
	b := a
	b.Cluster.Peers = map[string]string{"node-1": "127.0.0.1:7001"}
	if got := Changed(a, b); len(got) != 0 {
		t.Fatalf("equal configurations: %v", got)
	}
	b.Locks.DefaultTTLSeconds = a.Locks.DefaultTTLSeconds + 7
	b.Cluster.Peers = map[string]string{"node-1": "127.0.0.1:7009"}
	b.Security.APIKeysFile = "keys.yaml"
	if got, want := Changed(a, b), []string{"cluster.peers", "locks.default_ttl_seconds"}; !slices.Equal(got, want) {
		t.Fatalf("Changed: %v, want %v", got, want)
	}
}

// TestStreamsPerPrincipal: security.max_streams_per_principal defaults to
// DefaultMaxStreamsPerPrincipal and refuses what is out of range.
func TestStreamsPerPrincipal(t *testing.T) {
	if got := (Security{}).StreamsPerPrincipal(); got != DefaultMaxStreamsPerPrincipal {
		t.Fatalf("the default: %d", got)
	}
	if got := (Security{MaxStreamsPerPrincipal: 50}).StreamsPerPrincipal(); got != 50 {
		t.Fatalf("50 given: %d", got)
	}
	for _, n := range []int{-1, 1_000_001} {
		if err := (Security{MaxStreamsPerPrincipal: n}).validate(Cluster{}); err == nil || !strings.Contains(err.Error(), "security.max_streams_per_principal") {
			t.Errorf("max_streams_per_principal %d: %v", n, err)
		}
	}
}
