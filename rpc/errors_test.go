package rpc

import (
	"strings"
	"testing"
)

// quoted cuts a long input at a character, so that what it quotes is a
// prefix of what was sent and not a broken character, and keeps a short
// one whole.
func TestQuotedCutsAtACharacter(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"short", `"short"`},
		{strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{strings.Repeat("a", 65), `"` + strings.Repeat("a", 64) + `"… (65 bytes)`},
		// é is 2 bytes, and the 64th byte is its first.
		{strings.Repeat("a", 63) + "é" + "z", `"` + strings.Repeat("a", 63) + `"… (66 bytes)`},
		{strings.Repeat("a", 61) + "😀" + "z", `"` + strings.Repeat("a", 61) + `"… (66 bytes)`},
		// One that ends at the bound is kept.
		{strings.Repeat("a", 62) + "é" + "zz", `"` + strings.Repeat("a", 62) + `é"… (66 bytes)`},
		// Bytes that are not UTF-8 are cut where the bound falls.
		{strings.Repeat("\x80", 70), `"` + strings.Repeat(`\x80`, 64) + `"… (70 bytes)`},
	} {
		if got := Quoted(c.in); got != c.want {
			t.Errorf("Quoted(%.20q…, %d bytes) = %s, want %s", c.in, len(c.in), got, c.want)
		}
	}
}

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
