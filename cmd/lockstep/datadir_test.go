package main

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/internal/dirstate"
	"github.com/lockstepd/lockstep/runtime"
)

// ranMember makes dir the data directory of a dev member that ran at raft.
func ranMember(t *testing.T, dir, raft string) {
	t.Helper()
	cfg := config.Dev(dir)
	cfg.Cluster.RaftAddress = raft
	cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: raft}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := runtime.Start(ctx, runtime.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}
}

// serve --check runs the checks a start makes of the data directory
// (runtime.CheckDataDir), and writes nothing to it. It answered
// "configuration ok" for a directory of a member that ran with another
// cluster.raft_address, which a start refused ("not the owner of the data
// directory"), and for a damaged record. The refusal names the address
// the directory recorded and how a member moves to another; a start is
// refused the same way, as a configuration error (exit 2) before anything
// listens, where Dragonboat refused it (exit 1) without either address.
func TestServeCheckReadsTheDataDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	had := loopbackAddr(t)
	ranMember(t, dir, had)
	moved := loopbackAddr(t)
	before := dirstate.Must(t, dir)

	check := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(append([]string{"serve", "--dev", "--data-dir", dir, "--check"}, args...), &out, &errb)
		return out.String(), errb.String(), code
	}
	out, errb, code := check("--raft-address", had)
	if code != exitOK || out != "configuration ok: node node-1, a restart on its data directory (its members are there; peers and join are not read), 1 shard\n" || errb != "" {
		t.Errorf("--check on the member's own data directory: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	refusal := "lockstep serve: configuration: cluster.raft_address: not the owner of the data directory: " + dir +
		" belongs to the member that ran with cluster.raft_address " + had + ", and this start has " + moved + ". "
	out, errb, code = check("--raft-address", moved)
	if code != exitUsage || out != "" || !strings.HasPrefix(errb, refusal) ||
		!strings.Contains(errb, "lockstep cluster remove node-1") || !strings.Contains(errb, "lockstep cluster add node-1 "+moved) {
		t.Errorf("--check at another Raft address: exit %d, want %d\nstdout: %s\nstderr: %s\nwant:   %s...", code, exitUsage, out, errb, refusal)
	}
	out, errb, code = check("--raft-address", had, "--incarnation", "1")
	if code != exitUsage || out != "" || !strings.Contains(errb, "cluster.incarnation: "+dir+" belongs to incarnation 0 of this node, got 1") {
		t.Errorf("--check under another incarnation: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	logID := filepath.Join(dir, "lockstep-log-id")
	saved, err := os.ReadFile(logID)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(logID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logID, []byte("zz\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, errb, code = check("--raft-address", had)
	if code != exitUsage || out != "" || !strings.Contains(errb, logID+" does not hold a log id") {
		t.Errorf("--check with a damaged log id: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	if err := os.WriteFile(logID, saved, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(logID, time.Time{}, info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if after := dirstate.Must(t, dir); !maps.Equal(before, after) {
		t.Errorf("--check changed the data directory:\nbefore %v\nafter  %v", before, after)
	}

	var sout, serr bytes.Buffer
	code = run([]string{"serve", "--dev", "--data-dir", dir, "--raft-address", moved, "--api-address", loopbackAddr(t),
		"--metrics-address", loopbackAddr(t)}, &sout, &serr)
	if code != exitUsage || !strings.HasPrefix(serr.String(), refusal) {
		t.Errorf("a start at another Raft address: exit %d, want %d\nstderr: %s\nwant:   %s...", code, exitUsage, &serr, refusal)
	}
	if after := dirstate.Must(t, dir); !maps.Equal(before, after) {
		t.Errorf("the refused start changed the data directory")
	}
}
