package config

import (
	"slices"
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
