// Package dirstate records a directory tree's state, so that a test can
// tell that something it refused (a start on a wrong data directory, a
// check) changed nothing there.
package dirstate

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Of is every entry under dir, with its mode, size, modification time and
// content: two equal states are the same tree. A directory this user may
// not list (a lost+found) stands by its own entry.
func Of(dir string) (map[string]string, error) {
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrPermission) && d != nil && d.IsDir() {
			return fs.SkipDir
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%v %d %v", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if !d.IsDir() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		state[path] = v
		return nil
	})
	return state, err
}

// Must is Of for a test, which it fails when dir cannot be read.
func Must(t testing.TB, dir string) map[string]string {
	t.Helper()
	state, err := Of(dir)
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// Changes says, entry by entry, how after differs from before: none when
// they are the same tree.
func Changes(before, after map[string]string) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(after)) {
		if before[p] != after[p] {
			out = append(out, fmt.Sprintf("changed %s: %q -> %q", p, before[p], after[p]))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(before)) {
		if _, ok := after[p]; !ok {
			out = append(out, "removed "+p)
		}
	}
	return out
}
