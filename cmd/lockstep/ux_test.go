package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
