//go:build !unix

package runtime

// mayWrite and mayReadWrite pass where access(2) is not: reading the
// records still finds a directory this user may not read.
func mayWrite(string) error           { return nil }
func mayEnter(string) error           { return nil }
func mayReadWrite(string, bool) error { return nil }
func currentUser() string             { return "this process's user" }
func ownerOf(string) string           { return "" }
