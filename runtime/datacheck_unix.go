//go:build unix

package runtime

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// access(2)'s modes.
const (
	accessRead  = 0x4 // R_OK
	accessWrite = 0x2 // W_OK
	accessExec  = 0x1 // X_OK
)

// mayWrite says whether this user may make entries in the directory dir.
// It asks the kernel (access(2)), which writes nothing.
func mayWrite(dir string) error {
	return syscall.Access(dir, accessWrite|accessExec)
}

// mayEnter says whether this user may pass through the directory dir
// (search it: its execute bit) on the way to what it holds.
func mayEnter(dir string) error {
	return syscall.Access(dir, accessExec)
}

// mayReadWrite says whether this user may read and write path (a
// directory: list it, and make and remove entries in it).
func mayReadWrite(path string, isDir bool) error {
	mode := uint32(accessRead | accessWrite)
	if isDir {
		mode |= accessExec
	}
	return syscall.Access(path, mode)
}

// currentUser names this process's user, by name when it has one.
func currentUser() string {
	uid := os.Getuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return fmt.Sprintf("%s, uid %d", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// ownerOf names path's owner, "" when it cannot be told.
func ownerOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if u, err := user.LookupId(strconv.FormatUint(uint64(sys.Uid), 10)); err == nil && u.Username != "" {
		return fmt.Sprintf("%s (uid %d)", u.Username, sys.Uid)
	}
	return fmt.Sprintf("uid %d", sys.Uid)
}
