package runtime

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lni/dragonboat/v4/raftpb"
	"github.com/lni/dragonboat/v4/tools"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// Restore makes a member of a new cluster from a backup (Backup): run once
// per member, each with its own configuration and the same backup and
// cluster.peers, on an empty data directory, before the members start.
// The restored cluster holds the backup's state (sessions, holds, queues,
// and the fencing token each name reached) under a Raft deployment id of
// its own, so that a member of the old cluster, should one come back, is
// never heard by it.
//
// Every shard's log resumes BumpIndex entries past the backup's index.
// Fencing tokens grow with the log index (core.FencingToken), and the old
// cluster may have granted tokens past the backup before it was lost: a
// bump past all of them keeps every token the restored cluster grants
// above any the old one granted, so a resource that keeps the largest
// token it saw refuses the old holders (etcd's --bump-revision).
//
// The restored members close the backup's sessions through the log, and
// grant nothing until those sessions' leases have run out (HoldGrants),
// unless KeepSessions (restoredsessions.go says why).
type RestoreOptions struct {
	Config    config.Config
	BumpIndex uint64
	// KeepSessions keeps the backup's sessions live, with their holds and
	// waits, and holds back no grant: right only when the backup holds
	// everything the old cluster acknowledged (taken after it stopped
	// taking requests), since a client's knowledge newer than the backup
	// would otherwise meet the backup's older state (two holders of a
	// mutex, a token gone back).
	KeepSessions bool
	// HoldGrants is how long the restored members grant nothing once the
	// backup's sessions are closed (acquires and campaigns wait): nil
	// takes the longest lease among those sessions, or
	// locks.default_ttl_seconds if longer. A client of the old cluster
	// counts its own lease, renewed at the latest before its session was
	// closed, and stops by its end.
	HoldGrants *time.Duration
	// Logger receives Dragonboat's warnings and errors while the restore
	// runs it (its other lines are dropped, as a node's are); nil:
	// slog.Default().
	Logger *slog.Logger
}

// DefaultBumpIndex is the bump of Restore's log index unless told: two
// days of entries at 5,000 a second, and about a 16,000th of the index
// space a fencing token holds (maxIndexAfterRestore) a restore uses up.
const DefaultBumpIndex = 1_000_000_000

// maxIndexAfterRestore keeps a restored log far below the largest index a
// fencing token holds (core.Machine.Apply panics past it).
const maxIndexAfterRestore = 1<<(64-core.SlotBits) - 1<<40

// deploymentFile records a restored member's Raft deployment id (hex);
// members without one run under deploymentID.
const deploymentFile = "lockstep-deployment"

// Restored says what Restore made.
type Restored struct {
	Manifest   BackupManifest
	DataDir    string
	Deployment uint64
	// Incarnation is the cluster.incarnation the member starts with: its
	// node id's in the backed-up cluster (0 for a node id new to it).
	Incarnation int
	// Indexes are each shard's index in the restored log, by shard.
	Indexes []uint64
}

// restoringFile marks a data directory a restore is writing, from its
// first byte to its last record. A directory that holds it was left by a
// restore that was interrupted (killed, the machine lost): it holds part
// of a member, on which a start would run as a member with part of its
// records, and which the next restore must not take for another member's
// directory. Start, serve --check and Restore refuse it, saying so.
const restoringFile = "lockstep-restoring"

// unfinishedRestore is the refusal of a directory with restoringFile.
func unfinishedRestore(dir string) error {
	return fmt.Errorf("cluster.data_dir: a restore into %s did not finish (it holds %s): it is not a member's data directory; "+
		"empty it, remove the .lockstep-restore-* directories beside it (the interrupted restore's unpacked backup), "+
		"and run lockstep snapshot restore again", dir, restoringFile)
}

// checkRestoreFinished refuses a directory an unfinished restore left.
func checkRestoreFinished(dir string) error {
	for _, f := range []string{restoringFile, restoringFile + ".tmp"} { // killed before the mark's rename, too
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return unfinishedRestore(dir)
		}
	}
	return nil
}

// Restore reads the backup from r and writes the member's data directory
// (RestoreOptions). A restore that fails removes what it wrote there.
func Restore(r io.Reader, o RestoreOptions) (out Restored, err error) {
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return Restored{}, err
	}
	c := cfg.Cluster
	if c.Join {
		return Restored{}, errors.New("cluster.join: a restored member is one of the new cluster's first members: list them all in cluster.peers, without --join")
	}
	if len(c.Peers) == 0 {
		return Restored{}, fmt.Errorf("cluster.peers: list every member of the restored cluster (%s: %s included); "+
			"restore each of them from the same backup with the same peers", c.NodeID, c.RaftAddress)
	}
	dir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
	}
	entries, err := os.ReadDir(dir)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
	case slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return e.Name() == restoringFile || e.Name() == restoringFile+".tmp" }):
		return Restored{}, unfinishedRestore(dir)
	case len(entries) > 0:
		return Restored{}, fmt.Errorf("cluster.data_dir: %s is not empty: a restore writes a new member; give it an empty or new directory "+
			"(move this one aside: it may be what is left of the old cluster)", dir)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
		return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".lockstep-restore-")
	if err != nil {
		return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	man, err := readBackup(r, tmp)
	if err != nil {
		return Restored{}, fmt.Errorf("the backup: %w", err)
	}
	if len(man.Shards) != cfg.Consensus.Shards {
		return Restored{}, fmt.Errorf("consensus.shards: the backup holds %s and this member runs %d: a cluster's shard count "+
			"cannot change; restore and start every member with consensus.shards: %d (--shards %d)",
			countOf(len(man.Shards), "shard"), cfg.Consensus.Shards, len(man.Shards), len(man.Shards))
	}
	members, incarnations, err := restoredMembers(man, c.Peers)
	if err != nil {
		return Restored{}, err
	}
	// The incarnation is the backup's to say, as a data directory's record
	// is at a start (WithRecordedIncarnation): none given (0) takes it,
	// one given that differs is refused, saying why.
	if inc := incarnations[c.NodeID]; c.Incarnation == 0 {
		c.Incarnation, cfg.Cluster.Incarnation = inc, inc
	} else if c.Incarnation != inc {
		return Restored{}, fmt.Errorf("cluster.incarnation: %s; restore it with --incarnation %d (cluster.incarnation: %d), or with none, "+
			"which takes it", whyIncarnation(man, c.NodeID, inc), inc, inc)
	}
	self := config.ReplicaID(c.NodeID, c.Incarnation)
	bump := o.BumpIndex
	deployment := restoredDeployment(man, members, bump, o.KeepSessions)
	out = Restored{Manifest: man, DataDir: dir, Deployment: deployment, Incarnation: c.Incarnation}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, undoRestore(dir, existed))
		}
	}()
	if err := writeDurably(dir, restoringFile, "a restore into this directory began and has not finished\n"); err != nil {
		return Restored{}, err
	}
	nhc := nodeHostConfig(cfg, dir, deployment)
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	defer lendDragonboatLogs(newLogTarget(log.With("node", c.NodeID), memberNames(incarnations), nil))()
	for i, s := range man.Shards {
		shardDir := filepath.Join(tmp, backupShardDir(i))
		rec, err := readSnapshotRecord(shardDir)
		if err != nil {
			return Restored{}, fmt.Errorf("the backup's shard %d: %w", i, err)
		}
		if rec.ShardID != uint64(i)+1 || rec.Index != s.Index || rec.Term != s.Term {
			return Restored{}, fmt.Errorf("the backup's shard %d: its record (shard %d, index %d, term %d) differs from the manifest's "+
				"(index %d, term %d): the backup is damaged", i, rec.ShardID, rec.Index, rec.Term, s.Index, s.Term)
		}
		if rec.Index > maxIndexAfterRestore || bump > maxIndexAfterRestore-rec.Index {
			return Restored{}, fmt.Errorf("--bump-index %d: shard %d's log would resume at an index past %d, where fencing tokens end; "+
				"give a smaller bump", bump, i, uint64(maxIndexAfterRestore))
		}
		// The new index, and no membership: Dragonboat's import writes the
		// new members, and refuses the old ones' replica ids at other
		// addresses, which a restore onto new hosts has.
		rec.Index += bump
		rec.Membership = raftpb.Membership{}
		// Dragonboat finds a snapshot's payload by its index's name.
		payload := fmt.Sprintf("snapshot-%016X%s", rec.Index, snapshotFileSuffix)
		if err := os.Rename(filepath.Join(tmp, filepath.FromSlash(s.File)), filepath.Join(shardDir, payload)); err != nil {
			return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
		}
		rec.Filepath = filepath.Join(filepath.Dir(rec.Filepath), payload)
		if err := writeSnapshotRecord(shardDir, rec); err != nil {
			return Restored{}, fmt.Errorf("cluster.data_dir: %w", err)
		}
		if err := tools.ImportSnapshot(nhc, shardDir, members, self); err != nil {
			return Restored{}, fmt.Errorf("runtime: importing shard %d into %s: %w", i, dir, err)
		}
		out.Indexes = append(out.Indexes, rec.Index)
	}
	if err := writeRecord(dir, incarnationFile, c.Incarnation); err != nil {
		return Restored{}, err
	}
	if err := writeRecord(dir, shardCountFile, len(man.Shards)); err != nil {
		return Restored{}, err
	}
	if err := writeDurably(dir, nodeIDFile, c.NodeID+"\n"); err != nil {
		return Restored{}, err
	}
	// The restored state names the log each replica took part under: the
	// member keeps its replica's, or its peers would refuse it as one
	// that lost its log. A replica the old cluster never had draws one.
	if l, ok := man.Logs[fmt.Sprintf("%016x", self)]; ok {
		if err := writeDurably(dir, logIDFile, l+"\n"); err != nil {
			return Restored{}, err
		}
	}
	if err := writeHexRecord(dir, deploymentFile, deployment); err != nil {
		return Restored{}, err
	}
	if !o.KeepSessions {
		r := restoreRecord{below: out.Indexes[0] + 1, hold: -1}
		// below: the first index the restored log can give an id
		if o.HoldGrants != nil {
			r.hold = *o.HoldGrants
		}
		if err := writeDurably(dir, restoreRecordFile, r.String()); err != nil {
			return Restored{}, err
		}
	}
	if err := removeDurably(dir, restoringFile); err != nil {
		return Restored{}, err
	}
	return out, nil
}

// undoRestore removes what a failed restore wrote into dir, which was
// empty (existed) or not there before it.
func undoRestore(dir string, existed bool) error {
	var err error
	if existed {
		var entries []os.DirEntry
		entries, err = os.ReadDir(dir)
		for _, e := range entries {
			if err == nil {
				err = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	} else {
		err = os.RemoveAll(dir)
	}
	if err != nil {
		return fmt.Errorf("cluster.data_dir: removing what the restore wrote: %w; empty %s before a restore into it", err, dir)
	}
	return nil
}

// removeDurably removes dir's file, and syncs dir so that the removal
// survives a crash.
func removeDurably(dir, file string) error {
	err := os.Remove(filepath.Join(dir, file))
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	return nil
}

// retakeBackup is what to do about an archive that is cut short or
// damaged.
const retakeBackup = "take the backup again (lockstep snapshot save), or copy it again whole (its size must be the original's)"

// cutShort says an archive ends early (a save or a copy that did not
// finish), where, and what to do.
func cutShort(where string) error {
	return fmt.Errorf("the archive is cut short %s: %s", where, retakeBackup)
}

// ReadBackupManifest reads a backup's manifest, the archive's first entry
// (what `tar -xOf FILE lockstep-backup.json` shows), without checking the
// rest.
func ReadBackupManifest(r io.Reader) (BackupManifest, error) {
	_, man, err := readManifest(r)
	return man, err
}

// readManifest reads the archive's first entry, the manifest, and returns
// the reader of the entries after it. An archive that ends inside the
// first header is told from a file that is no backup by what there is of
// the header: a tar header starts with the entry's name.
func readManifest(r io.Reader) (*tar.Reader, BackupManifest, error) {
	const block = 512 // a tar header
	br := bufio.NewReaderSize(r, block)
	if head, err := br.Peek(block); err != nil {
		name := []byte(backupManifestFile)
		switch {
		case len(head) == 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
			return nil, BackupManifest{}, cutShort("before its first entry: the file is empty")
		case (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && (bytes.HasPrefix(head, name) || bytes.HasPrefix(name, head)):
			return nil, BackupManifest{}, cutShort("inside the header of " + backupManifestFile + ", its first entry")
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil, BackupManifest{}, errors.New("not a Lockstep backup (lockstep snapshot save writes one): it is shorter than a tar header")
		default:
			return nil, BackupManifest{}, err
		}
	}
	tr := tar.NewReader(br)
	h, err := tr.Next()
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, BackupManifest{}, cutShort("inside the header of its first entry")
	case err != nil:
		return nil, BackupManifest{}, fmt.Errorf("not a Lockstep backup (lockstep snapshot save writes one): %w", err)
	}
	if h.Name != backupManifestFile || h.Size > maxBackupManifestBytes {
		return nil, BackupManifest{}, fmt.Errorf("not a Lockstep backup: its first entry is %q, not %s (lockstep snapshot save writes one)",
			h.Name, backupManifestFile)
	}
	var man BackupManifest
	if err := json.NewDecoder(io.LimitReader(tr, maxBackupManifestBytes)).Decode(&man); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, BackupManifest{}, cutShort("inside " + backupManifestFile + ", its manifest")
		}
		return nil, BackupManifest{}, fmt.Errorf("%s: %w", backupManifestFile, err)
	}
	return tr, man, nil
}

// readBackup checks and unpacks the archive into dir: the manifest first,
// then exactly the files it names, each of the size and (payloads) the
// digest it gives.
func readBackup(r io.Reader, dir string) (BackupManifest, error) {
	tr, man, err := readManifest(r)
	if err != nil {
		return BackupManifest{}, err
	}
	if man.Format != backupFormat {
		return BackupManifest{}, fmt.Errorf("%s: format %d; this build reads format %d: restore with the build that wrote it, or a later one",
			backupManifestFile, man.Format, backupFormat)
	}
	if len(man.Shards) < 1 || len(man.Shards) > config.MaxShards {
		return BackupManifest{}, fmt.Errorf("%s: lists %d shards; a cluster has 1..%d", backupManifestFile, len(man.Shards), config.MaxShards)
	}
	want := map[string]int64{} // name → size, -1: any size up to maxBackupManifestBytes
	for i, s := range man.Shards {
		prefix := backupShardDir(i) + "/"
		if s.ShardID != uint64(i) || !strings.HasPrefix(s.File, prefix) || s.Record != prefix+snapshotMetadataFile ||
			strings.ContainsAny(s.File[len(prefix):], `/\`) || !strings.HasSuffix(s.File, snapshotFileSuffix) || s.Bytes < 0 {
			return BackupManifest{}, fmt.Errorf("%s: shard %d is not described as Lockstep writes it (%+v)", backupManifestFile, i, s)
		}
		want[s.File], want[s.Record] = s.Bytes, -1
		if err := os.Mkdir(filepath.Join(dir, backupShardDir(i)), 0o700); err != nil {
			return BackupManifest{}, err
		}
	}
	for last := backupManifestFile; ; {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return BackupManifest{}, cutShort("inside the header after " + last)
		}
		if err != nil {
			return BackupManifest{}, fmt.Errorf("reading the archive after %s: %w: the backup is damaged; %s", last, err, retakeBackup)
		}
		last = h.Name
		size, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg {
			return BackupManifest{}, fmt.Errorf("the archive holds %q, which its manifest does not name", h.Name)
		}
		if (size >= 0 && h.Size != size) || (size < 0 && h.Size > maxBackupManifestBytes) {
			return BackupManifest{}, fmt.Errorf("%s is %d bytes; the manifest says %d", h.Name, h.Size, size)
		}
		delete(want, h.Name)
		if err := unpack(tr, filepath.Join(dir, filepath.FromSlash(h.Name)), h.Size); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return BackupManifest{}, cutShort("inside " + h.Name)
			}
			return BackupManifest{}, fmt.Errorf("%s: %w", h.Name, err)
		}
	}
	if len(want) > 0 {
		missing := slices.Sorted(maps.Keys(want))
		return BackupManifest{}, fmt.Errorf("the archive lacks %s: it is cut short, or not as lockstep snapshot save wrote it: %s",
			strings.Join(missing, ", "), retakeBackup)
	}
	for i, s := range man.Shards {
		sum, _, err := fileSHA256(filepath.Join(dir, filepath.FromSlash(s.File)))
		if err != nil {
			return BackupManifest{}, err
		}
		if sum != s.SHA256 {
			return BackupManifest{}, fmt.Errorf("shard %d's snapshot does not match its SHA-256 in the manifest: the backup is damaged", i)
		}
	}
	return man, nil
}

func unpack(r io.Reader, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.CopyN(f, r, size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// restoredMembers is the restored shards' membership (replica id → Raft
// address) and each member's incarnation: the one its node id ran as in
// the backed-up cluster (the replica the state names with a log), or, for
// a node id whose replicas were all removed, the next; 0 for a node id new
// to it. Every member computes the same from the same backup and peers.
func restoredMembers(man BackupManifest, peers map[string]string) (map[uint64]string, map[string]int, error) {
	logs := map[uint64]uint64{}
	for r, l := range man.Logs {
		rv, err1 := strconv.ParseUint(r, 16, 64)
		lv, err2 := strconv.ParseUint(l, 16, 64)
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("the backup's %s: logs holds %q: %q, not hex", backupManifestFile, r, l)
		}
		logs[rv] = lv
	}
	members := map[uint64]string{}
	incarnations := map[string]int{}
	for id, addr := range peers {
		inc := 0
		for k := range config.MaxIncarnation + 1 {
			l, ok := logs[config.ReplicaID(id, k)]
			if !ok {
				continue
			}
			if l != 0 {
				inc = k
				break
			}
			inc = k + 1
		}
		if inc > config.MaxIncarnation {
			return nil, nil, fmt.Errorf("cluster.peers.%s: every incarnation of this node id was removed from the backed-up cluster: give the member another node id", id)
		}
		incarnations[id] = inc
		members[config.ReplicaID(id, inc)] = addr
	}
	return members, incarnations, nil
}

// whyIncarnation says why nodeID is restored as incarnation inc
// (restoredMembers): the one it ran as in the backed-up cluster, the one
// after those the backed-up cluster removed, or 0 for a node id new to it.
func whyIncarnation(man BackupManifest, nodeID string, inc int) string {
	logOf := func(k int) (string, bool) {
		l, ok := man.Logs[fmt.Sprintf("%016x", config.ReplicaID(nodeID, k))]
		return l, ok
	}
	if l, ok := logOf(inc); ok && strings.Trim(l, "0") != "" {
		return fmt.Sprintf("%s ran as incarnation %d in the backed-up cluster, and its restored state knows it so", nodeID, inc)
	}
	var removed []string
	for k := range inc {
		if l, ok := logOf(k); ok && strings.Trim(l, "0") == "" {
			removed = append(removed, strconv.Itoa(k))
		}
	}
	if len(removed) == 0 {
		return fmt.Sprintf("%s is new to the backed-up cluster: it starts as incarnation %d", nodeID, inc)
	}
	was := "incarnation " + strings.Join(removed, ", ") + " was"
	if len(removed) > 1 {
		was = "incarnations " + strings.Join(removed, ", ") + " were"
	}
	return fmt.Sprintf("%s's %s removed from the backed-up cluster, and a removed replica never takes part again: "+
		"the restored cluster runs it as incarnation %d", nodeID, was, inc)
}

// memberNames names Dragonboat's five digits of the restored members'
// replica ids (logger.go's replicaName) by node id.
func memberNames(incarnations map[string]int) func(short uint64) (string, bool) {
	return func(short uint64) (string, bool) {
		found, name := 0, ""
		for id, inc := range incarnations {
			if config.ReplicaID(id, inc)%100000 == short {
				found, name = found+1, id
			}
		}
		return name, found == 1
	}
}

// restoredDeployment draws the restored cluster's Raft deployment id from
// the backup, the members and the bump, so that every member's restore
// draws the same, and a member of the old cluster (deploymentID) or of a
// cluster restored otherwise is not heard.
func restoredDeployment(man BackupManifest, members map[uint64]string, bump uint64, keepSessions bool) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "lockstep restore %s %d", man.ID, bump)
	if keepSessions {
		// Another state than a restore that closes the sessions: members
		// restored both ways must not share a log.
		fmt.Fprint(h, " keep-sessions")
	}
	for _, r := range slices.Sorted(maps.Keys(members)) {
		fmt.Fprintf(h, " %x=%s", r, members[r])
	}
	d := h.Sum64()
	if d == 0 || d == deploymentID {
		d ^= 1 << 62
	}
	return d
}

// adoptDeployment records, in the empty data directory of a node that
// joins a restored cluster, the deployment it was given
// (cluster.deployment: what AddNode answered), so that it runs under it;
// the restored members refuse any other at the Raft hello, and only their
// own directories recorded it (it was copied by hand). A deployment given
// to a directory that records another, or holds a member already under
// Lockstep's own, or to a first start that does not join, is refused.
func adoptDeployment(dir string, fresh bool, c config.Cluster) error {
	want, err := config.ParseDeployment(c.Deployment)
	if err != nil || want == 0 {
		return err
	}
	have, found, err := readDeploymentRecord(dir)
	switch {
	case err != nil:
		return err
	case found && have == want:
		return nil
	case found:
		return fmt.Errorf("cluster.deployment %016x: the data directory %s records the deployment %016x, which its member runs under: "+
			"drop --deployment (it is read at a joining node's first start only)", want, dir, have)
	case !fresh:
		return fmt.Errorf("cluster.deployment %016x: the data directory %s holds a member of Lockstep's own deployment: "+
			"drop --deployment, or start the joining node on an empty data directory", want, dir)
	case !c.Join:
		return fmt.Errorf("cluster.deployment %016x: give it only with --join, to a node 'lockstep cluster add' added to a restored cluster", want)
	}
	return writeHexRecord(dir, deploymentFile, want)
}

// readDeploymentRecord reads dir's record of its deployment, found false
// when it has none.
func readDeploymentRecord(dir string) (uint64, bool, error) {
	return readHexRecord(dir, deploymentFile, "a deployment id", "the data directory was damaged; restore the member again")
}

// readDeployment is the Raft deployment id dir's member runs under: a
// restored member's record, or deploymentID.
func readDeployment(dir string) (uint64, error) {
	d, found, err := readDeploymentRecord(dir)
	switch {
	case err != nil:
		return 0, err
	case !found:
		return deploymentID, nil
	}
	return d, nil
}
