package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/security"
)

// serve --check validates and exits: 0 for config/cluster.yaml, 2 with an
// error for each part that is wrong; `lockstep --config FILE` is serve.
func TestServeCheck(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--config", "../../config/cluster.yaml", "--check"},
		{"--config", "../../config/cluster.yaml", "--check"},
		{"--config=../../config/cluster.yaml", "--check"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitOK || !strings.Contains(out.String(), "configuration ok: node node-1, 3 members, 1 shard\n") {
			t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, &out, &errb)
		}
	}
	// --dev checks the dev defaults and makes no data directory.
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "lockstep-dev-*"))
	var devOut, devErr bytes.Buffer
	if code := run([]string{"serve", "--dev", "--check"}, &devOut, &devErr); code != exitOK || !strings.Contains(devOut.String(), "configuration ok: node") {
		t.Errorf("serve --dev --check: exit %d\nstdout: %s\nstderr: %s", code, &devOut, &devErr)
	}
	if after, _ := filepath.Glob(filepath.Join(os.TempDir(), "lockstep-dev-*")); len(after) > len(before) {
		t.Errorf("serve --dev --check made a data directory: %v", after)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("cluster:\n  node_id: \"bad id\"\n  raft_address: 127.0.0.1:1\n  api_address: 127.0.0.1:2\n  data_dir: d\n  peers: {a: 127.0.0.1:1}\nlocks:\n  max_wait_time_seconds: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--config", bad, "--check"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "cluster.node_id:") || !strings.Contains(errb.String(), "locks.max_wait_time_seconds:") {
		t.Errorf("a file wrong in two parts: exit %d\nstderr: %s", code, &errb)
	}
}

// serve --check reads the data directory's shard count too: a directory
// made with 2 shards, checked with 1, is refused as a start would refuse
// it (--check answered "configuration ok" before). A start refuses it the
// same way, as a configuration error (exit 2, before anything listens),
// where it failed with exit 1 from inside the runtime. The refusal names
// the key, both counts and what to do (it said "was created with 2
// shard(s), got 1 ...; start with shards: 2").
func TestServeCheckReadsTheShardRecord(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lockstep-shards"), []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refusal := "lockstep serve: configuration: consensus.shards: the data directory " + dir + " was made with 2 shards, and this start asks for 1: " +
		"a cluster's shard count cannot change (a name's shard is a hash of the name modulo the count); " +
		"set consensus.shards: 2 (--shards 2), or, to run 1 shard, start a new cluster with every member on an empty data directory\n"
	for _, tc := range []struct {
		shards    string
		code      int
		out, errb string
	}{{"1", exitUsage, "", refusal}, {"2", exitOK, "configuration ok: node node-1, 1 member, 2 shards\n", ""}} {
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--dev", "--data-dir", dir, "--shards", tc.shards, "--check"}, &out, &errb)
		if code != tc.code || out.String() != tc.out || errb.String() != tc.errb {
			t.Errorf("--shards %s: exit %d, want %d\nstdout: %q\nwant:   %q\nstderr: %q\nwant:   %q", tc.shards, code, tc.code, &out, tc.out, &errb, tc.errb)
		}
	}
	free := func() string { // the addresses must name a port
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--dev", "--data-dir", dir, "--shards", "1", "--api-address", free(),
		"--metrics-address", free(), "--raft-address", free()}, &out, &errb)
	if code != exitUsage || errb.String() != refusal {
		t.Errorf("a start with another shard count: exit %d, want %d, a configuration error\nstderr: %s", code, exitUsage, &errb)
	}
}

// TestRaftPortInUseLeavesTheDataDirectory: a Raft port already in use is
// refused before the data directory is touched, as the API and metrics
// ports are. Dragonboat binds it only after it claimed the directory for
// that address, so the start on the right address was then refused as
// "not the owner of the data directory", of a member that never ran.
func TestRaftPortInUseLeavesTheDataDirectory(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	dir := filepath.Join(t.TempDir(), "data")
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--dev", "--data-dir", dir, "--api-address", free(), "--metrics-address", free(),
		"--raft-address", taken.Addr().String()}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "cannot listen on --raft-address") {
		t.Fatalf("a start on a Raft port in use: exit %d, want %d naming --raft-address\nstderr: %s", code, exitError, &errb)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		t.Fatalf("the refused start wrote %d entries into the data directory", len(entries))
	}
}

// TestServeCheckNeedsTheAuditDirectory: serve --check fails when
// security.audit.path's directory does not exist: a member started so
// refuses every request until it can write the audit log, and --check
// answered "configuration ok".
func TestServeCheckNeedsTheAuditDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: " + filepath.Join(dir, "data") + "\n" +
		"  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  audit:\n    path: logs/audit.jsonl\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"serve", "--config", path, "--check"}, &out, &errb)
	want := "lockstep serve: configuration: security.audit.path " + filepath.Join(dir, "logs", "audit.jsonl") + ": the directory " + filepath.Join(dir, "logs") + " does not exist"
	if code != exitUsage || out.Len() != 0 || !strings.HasPrefix(errb.String(), want) {
		t.Errorf("--check with no audit directory: exit %d, want %d\nstdout: %s\nstderr: %s\nwant:   %s...", code, exitUsage, &out, &errb, want)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o700); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"serve", "--config", path, "--check"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "configuration ok") {
		t.Errorf("--check once the directory exists: exit %d\nstdout: %s\nstderr: %s", code, &out, &errb)
	}
}

// A private key file its group or others may read is taken, with a
// warning that names it, its mode and the chmod that fixes it, as ssh
// warns of a key: from serve --check and from a SIGHUP reload (a start
// logs the same, from the same check). It was taken silently.
func TestKeyFileReadableByOthersWarns(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testCA(t, dir, now)
	is, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := is.Write(dir, "node")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.yaml")
	body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: " + filepath.Join(dir, "data") + "\n" +
		"  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  tls:\n    cert_file: node.pem\n    key_file: node-key.pem\n    ca_file: ca.pem\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, sec, f := loaded(t, path)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o600, 0o400} {
		if err := os.Chmod(key, mode); err != nil {
			t.Fatal(err)
		}
		want := ""
		if mode&0o077 != 0 {
			want = fmt.Sprintf("security.tls.key_file %s: mode %04o lets its group or others read the private key: chmod 600 %s", key, mode, key)
		}
		var out, errb bytes.Buffer
		code := run([]string{"serve", "--config", path, "--check"}, &out, &errb)
		if code != exitOK || !strings.Contains(out.String(), "configuration ok") {
			t.Fatalf("--check with the key file at %04o: exit %d\nstdout: %s\nstderr: %s", mode, code, &out, &errb)
		}
		if want == "" && errb.Len() != 0 || want != "" && errb.String() != "lockstep serve: warning: "+want+"\n" {
			t.Errorf("--check with the key file at %04o: stderr\n%s\nwant %q", mode, &errb, want)
		}
		var logs bytes.Buffer
		hangup(f, cfg, sec, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "SIGHUP: "+want)
		if want == "" && strings.Contains(logs.String(), "level=WARN") || want != "" && !warned {
			t.Errorf("a SIGHUP with the key file at %04o logged:\n%s\nwant a warning %q", mode, &logs, want)
		}
	}
}

// An acl key with no rules ("acl: []") allows nothing: it was taken
// silently, though without the key everything is allowed. serve --check,
// a start and a reload say so plainly, and the reload's line counts 0
// rules as nothing allowed.
func TestEmptyACLSaysNothingIsAllowed(t *testing.T) {
	dir := t.TempDir()
	_, digest, err := security.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte("- {principal: ci, sha256: "+digest+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node.yaml")
	conf := func(acl string) {
		t.Helper()
		body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: " + filepath.Join(dir, "data") + "\n" +
			"  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  api_keys_file: keys.yaml\n" + acl
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := "lockstep serve: warning: security.acl has no rules: no principal may do anything, every request but health checks and gRPC reflection is refused (403), " +
		"and List and Watch show nothing; to let every authenticated principal do everything remove the acl key, else add rules (docs/security.md, ACL)\n"
	for acl, warned := range map[string]bool{"  acl: []\n": true, "": false, "  acl:\n    - {principal: ci, prefix: \"\", allow: [read]}\n": false} {
		conf(acl)
		var out, errb bytes.Buffer
		if code := run([]string{"serve", "--config", path, "--check"}, &out, &errb); code != exitOK || (errb.String() == want) != warned || !warned && errb.Len() != 0 {
			t.Errorf("--check with %q: exit %d\nstdout: %s\nstderr: %s", acl, code, &out, &errb)
		}
	}

	conf("  acl:\n    - {principal: ci, prefix: \"\", allow: [read]}\n")
	cfg, sec, f := loaded(t, path)
	conf("  acl: []\n")
	var logs bytes.Buffer
	hangup(f, cfg, sec, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if !strings.Contains(logs.String(), "level=WARN msg=\"SIGHUP: security.acl has no rules: no principal may do anything") ||
		!strings.Contains(logs.String(), "reloaded the security settings: ACL 1 rule -> 0 rules (no principal may do anything)") {
		t.Errorf("a SIGHUP to an acl with no rules logged:\n%s", &logs)
	}
}

// TestPprofBesideAuthenticationWarns: --pprof serves /debug/pprof/ on the
// metrics address, which asks for no credentials (every goroutine's
// stack, the command line). A member whose API asks for credentials says
// so at start and from serve --check; it said nothing. Without
// authentication, or without --pprof, nothing is said.
func TestPprofBesideAuthenticationWarns(t *testing.T) {
	dir := t.TempDir()
	_, digest, err := security.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte("- {principal: ci, sha256: "+digest+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	conf := func(name, sec string) string {
		t.Helper()
		path := filepath.Join(dir, "node-"+name+".yaml")
		body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:1\n  api_address: " + busy.Addr().String() + "\n  metrics_address: \"\"\n" +
			"  data_dir: " + filepath.Join(dir, "data-"+name) + "\n  peers: {node-1: 127.0.0.1:1}\n" + sec
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	keys, open := conf("keys", "security:\n  api_keys_file: keys.yaml\n"), conf("open", "")
	const warning = "--pprof serves /debug/pprof/ on the metrics address without authentication, though the API requires it"
	for _, tc := range []struct {
		path  string
		flags []string
		warn  bool
	}{
		{keys, []string{"--pprof"}, true},
		{keys, nil, false},
		{open, []string{"--pprof"}, false},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"serve", "--config", tc.path, "--check"}, tc.flags...), &out, &errb)
		if code != exitOK || strings.Contains(errb.String(), warning) != tc.warn {
			t.Errorf("serve --check %s %v: exit %d, want a warning %v\nstdout: %s\nstderr: %s", filepath.Base(tc.path), tc.flags, code, tc.warn, &out, &errb)
		}
		// A start warns before it binds: the API's port is taken, so it
		// ends there.
		out.Reset()
		errb.Reset()
		code = run(append([]string{"serve", "--config", tc.path}, tc.flags...), &out, &errb)
		warned := strings.Contains(errb.String(), "level=WARN") && strings.Contains(errb.String(), warning)
		if code != exitError || !strings.Contains(errb.String(), "cannot listen on") || warned != tc.warn {
			t.Errorf("serve %s %v on a busy port: exit %d, want a warning %v\nstderr: %s", filepath.Base(tc.path), tc.flags, code, tc.warn, &errb)
		}
	}
}
