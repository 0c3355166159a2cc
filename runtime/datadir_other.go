//go:build !linux && !darwin

package runtime

// freeBytes is NaN where this build cannot read a file system's room.
func freeBytes(string) float64 { return nan() }
