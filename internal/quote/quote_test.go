package quote

import (
	"strings"
	"testing"
)

// Bounded cuts a long input at a character, so that what it quotes is a
// prefix of what was sent and not a broken character, and keeps a short
// one whole.
func TestBoundedCutsAtACharacter(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"short", `"short"`},
		{strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{strings.Repeat("a", 65), `"` + strings.Repeat("a", 64) + `"… (65 bytes)`},
		{strings.Repeat("a", 300), `"` + strings.Repeat("a", 64) + `"… (300 bytes)`},
		// é is 2 bytes, and the 64th byte is its first.
		{strings.Repeat("a", 63) + "é" + "z", `"` + strings.Repeat("a", 63) + `"… (66 bytes)`},
		{strings.Repeat("a", 63) + strings.Repeat("é", 10), `"` + strings.Repeat("a", 63) + `"… (83 bytes)`},
		{strings.Repeat("a", 61) + "😀" + "z", `"` + strings.Repeat("a", 61) + `"… (66 bytes)`},
		// One that ends at the bound is kept.
		{strings.Repeat("a", 62) + "é" + "zz", `"` + strings.Repeat("a", 62) + `é"… (66 bytes)`},
		// Bytes that are not UTF-8 are cut where the bound falls.
		{strings.Repeat("\x80", 70), `"` + strings.Repeat(`\x80`, 64) + `"… (70 bytes)`},
	} {
		if got := Bounded(c.in); got != c.want {
			t.Errorf("Bounded(%.20q…, %d bytes) = %s, want %s", c.in, len(c.in), got, c.want)
		}
	}
}
