package runtime

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstepd/lockstep/runtime/transport"
)

// A member that lost its log must not take part again under its replica
// id (docs/design.md, "Membership"; runtime/transport, the identity): its
// data directory gets a log id of its own (logIDFile), drawn when the
// directory is made, which its hello carries; each member keeps in its
// own directory the log each peer took part under (peerLogsFile), and
// refuses a peer that comes back under another.
const (
	logIDFile    = "lockstep-log-id"
	peerLogsFile = "lockstep-peer-logs"
	// maxPeerLogs bounds the book: one line per replica id that ever took
	// part, a new one at each member added. Past it, the oldest line is
	// forgotten (a member removed long ago, most likely), and a member
	// under that replica id would no longer be refused.
	maxPeerLogs = 4096
)

// logID reads the log id dir's member records, or draws one, durably,
// when there is none: a new directory, or one made before log ids.
func logID(dir string) (uint64, error) {
	id, found, err := readLogID(dir)
	if found || err != nil {
		return id, err
	}
	var r [8]byte
	for binary.BigEndian.Uint64(r[:]) == 0 {
		if _, err := rand.Read(r[:]); err != nil {
			return 0, fmt.Errorf("runtime: drawing a log id: %w", err)
		}
	}
	id = binary.BigEndian.Uint64(r[:])
	if err := writeHexRecord(dir, logIDFile, id); err != nil {
		return 0, err
	}
	return id, nil
}

// peerLogs is the book of the logs peers took part under
// (transport.Book), kept in peerLogsFile.
type peerLogs struct {
	dir   string
	woken chan struct{} // Node.shareLogs has to run again (wake)

	mu    sync.Mutex
	logs  map[uint64]uint64 // replica id → log id
	order []uint64          // replica ids, oldest first
	// at is shard 0's membership as this node last read it (Raft address
	// → replica id): Node.shareLogs reads it again at each change, so that
	// a dial takes no lock of Dragonboat's.
	at map[string]uint64
	// generation counts the changes of logs (transport.Book.Generation),
	// from 1.
	generation atomic.Uint64
	unwritten  bool // learn kept what is not on disk yet (flush)
}

var _ transport.Book = (*peerLogs)(nil)

func openPeerLogs(dir string) (*peerLogs, error) {
	b := &peerLogs{dir: dir, woken: make(chan struct{}, 1), logs: map[uint64]uint64{}}
	b.generation.Store(1)
	path := filepath.Join(dir, peerLogsFile)
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		replica, log, ok := parsePeerLog(sc.Text())
		if !ok {
			return nil, fmt.Errorf("runtime: %s, line %d, is not \"<replica id> <log id>\" in hex (%q): it is written whole or not at all, "+
				"so the directory was damaged; replace the member (docs/operations.md, Membership changes)", path, line, sc.Text())
		}
		if _, dup := b.logs[replica]; !dup {
			b.order = append(b.order, replica)
		}
		b.logs[replica] = log
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	return b, nil
}

func parsePeerLog(line string) (replica, log uint64, ok bool) {
	a, b, found := strings.Cut(strings.TrimSpace(line), " ")
	r, err1 := strconv.ParseUint(a, 16, 64)
	l, err2 := strconv.ParseUint(b, 16, 64)
	return r, l, found && err1 == nil && err2 == nil && r != 0
}

// Known implements transport.Book.
func (b *peerLogs) Known(replica uint64) (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	log, ok := b.logs[replica]
	return log, ok
}

// At implements transport.Book.
func (b *peerLogs) At(addr string) (transport.Identity, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	replica, ok := b.at[addr]
	if !ok {
		return transport.Identity{}, false
	}
	return transport.Identity{Replica: replica, Log: b.logs[replica]}, true
}

// Generation implements transport.Book.
func (b *peerLogs) Generation() uint64 { return b.generation.Load() }

// Member implements transport.Book.
func (b *peerLogs) Member(replica uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.at {
		if r == replica {
			return true
		}
	}
	return false
}

// setMembers keeps shard 0's membership (replica id → Raft address).
func (b *peerLogs) setMembers(members map[uint64]string) {
	at := make(map[string]uint64, len(members))
	for replica, addr := range members {
		at[addr] = replica
	}
	b.mu.Lock()
	b.at = at
	b.mu.Unlock()
}

// Record implements transport.Book, and has the record shared.
func (b *peerLogs) Record(id transport.Identity) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if had, ok := b.logs[id.Replica]; ok {
		switch {
		case had == 0:
			return fmt.Errorf("runtime: replica %x was removed from the cluster", id.Replica)
		case had != id.Log:
			return fmt.Errorf("runtime: replica %x took part under log %016x, not %016x", id.Replica, had, id.Log)
		}
		return nil
	}
	if err := b.add(map[uint64]uint64{id.Replica: id.Log}); err != nil {
		return err
	}
	b.wake()
	return nil
}

// wake has Node.shareLogs run again: a replica was booked (to propose
// it), or shard 0's membership changed (to read it again).
func (b *peerLogs) wake() {
	select {
	case b.woken <- struct{}{}:
	default:
	}
}

// learn books what the replicated state holds (a record, a snapshot). A
// replica booked here under another log keeps it: this member saw it
// take part under that one, and refuses the other. A removal (log 0)
// replaces what was booked: a removed replica never takes part again.
func (b *peerLogs) learn(replicated map[uint64]uint64, log *slog.Logger) {
	b.mu.Lock()
	defer b.mu.Unlock()
	news := map[uint64]uint64{}
	for r, l := range replicated {
		had, ok := b.logs[r]
		switch {
		case !ok || (l == 0 && had != 0):
			news[r] = l
		case had != l && had != 0:
			log.Error("the replicated state names another log for a replica than this member saw it take part under: "+
				"a member lost its log and took part again before it was refused; replace it (docs/operations.md, Membership changes)",
				"replica_id", fmt.Sprintf("%x", r), "seen", fmt.Sprintf("%016x", had), "replicated", fmt.Sprintf("%016x", l))
		}
	}
	if len(news) == 0 {
		return
	}
	// In memory at once; on disk by shareLogs (flush), not here on the
	// apply path, where a sync per record slowed a new cluster's first
	// entries (a member with entries to apply skips a campaign, and a
	// leader hand-off was lost). What a crash loses is in the log and is
	// learnt again as the log replays.
	order, forgotten := b.next(news)
	b.keep(news, order, forgotten)
	b.unwritten = true
	b.wake()
}

// missing returns what the book holds and replicated lacks.
func (b *peerLogs) missing(replicated map[uint64]uint64) map[uint64]uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[uint64]uint64{}
	for r, l := range b.logs {
		if _, ok := replicated[r]; !ok {
			out[r] = l
		}
	}
	return out
}

// add writes the book again with news, under b.mu, and keeps them once
// they are on disk (with anything learnt and not written yet).
func (b *peerLogs) add(news map[uint64]uint64) error {
	order, forgotten := b.next(news)
	var text strings.Builder
	for _, r := range order {
		l, ok := news[r]
		if !ok {
			l = b.logs[r]
		}
		fmt.Fprintf(&text, "%016x %016x\n", r, l)
	}
	if err := writeDurably(b.dir, peerLogsFile, text.String()); err != nil {
		return err
	}
	b.keep(news, order, forgotten)
	b.unwritten = false
	return nil
}

// next is the order of the book with news, under b.mu, and the oldest
// replica ids it forgets past maxPeerLogs.
func (b *peerLogs) next(news map[uint64]uint64) (order, forgotten []uint64) {
	full := slices.Clone(b.order)
	for _, r := range slices.Sorted(maps.Keys(news)) {
		if _, had := b.logs[r]; !had {
			full = append(full, r)
		}
	}
	forgotten = full[:max(0, len(full)-maxPeerLogs)]
	return full[len(forgotten):], forgotten
}

// keep puts news in the book, in order, under b.mu.
func (b *peerLogs) keep(news map[uint64]uint64, order, forgotten []uint64) {
	maps.Copy(b.logs, news)
	for _, r := range forgotten {
		delete(b.logs, r)
	}
	b.order = order
	b.generation.Add(1)
}

// flush writes what learn kept and no write has carried yet; shareLogs
// calls it, off the apply path.
func (b *peerLogs) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.unwritten {
		return nil
	}
	return b.add(nil)
}

// writeDurably replaces dir/file with text, whole or not at all, and
// syncs it and the directory before it returns.
func writeDurably(dir, file, text string) error {
	path := filepath.Join(dir, file)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	return nil
}

// syncDir syncs directory dir, so that a file renamed into it or removed
// from it stays so across a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// noticeRemoval says, once, that this member left its own view of the
// membership after it was in it: it applied its own removal (running, or
// replaying a log that removed it). Its peers no longer send it anything,
// so no refusal would tell it. (A member that joins and replays the log
// from its start sees memberships without itself first: only one seen
// with it counts. One restarted on a snapshot taken after its removal
// never sees itself here. Dragonboat unloads a replica as it applies its
// own removal, often before this reads the membership: its NodeDeleted,
// membershipListener's, tells that member.)
// seen and said are shareLogs' own: whether it saw this member in the
// membership, and whether it said the removal.
// It also tells the record of this member cut off (Health, Status) what
// its membership says: removed, or a member after all (cutOff.member).
func (n *Node) noticeRemoval(members map[uint64]string, seen, said *bool) {
	if _, ok := members[n.replicaID]; ok {
		*seen = true
		n.cut.member()
		return
	}
	if len(members) == 0 || !*seen || *said {
		return
	}
	*said = true
	n.removedFromCluster()
}

// removedFromCluster records that this member was removed from the
// cluster, as it learnt from its own membership (noticeRemoval, or
// Dragonboat's NodeDeleted), and says so once: Health, Status and
// lockstep_raft_removed then tell what it is, as they do when a peer
// refuses it.
func (n *Node) removedFromCluster() {
	n.cut.set(transport.CutRemoved)
	n.metrics.removed.Set(1)
	if n.removalSaid.Swap(true) {
		return
	}
	n.log.Error("this member was removed from the cluster (lockstep cluster remove): a removed replica never takes part again; "+
		"stop it, or to bring it back: lockstep cluster add, then start it on an empty cluster.data_dir with --join and the "+
		"incarnation add answers (docs/operations.md, Membership changes)", "replica_id", fmt.Sprintf("%x", n.replicaID))
}

// membershipBaseline is shard 0's membership as of the leader's commit,
// read linearizably once a leader is known (nil before, or when the read
// fails: shareLogs asks again at its next run), from which logMembership
// starts. The membership this member sees before it caught up is not a
// change it should report: a new cluster applies its initial members one
// entry at a time, and a restarted member replays its log.
func (n *Node) membershipBaseline(ctx context.Context, sh *shard) map[uint64]string {
	if leader, _, ok, _ := n.nh.GetLeaderID(sh.dbID); !ok || leader == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, n.readAttempt)
	defer cancel()
	mem, err := n.nh.SyncGetShardMembership(rctx, sh.dbID)
	if err != nil || len(mem.Nodes) == 0 {
		return nil
	}
	n.membershipKnown.Store(true)
	return mem.Nodes
}

// logMembership says, at INFO, which members shard 0's membership gained
// and lost since shareLogs last read it, from membershipBaseline on, so
// that every member that applies a change logs it, not only the one that
// took the API call. Every shard has the same members; shard 0 stands for
// them.
func (n *Node) logMembership(before, now map[uint64]string) {
	for _, id := range slices.Sorted(maps.Keys(now)) {
		if _, ok := before[id]; !ok {
			n.log.Info("node added", "added", n.nodeName(id), "raft_address", now[id], "replica_id", fmt.Sprintf("%x", id),
				"incarnation", id&0xff) // config.ReplicaID's low byte
		}
	}
	for _, id := range slices.Sorted(maps.Keys(before)) {
		if _, ok := now[id]; !ok {
			n.log.Info("node removed", "removed", n.nodeName(id), "raft_address", before[id], "replica_id", fmt.Sprintf("%x", id))
		}
	}
}

// shareRetry is how long shareLogs waits after a proposal that failed (no
// leader yet, or one lost) before it tries again; membersReread, how often
// it reads the membership again besides each change Dragonboat reports.
const (
	shareRetry    = time.Second
	membersReread = 5 * time.Second
)

// shareLogs proposes, in shard 0 while this member leads it, the logs it
// booked, and its own, that the replicated state lacks, so that every
// member refuses a peer that comes back under another log, not only those
// that heard it take part (a follower hears little of another follower);
// writes what the book learnt; and gives the book the membership. It runs
// until the node stops: at start, at each replica booked, at each
// membership or leader change, and after a failure.
func (n *Node) shareLogs() {
	sh := n.shards[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cancelOnClose(ctx, cancel, n.stop)
	retry := time.NewTimer(0)
	defer retry.Stop()
	reread := time.NewTicker(membersReread)
	defer reread.Stop()
	var seen, said bool               // noticeRemoval's
	var lastMembers map[uint64]string // logMembership's: nil until caught up (membershipBaseline)
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.book.woken:
		case <-retry.C:
		case <-reread.C:
		}
		if err := n.book.flush(); err != nil {
			if n.dataDir.gone(n.log) != nil {
				// Said once, as the data directory's own error, and the
				// member stops (dataDirWatch): a line a second of this one
				// before it did buried the cause.
				return
			}
			n.log.Error("could not book the peers' logs: a member that lost its log would not be refused by this one after a restart", "err", err)
			retry.Reset(shareRetry)
		}
		if members, ok := n.shardMembers(sh); ok && members != nil {
			n.book.setMembers(members)
			n.noticeRemoval(members, &seen, &said)
			if lastMembers == nil {
				lastMembers = n.membershipBaseline(ctx, sh)
			} else {
				n.logMembership(lastMembers, members)
				lastMembers = members
			}
		}
		// The leader shares, its own log with the others': every member
		// that takes part sends it something, and one proposer writes
		// the fewest entries (a member with entries left to apply skips a
		// campaign, a leader hand-off's too).
		if leader, _, ok, _ := n.nh.GetLeaderID(sh.dbID); !ok || leader != n.replicaID {
			continue
		}
		replicated, _ := sh.sm.Lookup(logsQuery{})
		missing := n.book.missing(replicated.(map[uint64]uint64))
		if _, ok := replicated.(map[uint64]uint64)[n.replicaID]; !ok {
			missing[n.replicaID] = n.logID
		}
		if len(missing) == 0 {
			continue
		}
		pctx, pcancel := context.WithTimeout(ctx, n.proposalTimeout)
		_, err := n.nh.SyncPropose(pctx, sh.session, encodeLogs(missing))
		pcancel()
		if err != nil {
			retry.Reset(shareRetry)
		}
	}
}
