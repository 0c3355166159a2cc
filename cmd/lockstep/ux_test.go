package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/config"
)

// The help says what the defaults mean, and lists only flags that mean
// something for the command.
func TestHelpShowsMeaningfulFlags(t *testing.T) {
	var out, errb bytes.Buffer
	run([]string{"lock", "-h"}, &out, &errb)
	help := out.String() + errb.String()
	if !strings.Contains(help, "(default forever)") || strings.Contains(help, "-1ns") {
		t.Errorf("lock -h does not show the wait's default as forever:\n%s", help)
	}
	if !strings.Contains(help, "-owner") || !strings.Contains(help, "LOCKSTEP_SESSION_ID") {
		t.Errorf("lock -h lacks -owner or LOCKSTEP_SESSION_ID:\n%s", help)
	}
	for _, cmd := range []string{"watch", "cluster", "status", "list"} {
		out.Reset()
		errb.Reset()
		run([]string{cmd, "-h"}, &out, &errb)
		if h := out.String() + errb.String(); strings.Contains(h, "-owner") {
			t.Errorf("%s -h lists -owner, which means nothing there:\n%s", cmd, h)
		}
	}
}

// --dev on a port in use names the flag, not a configuration key the user
// never wrote, and leaves no empty data directory behind.
func TestDevOnABusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--dev", "--api-address", ln.Addr().String(), "--metrics-address", "", "--raft-address", "127.0.0.1:1"}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "cannot listen on --api-address") {
		t.Fatalf("exit %d, stderr:\n%s", code, &errb)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "lockstep-dev-*"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("left behind in TMPDIR: %v", entries)
	}
}

// TestDevBannerNamesTheDataDirectory: the dev banner says whether the
// data directory is a fresh temporary one, a new one the flags named, or
// one that holds an earlier run's data (it said "a fresh directory" for
// all three).
func TestDevBannerNamesTheDataDirectory(t *testing.T) {
	cfg := config.Dev("/tmp/lockstep-dev-1")
	for _, tc := range []struct {
		f    serveFlags
		want string
	}{
		{serveFlags{madeDir: "/tmp/lockstep-dev-1"}, "a fresh directory; delete it when done"},
		{serveFlags{}, "(new; --dev --data-dir with it again starts from its data)"},
		{serveFlags{dataKept: true}, "data kept from an earlier run"},
	} {
		var out bytes.Buffer
		printDevBanner(&out, cfg, &tc.f)
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("%+v: the banner lacks %q:\n%s", tc.f, tc.want, out.String())
		}
	}
}
