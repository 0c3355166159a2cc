package client

import (
	"strings"
	"testing"
)

// An operation's name in an error is bounded as the server's messages
// bound it (internal/quote): whole up to 64 bytes, else the first 64 cut
// at a character, an ellipsis and the length.
func TestQuoted(t *testing.T) {
	if got, want := (opName{"lock", strings.Repeat("n", 300)}).String(), `lock "`+strings.Repeat("n", 64)+`"… (300 bytes)`; got != want {
		t.Errorf("opName.String() = %s, want %s", got, want)
	}
}
