package runtime

// Backup: an online export of every shard's snapshot, written as one tar
// stream, which Restore (restore.go) turns into the data directories of a
// new cluster. docs/operations.md, "Backup and restore", is the operator's
// side; docs/design.md, "Membership", says why a restored cluster is a new
// one.

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/raftpb"

	"github.com/lockstepd/lockstep/core"
)

const (
	// backupManifestFile is the archive's first entry: what the rest is.
	backupManifestFile = "lockstep-backup.json"
	// backupFormat is the manifest's format; Restore reads this one.
	backupFormat = 1
	// snapshotMetadataFile and snapshotFileSuffix are the names Dragonboat
	// gives an exported snapshot's record and payload.
	snapshotMetadataFile = "snapshot.metadata"
	snapshotFileSuffix   = ".gbsnap"
	// maxBackupManifestBytes bounds the manifest Restore reads.
	maxBackupManifestBytes = 1 << 20
	// maxExportAttempts bounds the retries of an export that Dragonboat
	// rejects because a snapshot of the shard is being taken already.
	maxExportAttempts = 20
	// exportTimeout bounds how long a backup waits for one export:
	// writing a snapshot of millions of objects takes seconds, well past a
	// request's retry budget.
	exportTimeout = 5 * time.Minute
	// exportTracked is how long Dragonboat keeps track of an export it was
	// asked for, after which it forgets the request while its snapshot
	// worker may still write the export: longer than any wait for it.
	exportTracked = time.Hour
)

// BackupManifest says what a backup holds. It is JSON, the archive's first
// entry, so that `tar -xOf FILE lockstep-backup.json` shows it.
type BackupManifest struct {
	Format int `json:"format"`
	// ID names this backup: a cluster restored from it runs under a Raft
	// deployment id drawn from it and the new members, so that a member
	// of the old cluster can never talk to the restored one.
	ID     string    `json:"id"`
	Taken  time.Time `json:"taken"`
	NodeID string    `json:"node_id"` // the member that wrote it
	// Versions are the log versions of the build that wrote it
	// (Compatibility): a build restores the snapshot versions it reads.
	Versions string `json:"versions"`
	// Stale is true when the member read its own state without asking
	// the leader (a cluster without a quorum): it may lack the last
	// entries the cluster committed.
	Stale  bool          `json:"stale"`
	Shards []BackupShard `json:"shards"`
	// Logs is the log id each replica took part under (runtime/peerlogs.go),
	// replica id → log id in hex, 0 for a removed replica: a restored
	// member keeps its replica's, which the restored state names.
	Logs map[string]string `json:"logs"`
}

// BackupShard is one shard's snapshot in a backup.
type BackupShard struct {
	ShardID uint64 `json:"shard_id"` // 0..shards-1
	Index   uint64 `json:"index"`    // the Raft index the snapshot was taken at
	Term    uint64 `json:"term"`
	File    string `json:"file"`   // the payload's path in the archive
	Record  string `json:"record"` // Dragonboat's record of it, in the archive
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"` // of the payload
}

// Backup writes, to w, a backup of every shard: Dragonboat's exported
// snapshot of each, and a manifest first. Unless stale, each shard is
// exported after a ReadIndex through its leader, so that the backup holds
// every operation acknowledged before the call; stale exports what this
// member applied, which needs no quorum (a cluster that lost its majority).
// The exports are written under the data directory and removed after.
//
// Backups of one member export one at a time: Dragonboat takes one
// snapshot of a shard at a time and refuses the others, so a backup that
// finds another exporting waits its turn, within ctx, rather than fail
// once the other outlasts its retries. The turn ends with the exports:
// the archives are written to their callers side by side.
func (n *Node) Backup(ctx context.Context, w io.Writer, stale bool) (BackupManifest, error) {
	if !n.enter() {
		return BackupManifest{}, ErrShuttingDown
	}
	defer n.leave()
	if err := n.awaitBackupTurn(ctx); err != nil {
		return BackupManifest{}, err
	}
	turn := true
	endTurn := func() {
		if turn {
			turn = false
			<-n.backupTurn
		}
	}
	// What the backup holds, its turn and its exports' directory, is let
	// go on return; but Dragonboat's snapshot worker panics if the
	// directory of an export it still writes goes (a failed save), so an
	// export left running (its caller went away) keeps both until it
	// ends, and one Dragonboat lost track of keeps its directory, which
	// the next start removes (removeBackupLeftovers).
	tmp := ""
	var running *dragonboat.RequestState
	keep := false
	defer func() {
		switch {
		case running != nil:
			n.loops.Add(1)
			go func() {
				defer n.loops.Done()
				n.finishAbandonedExport(running, tmp)
				endTurn()
			}()
			return
		case keep:
			n.log.Warn("leaving a backup's export directory: Dragonboat may still be writing it; the next start removes it", "dir", tmp)
		case tmp != "":
			os.RemoveAll(tmp)
		}
		endTurn()
	}()
	dir, err := filepath.Abs(n.cfg.Cluster.DataDir)
	if err != nil {
		return BackupManifest{}, fmt.Errorf("cluster.data_dir: %w", err)
	}
	if tmp, err = os.MkdirTemp(dir, backupDirPrefix); err != nil {
		return BackupManifest{}, fmt.Errorf("runtime: backup: %w", err)
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return BackupManifest{}, fmt.Errorf("runtime: backup: %w", err)
	}
	man := BackupManifest{Format: backupFormat, ID: hex.EncodeToString(id[:]), Taken: n.clock().UTC().Truncate(time.Millisecond),
		NodeID: n.cfg.Cluster.NodeID, Versions: n.versions, Stale: stale, Logs: map[string]string{}}
	exports := make([]string, 0, len(n.shards)) // each shard's exported snapshot's directory
	for i, sh := range n.shards {
		if !stale {
			if err := n.caughtUp(ctx, sh); err != nil {
				return BackupManifest{}, err
			}
		}
		if err := n.exportable(sh, stale); err != nil {
			return BackupManifest{}, err
		}
		shardDir := filepath.Join(tmp, backupShardDir(i))
		if err := os.Mkdir(shardDir, 0o700); err != nil {
			return BackupManifest{}, fmt.Errorf("runtime: backup: %w", err)
		}
		if running, err = n.export(ctx, sh, shardDir); err != nil {
			keep = errors.Is(err, errExportUntracked)
			return BackupManifest{}, err
		}
		s, payload, err := readExport(shardDir)
		if err != nil {
			return BackupManifest{}, fmt.Errorf("runtime: backup of %s: %w", sh, err)
		}
		sum, size, err := fileSHA256(payload)
		if err != nil {
			return BackupManifest{}, fmt.Errorf("runtime: backup of %s: %w", sh, err)
		}
		exports = append(exports, filepath.Dir(payload))
		man.Shards = append(man.Shards, BackupShard{ShardID: uint64(i), Index: s.Index, Term: s.Term,
			File: backupShardDir(i) + "/" + filepath.Base(payload), Record: backupShardDir(i) + "/" + snapshotMetadataFile,
			Bytes: size, SHA256: sum})
	}
	endTurn()
	if logs, err := n.shards[0].sm.Lookup(logsQuery{}); err == nil {
		for r, l := range logs.(map[uint64]uint64) {
			man.Logs[fmt.Sprintf("%016x", r)] = fmt.Sprintf("%016x", l)
		}
	}
	return man, writeBackup(w, man, exports)
}

// awaitBackupTurn waits until no other backup of this member exports, or
// ctx ends, or the node closes.
func (n *Node) awaitBackupTurn(ctx context.Context) error {
	select {
	case n.backupTurn <- struct{}{}:
		return nil
	default:
	}
	n.backupsWaiting.Add(1)
	defer n.backupsWaiting.Add(-1)
	select {
	case n.backupTurn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("runtime: backup: waiting for another backup of this member to finish exporting: %w", ctx.Err())
	case <-n.closing:
		return ErrShuttingDown
	}
}

// backupDirPrefix starts the name of a backup's directory under the data
// directory (os.MkdirTemp adds digits).
const backupDirPrefix = "backup-"

// removeBackupLeftovers removes from the data directory dir what backups
// of a member that stopped mid-backup left (a crash, kill -9, or a close
// while Dragonboat still exported): the directories Backup makes, and
// only those, named backupDirPrefix and os.MkdirTemp's digits, holding
// nothing but shard directories (backupShardDir). It logs what it removed,
// at INFO, in one line, and what it could not, at WARN; neither stops a
// start. Start calls it once Dragonboat holds the directory's lock.
func removeBackupLeftovers(dir string, log *slog.Logger) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("could not look for what interrupted backups left", "dir", dir, "err", err)
		return
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !isBackupDirName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !holdsOnlyShardDirs(path) {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			log.Warn("could not remove what an interrupted backup left", "dir", path, "err", err)
			continue
		}
		removed = append(removed, e.Name())
	}
	if len(removed) > 0 {
		log.Info("removed what interrupted backups left in the data directory", "removed", strings.Join(removed, ","), "dir", dir)
	}
}

// isBackupDirName says whether name is one os.MkdirTemp(dir,
// backupDirPrefix) gives: the prefix, then digits.
func isBackupDirName(name string) bool {
	digits, ok := strings.CutPrefix(name, backupDirPrefix)
	return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
}

// holdsOnlyShardDirs says whether dir holds directories named as
// backupShardDir names them, and nothing else (an empty dir too).
func holdsOnlyShardDirs(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		i, ok := strings.CutPrefix(e.Name(), "shard-")
		if !ok || !e.IsDir() || i == "" || strings.Trim(i, "0123456789") != "" {
			return false
		}
	}
	return true
}

// backupShardDir is the directory of shard i's files in a backup, and
// where Backup and Restore unpack them.
func backupShardDir(i int) string { return fmt.Sprintf("shard-%d", i) }

// caughtUp returns once this member applied everything sh committed
// before the call (a ReadIndex), within the retry budget: a cluster
// without a quorum answers ErrUnavailable, naming the way out.
func (n *Node) caughtUp(ctx context.Context, sh *shard) error {
	rctx, cancel := context.WithTimeout(ctx, n.retryBudget)
	defer cancel()
	_, err := n.readIndex(rctx, sh, readQuery{fn: func(*core.Machine) error { return nil }})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, context.DeadlineExceeded):
		err = fmt.Errorf("%w: %s: no read index within %v", ErrUnavailable, sh, n.retryBudget)
	}
	return fmt.Errorf("%w (a member without a quorum can back up what it applied: --stale)", err)
}

// exportable refuses, before Dragonboat is asked, an export of sh that
// would hold nothing, or that Dragonboat cannot take. Dragonboat's export
// of a shard whose membership it has not applied yet (a member that has
// just started and is replaying its log, or a new member that has no
// leader yet to commit its first entries: one started alone of three)
// panics, "empty membership", in its snapshot worker: no recover reaches
// it, and it kills the process. The membership Dragonboat reports is set
// after the one its export reads, and is never emptied again, so a known
// one means the export finds one. A stale export of a member that applied
// none of Lockstep's entries would hold the empty state: nothing to back
// up. (A consistent one follows a ReadIndex: what it exports is what the
// cluster committed.)
func (n *Node) exportable(sh *shard, stale bool) error {
	members := 0
	if info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}); info != nil {
		for _, s := range info.ShardInfoList {
			if s.ShardID == sh.dbID && !s.Pending {
				members = len(s.Replicas)
			}
		}
	}
	if members == 0 || (stale && sh.sm.appliedIndex.Load() == 0) {
		return fmt.Errorf("%w: %s has applied nothing yet (no leader has been elected since this member started, or it is still "+
			"replaying its log): there is nothing to back up; start the other members, or wait for a leader", ErrUnavailable, sh)
	}
	return nil
}

// errExportUntracked: Dragonboat stopped tracking an export (it timed out,
// or the shard closed) that its snapshot worker may still be writing.
var errExportUntracked = errors.New("the export is no longer tracked by Dragonboat, and may still be under way")

// export asks Dragonboat for an exported snapshot of sh into dir, again
// while a snapshot of the shard is under way already (it takes one at a
// time and rejects the others). If ctx ends, or exportTimeout passes, or
// Close stops waiting for requests, while Dragonboat exports, the export
// runs on: export returns its
// request, whose result says when it ended, with the error, and dir must
// stay until then. An error wrapping errExportUntracked says the same of
// an export whose end nothing will tell.
func (n *Node) export(ctx context.Context, sh *shard, dir string) (*dragonboat.RequestState, error) {
	wait, cancel := context.WithTimeout(ctx, exportTimeout)
	defer cancel()
	var err error
	for range maxExportAttempts {
		var rs *dragonboat.RequestState
		rs, err = n.nh.RequestSnapshot(sh.dbID, dragonboat.SnapshotOption{Exported: true, ExportPath: dir}, exportTracked)
		if err == nil {
			select {
			case r := <-rs.ResultC():
				err = exportResult(r)
			case <-n.stopped: // Close waited its drain timeout
				return rs, ErrShuttingDown
			case <-wait.Done():
				if ctx.Err() != nil {
					return rs, ctx.Err()
				}
				return rs, fmt.Errorf("%w: exporting a snapshot of %s took over %v", ErrUnavailable, sh, exportTimeout)
			}
		}
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, dragonboat.ErrRejected) && !errors.Is(err, dragonboat.ErrSystemBusy) {
			break
		}
		// A rejected request leaves an empty export behind.
		if rerr := emptyDir(dir); rerr != nil {
			return nil, rerr
		}
		select {
		case <-wait.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: exporting a snapshot of %s: %v", ErrUnavailable, sh, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("runtime: exporting a snapshot of %s: %w", sh, err)
}

// exportResult is the error of an export's result: nil once it is
// written, ErrRejected or ErrAborted once Dragonboat let it go (its
// worker does not write it), errExportUntracked otherwise.
func exportResult(r dragonboat.RequestResult) error {
	switch {
	case r.Completed():
		return nil
	case r.Rejected():
		return dragonboat.ErrRejected
	case r.Aborted():
		return dragonboat.ErrAborted
	case r.Timeout():
		return fmt.Errorf("%w: not done within %v", errExportUntracked, exportTracked)
	}
	return fmt.Errorf("%w: the shard closed", errExportUntracked)
}

// finishAbandonedExport waits for the end of an export its backup left
// running, and removes the backup's directory then; or leaves it to the
// next start if Dragonboat loses track of it, or the node stops first.
func (n *Node) finishAbandonedExport(rs *dragonboat.RequestState, dir string) {
	select {
	case r := <-rs.ResultC():
		if errors.Is(exportResult(r), errExportUntracked) {
			n.log.Warn("leaving a backup's export directory: Dragonboat may still be writing it; the next start removes it", "dir", dir)
			return
		}
		os.RemoveAll(dir)
	case <-n.stop:
	}
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// readExport finds the snapshot Dragonboat exported under dir (in a
// directory of its own, named after the index) and reads its record.
func readExport(dir string) (raftpb.Snapshot, string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == snapshotMetadataFile {
			found = append(found, filepath.Dir(path))
		}
		return err
	})
	if err != nil {
		return raftpb.Snapshot{}, "", err
	}
	if len(found) != 1 {
		return raftpb.Snapshot{}, "", fmt.Errorf("the export holds %d snapshot records, want 1", len(found))
	}
	s, err := readSnapshotRecord(found[0])
	if err != nil {
		return raftpb.Snapshot{}, "", err
	}
	if len(s.Files) > 0 {
		return raftpb.Snapshot{}, "", fmt.Errorf("the snapshot has %d external files; Lockstep's state machine writes none", len(s.Files))
	}
	payload, err := snapshotPayload(found[0])
	return s, payload, err
}

// snapshotPayload is the one payload file in an exported snapshot's dir.
func snapshotPayload(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var payloads []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), snapshotFileSuffix) {
			payloads = append(payloads, filepath.Join(dir, e.Name()))
		}
	}
	if len(payloads) != 1 {
		return "", fmt.Errorf("%s holds %d snapshot payloads (*%s), want 1", dir, len(payloads), snapshotFileSuffix)
	}
	return payloads[0], nil
}

// readSnapshotRecord reads Dragonboat's snapshot record in dir: an 8-byte
// digest (the second half of the MD5 of the rest), then the record in
// protobuf. A damaged record is an error here, where Dragonboat's own
// reader panics.
func readSnapshotRecord(dir string) (raftpb.Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(dir, snapshotMetadataFile))
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	body, err := flagBody(b)
	switch {
	case errors.Is(err, errFlagShort):
		return raftpb.Snapshot{}, fmt.Errorf("%s is %d bytes: too short for a snapshot record", snapshotMetadataFile, len(b))
	case err != nil:
		return raftpb.Snapshot{}, fmt.Errorf("%s does not match its digest: the backup is damaged", snapshotMetadataFile)
	}
	var s raftpb.Snapshot
	if err := s.Unmarshal(body); err != nil {
		return raftpb.Snapshot{}, fmt.Errorf("%s: %w", snapshotMetadataFile, err)
	}
	return s, nil
}

// writeSnapshotRecord writes s as readSnapshotRecord reads it.
func writeSnapshotRecord(dir string, s raftpb.Snapshot) error {
	body, err := s.Marshal()
	if err != nil {
		return err
	}
	return writeDurably(dir, snapshotMetadataFile, string(flagFile(body)))
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

// writeBackup writes the archive: the manifest, then each shard's payload
// and record, from the directory Dragonboat exported them to (exports, by
// shard), under the names the manifest gives them.
func writeBackup(w io.Writer, man BackupManifest, exports []string) error {
	tw := tar.NewWriter(w)
	body, err := json.MarshalIndent(man, "", "  ")
	if err != nil {
		return err
	}
	body = append(body, '\n')
	mod := man.Taken
	if err := tw.WriteHeader(&tar.Header{Name: backupManifestFile, Mode: 0o600, Size: int64(len(body)), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	for i, s := range man.Shards {
		for _, name := range []string{s.File, s.Record} {
			if err := addFile(tw, name, filepath.Join(exports[i], path.Base(name)), mod); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

func addFile(tw *tar.Writer, name, path string, mod time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: st.Size(), ModTime: mod, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.CopyN(tw, f, st.Size())
	return err
}
