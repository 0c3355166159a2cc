package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/lockstepd/lockstep/runtime"
)

// snapshotCmd is `lockstep snapshot save|restore`: a backup of a running
// cluster, and the members of a new cluster made from one
// (docs/operations.md, "Backup and restore").
func snapshotCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "save":
			return snapshotSave(args[1:], stdout, stderr)
		case "restore":
			return snapshotRestore(args[1:], stdout, stderr)
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, snapshotUsage)
			return exitOK
		}
	}
	fmt.Fprint(stderr, snapshotUsage)
	return exitUsage
}

const snapshotUsage = `Usage: lockstep snapshot save FILE [--stale] [flags]
       lockstep snapshot restore FILE --config FILE [--bump-index N] [serve's flags]

save writes a backup of the cluster's whole state (every shard) to FILE, a
tar archive, from the first endpoint that answers. It needs the admin
permission. The backup holds every operation acknowledged before the
call. --stale backs up what the answering member applied without asking
the leader: the way to save the state of a cluster that lost its majority
(it may lack the last operations acknowledged).

restore makes one member of a NEW cluster from a backup, offline, in an
empty data directory: run it for every member, each with its own
configuration and the same FILE and cluster.peers, then start them all
with lockstep serve. See docs/operations.md, "Backup and restore".

Examples:
  lockstep snapshot save backup.tar --endpoints http://10.0.0.1:8080
  lockstep snapshot save backup.tar --stale --endpoints http://10.0.0.3:8080
  lockstep snapshot restore backup.tar --config node1.yaml --data-dir /var/lib/lockstep/node-1.restored
`

func snapshotSave(args []string, stdout, stderr io.Writer) int {
	c := newCommand("snapshot save", "\n"+snapshotUsage, stdout, stderr)
	stale := c.fs.Bool("stale", false, "back up what the answering member applied, without a quorum (it may lack the last acknowledged operations)")
	pos, _, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageErr("want one FILE to write the backup to, got %d arguments", len(pos))
	}
	path := pos[0]
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	// The archive goes to FILE.part and becomes FILE only whole: a FILE
	// that exists is a complete backup.
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
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
	if err == nil {
		err = os.Rename(part, path)
	}
	if err != nil {
		os.Remove(part)
		return c.fail(err)
	}
	man, err := readManifest(path)
	if err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		c.json(man)
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

// readManifest reads a backup's manifest, its first entry.
func readManifest(path string) (runtime.BackupManifest, error) {
	var man runtime.BackupManifest
	f, err := os.Open(path)
	if err != nil {
		return man, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	if _, err := tr.Next(); err != nil {
		return man, fmt.Errorf("%s: not a backup: %w", path, err)
	}
	if err := json.NewDecoder(tr).Decode(&man); err != nil {
		return man, fmt.Errorf("%s: its manifest: %w", path, err)
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

func snapshotRestore(args []string, stdout, stderr io.Writer) int {
	f := newServeFlags(stderr)
	f.fs.Init("lockstep snapshot restore", flag.ContinueOnError)
	bump := f.fs.Uint64("bump-index", runtime.DefaultBumpIndex,
		"entries every shard's log skips past the backup's index, so that every fencing token the restored cluster grants is above any the lost one granted after the backup (0 only for a backup taken after the old cluster stopped)")
	f.fs.Usage = func() {
		fmt.Fprint(stderr, snapshotUsage)
		fmt.Fprintln(stderr, "\nFlags (serve's, which name the member, and --bump-index):")
		f.fs.PrintDefaults()
	}
	// The FILE comes first; the flags after it.
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			fmt.Fprint(stdout, snapshotUsage)
			return exitOK
		}
		fmt.Fprintf(stderr, "lockstep snapshot restore: give the backup FILE first, then --config\n\n%s", snapshotUsage)
		return exitUsage
	}
	path := args[0]
	if err := f.fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if f.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "lockstep snapshot restore: unexpected arguments %q: one FILE, then flags\n", f.fs.Args())
		return exitUsage
	}
	if f.dev {
		fmt.Fprintln(stderr, "lockstep snapshot restore: --dev: a restore writes a member of a cluster; give --config (and --data-dir)")
		return exitUsage
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
	r, err := runtime.Restore(in, runtime.RestoreOptions{Config: cfg, BumpIndex: *bump})
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
	if *bump == 0 {
		fmt.Fprintln(stderr, "lockstep snapshot restore: warning: --bump-index 0: the restored cluster grants fencing tokens from where the backup "+
			"stopped, so it may grant again a token the old cluster granted after the backup; use it only for a backup taken after the old cluster stopped")
	}
	start := fmt.Sprintf("lockstep serve --config %s", f.configFile)
	if f.given("data-dir") {
		start += " --data-dir " + r.DataDir
	}
	if r.Incarnation != 0 {
		start += fmt.Sprintf(" --incarnation %d", r.Incarnation)
	}
	fmt.Fprintf(stdout, "deployment %016x: every member restored for this cluster must print the same (the same backup, --bump-index and peers: %s), "+
		"or the members that differ are not heard by the others\n", r.Deployment, strings.Join(peers, ", "))
	fmt.Fprintf(stdout, "when every member is restored, start each:\n  %s\n", start)
	if f.given("data-dir") {
		fmt.Fprintf(stdout, "set cluster.data_dir: %s in %s too, so that a restart by the service manager starts the restored member, not the old one\n",
			r.DataDir, f.configFile)
	}
	fmt.Fprintln(stdout, "never start a member of the old cluster again: the new one does not hear it, and it holds stale locks for the clients that reach it")
	return exitOK
}

func joinIndexes(ix []uint64) string {
	s := make([]string, len(ix))
	for i, v := range ix {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}
