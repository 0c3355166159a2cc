package rpc

import (
	"strings"
	"testing"
)

// boundQuotes shortens only the long quoted strings of a message and
// leaves the rest, short quotes in their own spelling included, as it was.
func TestBoundQuotes(t *testing.T) {
	long := strings.Repeat("b", 100)
	in := `field "ttl\u00e9": "` + long + `": bad`
	want := `field "ttl\u00e9": "` + long[:64] + `"… (100 bytes): bad`
	if got := boundQuotes(in); got != want {
		t.Errorf("boundQuotes(%q) =\n%s, want\n%s", in, got, want)
	}
}
