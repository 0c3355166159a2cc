// Package quote quotes a caller's input in an error message, bounded: the
// message goes back to the caller and into the server's and the audit's
// logs, so a request carrying megabytes in a field must not make each of
// them megabytes. The server (rpc, security) and the Go client quote the
// same way, so a long name is cut alike in the client's prefix and in the
// server's message after it.
package quote

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxBytes is how much of an input Bounded repeats: enough to recognise
// it.
const MaxBytes = 64

// Bounded is s as an error message quotes it (%q): whole when it is at
// most MaxBytes, else its first MaxBytes cut at a character, an ellipsis
// outside the quotes (what is quoted is exactly what was sent) and its
// length: "aaaa"… (5000 bytes).
func Bounded(s string) string {
	if len(s) <= MaxBytes {
		return strconv.Quote(s)
	}
	// A character the bound would split is left out whole; bytes that are
	// not UTF-8 are cut where the bound falls.
	n := MaxBytes
	for k := 1; k < utf8.UTFMax; k++ {
		if utf8.RuneStart(s[n-k]) {
			if _, size := utf8.DecodeRuneInString(s[n-k:]); size > k {
				n -= k
			}
			break
		}
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(s[:n]), len(s))
}
