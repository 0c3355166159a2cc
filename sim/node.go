package sim

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
	"github.com/lockstepd/lockstep/core/shards"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Raft settings: production's 300 ms election timeout and 100 ms heartbeat,
// counted in 25 ms ticks of each replica's (drifting) monotonic clock.
const (
	raftTick      = 25 * time.Millisecond
	electionTick  = 12
	heartbeatTick = 4
	// processDelay is how long a replica takes to get round to its ready
	// loop after something arrived: the group-commit window.
	processDelay = 200 * time.Microsecond
	// keepEntries is how much log a snapshot leaves behind for followers
	// that are a little late.
	keepEntries = 16
	maxReads    = 1024
	// readTimeout is how long a ReadIndex may stay unanswered before its
	// slot is given up: the runtime's readAttempt, max(500 ms, 3 x election
	// timeout). Raft drops a ReadIndex silently (a follower that knows no
	// leader, a leader that steps down, a forward lost on the way), and
	// Dragonboat times such a read out; without the timeout every drop
	// held one of maxReads slots until the replica crashed.
	readTimeout = 3 * electionTick * raftTick
	// proposalTimeout is the runtime's: max(1 s, 3 x election timeout). A
	// proposal unconfirmed for this long is refused to the driver.
	proposalTimeout = time.Second
)

// node is one replica of one shard: real etcd raft, a disk, a core
// machine (maybe wrapped in a planted bug), and the shared replica driver.
// A replica hosts one node per shard (Options.Shards), as a production
// NodeHost runs one Raft group per shard: they share the replica's address
// (its links and partitions), its clock, and its crashes, and nothing else.
type node struct {
	w     *world
	id    int    // the replica: its address and its raft ID in every shard
	shard uint64 // the Raft group
	up    bool
	inc   uint64 // bumped by every crash, so a dead incarnation's timers are skipped
	clk   *clock // the replica's, shared by its shards
	dsk   disk

	ms      *raft.MemoryStorage
	rn      *raft.RawNode
	sm      Machine
	drv     *replica.Driver
	applied uint64
	snapIdx uint64

	leader bool
	term   uint64
	lead   uint64

	processPending bool
	syncing        bool
	rd             raft.Ready // waiting for its sync

	nextReq  replica.RequestID
	origins  map[replica.RequestID]origin
	byOrigin map[origin]replica.RequestID
	// private holds the requests whose caller gave no client_id (a
	// client's private request): their identity is this node's alone, so
	// a caller that leaves can never ask for their answer again, and the
	// driver is told it went for good (replica.GoneEvent).
	private  map[replica.RequestID]bool
	nextRead uint64
	reads    map[uint64]*pendingRead // waiting for ReadIndex
	readWait []*pendingRead          // waiting for applied >= index

	// exSeq numbers the closes this node sends to its replica's other
	// shards when it applies an expiry as leader (expiryClose): their
	// (ClientID, Seq) must never repeat, so it survives crashes.
	exSeq uint64

	// proposed lists the proposals handed to raft whose fate this replica
	// has not learned yet, oldest first: etcd raft tells a proposer
	// nothing, so the simulator decides, as Dragonboat's result channel
	// does for the runtime, and tells the driver, whose gate
	// (Options.Gate) they hold.
	proposed []proposedEntry
}

// proposedEntry is one unconfirmed proposal, the leader's own or one this
// replica forwarded to the leader it knew: it is confirmed when this
// replica applies an entry of its term with its bytes, let go when the term
// or the leader changes (the driver failed its requests and emptied its
// gate on the LeadershipEvent), or refused after proposalTimeout (a forward
// lost on the way, or dropped by a leader that stepped down).
type proposedEntry struct {
	id      replica.ProposalID
	term    uint64
	lead    uint64 // the leader this replica knew: itself, or the one it forwarded to
	forward bool   // forwarded (counted in Result.ForwardsLost when refused)
	data    []byte
	at      time.Duration
}

type origin struct {
	addr    int
	attempt uint64
}

type pendingRead struct {
	id      uint64
	from    int
	attempt uint64
	req     readRequest
	index   uint64
	at      time.Duration // when it was asked (readTimeout)
}

// quietLogger keeps raft's logs out of the output; raft's panics still
// panic, and a panic is a crash of the run.
type quietLogger struct{}

func (quietLogger) Debug(...any)                   {}
func (quietLogger) Debugf(string, ...any)          {}
func (quietLogger) Error(...any)                   {}
func (quietLogger) Errorf(string, ...any)          {}
func (quietLogger) Info(...any)                    {}
func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Warning(...any)                 {}
func (quietLogger) Warningf(string, ...any)        {}
func (quietLogger) Fatal(v ...any)                 { panic(fmt.Sprint(v...)) }
func (quietLogger) Fatalf(f string, v ...any)      { panic(fmt.Sprintf(f, v...)) }
func (quietLogger) Panic(v ...any)                 { panic(fmt.Sprint(v...)) }
func (quietLogger) Panicf(format string, v ...any) { panic(fmt.Sprintf(format, v...)) }

// bootstrap writes the initial snapshot every replica starts from: index 1,
// term 1, all replicas voters, an empty machine.
func (n *node) bootstrap(voters []uint64) {
	n.dsk.snap = &pb.Snapshot{
		Data: newMachine(nil, Bug{}, n.id).Snapshot(),
		Metadata: &pb.SnapshotMetadata{
			Index:     new(uint64(1)),
			Term:      new(uint64(1)),
			ConfState: &pb.ConfState{Voters: voters},
		},
	}
}

// start brings the replica up from its disk.
func (n *node) start() {
	w := n.w
	n.up = true
	n.ms = n.dsk.load()
	snap := n.dsk.snap
	n.snapIdx = snap.GetMetadata().GetIndex()
	n.applied = n.snapIdx
	n.sm = newMachine(snap.GetData(), w.bug, n.id)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        uint64(n.id),
		ElectionTick:              electionTick,
		HeartbeatTick:             heartbeatTick,
		Storage:                   n.ms,
		Applied:                   n.applied,
		MaxSizePerMsg:             64 << 10,
		MaxInflightMsgs:           64,
		MaxUncommittedEntriesSize: 1 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		Logger:                    quietLogger{},
	})
	if err != nil {
		panic("sim: raft: " + err.Error())
	}
	n.rn = rn
	n.drv, err = replica.New(replica.Config{Name: strconv.Itoa(n.id), MaxUnconfirmed: n.w.opts.maxUnconfirmed(), MarkRules: w.markRules(n.id)})
	if err != nil {
		panic(err)
	}
	// The machine starts from its snapshot: its log time is what a
	// forward is stamped with until the next entry applies.
	n.step(replica.RestoredEvent(n.sm.Now()))
	n.leader, n.term, n.lead = false, 0, 0
	n.processPending, n.syncing = false, false
	n.origins = make(map[replica.RequestID]origin)
	n.byOrigin = make(map[origin]replica.RequestID)
	n.private = make(map[replica.RequestID]bool)
	n.reads = make(map[uint64]*pendingRead)
	n.readWait = nil
	n.proposed = nil
	w.chk.restored(n)
	n.scheduleTick()
}

// word is the node in the trace hash: the replica, with the shard above it,
// so that a one-shard run hashes as it did before shards.
func (n *node) word() uint64 { return uint64(n.id) | n.shard<<32 }

// String names the node in the trace: n2, or n2/s1 with several shards.
func (n *node) String() string {
	if n.w.opts.Shards > 1 {
		return fmt.Sprintf("n%d/s%d", n.id, n.shard)
	}
	return fmt.Sprintf("n%d", n.id)
}

func (n *node) scheduleTick() {
	n.w.schedule(&event{at: n.w.now + n.clk.every(raftTick), kind: evRaftTick, node: n.id, gen: n.inc, arg: int(n.shard)})
}

// crash loses everything volatile: raft's memory, the machine, the driver,
// every request in progress, and whatever the disk had not synced.
func (n *node) crash() {
	n.up = false
	n.inc++
	n.dsk.crash()
	n.rn, n.ms, n.sm, n.drv = nil, nil, nil, nil
	n.origins, n.byOrigin, n.reads, n.readWait = nil, nil, nil, nil
	n.private = nil
	n.proposed = nil
	n.leader = false
}

func (n *node) markDirty() {
	if n.processPending || !n.up {
		return
	}
	n.processPending = true
	n.w.schedule(&event{at: n.w.now + processDelay, kind: evProcess, node: n.id, gen: n.inc, arg: int(n.shard)})
}

func (n *node) tick() {
	n.rn.Tick()
	n.scheduleTick()
	// The leader's driver needs its clock read even when nothing else
	// happens, to propose ticks; any replica's unconfirmed proposals need
	// their timeout checked.
	if n.rn.HasReady() || n.leader || len(n.proposed) > 0 {
		n.markDirty()
	}
}

// process is the replica's ready loop: drive the driver, then hand raft's
// Ready to the disk, and finish it once the disk has synced.
func (n *node) process() {
	n.processPending = false
	if n.syncing {
		return
	}
	n.drive()
	if !n.rn.HasReady() {
		return
	}
	rd := n.rn.Ready()
	if rd.SoftState != nil || !raft.IsEmptyHardState(rd.HardState) {
		n.noteLeadership()
	}
	sync := rd.MustSync
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.ms.ApplySnapshot(rd.Snapshot); err != nil {
			panic("sim: apply snapshot: " + err.Error())
		}
		n.dsk.write(diskWrite{snap: rd.Snapshot})
		sync = true
	}
	if len(rd.Entries) > 0 {
		if err := n.ms.Append(rd.Entries); err != nil {
			panic("sim: append: " + err.Error())
		}
		n.dsk.write(diskWrite{ents: rd.Entries})
		n.w.chk.appended(n, rd.Entries)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := n.ms.SetHardState(rd.HardState); err != nil {
			panic("sim: hard state: " + err.Error())
		}
		n.dsk.write(diskWrite{hard: rd.HardState})
	}
	if sync {
		n.syncing = true
		n.rd = rd
		n.w.schedule(&event{at: n.w.now + n.w.diskLatency(), kind: evSynced, node: n.id, gen: n.inc, arg: int(n.shard)})
		return
	}
	n.finish(rd)
}

func (n *node) synced() {
	n.dsk.sync()
	n.syncing = false
	rd := n.rd
	n.rd = raft.Ready{}
	n.finish(rd)
}

// finish does what may only follow persistence: send, apply, advance.
func (n *node) finish(rd raft.Ready) {
	w := n.w
	for _, m := range rd.Messages {
		w.send(&message{kind: msgRaft, from: n.id, to: int(m.GetTo()), fromInc: n.inc, shard: n.shard, raft: m})
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		n.restore(rd.Snapshot)
	}
	for _, e := range rd.CommittedEntries {
		n.apply(e)
	}
	for _, rs := range rd.ReadStates {
		id := binary.BigEndian.Uint64(rs.RequestCtx)
		if r := n.reads[id]; r != nil {
			delete(n.reads, id)
			r.index = rs.Index
			n.readWait = append(n.readWait, r)
		}
	}
	n.serveReads()
	n.rn.Advance(rd)
	n.maybeSnapshot()
	n.drive()
	if n.rn.HasReady() {
		n.markDirty()
	}
}

// noteLeadership tells the driver who leads, when the role, the leader or
// the term changed. It looks at every Ready that changes the soft or the
// hard state: a follower that moves to a new term under the same leader
// (the leader re-elected between two Readys) shows no soft-state change,
// and its driver must still end the forwards it made in the old term.
func (n *node) noteLeadership() {
	st := n.rn.BasicStatus()
	isLeader, term, lead := st.RaftState == raft.StateLeader, st.GetTerm(), st.Lead
	if isLeader != n.leader || term != n.term || lead != n.lead {
		n.leader, n.term, n.lead = isLeader, term, lead
		n.step(replica.LeadershipEvent(isLeader, term, lead))
		n.w.tr.mix(0x1ead, n.word(), boolWord(isLeader), term, lead)
		if isLeader {
			n.w.tr.logf(n.w.now, "%s leader term=%d", n, term)
			n.w.chk.leaderElected(n, term)
		}
	}
}

func boolWord(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (n *node) step(ev replica.Event) {
	if err := n.drv.Step(ev); err != nil {
		panic("sim: replica driver: " + err.Error())
	}
}

// drive ticks the driver with this replica's wall and monotonic clocks, proposes what it
// asks for, sends its replies, and tells it the fate of its proposals. The
// driver's gate (Options.Gate) holds its proposals while that many are
// unconfirmed, as the runtime's does: requests arriving meanwhile wait in
// its queue and go out together in the next entry.
func (n *node) drive() {
	n.step(replica.ClockEvent(n.clk.logTime(n.w.now), n.clk.monoTime(n.w.now)))
	n.settleProposed()
	for i := 0; i < 4; i++ {
		rd := n.drv.Ready()
		if rd.IsEmpty() {
			return
		}
		for _, p := range rd.Proposals {
			if n.w.bug.mute && len(p.Proposal.Commands) > 0 && !p.Proposal.Commands[0].Op.Internal() {
				// Dropped silently: the replica believes raft took it.
				n.step(replica.ProposalConfirmedEvent(p.ID))
				continue
			}
			forward := n.drv.Role() == replica.RoleForwarder
			if n.drv.Role() == replica.RoleLeader {
				if st := n.rn.BasicStatus(); st.RaftState != raft.StateLeader || st.GetTerm() != n.term {
					// Raft stepped down before the driver heard (a leader
					// resumed from a stall, deposed meanwhile): raft would
					// forward the proposal to the new leader, and its stamp,
					// this replica's clock, would move log time as no
					// forward may (core/replica: a forward is stamped with
					// the applied log time). It fails; the requests are
					// answered unknown, and their clients retry.
					n.step(replica.ProposalFailedEvent(p.ID))
					continue
				}
			}
			if forward {
				n.w.stats.forwarded++
			}
			if err := n.rn.Propose(p.Data); err != nil {
				if forward {
					n.w.stats.forwardsLost++
				}
				n.step(replica.ProposalFailedEvent(p.ID))
				continue
			}
			if p.Proposal.ClientCommands() >= 2 {
				n.w.stats.batched++
			}
			if forward {
				n.w.chk.forwardedProposal(n, &p.Proposal)
			}
			n.proposed = append(n.proposed, proposedEntry{id: p.ID, term: n.rn.BasicStatus().GetTerm(), lead: n.lead,
				forward: forward, data: p.Data, at: n.w.now})
		}
		for _, r := range rd.Replies {
			n.sendReply(r)
		}
	}
}

// settleProposed decides the proposals whose fate is known without their
// entry: those of an ended term or of a leader this replica no longer
// follows or is (the driver failed their requests and emptied its gate when
// it heard of the change) are let go; those older than proposalTimeout are
// refused, as the runtime's proposal timeout refuses them. Every proposal
// so leaves the gate within proposalTimeout of virtual time: a replica with
// proposals out runs this every tick.
func (n *node) settleProposed() {
	if len(n.proposed) == 0 {
		return
	}
	term := n.rn.BasicStatus().GetTerm()
	kept := n.proposed[:0]
	for _, g := range n.proposed {
		switch {
		case g.term != term || g.lead != n.lead:
			// Refused, in case the driver has not heard of the change yet;
			// if it has, it already answered the requests and ignores this.
			n.refuseProposed(g)
		case n.w.now-g.at >= proposalTimeout:
			n.w.tr.logf(n.w.now, "%s proposal %d unconfirmed for %v: refused", n, g.id, n.w.now-g.at)
			n.refuseProposed(g)
		default:
			kept = append(kept, g)
		}
	}
	n.proposed = kept
}

func (n *node) refuseProposed(g proposedEntry) {
	if g.forward {
		n.w.stats.forwardsLost++
	}
	n.step(replica.ProposalFailedEvent(g.id))
}

// confirmProposed confirms the proposal an applied entry carries.
func (n *node) confirmProposed(e *pb.Entry) {
	for i, g := range n.proposed {
		if g.term == e.GetTerm() && bytes.Equal(g.data, e.GetData()) {
			n.proposed = append(n.proposed[:i], n.proposed[i+1:]...)
			n.step(replica.ProposalConfirmedEvent(g.id))
			return
		}
	}
}

func (n *node) sendReply(r replica.Reply) {
	o, ok := n.origins[r.Request]
	if !ok {
		return
	}
	conn := n.private[r.Request]
	if r.Final() {
		delete(n.origins, r.Request)
		delete(n.byOrigin, o)
		delete(n.private, r.Request)
	}
	n.w.send(&message{kind: msgReply, from: n.id, to: o.addr, attempt: o.attempt, shard: n.shard, conn: conn, payload: &payload{reply: r}})
}

func (n *node) apply(e *pb.Entry) {
	idx := e.GetIndex()
	if idx <= n.applied {
		return
	}
	if e.GetType() != pb.EntryType_EntryNormal || len(e.GetData()) == 0 {
		n.applied = idx
		n.w.chk.appliedEmpty(n, idx)
		return
	}
	p, err := core.DecodeProposal(e.GetData())
	if err != nil {
		panic(fmt.Sprintf("sim: %s entry %d does not decode: %v", n, idx, err))
	}
	entry := core.Entry{Index: idx, Proposal: p}
	out := n.sm.Apply(entry)
	n.applied = idx
	n.w.chk.applied(n, entry, out)
	closes := shards.Expired(n.shard, n.w.opts.Shards, n.drv.IsLeader(), out)
	n.step(replica.AppliedEvent(entry, out))
	for i := range closes {
		n.expiryClose(&closes[i])
	}
	if len(n.proposed) > 0 {
		n.confirmProposed(e)
	}
}

// expiryClientSuffix marks the client ids of the closes a shard's leader
// sends when it applies an expiry, so that the ledger knows them.
const expiryClientSuffix = ".ex"

// expiryClose closes a session that expired in this shard in the shards
// cu names, as the runtime's leader does (shard.applied, closeBestEffort):
// through this replica's own node of each shard, in process (the
// runtime's shards share one NodeHost), whose driver proposes it as
// leader, forwards it, or refuses it when it knows no leader. Once, without
// retries or waiting for the answer (the runtime retries within its
// budget): a close lost here leaves that copy to its TTL, as before.
func (n *node) expiryClose(cu *shards.Cleanup) {
	for _, k := range cu.Shards {
		o := n.w.groups[k][n.id]
		if !o.up {
			continue // a replica's shards crash together; never met
		}
		if _, err := o.sm.SessionInfo(cu.Session); core.CodeOf(err) == core.CodeNotFound {
			continue // gone in this replica's applied prefix: gone for good (the runtime's goneHere)
		}
		n.exSeq++
		cmd := cu.Close()
		cmd.ClientID, cmd.Seq = fmt.Sprintf("n%d/s%d%s", n.id, n.shard, expiryClientSuffix), n.exSeq
		n.w.tr.mix(0xe4c105e, n.word(), k, uint64(cu.Session), n.exSeq)
		n.w.tr.logf(n.w.now, "%s session %d expired here: close it in shard %d", n, cu.Session, k)
		o.nextReq++
		o.step(replica.RequestEvent(o.nextReq, cmd)) // no origin: its replies go nowhere
		o.markDirty()
	}
}

// restore replaces the machine with a snapshot the leader sent.
func (n *node) restore(s *pb.Snapshot) {
	n.sm = newMachine(s.GetData(), n.w.bug, n.id)
	n.applied = s.GetMetadata().GetIndex()
	n.snapIdx = n.applied
	n.step(replica.RestoredEvent(n.sm.Now()))
	n.proposed = n.proposed[:0] // their entries, if any, were skipped; the driver emptied its gate
	n.w.stats.snapInstalls++
	n.w.chk.restored(n)
	n.w.tr.logf(n.w.now, "%s restored snapshot at %d", n, n.applied)
}

// maybeSnapshot takes a snapshot every SnapshotEvery applied entries and
// compacts the log behind it, in memory and on disk.
func (n *node) maybeSnapshot() {
	if n.applied-n.snapIdx < uint64(n.w.opts.SnapshotEvery) {
		return
	}
	snap, err := n.ms.CreateSnapshot(n.applied, n.w.confState, n.sm.Snapshot())
	if err != nil {
		panic("sim: create snapshot: " + err.Error())
	}
	n.snapIdx = n.applied
	compactTo := uint64(0)
	if n.applied > keepEntries {
		compactTo = n.applied - keepEntries
	}
	if first, _ := n.ms.FirstIndex(); compactTo >= first {
		if err := n.ms.Compact(compactTo); err != nil {
			panic("sim: compact: " + err.Error())
		}
	}
	// Saving a snapshot syncs the disk first, so that the hard state on disk
	// never commits less than the snapshot covers (raft refuses to start
	// from such a disk).
	n.dsk.sync()
	n.dsk.saveSnapshot(snap, compactTo)
	n.w.tr.mix(0x5a9, n.word(), n.applied)
}

// request hands a client's command to the driver.
func (n *node) request(m *message) {
	n.nextReq++
	id := n.nextReq
	o := origin{addr: m.from, attempt: m.attempt}
	n.origins[id] = o
	n.byOrigin[o] = id
	if m.conn {
		n.private[id] = true
	}
	n.step(replica.RequestEvent(id, m.cmd))
	n.markDirty()
}

// cancel is a client giving up on a request it sent here: the driver
// withdraws its wait from the machine (when this replica leads). A
// private request's caller is gone for good (replica.GoneEvent): the
// driver also releases a grant it did not hear. One answered already,
// its final reply on the way, is no longer known here, as the runtime no
// longer knows one whose handler took its reply and wrote it to a caller
// that had left: that grant stays with the session, for the caller's
// retry to be answered or its process to find (client.giveUpPrivate).
func (n *node) cancel(m *message) {
	o := origin{addr: m.from, attempt: m.attempt}
	id, ok := n.byOrigin[o]
	if !ok {
		return
	}
	gone := n.private[id]
	delete(n.byOrigin, o)
	delete(n.origins, id)
	delete(n.private, id)
	if gone {
		n.step(replica.GoneEvent(id))
	} else {
		n.step(replica.CancelEvent(id))
	}
	n.markDirty()
}

// withdraw is a client asking its queued request withdrawn while it waits
// to hear how the wait ended (the runtime's WithWithdrawal): its grant,
// when the log applied that first, or its end.
func (n *node) withdraw(m *message) {
	if id, ok := n.byOrigin[origin{addr: m.from, attempt: m.attempt}]; ok {
		n.step(replica.WithdrawEvent(id))
		n.markDirty()
	}
}

// read starts a linearizable read: ReadIndex, then serve once applied has
// caught up. With the stale-read bug, it answers from local state at once.
func (n *node) read(m *message) {
	if n.w.bug.staleOK {
		n.w.send(&message{kind: msgReadReply, from: n.id, to: m.from, attempt: m.attempt, shard: n.shard, payload: &payload{readRes: n.serve(m.read)}})
		return
	}
	if len(n.reads) >= maxReads && !n.expireReads() {
		return // overloaded: the reader times out and retries
	}
	n.nextRead++
	r := &pendingRead{id: n.nextRead, from: m.from, attempt: m.attempt, req: m.read, at: n.w.now}
	n.reads[r.id] = r
	ctx := make([]byte, 8)
	binary.BigEndian.PutUint64(ctx, r.id)
	n.rn.ReadIndex(ctx)
	n.markDirty()
}

// expireReads gives up the ReadIndex requests unanswered for readTimeout,
// as the runtime's read attempts time out, and says whether a slot is free
// now. Raft drops a ReadIndex without a word, so without it the dropped
// ones held their slots forever: a replica resumed from a stall, knowing no
// leader yet, met the thousands of reads queued for it at once, dropped
// them all, and refused every read after (seeds 11 and 84 of -mux 4
// -stall-rate 1, 79 of -stall-rate 0.5, with every replica full). It runs
// only when the slots are full, so that a run that never fills them runs
// as before; a read it did not give up is still answered if raft answers
// it late, which a reader that moved on ignores.
func (n *node) expireReads() bool {
	for id, r := range n.reads { // order does not matter: every expired one goes
		if n.w.now-r.at >= readTimeout {
			delete(n.reads, id)
		}
	}
	return len(n.reads) < maxReads
}

func (n *node) serveReads() {
	kept := n.readWait[:0]
	for _, r := range n.readWait {
		if r.index > n.applied {
			kept = append(kept, r)
			continue
		}
		n.w.send(&message{kind: msgReadReply, from: n.id, to: r.from, attempt: r.attempt, shard: n.shard, payload: &payload{readRes: n.serve(r.req)}})
	}
	n.readWait = kept
}

func (n *node) serve(q readRequest) readResult {
	res := readResult{index: n.applied}
	if q.fence {
		res.fenceOK, res.err = n.sm.CheckFence(q.kind, q.name, q.token)
	} else {
		res.status, res.err = n.sm.Status(q.kind, q.name)
	}
	return res
}
