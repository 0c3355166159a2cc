//go:build linux || darwin

package runtime

import "syscall"

// freeBytes is the room left for an unprivileged writer on dir's file
// system; NaN when it cannot be read.
func freeBytes(dir string) float64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nan()
	}
	return float64(st.Bavail) * float64(st.Bsize)
}
