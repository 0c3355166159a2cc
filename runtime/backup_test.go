package runtime

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
)

// TestBackupRestoresANewCluster: a backup taken online from a follower of
// a cluster of two shards, restored onto three empty directories at other
// Raft addresses (new hosts), starts a cluster that holds the backed-up
// holds under their tokens and sessions, keeps those sessions alive,
// grants tokens above every token of the old log (the bump), and runs
// under a deployment id of its own.
// TestBackupRestoresANewCluster: a backup of a cluster of two shards,
// restored onto new members, serves the backup's state, under a
// deployment of its own, with tokens past the bump. By default the
// restore closes the backup's sessions and the members grant nothing for
// the hold (the old cluster's clients know of grants after the backup: a
// user's trial had two holders of one mutex when the sessions lived on);
// with KeepSessions they live on, holding what they held.
func TestBackupRestoresANewCluster(t *testing.T) {
	t.Run("keep-sessions", func(t *testing.T) { testBackupRestoresANewCluster(t, true) })
	t.Run("closing the sessions", func(t *testing.T) { testBackupRestoresANewCluster(t, false) })
}

func testBackupRestoresANewCluster(t *testing.T, keep bool) {
	c := newTestCluster(t, clusterOpts{size: 3, shards: 2})
	lead := c.waitLeader(0)
	n := c.nodes[lead]
	s := session(t, n, time.Minute)
	var names []string
	for i := 0; len(names) < 2; i++ { // one name in each shard
		name := fmt.Sprintf("job-%d", i)
		if int(n.ShardOf(name)) == len(names) {
			names = append(names, name)
		}
	}
	held := map[string]core.FencingToken{}
	for _, name := range names {
		held[name] = do(t, n, mutex(name, s, 0)).Token
	}
	other := session(t, n, time.Minute)
	do(t, n, core.Command{Op: core.OpAcquire, Kind: core.KindSemaphore, Name: "pool", Session: other, Permits: 1, Limit: 2})

	var backup bytes.Buffer
	f := (lead + 1) % 3
	man, err := c.nodes[f].Backup(tctx(t), &backup, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(man.Shards) != 2 || man.NodeID != c.cfgs[f].Cluster.NodeID || man.Stale || len(man.Logs) != 3 {
		t.Fatalf("manifest %+v", man)
	}
	top := man.Shards[n.ShardOf(names[0])].Index // names[0]'s shard's index in the backup
	c.closeAll()

	ports := freePorts(t, 6)
	dir := t.TempDir()
	peers := map[string]string{}
	for i := range 3 {
		peers[fmt.Sprintf("node-%d", i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	const bump = 5000
	hold := 3 * time.Second
	var deployment uint64
	for i := range 3 {
		cfg := c.cfgs[i]
		cfg.Cluster.RaftAddress = peers[cfg.Cluster.NodeID]
		cfg.Cluster.APIAddress = fmt.Sprintf("127.0.0.1:%d", ports[3+i])
		cfg.Cluster.DataDir = filepath.Join(dir, cfg.Cluster.NodeID)
		cfg.Cluster.Peers = peers
		c.cfgs[i] = cfg
		o := RestoreOptions{Config: cfg, BumpIndex: bump, KeepSessions: keep}
		if !keep {
			o.HoldGrants = &hold
		}
		r, err := Restore(bytes.NewReader(backup.Bytes()), o)
		if err != nil {
			t.Fatalf("restore %s: %v", cfg.Cluster.NodeID, err)
		}
		if _, found, err := readRestoreRecord(cfg.Cluster.DataDir); err != nil || found == keep {
			t.Fatalf("restore %s (keep sessions %v): a record of the sessions to close: %v, %v", cfg.Cluster.NodeID, keep, found, err)
		}
		if r.Deployment == deploymentID || (deployment != 0 && r.Deployment != deployment) {
			t.Fatalf("restore %s: deployment %x (the others' %x, a new cluster's %x)", cfg.Cluster.NodeID, r.Deployment, deployment, uint64(deploymentID))
		}
		deployment = r.Deployment
		if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: cfg, BumpIndex: bump}); err == nil ||
			!strings.Contains(err.Error(), "not empty") {
			t.Fatalf("a second restore into the same directory: %v", err)
		}
	}
	for i := range 3 {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	c.waitLeader(0)
	c.waitLeader(1)
	n = c.nodes[c.waitLeader(0)]
	if !keep {
		testRestoreClosedTheSessions(t, c, names, s, hold, top+bump)
		return
	}
	for _, name := range names {
		st := status(t, n, core.KindMutex, name, false)
		if len(st.Holders) != 1 || st.Holders[0].Token != held[name] || st.Holders[0].Session != s {
			t.Errorf("%s after the restore: %+v, want held by session %d under token %d", name, st, s, held[name])
		}
	}
	if st := status(t, n, core.KindSemaphore, "pool", false); len(st.Holders) != 1 || st.Holders[0].Session != other {
		t.Errorf("pool after the restore: %+v", st)
	}
	do(t, n, core.Command{Op: core.OpSessionKeepAlive, Session: s})
	do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: names[0], Session: s, Token: held[names[0]]})
	fresh := session(t, n, time.Minute)
	got := do(t, n, mutex(names[0], fresh, 0)).Token
	if got.LogIndex() <= top+bump {
		t.Errorf("a grant after the restore has token %d (index %d); want an index past the backup's %d plus the bump %d",
			got, got.LogIndex(), top, bump)
	}
}

// testRestoreClosedTheSessions checks a restored cluster that closes the
// backup's sessions: they end in every shard, with their holds (the
// backup's session s is gone: its client learns so at its next
// keepalive), and no request is granted before hold has passed since
// then: one that cannot wait that long is refused as unavailable, saying
// why; one that can is granted once it passes, past the bumped index.
// The member then records when grants resumed, which a restart reads
// instead of holding them again.
func testRestoreClosedTheSessions(t *testing.T, c *testCluster, names []string, s core.SessionID, hold time.Duration, floor uint64) {
	t.Helper()
	n := c.nodes[c.waitLeader(0)]
	fresh := session(t, n, time.Minute) // a session of the restored cluster's own: not closed
	eventually(t, "the backup's sessions are closed", func() bool {
		r, err := n.Do(tctx(t), core.Command{Op: core.OpSessionKeepAlive, Session: s})
		return err == nil && r.Err != nil && r.Err.Code == core.CodeNotFound
	})
	closedAt := time.Now()
	if err := n.Degraded(); err == nil || !strings.Contains(err.Error(), "restored from a backup") {
		t.Errorf("Degraded while the restore holds grants: %v, want it said", err)
	}
	for _, name := range names {
		if st := status(t, n, core.KindMutex, name, false); len(st.Holders) != 0 {
			t.Errorf("%s once the backup's sessions are closed: %+v, want free", name, st)
		}
	}
	_, err := n.DoBy(tctx(t), mutex(names[1], fresh, 0), time.Now().Add(100*time.Millisecond))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "restored from a backup") {
		t.Errorf("an acquire that cannot wait out the restore's hold: %v, want ErrUnavailable saying why", err)
	}
	got := do(t, n, mutex(names[0], fresh, 0))
	if waited := time.Since(closedAt); waited < hold-time.Second { // each member counts from when it saw them closed
		t.Errorf("granted %v after the backup's sessions were closed, before the restore's hold of %v ended", waited, hold)
	}
	if got.Token.LogIndex() <= floor {
		t.Errorf("a grant after the restore has token %d (index %d); want an index past %d", got.Token, got.Token.LogIndex(), floor)
	}
	do(t, n, core.Command{Op: core.OpSessionKeepAlive, Session: fresh})
	if err := n.Degraded(); err != nil {
		t.Errorf("Degraded once the restore's hold ended: %v", err)
	}
	rec, found, err := readRestoreRecord(c.cfgs[0].Cluster.DataDir)
	if err != nil || !found || rec.grantsFrom.IsZero() {
		t.Fatalf("the restore's record once the sessions are closed: %+v, %v, %v; want when grants resume", rec, found, err)
	}
}

// TestRestoreOfANodeIDTheBackedUpClusterRemoved: node-3 was removed from
// the backed-up cluster (node-4 replaced it) and a new cluster node-1,
// node-2, node-3 is restored from the backup, each with its own
// configuration as docs/operations.md says (no --incarnation). node-3's
// replica id of incarnation 0 is recorded removed in the restored state,
// so it is restored as incarnation 1, and every member knows it as
// node-3: in status, in a transfer, in an add at its address, after a
// restart. The restore refused it, saying it "ran as incarnation 1" (it
// never did), and once started with that incarnation the others showed
// it as replica-..., refused to transfer to node-3 and to add node-3 at
// its own address.
func TestRestoreOfANodeIDTheBackedUpClusterRemoved(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 4})
	c.stop(2)
	n := c.nodes[c.waitLeaderBesides(0, 2)]
	if removed, err := n.RemoveMember(tctx(t), "node-3"); err != nil || removed.NotAMember {
		t.Fatalf("removing node-3: %+v, %v", removed, err)
	}
	s := session(t, n, time.Minute)
	held := do(t, n, mutex("a", s, 0)).Token
	var backup bytes.Buffer
	man, err := n.Backup(tctx(t), &backup, false)
	if err != nil {
		t.Fatal(err)
	}
	if l := man.Logs[fmt.Sprintf("%016x", config.ReplicaID("node-3", 0))]; l != fmt.Sprintf("%016x", 0) {
		t.Fatalf("the backup's logs %v do not record node-3's removal", man.Logs)
	}
	c.closeAll()

	ports := freePorts(t, 6)
	dir := t.TempDir()
	peers := map[string]string{}
	for i := range 3 {
		peers[fmt.Sprintf("node-%d", i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	for i := range 3 {
		cfg := c.cfgs[i]
		cfg.Cluster.RaftAddress = peers[cfg.Cluster.NodeID]
		cfg.Cluster.APIAddress = fmt.Sprintf("127.0.0.1:%d", ports[3+i])
		cfg.Cluster.DataDir = filepath.Join(dir, cfg.Cluster.NodeID)
		cfg.Cluster.Peers = peers
		if i == 2 {
			// An incarnation given that is not the one it must have is
			// refused, saying why truly.
			wrong := cfg
			wrong.Cluster.Incarnation = 2
			_, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: wrong, BumpIndex: 10})
			if err == nil || strings.Contains(err.Error(), "ran as incarnation 1") ||
				!strings.Contains(err.Error(), "node-3's incarnation 0 was removed from the backed-up cluster") ||
				!strings.Contains(err.Error(), "--incarnation 1") {
				t.Fatalf("restoring node-3 with --incarnation 2: %v, want it refused, saying incarnation 0 was removed and to give 1", err)
			}
		}
		r, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: cfg, BumpIndex: 10, KeepSessions: true})
		if err != nil {
			t.Fatalf("restoring %s as the docs say: %v", cfg.Cluster.NodeID, err)
		}
		if want := map[int]int{2: 1}[i]; r.Incarnation != want {
			t.Fatalf("%s restored as incarnation %d, want %d", cfg.Cluster.NodeID, r.Incarnation, want)
		}
		c.cfgs[i] = cfg // as the operator's file: no incarnation
	}
	c.nodes, c.regs = c.nodes[:3], c.regs[:3]
	for i := range 3 {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	named := func(what string) {
		t.Helper()
		for i := range 3 {
			var st ClusterStatus
			eventually(t, what+": node-"+fmt.Sprint(i+1)+" sees three members", func() bool {
				st, err = c.nodes[i].Status(tctx(t))
				return err == nil && len(st.Members) == 3
			})
			for k, m := range st.Members {
				if want := fmt.Sprintf("node-%d", k+1); m.NodeID != want || m.RaftAddress != peers[want] {
					t.Fatalf("%s: node-%d sees members %+v, want node-1, node-2, node-3 at %v", what, i+1, st.Members, peers)
				}
			}
		}
	}
	c.waitLeader(0)
	named("after the restore")
	lead := c.waitLeader(0)
	if st := status(t, c.nodes[lead], core.KindMutex, "a", false); len(st.Holders) != 1 || st.Holders[0].Token != held {
		t.Fatalf("the restored cluster holds %+v, want a held under %d", st, held)
	}
	other := (lead + 1) % 3
	if other == 2 {
		other = (lead + 2) % 3
	}
	if err := c.nodes[other].TransferLeadership(tctx(t), 0, "node-3"); err != nil {
		t.Fatalf("transferring to node-3 through node-%d: %v", other+1, err)
	}
	if added, err := c.nodes[other].AddMember(tctx(t), "node-3", peers["node-3"]); err != nil || added.Incarnation != 1 || !added.AlreadyMember {
		t.Fatalf("adding node-3 at its own address: %+v, %v; want it a member already, as incarnation 1", added, err)
	}
	// Restarted as the operator's files say, each in turn, node-3 last
	// (the leader): the names stay.
	for _, i := range []int{0, 1, 2} {
		c.stop(i)
		c.restart(i)
		c.waitLeader(0)
	}
	named("after restarts")
	if err := c.nodes[0].TransferLeadership(tctx(t), 0, "node-3"); err != nil {
		t.Fatalf("transferring to node-3 after restarts: %v", err)
	}
	// Replaced as any member is: removed, then added back under the
	// next incarnation that neither the restored cluster nor the
	// backed-up one removed (2: the restored state remembers 0's removal,
	// which Raft's membership does not), and started empty with it.
	c.stop(2)
	n = c.nodes[c.waitLeaderBesides(0, 2)]
	if removed, err := n.RemoveMember(tctx(t), "node-3"); err != nil || removed.NotAMember {
		t.Fatalf("removing node-3: %+v, %v", removed, err)
	}
	added, err := n.AddMember(tctx(t), "node-3", peers["node-3"])
	// A member that joins a restored cluster runs under its deployment,
	// which only the restored members' directories record: the add
	// answers it (it was copied in by hand).
	restored, _ := readDeployment(c.cfgs[0].Cluster.DataDir)
	if err != nil || added != (AddedMember{Incarnation: 2, Deployment: fmt.Sprintf("%016x", restored)}) || restored == deploymentID {
		t.Fatalf("adding node-3 back: %+v, %v; want incarnation 2 and the restored deployment %016x", added, err, restored)
	}
	if err := os.RemoveAll(c.cfgs[2].Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	c.cfgs[2].Cluster.Join, c.cfgs[2].Cluster.Incarnation, c.cfgs[2].Cluster.Deployment = true, 2, added.Deployment
	c.restart(2)
	eventually(t, "node-3, added back, holds what the others hold", func() bool {
		st := status(t, c.nodes[2], core.KindMutex, "a", true)
		return len(st.Holders) == 1 && st.Holders[0].Token == held
	})
	named("after node-3 was replaced")
}

// TestRestoreRefusesWhatItCannotUse: a damaged or foreign archive, another
// shard count, a directory that holds something: each refused with what
// to do, and nothing written.
func TestRestoreRefusesWhatItCannotUse(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1})
	n := c.nodes[0]
	s := session(t, n, time.Minute)
	do(t, n, mutex("a", s, 0))
	var backup bytes.Buffer
	if _, err := n.Backup(tctx(t), &backup, true); err != nil {
		t.Fatal(err)
	}
	c.closeAll()
	cfg := c.cfgs[0]
	cfg.Cluster.DataDir = filepath.Join(t.TempDir(), "new")

	// rewrite copies the archive, passing each entry through fn.
	rewrite := func(fn func(h *tar.Header, body []byte) []byte) []byte {
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		tr := tar.NewReader(bytes.NewReader(backup.Bytes()))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			body, _ := io.ReadAll(tr)
			if body = fn(h, body); body == nil {
				continue
			}
			h.Size = int64(len(body))
			tw.WriteHeader(h)
			tw.Write(body)
		}
		tw.WriteHeader(&tar.Header{Name: "../escape", Size: 1, Mode: 0o600, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		return out.Bytes()
	}
	extra := rewrite(func(_ *tar.Header, body []byte) []byte { return body })
	damaged := rewrite(func(h *tar.Header, body []byte) []byte {
		if strings.HasSuffix(h.Name, ".gbsnap") {
			body[len(body)/2] ^= 0xff
		}
		return body
	})
	damaged = damaged[:len(damaged)-2048] // without the extra entry, which is refused first
	lacking := rewrite(func(h *tar.Header, body []byte) []byte {
		if strings.HasSuffix(h.Name, ".metadata") {
			return nil
		}
		return body
	})
	lacking = lacking[:len(lacking)-2048]

	twoShards := cfg
	twoShards.Consensus.Shards = 2
	for _, tc := range []struct {
		what    string
		archive []byte
		want    string
	}{
		{"not a tar", []byte("hello"), "not a Lockstep backup"},
		{"cut short", backup.Bytes()[:backup.Len()/2], "cut short"},
		{"damaged payload", damaged, "damaged"},
		{"an entry the manifest does not name", extra, "does not name"},
		{"a record missing", lacking, "lacks shard-0/snapshot.metadata"},
	} {
		_, err := Restore(bytes.NewReader(tc.archive), RestoreOptions{Config: cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.what, err, tc.want)
		}
	}
	if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: twoShards}); err == nil ||
		!strings.Contains(err.Error(), "consensus.shards: 1") {
		t.Errorf("another shard count: %v", err)
	}
	if entries, _ := os.ReadDir(cfg.Cluster.DataDir); len(entries) > 0 {
		t.Errorf("a refused restore wrote %d entries into the data directory", len(entries))
	}
	// One refused half-way, after it began writing, removes what it wrote.
	if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: cfg, BumpIndex: math.MaxUint64}); err == nil ||
		!strings.Contains(err.Error(), "--bump-index") {
		t.Errorf("a bump past the last index: %v", err)
	}
	if _, err := os.Stat(cfg.Cluster.DataDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a restore that failed half-way left its data directory (%v)", err)
	}
	// One interrupted (killed) leaves its mark: neither a start nor a
	// restore takes the directory for a member's.
	if err := os.MkdirAll(cfg.Cluster.DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{restoringFile, dragonboatFlagFile} {
		if err := os.WriteFile(filepath.Join(cfg.Cluster.DataDir, f), []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckDataDir(cfg); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("a start on what an interrupted restore left: %v, want it refused as an unfinished restore", err)
	}
	if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: cfg}); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("a restore into what an interrupted restore left: %v, want it told so", err)
	}
	// Killed between writing its mark and renaming it into place.
	if err := os.Rename(filepath.Join(cfg.Cluster.DataDir, restoringFile), filepath.Join(cfg.Cluster.DataDir, restoringFile+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := CheckDataDir(cfg); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Errorf("a start on a restore killed before its mark was in place: %v, want it refused as an unfinished restore", err)
	}
	if err := os.RemoveAll(cfg.Cluster.DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: c.cfgs[0]}); err == nil ||
		!strings.Contains(err.Error(), "not empty") {
		t.Errorf("a restore over the old member's directory: %v", err)
	}
}

// TestBackupWithoutQuorumNeedsStale: a member cut off from its majority
// cannot take a consistent backup, says so, and takes a stale one.
func TestBackupWithoutQuorumNeedsStale(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	lead := c.waitLeader(0)
	s := session(t, c.nodes[lead], time.Minute)
	do(t, c.nodes[lead], mutex("a", s, 0))
	keep := (lead + 1) % 3
	for i := range 3 {
		if i != keep {
			c.stop(i)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.nodes[keep].Backup(ctx, io.Discard, false)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "--stale") {
		t.Fatalf("a consistent backup without a quorum: %v, want unavailable naming --stale", err)
	}
	var backup bytes.Buffer
	man, err := c.nodes[keep].Backup(ctx, &backup, true)
	if err != nil || !man.Stale || man.Shards[0].Index == 0 {
		t.Fatalf("a stale backup: %+v %v", man, err)
	}
}

// TestOldMemberIsNotHeardByTheRestoredCluster: a cluster restored onto the
// old members' addresses runs under a deployment id of its own, so a member
// of the old cluster started again on its old directory, with a longer log
// and a later term than the backup, neither joins it nor brings back what
// the restore rolled back.
func TestOldMemberIsNotHeardByTheRestoredCluster(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3})
	n := c.nodes[c.waitLeader(0)]
	s := session(t, n, time.Minute)
	do(t, n, mutex("before", s, 0))
	var backup bytes.Buffer
	if _, err := n.Backup(tctx(t), &backup, false); err != nil {
		t.Fatal(err)
	}
	do(t, n, mutex("after", s, 0)) // only the old cluster has it
	// A later term on the old members: a leader handed over.
	lead := c.waitLeader(0)
	if err := c.nodes[lead].TransferLeadership(tctx(t), 0, c.cfgs[(lead+1)%3].Cluster.NodeID); err != nil {
		t.Fatal(err)
	}
	c.waitLeaderBesides(0, lead)
	c.closeAll()

	old := c.cfgs[2]
	for i := range 3 {
		cfg := c.cfgs[i]
		cfg.Cluster.DataDir += ".restored"
		if _, err := Restore(bytes.NewReader(backup.Bytes()), RestoreOptions{Config: cfg, BumpIndex: 10, KeepSessions: true}); err != nil {
			t.Fatal(err)
		}
		c.cfgs[i] = cfg
	}
	c.cfgs[2] = old // the old node-3, on its old directory
	for i := range 3 {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	restored := c.nodes[:2]
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range restored {
			if st := status(t, n, core.KindMutex, "after", true); len(st.Holders) > 0 {
				t.Fatalf("the restored cluster holds %q, which only the old cluster had: %+v", "after", st)
			}
		}
		st, err := c.nodes[2].Status(tctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.NodeID != "node-1" && m.NodeID != "node-2" && m.NodeID != "node-3" {
				t.Fatalf("old node-3 sees members %+v", st.Members)
			}
		}
		if st.Shards[0].Role == "leader" {
			t.Fatal("the old node-3 leads")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := c.nodes[c.waitLeaderBesides(0, 2)]
	if st := status(t, r, core.KindMutex, "before", false); len(st.Holders) != 1 {
		t.Errorf("the restored cluster lost %q: %+v", "before", st)
	}
	// They refuse it at the hello, where the refusal is counted and logged
	// (as another deployment), not only in Dragonboat's silent check.
	refused := 0.0
	for i := range 3 {
		refused += labeled(t, c.regs[i], "lockstep_raft_refused_connections_total", "reason", "versions")
	}
	if refused == 0 {
		t.Error("no member refused another's hello: the restored members and the old one told nothing apart")
	}
}

// TestRestoreSaysACutShortArchiveIsCutShort: an archive cut anywhere, in
// a tar header, in the manifest or in a payload, is said to be cut short,
// with what to do (cut inside the manifest or the first header it said
// only "unexpected EOF"); one that is no tar is still not a backup.
func TestRestoreSaysACutShortArchiveIsCutShort(t *testing.T) {
	export := t.TempDir()
	payload := bytes.Repeat([]byte("lockstep"), 400)
	const name = "snapshot-0000000000000008.gbsnap"
	if err := os.WriteFile(filepath.Join(export, name), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(export, snapshotMetadataFile), []byte("a record"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	man := BackupManifest{Format: backupFormat, ID: "0123456789abcdef", NodeID: "node-1", Shards: []BackupShard{{
		Index: 8, Term: 2, File: backupShardDir(0) + "/" + name, Record: backupShardDir(0) + "/" + snapshotMetadataFile,
		Bytes: int64(len(payload)), SHA256: hex.EncodeToString(sum[:])}}}
	var buf bytes.Buffer
	if err := writeBackup(&buf, man, []string{export}); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	if _, err := readBackup(bytes.NewReader(archive), t.TempDir()); err != nil {
		t.Fatalf("the whole archive: %v", err)
	}
	// Where each entry's header starts, and its data.
	var headers []int64
	tr := tar.NewReader(bytes.NewReader(archive))
	for off := int64(0); ; {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		headers = append(headers, off)
		off += 512 + (h.Size+511)/512*512
	}
	if len(headers) != 3 {
		t.Fatalf("%d entries", len(headers))
	}
	for _, tc := range []struct {
		what string
		at   int64
	}{
		{"nothing", 0},
		{"in the first header", 100},
		{"after the first header", 512},
		{"in the manifest", 512 + 100},
		{"in the manifest's padding", headers[1] - 1},
		{"at the second header", headers[1]},
		{"in the second header", headers[1] + 100},
		{"in the payload", headers[1] + 512 + 1000},
		{"in the third header", headers[2] + 10},
		{"in the record", headers[2] + 512 + 4},
	} {
		_, err := readBackup(bytes.NewReader(archive[:tc.at]), t.TempDir())
		if err == nil || !strings.Contains(err.Error(), "cut short") || !strings.Contains(err.Error(), "take the backup again") ||
			strings.HasSuffix(err.Error(), "unexpected EOF") {
			t.Errorf("cut %s (%d bytes): %v, want it said cut short, and what to do", tc.what, tc.at, err)
		}
	}
	for _, notTar := range [][]byte{[]byte("hello"), bytes.Repeat([]byte("{}"), 600)} {
		if _, err := readBackup(bytes.NewReader(notTar), t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a Lockstep backup") ||
			strings.Contains(err.Error(), "cut short") {
			t.Errorf("%.10q...: %v, want not a Lockstep backup", notTar, err)
		}
	}
}

// TestBackupOfAMemberThatAppliedNothingIsRefused: a member started alone
// of a three-member cluster never elects a leader, so it applies none of
// Lockstep's entries, and at first not even the entries that name its
// members. A stale backup of it is refused, saying why, both before
// Dragonboat has applied the membership (its export panicked, "empty
// membership", in a goroutine of its own, which killed the process) and
// after (it exported the empty state: nothing to back up).
func TestBackupOfAMemberThatAppliedNothingIsRefused(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 3, only: []int{0}})
	n := c.nodes[0]
	refused := func(when string) {
		t.Helper()
		_, err := n.Backup(tctx(t), io.Discard, true)
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "shard 0 has applied nothing yet") ||
			!strings.Contains(err.Error(), "start the other members") {
			t.Fatalf("a stale backup of a member that applied nothing, %s: %v, want unavailable saying it applied nothing", when, err)
		}
	}
	refused("right after its start")
	eventually(t, "Dragonboat applies the membership", func() bool {
		for _, s := range n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true}).ShardInfoList {
			if s.ShardID == n.shards[0].dbID && len(s.Replicas) == 3 {
				return true
			}
		}
		return false
	})
	refused("once its membership is applied")
	if left, _ := filepath.Glob(filepath.Join(c.cfgs[0].Cluster.DataDir, "backup-*")); len(left) > 0 {
		t.Errorf("the refused backups left %v", left)
	}
	if _, err := n.Status(tctx(t)); err != nil {
		t.Errorf("the member after the refusals: %v", err)
	}
}

// heldExport is a one-member cluster (c, n) whose session s holds a
// lock: once hold is set, its next export signals saving and waits in
// Dragonboat's snapshot worker until release (which the test's end calls
// too, if the test did not).
type heldExport struct {
	c       *testCluster
	n       *Node
	s       core.SessionID
	hold    atomic.Bool
	saving  chan struct{}
	release func()
}

func newHeldExport(t *testing.T) *heldExport {
	t.Helper()
	h := &heldExport{saving: make(chan struct{})}
	gate := make(chan struct{})
	h.c = newTestCluster(t, clusterOpts{size: 1, savingSnapshot: func() {
		if h.hold.CompareAndSwap(true, false) {
			close(h.saving)
			<-gate
		}
	}})
	h.n = h.c.nodes[0]
	h.s = session(t, h.n, time.Minute)
	do(t, h.n, mutex("a", h.s, 0))
	var once sync.Once
	h.release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(h.release)
	return h
}

// TestConcurrentBackupsOfAMemberTakeTurns: a backup of a member whose
// export is under way waits for it to end, then takes its own; both
// succeed. (The second retried Dragonboat's "one snapshot at a time"
// refusal for about a second, then failed.) A backup whose ctx ends while
// it waits says it was waiting for another.
func TestConcurrentBackupsOfAMemberTakeTurns(t *testing.T) {
	h := newHeldExport(t)
	n, hold, saving, release := h.n, &h.hold, h.saving, h.release
	type result struct {
		man BackupManifest
		err error
		buf *bytes.Buffer
	}
	backup := func() <-chan result {
		done := make(chan result, 1)
		go func() {
			var buf bytes.Buffer
			man, err := n.Backup(tctx(t), &buf, false)
			done <- result{man, err, &buf}
		}()
		return done
	}
	hold.Store(true)
	first := backup()
	select {
	case <-saving:
	case r := <-first:
		t.Fatalf("the first backup ended before its export was held: %v", r.err)
	case <-time.After(15 * time.Second):
		t.Fatal("the first backup's export did not start within 15 s")
	}
	second := backup()
	// The second waits its turn, or (before) fails once its retries end.
	for deadline := time.Now().Add(15 * time.Second); n.backupsWaiting.Load() == 0; time.Sleep(5 * time.Millisecond) {
		select {
		case r := <-second:
			t.Fatalf("a backup while another exports: %v, want it to wait its turn", r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second backup neither waits nor ends within 15 s")
		}
	}
	// One whose ctx ends while it waits says so.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := n.Backup(ctx, io.Discard, false); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another backup") {
		t.Errorf("a backup whose ctx ends while it waits: %v", err)
	}
	release()
	for i, done := range []<-chan result{first, second} {
		r := <-done
		if r.err != nil {
			t.Fatalf("backup %d: %v", i+1, r.err)
		}
		if _, err := readBackup(bytes.NewReader(r.buf.Bytes()), t.TempDir()); err != nil || len(r.man.Shards) != 1 {
			t.Errorf("backup %d: %+v, %v", i+1, r.man, err)
		}
	}
}

// TestBackupCancelledMidExportLeavesTheMemberRunning: a backup whose
// caller goes away while Dragonboat exports (a save interrupted, a
// deadline) returns at once, but its export directory is removed only
// once the export ends, and the member runs on. (It was removed at once,
// under Dragonboat's snapshot worker, whose write then failed: it panics
// on a failed save, and the process died.)
func TestBackupCancelledMidExportLeavesTheMemberRunning(t *testing.T) {
	h := newHeldExport(t)
	c, n, s, hold, saving, release := h.c, h.n, h.s, &h.hold, h.saving, h.release
	hold.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := n.Backup(ctx, io.Discard, false)
		done <- err
	}()
	select {
	case <-saving:
	case err := <-done:
		t.Fatalf("the backup ended before its export was held: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the backup's export did not start within 15 s")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("a backup cancelled mid-export: %v, want canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a backup cancelled mid-export did not return within 15 s")
	}
	dir := c.cfgs[0].Cluster.DataDir
	if left, _ := filepath.Glob(filepath.Join(dir, "backup-*")); len(left) != 1 {
		t.Errorf("while the export runs: %v, want its directory kept", left)
	}
	release() // the export ends, into its directory
	eventually(t, "the abandoned export's directory is removed", func() bool {
		left, _ := filepath.Glob(filepath.Join(dir, "backup-*"))
		return len(left) == 0
	})
	var buf bytes.Buffer
	if _, err := n.Backup(tctx(t), &buf, false); err != nil {
		t.Fatalf("a backup after: %v", err)
	}
	do(t, n, mutex("b", s, 0))
}

// TestStartRemovesWhatInterruptedBackupsLeft: the directories a backup
// of a member that stopped mid-backup left in its data directory are
// removed at its next start, which says so in one INFO line; anything
// else, however named, is left. (They stayed for ever.)
func TestStartRemovesWhatInterruptedBackupsLeft(t *testing.T) {
	c := newTestCluster(t, clusterOpts{size: 1, captureLogs: true})
	c.stop(0)
	dir := c.cfgs[0].Cluster.DataDir
	mkdir := func(rel string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, rel), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(rel string) {
		t.Helper()
		mkdir(filepath.Dir(rel))
		if err := os.WriteFile(filepath.Join(dir, rel), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Left by backups: as Backup makes them, at any stage.
	write("backup-123/shard-0/snapshot-0000000000000006/snapshot-0000000000000006.gbsnap")
	mkdir("backup-456")
	mkdir("backup-789/shard-0")
	mkdir("backup-789/shard-1/snapshot-0000000000000009-1.generating")
	// Not Backup's, however like it.
	kept := []string{"backup-abc", "backup-", "backups", "backup-42", "backup-7", "backup-99", "backup-5"}
	mkdir("backup-abc/shard-0")
	mkdir("backup-/shard-0")
	mkdir("backups/shard-0")
	write("backup-42/notes.txt")
	write("backup-7")
	mkdir("backup-99/shard-0")
	write("backup-99/lockstep-backup.json")
	mkdir("elsewhere/shard-0")
	if err := os.Symlink(filepath.Join(dir, "elsewhere"), filepath.Join(dir, "backup-5")); err != nil {
		t.Fatal(err)
	}
	c.restart(0)
	for _, name := range []string{"backup-123", "backup-456", "backup-789"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s, left by a backup, is still there (%v)", name, err)
		}
	}
	for _, name := range append(kept, "elsewhere/shard-0") {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s, not a backup's, was removed: %v", name, err)
		}
	}
	var lines []string
	for _, l := range strings.Split(c.logs[0].String(), "\n") {
		if strings.Contains(l, "interrupted backups") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") || !strings.Contains(lines[0], "removed=backup-123,backup-456,backup-789") {
		t.Errorf("want one INFO line naming what was removed, got:\n%s", strings.Join(lines, "\n"))
	}
	do(t, c.nodes[0], core.Command{Op: core.OpSessionCreate, TTLMs: 60000, Owner: "test"})
}

// TestAdoptDeployment: a node that joins a restored cluster records the
// deployment it was given in its empty data directory, and runs under it;
// one given to a directory that records another, to one that holds a
// member already, or to a first start that does not join is refused,
// with nothing written.
func TestAdoptDeployment(t *testing.T) {
	const dep = "6c6f636b73746571"
	join := config.Cluster{Join: true, Deployment: dep}
	dir := t.TempDir()
	if err := adoptDeployment(dir, true, join); err != nil {
		t.Fatal(err)
	}
	if d, err := readDeployment(dir); err != nil || fmt.Sprintf("%016x", d) != dep {
		t.Fatalf("the deployment recorded: %016x, %v; want %s", d, err, dep)
	}
	if err := adoptDeployment(dir, false, join); err != nil {
		t.Fatalf("a restart given the same deployment: %v", err)
	}
	other := join
	other.Deployment = "6c6f636b73746572"
	if err := adoptDeployment(dir, false, other); err == nil || !strings.Contains(err.Error(), "records the deployment "+dep) {
		t.Fatalf("another deployment than the one recorded: %v", err)
	}
	held := t.TempDir() // a member of Lockstep's own deployment, no record
	if err := adoptDeployment(held, false, join); err == nil || !strings.Contains(err.Error(), "holds a member of Lockstep's own deployment") {
		t.Fatalf("a deployment given to a directory that holds a member: %v", err)
	}
	fresh := t.TempDir()
	if err := adoptDeployment(fresh, true, config.Cluster{Deployment: dep}); err == nil || !strings.Contains(err.Error(), "only with --join") {
		t.Fatalf("a deployment given to a first start that does not join: %v", err)
	}
	for _, d := range []string{held, fresh} {
		if _, found, _ := readHexRecord(d, deploymentFile, "", ""); found {
			t.Fatalf("a refused deployment was recorded in %s", d)
		}
	}
	if err := adoptDeployment(t.TempDir(), true, config.Cluster{Join: true, Deployment: "xyz"}); err == nil || !strings.Contains(err.Error(), "16 hex digits") {
		t.Fatalf("a malformed deployment: %v", err)
	}
}
