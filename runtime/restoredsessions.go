package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lockstepd/lockstep/core"
)

// A backup is older than what the old cluster's clients know. A client
// granted a lock after it, or one that released a lock the backup still
// shows it holding, believes otherwise than the backup's state: were the
// backup's sessions to live on in the restored cluster, that client's
// keepalives would keep its session, its re-acquire would be answered the
// grant the backup holds for it (under its old, lower token), and another
// client that the old cluster granted the name after the backup would go
// on as its holder too. A user's trial did exactly that: two holders of
// one mutex, and a fencing token that went back.
//
// So a restored member closes every session of the backup, through the
// log (the machine's own session_close, with the lock-delay, as an
// operator's close of a process that may still run), and grants nothing
// until those sessions are closed in every shard and then until the
// longest lease among them has run out (or HoldGrants): every client of
// the old cluster learns its session is gone at its next contact, and one
// that cannot reach the restored cluster has stopped by the end of its own
// lease, before anyone is granted anything. Only an operator who knows
// that the backup holds everything the old cluster acknowledged (taken
// after it stopped taking requests) keeps the sessions
// (RestoreOptions.KeepSessions).
//
// The backup's sessions are told apart from later ones by their ids: an
// id comes from the log index of the entry that made it
// (core.FencingToken), and the restored log resumes past the backup's
// index, so every session the backup holds has an id below the restored
// index's first, and every later one an id above it.

// restoreRecordFile records, in a restored member's data directory, what
// the member must do about the backup's sessions (restoreRecord).
const restoreRecordFile = "lockstep-restored"

// restoreRecord is restoreRecordFile's content: sessions of ids below
// index below's first id are the backup's; hold is how long grants wait
// once they are closed (negative: the longest of their leases, or
// locks.default_ttl_seconds if longer); grantsFrom, once they are closed,
// is when grants resume (the zero time until then), so that a member
// restarted later holds no longer than that.
type restoreRecord struct {
	below      uint64
	hold       time.Duration
	grantsFrom time.Time
}

func (r restoreRecord) String() string {
	var from int64
	if !r.grantsFrom.IsZero() {
		from = r.grantsFrom.UnixMilli()
	}
	return fmt.Sprintf("close-sessions-below-index %d hold-grants-ms %d grants-from-unix-ms %d\n", r.below, r.hold.Milliseconds(), from)
}

// readRestoreRecord reads dir's restoreRecordFile; found is false without
// one (a member not restored, or restored keeping its sessions).
func readRestoreRecord(dir string) (r restoreRecord, found bool, err error) {
	path := filepath.Join(dir, restoreRecordFile)
	b, found, err := readOptional(path)
	if !found || err != nil {
		return r, found, err
	}
	f := strings.Fields(string(b))
	var ms, from int64
	ok := len(f) == 6 && f[0] == "close-sessions-below-index" && f[2] == "hold-grants-ms" && f[4] == "grants-from-unix-ms"
	if ok {
		r.below, err = strconv.ParseUint(f[1], 10, 64)
		if err == nil {
			ms, err = strconv.ParseInt(f[3], 10, 64)
		}
		if err == nil {
			from, err = strconv.ParseInt(f[5], 10, 64)
		}
	}
	if !ok || err != nil || r.below == 0 || r.below >= 1<<(64-core.SlotBits) || from < 0 {
		return r, true, fmt.Errorf("runtime: %s does not hold a restore's record (%q): restore the member again", path, b)
	}
	r.hold = time.Duration(ms) * time.Millisecond
	if from > 0 {
		r.grantsFrom = time.UnixMilli(from)
	}
	return r, true, nil
}

// restoreHold is a restored member's hold on grants (Node.holdGrants).
type restoreHold struct {
	below      core.SessionID // the backup's sessions have ids below it
	hold       time.Duration  // restoreRecord.hold
	defaultTTL time.Duration
	dir        string // the data directory, which holds restoreRecordFile

	closed chan struct{} // closed once no session of the backup is left in any shard
	until  time.Time     // written before closed is, read after: no grant before it
}

// closeBackupSessions closes the backup's sessions (restoreHold) until no
// shard holds one, then starts the hold's last part. It runs from Start
// until done or the node closes, on every restored member: the one that
// leads shard 0 closes them, and the others watch for the end (and close
// them too if it has not after restoreLeaderGrace).
func (n *Node) closeBackupSessions(h *restoreHold) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-n.closing:
		case <-h.closed:
		}
		cancel()
	}()
	began := time.Now()
	var longest time.Duration // the longest lease among the backup's sessions seen
	for {
		ids, ttl, err := n.backupSessions(ctx, h.below)
		longest = max(longest, ttl)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && len(ids) == 0:
			hold := h.hold
			if hold < 0 {
				hold = max(longest, h.defaultTTL)
			}
			h.until = time.Now().Add(hold)
			// A restart holds no longer than this (Start reads it).
			rec := restoreRecord{below: uint64(h.below) >> core.SlotBits, hold: h.hold, grantsFrom: h.until}
			if err := writeDurably(h.dir, restoreRecordFile, rec.String()); err != nil {
				n.log.Warn("recording that the backup's sessions are closed", "err", err)
			}
			n.log.Info("the backup's sessions are closed in every shard: grants resume once their leases have run out",
				"in", hold.Round(time.Millisecond))
			close(h.closed)
			return
		}
		// The leader of shard 0 closes them; the others too once it has
		// not for a while (a leader that was not restored knows nothing
		// of them), a close of a session already closed changing nothing.
		if lead, _, _, _ := n.shards[0].leadership(); lead || time.Since(began) > restoreLeaderGrace {
			n.closeSessions(ctx, ids)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(restoreCloseEvery):
		}
	}
}

// closeSessions closes the sessions ids, with the lock-delay, at most
// restoreClosesInFlight at a time: a backup may hold many (MaxSessions),
// and one at a time costs a commit each while grants are held back.
func (n *Node) closeSessions(ctx context.Context, ids []core.SessionID) {
	slots := make(chan struct{}, restoreClosesInFlight)
	var wg sync.WaitGroup
	for _, id := range ids {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			r, err := n.Do(ctx, core.Command{Op: core.OpSessionClose, Session: id, ApplyLockDelay: true})
			if err == nil && r.Err != nil && r.Err.Code != core.CodeNotFound {
				n.log.Warn("closing a session of the backup", "session", uint64(id), "err", r.Err.Msg)
			}
		}()
	}
	wg.Wait()
}

// restoreClosesInFlight bounds the closes of the backup's sessions a
// member has in flight.
const restoreClosesInFlight = 32

// restoreLeaderGrace is how long a restored member that does not lead
// shard 0 leaves the backup's sessions to the member that does.
const restoreLeaderGrace = 3 * time.Second

// restoreCloseEvery is how often a restored member looks again for
// sessions of the backup left open (a close that failed, a shard that had
// no leader yet).
const restoreCloseEvery = 200 * time.Millisecond

// backupSessions lists the sessions of the backup (ids below below) left
// in any shard, as this member's state has them, and the longest lease
// among them.
func (n *Node) backupSessions(ctx context.Context, below core.SessionID) ([]core.SessionID, time.Duration, error) {
	seen := map[core.SessionID]bool{}
	var ids []core.SessionID
	var longest time.Duration
	for _, s := range n.shards {
		_, err := n.readShard(ctx, s, true, func(m *core.Machine) error {
			for after := core.SessionID(0); ; {
				list, more := m.Sessions(core.SessionQuery{After: after})
				for _, ss := range list {
					if ss.ID >= below {
						return nil // ids in order: the rest are the restored cluster's own
					}
					longest = max(longest, time.Duration(ss.TTLMs)*time.Millisecond)
					if !seen[ss.ID] {
						seen[ss.ID] = true
						ids = append(ids, ss.ID)
					}
				}
				if !more || len(list) == 0 {
					return nil
				}
				after = list[len(list)-1].ID
			}
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return ids, longest, nil
}

// holding says why a restored member grants nothing now, nil when it
// grants (or was not restored).
func (h *restoreHold) holding() error {
	if h == nil {
		return nil
	}
	select {
	case <-h.closed:
	default:
		return errors.New("restored from a backup: this member grants nothing until the backup's sessions are closed " +
			"and their leases have run out (docs/operations.md, Backup and restore)")
	}
	if left := time.Until(h.until); left > 0 {
		return fmt.Errorf("restored from a backup: this member grants nothing for %v more (until %s), while the old "+
			"cluster's clients may still count leases of the sessions the restore closed", left.Round(time.Second),
			h.until.UTC().Format(time.RFC3339))
	}
	return nil
}

// holdsGrant says whether op may make a grant, which a restored member
// holds back (holdGrants).
func holdsGrant(op core.Op) bool {
	return op == core.OpAcquire || op == core.OpCampaign || op == core.OpBarrierSet
}

// holdGrants waits, for a request that may grant, until a restored
// member's hold ends (restoreHold), or answers ErrUnavailable when its
// context or deadline ends first, saying why.
func (n *Node) holdGrants(ctx context.Context, deadline time.Time) error {
	h := n.restore
	if h == nil {
		return nil
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	var expire <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expire = t.C
	}
	refused := func() error { return fmt.Errorf("%w: %v; try again then", ErrUnavailable, h.holding()) }
	select {
	case <-h.closed:
	case <-expire:
		return refused()
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closing:
		return ErrShuttingDown
	}
	left := time.Until(h.until)
	if left <= 0 {
		return nil
	}
	if !deadline.IsZero() && deadline.Before(h.until) {
		return refused()
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.closing:
		return ErrShuttingDown
	}
}
