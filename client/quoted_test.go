package client

import (
	"strings"
	"testing"
)

// quoted bounds what an error repeats of a name as the server's
// rpc.Quoted does: whole up to 64 bytes, else the first 64 cut at a
// character, an ellipsis and the length.
func TestQuoted(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"jobs/a", `"jobs/a"`},
		{strings.Repeat("a", 64), `"` + strings.Repeat("a", 64) + `"`},
		{strings.Repeat("a", 300), `"` + strings.Repeat("a", 64) + `"… (300 bytes)`},
		// é is 2 bytes: the 64th byte would split one, so it is left out.
		{strings.Repeat("a", 63) + strings.Repeat("é", 10), `"` + strings.Repeat("a", 63) + `"… (83 bytes)`},
	} {
		if got := quoted(tc.in); got != tc.want {
			t.Errorf("quoted(%d bytes) = %s, want %s", len(tc.in), got, tc.want)
		}
	}
	if got, want := (opName{"lock", strings.Repeat("n", 300)}).String(), `lock "`+strings.Repeat("n", 64)+`"… (300 bytes)`; got != want {
		t.Errorf("opName.String() = %s, want %s", got, want)
	}
}
