//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/internal/dirstate"
)

// nobody is the user a root test runs lockstep as: root may read and
// write any directory.
const nobody = 65534

// runAsUser runs `lockstep ARGS...` as a user that is not root: this test
// process when it is not root; else a copy of this test binary (as
// TestRunAsLockstep) started as uid and gid 65534, from a directory that
// user may read. It skips the test when it can do neither.
func runAsUser(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if os.Geteuid() != 0 {
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		return out.String(), errb.String(), code
	}
	bin := filepath.Join(userDir(t), "lockstep.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := lockstepCommand(t, ctx, bin, args...)
	cmd.Dir = filepath.Dir(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return out.String(), errb.String(), exit.ExitCode()
	case err != nil:
		t.Skipf("cannot run lockstep as uid %d to test what another user than the data directory's owner sees: %v", nobody, err)
	}
	return out.String(), errb.String(), 0
}

// userDir is a temporary directory every user may read (t.TempDir's,
// and its parent, are its owner's only).
func userDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// serve --check as a user who may not read and write the data directory
// (one owned by another user, as root's is to the service's user) says
// plainly that it could not check it, as that user, rather than
// "configuration ok": it said ok with a warning that records were not
// checked when it could not read them, and plain ok when it could read
// but not write them, and a start as that user then failed half-way
// ("cluster.data_dir: open .../lockstep-incarnation: permission
// denied", or inside Dragonboat). --check still exits 0: it often runs as
// another user than the service, which may own the directory. A start as
// that user is refused by the same check, naming the user, the owner and
// the fix. Run as root, the test runs lockstep as uid 65534.
func TestServeCheckAsAnotherUserThanTheDataDirectorysOwner(t *testing.T) {
	base := userDir(t)
	dir := filepath.Join(base, "data")
	raft := loopbackAddr(t)
	ranMember(t, dir, raft)
	if os.Geteuid() != 0 {
		// This user owns it: as another would, it may not write it.
		t.Cleanup(func() { os.Chmod(dir, 0o750) })
	}
	before := dirstate.Must(t, dir)
	records, err := filepath.Glob(filepath.Join(dir, "lockstep-*"))
	if err != nil || len(records) == 0 {
		t.Fatalf("no records in %s: %v", dir, err)
	}
	recordModes := map[string]os.FileMode{}
	for _, r := range records {
		st, err := os.Stat(r)
		if err != nil {
			t.Fatal(err)
		}
		recordModes[r] = st.Mode()
	}
	// To its owner, what a mode is to others.
	asOthers := func(mode os.FileMode) os.FileMode {
		if os.Geteuid() != 0 {
			return (mode & 0o007) << 6
		}
		return mode
	}
	for _, tc := range []struct {
		name            string
		mode, readables os.FileMode
		what            string
	}{
		{"unreadable", 0o700, 0, "may not read and write " + dir},
		// Its records readable: --check said a plain "configuration ok".
		{"read-only", 0o555, 0o644, "may not read and write " + dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Chmod(dir, 0o750); err != nil { // to reach the records
				t.Fatal(err)
			}
			for r, mode := range recordModes {
				if tc.readables != 0 {
					mode = asOthers(tc.readables)
				}
				if err := os.Chmod(r, mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(dir, asOthers(tc.mode)); err != nil {
				t.Fatal(err)
			}
			out, errb, code := runAsUser(t, "serve", "--dev", "--data-dir", dir, "--raft-address", raft, "--check")
			// Its records unread, it cannot tell a restart from a first
			// start, and counts the peers.
			members := "1 member"
			if tc.readables != 0 {
				members = "a restart on its data directory (its members are there; peers and join are not read)"
			}
			if code != exitOK || out != "configuration ok but for the data directory, which this user could not check: node node-1, "+members+", 1 shard\n" ||
				!strings.HasPrefix(errb, "lockstep serve: warning: the data directory is not checked: this user may not use it (a start as this user would fail; "+
					"one as the service's user may not): cluster.data_dir "+dir+": this user (") ||
				!strings.Contains(errb, tc.what) || !strings.Contains(errb, "permission denied") ||
				!strings.HasSuffix(errb, "; run lockstep serve --check as the service's user to check it\n") || strings.Count(errb, "\n") != 1 {
				t.Errorf("--check as another user: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
			}
			out, errb, code = runAsUser(t, "serve", "--dev", "--data-dir", dir, "--raft-address", raft,
				"--api-address", loopbackAddr(t), "--metrics-address", loopbackAddr(t))
			if code != exitError || !strings.Contains(errb, "the node did not start") || !strings.Contains(errb, tc.what) ||
				!strings.Contains(errb, "the service's user must own the data directory") {
				t.Errorf("a start as another user: exit %d, want %d\nstdout: %s\nstderr: %s", code, exitError, out, errb)
			}
		})
	}
	// One it may make: checked, nothing made.
	if err := os.Chmod(base, 0o777); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(base, "fresh", "data")
	out, errb, code := runAsUser(t, "serve", "--dev", "--data-dir", fresh, "--check")
	if code != exitOK || !strings.HasPrefix(out, "configuration ok: ") || errb != "" {
		t.Errorf("--check on a data directory to make: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if _, err := os.Stat(filepath.Dir(fresh)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--check made %s: %v", filepath.Dir(fresh), err)
	}
	// One it may not make.
	if err := os.Chmod(base, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(base, 0o755)
	out, errb, code = runAsUser(t, "serve", "--dev", "--data-dir", fresh, "--check")
	if code != exitOK || !strings.HasPrefix(out, "configuration ok but for the data directory") ||
		!strings.Contains(errb, "may not make a directory in "+base) || !strings.Contains(errb, "make it (mkdir -p "+fresh+")") {
		t.Errorf("--check on a data directory it may not make: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for r, mode := range recordModes {
		if err := os.Chmod(r, mode); err != nil {
			t.Fatal(err)
		}
	}
	if after := dirstate.Must(t, dir); !maps.Equal(before, after) {
		t.Errorf("--check or a refused start changed the data directory:\nbefore %v\nafter  %v", before, after)
	}
}

// serve --check as the data directory's owner passes it, though the
// directory holds what is not Lockstep's and that user may not read (a
// lost+found, root's and 0700, where data_dir is a file system's root): a
// start leaves those alone. A file of Dragonboat's tree, deep in the
// directory, that user may not write is found and named: a start failed
// on it inside Dragonboat, where --check said "configuration ok".
func TestServeCheckAsTheDataDirectorysOwner(t *testing.T) {
	base := userDir(t)
	dir := filepath.Join(base, "data")
	raft := loopbackAddr(t)
	ranMember(t, dir, raft)
	root := os.Geteuid() == 0
	if root {
		err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, nobody, nobody)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(dir, "lost+found")
	if err := os.Mkdir(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if !root {
		if err := os.Chmod(foreign, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(foreign, 0o700) })
	}
	before := dirstate.Must(t, dir)
	out, errb, code := runAsUser(t, "serve", "--dev", "--data-dir", dir, "--raft-address", raft, "--check")
	if code != exitOK || out != "configuration ok: node node-1, a restart on its data directory (its members are there; peers and join are not read), 1 shard\n" || errb != "" {
		t.Errorf("--check as the data directory's owner, with a lost+found it may not read: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	var deep string
	err = filepath.WalkDir(filepath.Join(dir, host), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && deep == "" {
			deep = path
		}
		return err
	})
	if err != nil || deep == "" {
		t.Fatalf("no file in Dragonboat's tree under %s: %v", filepath.Join(dir, host), err)
	}
	st, err := os.Stat(deep)
	if err != nil {
		t.Fatal(err)
	}
	if root {
		err = os.Lchown(deep, 0, 0)
	} else {
		err = os.Chmod(deep, 0o400)
	}
	if err != nil {
		t.Fatal(err)
	}
	out, errb, code = runAsUser(t, "serve", "--dev", "--data-dir", dir, "--raft-address", raft, "--check")
	if code != exitOK || !strings.HasPrefix(out, "configuration ok but for the data directory") ||
		!strings.Contains(errb, "may not read and write "+deep+" (in cluster.data_dir)") {
		t.Errorf("--check as the data directory's owner, with a file of Dragonboat's it may not write: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if root {
		err = os.Lchown(deep, nobody, nobody)
	} else {
		err = os.Chmod(deep, st.Mode().Perm())
	}
	if err != nil {
		t.Fatal(err)
	}
	if after := dirstate.Must(t, dir); !maps.Equal(before, after) {
		t.Errorf("--check changed the data directory:\nbefore %v\nafter  %v", before, after)
	}
}

// A data directory under a parent this user may not pass through (a home
// directory or a volume of mode 0700) is refused naming that parent and
// how to open it: it said "may not look at DIR" and advised a chown -R of
// the data directory, which would change nothing. Run as root, the test
// runs lockstep as uid 65534.
func TestDataDirectoryBehindAClosedParent(t *testing.T) {
	base := userDir(t)
	closed := filepath.Join(base, "closed")
	dir := filepath.Join(closed, "data")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	mode := os.FileMode(0o700) // others: nothing
	if os.Geteuid() != 0 {
		mode = 0o600 // its owner may not pass through either
	}
	if err := os.Chmod(closed, mode); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(closed, 0o755) })
	out, errb, code := runAsUser(t, "serve", "--dev", "--data-dir", dir, "--raft-address", loopbackAddr(t),
		"--api-address", loopbackAddr(t), "--metrics-address", loopbackAddr(t))
	if code != exitError || !strings.Contains(errb, "may not pass through "+closed+", on the way to it") ||
		!strings.Contains(errb, "chmod o+x "+closed) || strings.Contains(errb, "chown -R") {
		t.Errorf("a start behind a parent it may not pass through: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
}
