package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/runtime"
)

// snapshotCmd is `lockstep snapshot save|restore`: a backup of a running
// cluster, and the members of a new cluster made from one
// (docs/operations.md, "Backup and restore"). Each subcommand has its own
// help and flags; snapshot -h is the overview.
func snapshotCmd(args []string, stdout, stderr io.Writer) int {
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "lockstep snapshot: %s\nRun 'lockstep snapshot -h' for usage and examples.\n", fmt.Sprintf(format, a...))
		return exitUsage
	}
	if len(args) == 0 {
		return usageErr("want a subcommand: save or restore")
	}
	switch args[0] {
	case "save":
		return snapshotSave(args[1:], stdout, stderr)
	case "restore":
		return snapshotRestore(args[1:], stdout, stderr)
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, strings.TrimLeft(snapshotHelp, "\n"))
		return exitOK
	}
	return usageErr("unknown subcommand %q: use save or restore", args[0])
}

const snapshotHelp = `
Usage: lockstep snapshot save FILE [--stale] [--force] [flags]
       lockstep snapshot restore FILE --config FILE [--data-dir DIR]
                                 [--bump-index N] [--incarnation N]

Back up a cluster, and make a new cluster from a backup (docs/operations.md,
"Backup and restore"):
  save     write a backup of the cluster's whole state (every shard) to
           FILE, online, from the first endpoint that answers (admin
           permission)
  restore  make one member of a NEW cluster from a backup, offline, in an
           empty data directory; run it for every member, then start them
           with lockstep serve

Run 'lockstep snapshot save -h' or 'lockstep snapshot restore -h' for each
one's flags and examples.

Examples:
  lockstep snapshot save backup.tar --endpoints http://10.0.0.1:8080
  lockstep snapshot restore backup.tar --config node1.yaml \
      --data-dir /var/lib/lockstep/node-1.restored
`

const snapshotSaveHelp = `
Usage: lockstep snapshot save FILE [--stale] [--force] [flags]

Writes a backup of the cluster's whole state (every shard) to FILE, a tar
archive, from the first endpoint that answers. It needs the admin
permission. The backup holds every operation acknowledged before the call.
The archive is written to FILE.part and renamed to FILE only when whole.

--stale backs up what the answering member applied, without asking the
leader: the way to save the state of a cluster that lost its majority (it
may lack the last operations acknowledged).

A FILE that exists is kept: the save is refused, before the cluster is
asked, unless --force (a backup replaced by one of another cluster, or by
a --stale one, is lost). A FILE.part that exists is refused, --force or
not: another save may be writing it; remove it if none is running.

-o json prints the backup's manifest (lockstep-backup.json in the
archive) with file, the path written, and bytes, its size.

lockstep snapshot restore makes a new cluster from it (see its -h, and
docs/operations.md, "Backup and restore").

Examples:
  lockstep snapshot save backup-$(date +%F).tar --endpoints http://10.0.0.1:8080
  lockstep snapshot save survivor.tar --stale --endpoints http://10.0.0.3:8080
  lockstep snapshot save latest.tar --force -o json
`

func snapshotSave(args []string, stdout, stderr io.Writer) int {
	c := newCommand("snapshot save", snapshotSaveHelp, stdout, stderr)
	stale := c.fs.Bool("stale", false, "back up what the answering member applied, without a quorum (it may lack the last acknowledged operations)")
	force := c.fs.Bool("force", false, "replace FILE if it exists (without it, a save onto an existing FILE is refused)")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr("want one FILE to write the backup to, got %d arguments", len(pos))
	}
	path := pos[0]
	// An existing FILE is kept unless --force: a backup replaced by one of
	// another cluster (the wrong --endpoints) or by a --stale one is lost.
	// (FILE.part, below, keeps it only from a save that fails.)
	existed := false
	if _, err := os.Lstat(path); err == nil {
		if !*force {
			return c.usageErr("%s exists: give another FILE, or --force to replace it (a backup replaced by one of another cluster, "+
				"or by a --stale one, is lost)", path)
		}
		existed = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return c.fail(err)
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	// The archive goes to FILE.part and becomes FILE only whole: a FILE
	// that exists is a complete backup. A FILE.part that exists is
	// another save's under way, or what a killed one left (a save that
	// fails or is interrupted removes its own); nothing tells the two
	// apart, and truncating a running save's would spoil its backup, so
	// it is refused, --force or not, and made here only if it is not
	// there (O_EXCL: of two saves racing for it, one makes it).
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return c.fail(fmt.Errorf("%s exists: another snapshot save of %s may be writing it, or one that was killed left it; "+
			"if no save is running, remove it and save again (--force does not replace it)", part, path))
	}
	if err != nil {
		return c.fail(err)
	}
	err = cl.Backup(ctx, f, *stale)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && !*force {
		if _, serr := os.Lstat(path); serr == nil {
			// Made while the backup was taken (another save): kept, and
			// the new backup is left whole under its .part name.
			return c.fail(fmt.Errorf("%s appeared while the backup was taken, and is kept: this backup is %s; move it where it belongs", path, part))
		}
	}
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return c.fail(err)
	}
	if existed {
		fmt.Fprintf(stderr, "lockstep snapshot save: replaced the earlier %s (--force)\n", path)
	}
	man, err := readManifest(path)
	if err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		st, err := os.Stat(path)
		if err != nil {
			return c.fail(err)
		}
		// The manifest as the archive holds it, and the file with its
		// size. Its numbers are JSON numbers, not the strings c.json
		// makes of 64-bit integers: an index stays below 2^44 (a fencing
		// token's, core.SlotBits), well within a double's 2^53.
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(savedBackup{File: path, Bytes: st.Size(), BackupManifest: man})
		return exitOK
	}
	var bytes int64
	for _, s := range man.Shards {
		bytes += s.Bytes
	}
	how := "consistent: every operation acknowledged before the call"
	if man.Stale {
		how = "stale: what " + man.NodeID + " had applied; it may lack the last acknowledged operations"
	}
	fmt.Fprintf(stdout, "saved %s: %s from %s at %s, %s of snapshots (%s)\n", path, countOf(len(man.Shards), "shard"),
		man.NodeID, man.Taken.Format("2006-01-02T15:04:05Z"), byteCount(bytes), how)
	return exitOK
}

// savedBackup is what save -o json prints: the backup's manifest, under
// the names lockstep-backup.json gives its fields, with file, the path
// written, and bytes, its size (as each shard's file and bytes are its
// snapshot's path in the archive and size).
type savedBackup struct {
	File  string `json:"file"`
	Bytes int64  `json:"bytes"`
	runtime.BackupManifest
}

// readManifest reads a backup's manifest, its first entry.
func readManifest(path string) (runtime.BackupManifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return runtime.BackupManifest{}, err
	}
	defer f.Close()
	man, err := runtime.ReadBackupManifest(f)
	if err != nil {
		return man, fmt.Errorf("%s: %w", path, err)
	}
	return man, nil
}

func byteCount(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

const snapshotRestoreHelp = `
Usage: lockstep snapshot restore FILE --config FILE [--data-dir DIR]
                                 [--bump-index N] [--incarnation N]
                                 [--hold-grants D | --keep-sessions]

Makes one member of a NEW cluster from the backup FILE (lockstep snapshot
save), offline, in an empty data directory. Run it for every member of the
new cluster, each with its own configuration (the one it will run with) and
the same FILE, --bump-index and cluster.peers (the new members): every
member must print the same deployment. Then start each with lockstep serve,
as it prints, and never start a member of the old cluster again.

Every shard's log resumes --bump-index entries past the backup's index, so
that the fencing tokens the new cluster grants are above any the old one
granted after the backup. Each member is restored as the incarnation its
node id must have (the one it ran as in the old cluster, or the one after
those the old cluster removed), which the restore records and prints; an
--incarnation given that differs is refused, saying which.

The backup is older than what the old cluster's clients know: a client
granted a lock after it, or one that released a lock it still holds, would
meet a state that disagrees with it, and two clients could hold one mutex.
So the restore closes every session of the backup (their locks end, with
their lock-delay), and the restored member grants nothing for --hold-grants
after the restore (by default the longest lease among the backup's
sessions, or locks.default_ttl_seconds if longer): every client of the old
cluster learns its session is gone, or stops at the end of its own lease,
before anyone is granted anything. --keep-sessions keeps them, live and
holding what they held: only for a backup that holds everything the old
cluster acknowledged (taken after it stopped taking requests). Every
member must be restored with the same --keep-sessions.

The flags named after configuration keys set them over the file's, as
lockstep serve's do. See docs/operations.md, "Backup and restore".

Examples:
  lockstep snapshot restore backup.tar --config node1.yaml \
      --data-dir /var/lib/lockstep/node-1.restored
  lockstep snapshot restore backup.tar --config node2.yaml \
      --data-dir /var/lib/lockstep/node-2.restored --bump-index 5000000000
`

// restoreKeys are the flags of configuration keys a restore reads (the
// member, its data directory, the new cluster's members, the shard count,
// and plaintext on addresses that are not loopback, which the
// configuration's check wants said); serve's others mean nothing to it.
var restoreKeys = []string{"node-id", "raft-address", "data-dir", "peers", "incarnation", "shards", "insecure"}

// bumpFlag is --bump-index: a whole number of entries.
type bumpFlag uint64

func (b *bumpFlag) String() string { return strconv.FormatUint(uint64(*b), 10) }

func (b *bumpFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("give a whole number of entries, 0 or more (default %d)", runtime.DefaultBumpIndex)
	}
	*b = bumpFlag(n)
	return nil
}

func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	f := newConfigFlags("lockstep snapshot restore", stderr, restoreKeys)
	bump := bumpFlag(runtime.DefaultBumpIndex)
	f.fs.Var(&bump, "bump-index", "how many entries (`N`) every shard's log skips past the backup's index, so that every fencing token "+
		"the restored cluster grants is above any the lost one granted after the backup (0 only for a backup taken after "+
		"the old cluster stopped)")
	keep := f.fs.Bool("keep-sessions", false, "keep the backup's sessions live, holding what they held, and hold back no grant: "+
		"only for a backup that holds everything the old cluster acknowledged (taken after it stopped taking requests)")
	// 0 is "not given" (f.given), not a default: the default is the
	// backup's longest lease, which only the restore knows.
	hold := f.fs.Duration("hold-grants", 0, "how long (`D`) after the restore this member grants nothing, while the old cluster's "+
		"clients may still count leases of the sessions the restore closed (default: the longest lease among the backup's "+
		"sessions, or locks.default_ttl_seconds if longer; 0s once the old cluster's clients are known stopped)")
	f.fs.Usage = func() {
		fmt.Fprint(f.fs.Output(), strings.TrimLeft(snapshotRestoreHelp, "\n"))
		fmt.Fprintln(f.fs.Output(), "\nFlags:")
		f.fs.PrintDefaults()
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "lockstep snapshot restore: %s\nRun 'lockstep snapshot restore -h' for usage and examples.\n", fmt.Sprintf(format, a...))
		return exitUsage
	}
	pos, ok := parseInterleaved(f.fs, args)
	if !ok {
		if pos == nil {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) != 1 {
		return usageErr("want one backup FILE (lockstep snapshot save wrote it), got %d arguments", len(pos))
	}
	path := pos[0]
	if *keep && f.given("hold-grants") {
		return usageErr("--hold-grants holds back grants while the sessions a restore closed may still be counted: " +
			"--keep-sessions closes none; give one of them")
	}
	if *hold < 0 {
		return usageErr("--hold-grants %v: give a duration of 0s or more", *hold)
	}
	if f.configFile == "" {
		return usageErr("give --config FILE: the configuration this member will run with, which names it, " +
			"its data directory and the new cluster's peers")
	}
	cfg, err := loadConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "lockstep snapshot restore: %v\n", err)
		return exitUsage
	}
	in, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(stderr, "lockstep snapshot restore: %v\n", err)
		return exitUsage
	}
	defer in.Close()
	o := runtime.RestoreOptions{Config: cfg, BumpIndex: uint64(bump), KeepSessions: *keep, Logger: commandLogger(stderr, "lockstep snapshot restore")}
	if f.given("hold-grants") {
		o.HoldGrants = hold
	}
	r, err := runtime.Restore(in, o)
	if err != nil {
		fmt.Fprintf(stderr, "lockstep snapshot restore: %v\n", err)
		return exitError
	}
	peers := slices.Sorted(maps.Keys(cfg.Cluster.Peers))
	kind := "backup"
	if r.Manifest.Stale {
		kind = "stale backup"
	}
	fmt.Fprintf(stdout, "restored %s into %s: %s, %s's %s of %s, the log resuming at index %s\n",
		cfg.Cluster.NodeID, r.DataDir, countOf(len(r.Indexes), "shard"), r.Manifest.NodeID, kind,
		r.Manifest.Taken.Format("2006-01-02T15:04:05Z"), joinIndexes(r.Indexes))
	switch {
	case *keep:
		fmt.Fprintln(stdout, "kept the backup's sessions live, with what they held and waited for (--keep-sessions): "+
			"right only if the backup holds everything the old cluster acknowledged")
	default:
		wait := fmt.Sprintf("the longest lease among them (at least locks.default_ttl_seconds, %ds)", cfg.Locks.DefaultTTLSeconds)
		if f.given("hold-grants") {
			wait = hold.String()
		}
		fmt.Fprintf(stdout, "once it serves, the restored cluster closes the backup's sessions (the old cluster's clients may know of "+
			"grants after the backup), and grants nothing until they are closed and %s has passed (--hold-grants)\n", wait)
	}
	if bump == 0 {
		fmt.Fprintln(stderr, "lockstep snapshot restore: warning: --bump-index 0: the restored cluster grants fencing tokens from where the backup "+
			"stopped, so it may grant again a token the old cluster granted after the backup; use it only for a backup taken after the old cluster stopped")
	}
	start := fmt.Sprintf("lockstep serve --config %s", f.configFile)
	// --data-dir that names the file's own directory needs no advice: it
	// said to set in the file what the file said already.
	otherDir := f.given("data-dir") && !sameDir(f.configFile, r.DataDir)
	if otherDir {
		start += " --data-dir " + r.DataDir
	}
	if r.Incarnation != 0 {
		start += fmt.Sprintf(" --incarnation %d", r.Incarnation)
	}
	fmt.Fprintf(stdout, "deployment %016x: every member restored for this cluster must print the same (the same backup, --bump-index and peers: %s), "+
		"or the members that differ are not heard by the others\n", r.Deployment, strings.Join(peers, ", "))
	fmt.Fprintf(stdout, "when every member is restored, start each:\n  %s\n", start)
	if otherDir {
		fmt.Fprintf(stdout, "set cluster.data_dir: %s in %s too, so that a restart by the service manager starts the restored member, not the old one\n",
			r.DataDir, f.configFile)
	}
	fmt.Fprintln(stdout, "never start a member of the old cluster again: the new one does not hear it, and it holds stale locks for the clients that reach it")
	return exitOK
}

// sameDir says whether the configuration file names dir as its
// cluster.data_dir (both made absolute).
func sameDir(configFile, dir string) bool {
	cfg, err := config.Read(configFile)
	if err != nil || cfg.Cluster.DataDir == "" {
		return false
	}
	a, errA := filepath.Abs(cfg.Cluster.DataDir)
	b, errB := filepath.Abs(dir)
	return errA == nil && errB == nil && a == b
}

func joinIndexes(ix []uint64) string {
	s := make([]string, len(ix))
	for i, v := range ix {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}

// commandLogger is the logger of a command that runs part of the runtime
// without serving (snapshot restore): warnings and errors only, each a
// line of the command's own, "NAME: level=WARN msg=...", without a time.
func commandLogger(w io.Writer, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(prefixWriter{w: w, prefix: name + ": "}, &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// prefixWriter writes each Write (a handler's whole line) after prefix.
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}
