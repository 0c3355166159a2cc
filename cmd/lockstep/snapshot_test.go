package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/config"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
)

// flagsListed are the flags a help text lists (PrintDefaults' lines).
func flagsListed(help string) map[string]bool {
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(help, -1) {
		listed[m[1]] = true
	}
	return listed
}

// TestSnapshotHelpIsPerSubcommand: snapshot -h is an overview naming both
// subcommands, and save -h and restore -h each give their own usage and
// list their own flags by name (all three printed one text, which listed
// save's flags under restore's usage line too).
func TestSnapshotHelpIsPerSubcommand(t *testing.T) {
	help := map[string]string{}
	for _, args := range [][]string{{"snapshot", "-h"}, {"snapshot", "save", "-h"}, {"snapshot", "restore", "-h"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitOK {
			t.Errorf("%q: exit %d", args, code)
		}
		h := out.String() + errb.String()
		help[strings.Join(args[:len(args)-1], " ")] = h
		prose, _, _ := strings.Cut(h, "\nFlags:")
		for _, line := range strings.Split(prose, "\n") {
			if len(line) > 80 {
				t.Errorf("%q: a line of %d columns: %q", args, len(line), line)
			}
		}
		if !strings.Contains(h, "Examples:") {
			t.Errorf("%q has no examples:\n%s", args, h)
		}
	}
	overview, save, restore := help["snapshot"], help["snapshot save"], help["snapshot restore"]
	if overview == save || overview == restore || save == restore {
		t.Fatalf("snapshot -h, save -h and restore -h print the same text:\n%s", overview)
	}
	for _, want := range []string{"lockstep snapshot save FILE", "lockstep snapshot restore FILE", "lockstep snapshot save -h", "lockstep snapshot restore -h"} {
		if !strings.Contains(overview, want) {
			t.Errorf("snapshot -h lacks %q:\n%s", want, overview)
		}
	}
	if listed := flagsListed(overview); len(listed) > 0 {
		t.Errorf("snapshot -h lists flags %v, which are its subcommands':\n%s", listed, overview)
	}
	for _, tc := range []struct {
		name, help, usage string
		want, not         []string
	}{
		{"save", save, "Usage: lockstep snapshot save FILE",
			[]string{"stale", "force", "o", "endpoints", "cacert", "cert", "key", "api-key"},
			[]string{"bump-index", "config", "data-dir", "incarnation", "dev"}},
		{"restore", restore, "Usage: lockstep snapshot restore FILE",
			[]string{"config", "data-dir", "bump-index", "incarnation", "node-id", "peers", "raft-address", "shards"},
			// serve's own, which mean nothing to a restore
			[]string{"stale", "force", "endpoints", "o", "dev", "check", "pprof", "drain-timeout", "log-level", "max-batch"}},
	} {
		if !strings.HasPrefix(tc.help, tc.usage) {
			t.Errorf("%s -h does not start with %q:\n%s", tc.name, tc.usage, tc.help)
		}
		listed := flagsListed(tc.help)
		for _, f := range tc.want {
			if !listed[f] {
				t.Errorf("%s -h does not list -%s:\n%s", tc.name, f, tc.help)
			}
		}
		for _, f := range tc.not {
			if listed[f] {
				t.Errorf("%s -h lists -%s, which is not its flag:\n%s", tc.name, f, tc.help)
			}
		}
	}
	if strings.Contains(save, "snapshot restore FILE") || strings.Contains(restore, "snapshot save FILE") {
		t.Errorf("a subcommand's help gives the other's usage:\nsave:\n%s\nrestore:\n%s", save, restore)
	}
}

// TestSnapshotRestoreUsageErrors: a bad --bump-index prints restore's
// usage and says what to give (it printed save's usage too, and "parse
// error"); a restore without --config asks for it without offering
// serve's --dev; the FILE may come after the flags, as save's may.
func TestSnapshotRestoreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"restore", "b.tar", "--config", "n.yaml", "--bump-index", "abc"},
			[]string{`"abc"`, "-bump-index", "a whole number", "Usage: lockstep snapshot restore FILE", "-bump-index N"},
			[]string{"parse error", "snapshot save", "-stale"}},
		{[]string{"restore", "b.tar", "--bump-index", "-1", "--config", "n.yaml"},
			[]string{`"-1"`, "-bump-index", "a whole number", "Usage: lockstep snapshot restore FILE"},
			[]string{"parse error", "snapshot save", "-stale"}},
		{[]string{"restore", "b.tar", "--config", "n.yaml", "--keep-sessions", "--hold-grants", "5s"},
			[]string{"--keep-sessions closes none", "give one of them"},
			nil},
		{[]string{"restore", "b.tar", "--config", "n.yaml", "--hold-grants", "-5s"},
			[]string{"--hold-grants -5s", "0s or more"},
			nil},
		{[]string{"restore", "b.tar"},
			[]string{"--config FILE", "lockstep snapshot restore -h"},
			[]string{"--dev", "snapshot save"}},
		{[]string{"restore"},
			[]string{"FILE", "lockstep snapshot restore -h"},
			[]string{"--dev", "Usage: lockstep snapshot save"}},
		{[]string{"restore", "a.tar", "b.tar", "--config", "n.yaml"},
			[]string{"one backup FILE", "lockstep snapshot restore -h"},
			nil},
		{[]string{"restore", "b.tar", "--dev"},
			[]string{"-dev", "Usage: lockstep snapshot restore FILE"},
			[]string{"snapshot save"}},
		{[]string{"frobnicate"},
			[]string{`"frobnicate"`, "save or restore", "lockstep snapshot -h"},
			nil},
		{nil,
			[]string{"save", "restore", "lockstep snapshot -h"},
			nil},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"snapshot"}, tc.args...), &out, &errb)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, exitUsage, &errb)
		}
		msg := errb.String()
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", tc.args, w, msg)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(msg, n) {
				t.Errorf("%q: stderr says %q:\n%s", tc.args, n, msg)
			}
		}
	}
	// Flags before the FILE: the restore gets as far as reading --config.
	var out, errb bytes.Buffer
	code := run([]string{"snapshot", "restore", "--config", "/nonexistent/n.yaml", "b.tar"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "/nonexistent/n.yaml") || strings.Contains(errb.String(), "FILE first") {
		t.Errorf("flags before FILE: exit %d:\n%s", code, &errb)
	}
}

// TestSnapshotCompletionFlagsMatchHelp: the bash completion offers save
// and restore the flags each one's -h lists.
func TestSnapshotCompletionFlagsMatchHelp(t *testing.T) {
	vars := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^  local (\w+)="([^"]*)"`).FindAllStringSubmatch(bashCompletion, -1) {
		vars[m[1]] = strings.Fields(m[2])
	}
	for _, sub := range []string{"save", "restore"} {
		m := regexp.MustCompile(`(?m)^        ` + sub + `\)\s+COMPREPLY=\(\$\(compgen -W "([^"]*)"`).FindStringSubmatch(bashCompletion)
		if m == nil {
			t.Errorf("the completion script has no case for snapshot %s", sub)
			continue
		}
		offered := map[string]bool{}
		for _, w := range strings.Fields(m[1]) {
			if name, ok := strings.CutPrefix(w, "$"); ok {
				for _, v := range vars[name] {
					offered[strings.TrimLeft(v, "-")] = true
				}
			} else if strings.HasPrefix(w, "-") {
				offered[strings.TrimLeft(w, "-")] = true
			}
		}
		delete(offered, "h")
		var out, errb bytes.Buffer
		run([]string{"snapshot", sub, "-h"}, &out, &errb)
		listed := flagsListed(out.String() + errb.String())
		for f := range listed {
			if !offered[f] {
				t.Errorf("snapshot %s: -%s is in -h but not completed", sub, f)
			}
		}
		for f := range offered {
			if !listed[f] {
				t.Errorf("snapshot %s: -%s is completed but not in -h", sub, f)
			}
		}
	}
}

// TestRunAsLockstep is no test of its own: run by runLockstep, in a
// process of its own, it is the lockstep binary given LOCKSTEP_TEST_ARGS
// (a JSON list). Dragonboat's logger is the process's, set once: only a
// process of its own starts without it set, as the binary does.
func TestRunAsLockstep(t *testing.T) {
	raw := os.Getenv("LOCKSTEP_TEST_ARGS")
	if raw == "" {
		t.Skip("the lockstep binary, for runLockstep")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	os.Exit(run(args, os.Stdout, os.Stderr))
}

// runLockstep runs `lockstep ARGS...` in a process of its own (this test
// binary, as TestRunAsLockstep).
func runLockstep(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := lockstepCommand(t, ctx, os.Args[0], args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

// lockstepCommand is `lockstep ARGS...` as a process of its own: bin (this
// test binary, or a copy of it) run as TestRunAsLockstep.
func lockstepCommand(t *testing.T, ctx context.Context, bin string, args ...string) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestRunAsLockstep$")
	cmd.Env = append(os.Environ(), "LOCKSTEP_TEST_ARGS="+string(raw))
	return cmd
}

// loopbackAddr is a free 127.0.0.1 port (the runtime tests' way).
func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testBackup writes a backup of a one-member cluster to dir/backup.tar.
func testBackup(t *testing.T, dir string) string {
	t.Helper()
	cfg := config.Dev(filepath.Join(dir, "old"))
	cfg.Cluster.RaftAddress = loopbackAddr(t)
	cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: cfg.Cluster.RaftAddress}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := runtime.Start(ctx, runtime.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	// A consistent backup, once the member leads: a stale one of a member
	// that has not applied its first entry is refused (it has nothing to
	// back up).
	for deadline := time.Now().Add(20 * time.Second); !node.Healthy(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no leader within 20s: %v", node.Health())
		}
	}
	path := filepath.Join(dir, "backup.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := node.Backup(ctx, f, false); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSnapshotRestoreSaysOnlyItsOwn: a restore prints Lockstep's lines
// and nothing of Dragonboat's ("config: using default EngineConfig",
// "logdb: using plain logdb" came on stderr, in Dragonboat's format).
func TestSnapshotRestoreSaysOnlyItsOwn(t *testing.T) {
	dir := t.TempDir()
	backup := testBackup(t, dir)
	raft := loopbackAddr(t)
	conf := filepath.Join(dir, "node1.yaml")
	body := "cluster:\n  node_id: node-1\n  raft_address: " + raft + "\n  api_address: " + loopbackAddr(t) +
		"\n  metrics_address: \"\"\n  data_dir: " + filepath.Join(dir, "new") + "\n  peers: {node-1: " + raft + "}\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runLockstep(t, "snapshot", "restore", backup, "--config", conf)
	if code != exitOK || !strings.HasPrefix(stdout, "restored node-1 into ") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if stderr != "" {
		t.Errorf("a restore wrote to stderr:\n%s", stderr)
	}
	// --data-dir naming the file's own directory: no advice to set in the
	// file what it says already, and no --data-dir in the start line.
	if err := os.RemoveAll(filepath.Join(dir, "new")); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runLockstep(t, "snapshot", "restore", backup, "--config", conf, "--data-dir", filepath.Join(dir, "new"))
	if code != exitOK || strings.Contains(stdout, "set cluster.data_dir") || strings.Contains(stdout, "--data-dir") {
		t.Errorf("a restore with the file's own --data-dir: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if err := os.RemoveAll(filepath.Join(dir, "other")); err != nil {
		t.Fatal(err)
	}
	stdout, _, code = runLockstep(t, "snapshot", "restore", backup, "--config", conf, "--data-dir", filepath.Join(dir, "other"))
	if code != exitOK || !strings.Contains(stdout, "set cluster.data_dir: "+filepath.Join(dir, "other")+" in "+conf+" too") {
		t.Errorf("a restore into another directory than the file's: exit %d\nstdout:\n%s", code, stdout)
	}
}

// TestCommandLoggerSaysWarningsAsItsOwnLines: what a restore's Dragonboat
// says at warn or above reaches stderr as the command's line, without a
// time; below warn nothing.
func TestCommandLoggerSaysWarningsAsItsOwnLines(t *testing.T) {
	var buf bytes.Buffer
	l := commandLogger(&buf, "lockstep snapshot restore")
	l.Info("using plain logdb")
	l.Error("failed to import", "component", "dragonboat/logdb")
	if got := buf.String(); got != "lockstep snapshot restore: level=ERROR msg=\"failed to import\" component=dragonboat/logdb\n" {
		t.Errorf("wrote %q", got)
	}
}

// backupServer answers Backup with a backup of node-2 (stale if asked),
// its manifest first, as a member does; fail, when set, is its answer
// instead.
type backupServer struct {
	lockstepv1connect.UnimplementedClusterServiceHandler
	fail error
}

func (s backupServer) Backup(_ context.Context, r *connect.Request[pb.BackupRequest], stream *connect.ServerStream[pb.BackupChunk]) error {
	if s.fail != nil {
		return s.fail
	}
	payload := bytes.Repeat([]byte("lockstep"), 300)
	man := runtime.BackupManifest{Format: 1, ID: "0123456789abcdef", Taken: time.Date(2026, 12, 6, 4, 10, 0, 0, time.UTC), NodeID: "node-2",
		Versions: "rules 2", Stale: r.Msg.Stale, Logs: map[string]string{"6696ecc220787900": "19a5535023cf4dca"},
		Shards: []runtime.BackupShard{
			{ShardID: 0, Index: 1 << 40, Term: 3, File: "shard-0/snapshot-0000010000000000.gbsnap", Record: "shard-0/snapshot.metadata", Bytes: int64(len(payload)), SHA256: "ab"},
			{ShardID: 1, Index: 12, Term: 3, File: "shard-1/snapshot-000000000000000C.gbsnap", Record: "shard-1/snapshot.metadata", Bytes: int64(len(payload)), SHA256: "cd"},
		}}
	body, err := json.Marshal(man)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(b)), Typeflag: tar.TypeReg})
		}
		if err == nil {
			_, err = tw.Write(b)
		}
	}
	add("lockstep-backup.json", body)
	for _, sh := range man.Shards {
		add(sh.File, payload)
		add(sh.Record, []byte("a record"))
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return err
	}
	return stream.Send(&pb.BackupChunk{Data: buf.Bytes()})
}

func newBackupServer(t *testing.T, s backupServer) string {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewClusterServiceHandler(s))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSnapshotSaveJSON: save -o json names the file it wrote and its size,
// and gives the manifest under the manifest's own names, its numbers as
// JSON numbers (they were strings, and the file went unnamed).
func TestSnapshotSaveJSON(t *testing.T) {
	url := newBackupServer(t, backupServer{})
	path := filepath.Join(t.TempDir(), "backup.tar")
	var out, errb bytes.Buffer
	if code := run([]string{"snapshot", "save", path, "-o", "json", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, &errb)
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, &out)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got["file"] != path || got["bytes"] != float64(st.Size()) {
		t.Errorf("file %v, bytes %v; want %s, %d:\n%s", got["file"], got["bytes"], path, st.Size(), &out)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	var man map[string]any
	if err := json.NewDecoder(tr).Decode(&man); err != nil {
		t.Fatal(err)
	}
	for k, v := range man {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%q: %v (%T), the manifest's %v (%T)", k, got[k], got[k], v, v)
		}
	}
	shards, _ := got["shards"].([]any)
	if len(shards) != 2 {
		t.Fatalf("shards: %v", got["shards"])
	}
	first, _ := shards[0].(map[string]any)
	for k, want := range map[string]float64{"shard_id": 0, "index": 1 << 40, "term": 3, "bytes": 2400} {
		if first[k] != want {
			t.Errorf("shards[0].%s: %v (%T), want the number %v", k, first[k], first[k], want)
		}
	}
	if got["format"] != float64(1) || got["stale"] != false || got["node_id"] != "node-2" {
		t.Errorf("format %v, stale %v, node_id %v", got["format"], got["stale"], got["node_id"])
	}
}

// TestSnapshotSaveKeepsAnExistingFile: a save onto an existing FILE is
// refused before the cluster is asked, saying --force replaces it; with
// --force it is replaced, and the command says so. A failed save leaves
// the file as it was. (It was overwritten without a word.)
func TestSnapshotSaveKeepsAnExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.tar")
	if err := os.WriteFile(path, []byte("an earlier backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != "an earlier backup" {
			t.Errorf("%s: the existing file is now %.20q (%v)", what, b, err)
		}
		if _, err := os.Stat(path + ".part"); !os.IsNotExist(err) {
			t.Errorf("%s: left %s.part (%v)", what, path, err)
		}
	}
	var out, errb bytes.Buffer
	code := run([]string{"snapshot", "save", path, "--endpoints", "http://127.0.0.1:1"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), path+" exists") || !strings.Contains(errb.String(), "--force") {
		t.Errorf("a save onto an existing file: exit %d:\n%s", code, &errb)
	}
	unchanged("refused")

	out.Reset()
	errb.Reset()
	failing := newBackupServer(t, backupServer{fail: connect.NewError(connect.CodeUnavailable, errors.New("no quorum"))})
	if code := run([]string{"snapshot", "save", path, "--force", "--endpoints", failing}, &out, &errb); code != exitError {
		t.Errorf("a failed save with --force: exit %d:\n%s", code, &errb)
	}
	unchanged("a failed save")

	out.Reset()
	errb.Reset()
	url := newBackupServer(t, backupServer{})
	if code := run([]string{"snapshot", "save", path, "--force", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("--force: exit %d:\n%s", code, &errb)
	}
	if man, err := readManifest(path); err != nil || man.NodeID != "node-2" {
		t.Errorf("after --force: %+v, %v", man, err)
	}
	if !strings.Contains(errb.String(), "replaced") || !strings.HasPrefix(out.String(), "saved "+path) {
		t.Errorf("--force: stdout %q, stderr %q; want saved, and a word that it replaced the file", &out, &errb)
	}
}

// TestSnapshotSaveRefusesAnExistingPart: a FILE.part that exists (another
// save writing it, or what a killed one left) is refused, with --force
// too, naming it and saying to remove it if no save runs, and is left as
// it was; once removed, the save goes through. (It was truncated without
// a word, spoiling a running save's backup.)
func TestSnapshotSaveRefusesAnExistingPart(t *testing.T) {
	url := newBackupServer(t, backupServer{})
	path := filepath.Join(t.TempDir(), "backup.tar")
	part := path + ".part"
	if err := os.WriteFile(part, []byte("another save's archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, force := range []bool{false, true} {
		args := []string{"snapshot", "save", path, "--endpoints", url}
		if force {
			args = append(args, "--force")
		}
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		if code != exitError || !strings.Contains(errb.String(), part+" exists") || !strings.Contains(errb.String(), "if no save is running, remove it") {
			t.Errorf("a save (--force %v) onto an existing %s: exit %d:\n%s%s", force, part, code, &out, &errb)
		}
		if b, err := os.ReadFile(part); err != nil || string(b) != "another save's archive" {
			t.Errorf("--force %v: %s is now %.20q (%v)", force, part, b, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("--force %v: %s was written (%v)", force, path, err)
		}
	}
	if err := os.Remove(part); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"snapshot", "save", path, "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("once %s is removed: exit %d:\n%s", part, code, &errb)
	}
}
