package runtime

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
	"github.com/lockstepd/lockstep/runtime/transport"
)

// Node is one running Lockstep member.
type Node struct {
	cfg       config.Config
	log       *slog.Logger
	clock     func() time.Time     // the wall clock (Options.Clock)
	mono      func() time.Duration // the monotonic clock (Options.Monotonic)
	metrics   *metrics
	nh        *dragonboat.NodeHost
	replicaID uint64
	shards    []*shard
	clients   *clientPool
	versions  string // Compatibility(), or a test's stand-in
	// raftCredentials is Options.RaftCredentials: what Raft presents, nil
	// when it reads the files.
	raftCredentials func() (*tls.Certificate, *x509.CertPool)
	raftCompat      string // what the Raft hello carries: versions and the shard count
	deployment      uint64 // the Raft deployment it runs under (deploymentID, or a restored cluster's)
	// restore is a restored member's hold on grants while it closes the
	// backup's sessions (restoredsessions.go); nil for any other.
	restore *restoreHold
	// book is where the logs peers took part under are kept (nil with
	// Dragonboat's own transport, in tests); logID is this member's own.
	book  *peerLogs
	logID uint64
	// cut says whether this member's peers refuse it, and why (Health,
	// Status).
	cut cutOff
	// removalSaid: this member logged that it was removed from the
	// cluster (removedFromCluster), which every shard may tell it.
	removalSaid atomic.Bool

	proposalTimeout time.Duration // how long Dragonboat may take to commit one proposal
	retryBudget     time.Duration // how long Do retries after leader loss before ErrUnavailable
	readAttempt     time.Duration // how long one ReadIndex may take before it is sent again
	// membershipKnown says shareLogs has its baseline of shard 0's
	// membership, from which it logs each change (membershipBaseline).
	membershipKnown atomic.Bool
	drainTimeout    time.Duration // how long Close waits for in-flight requests

	// backupTurn is held by the Backup that exports (one at a time: Backup);
	// backupsWaiting counts those waiting for it.
	backupTurn     chan struct{}
	backupsWaiting atomic.Int32
	savingSnapshot func() // Options.savingSnapshot

	namesMu sync.Mutex
	names   map[uint64]string // replica id → node id, from the config; the replicated names come first

	mu      sync.Mutex
	closed  bool
	calls   sync.WaitGroup
	closing chan struct{} // closed when Close begins: queued waits end, no new requests
	stopped chan struct{} // closed when Close stops waiting: every Do returns
	stop    chan struct{} // stops the shard loops
	loops   sync.WaitGroup
	dataDir *dataDirWatch
	running runningMark

	closeOnce sync.Once
	closeErr  error

	// bootPeers is the peers this member bootstrapped its cluster with,
	// which its Raft hello carries ("" none: runtime/bootpeers.go).
	bootPeers string

	// fatal is sent, once (fatalOnce), why the member must stop at once
	// (Fatal).
	fatal     chan error
	fatalOnce sync.Once
	// logs is where Dragonboat's lines go, and goneCheck what it asks
	// them about this node's data directory (logTarget.gone).
	logs      *logTarget
	goneCheck *func() error
}

// Fatal is sent, once, why this member must stop at once: its data
// directory is gone (deleted, unmounted, unreadable), so what it writes
// from then on is lost and it can no longer keep what it acknowledged.
// It has said so at ERROR, with what to do. The process should exit
// then, without Close, which would write into the directory: Dragonboat
// and Pebble stop with a panic and a goroutine dump at their next file
// in it, and the goroutine of theirs that found the directory gone first
// is held, so that the exit comes before their panic.
func (n *Node) Fatal() <-chan error { return n.fatal }

// fail sends err on Fatal, the first time only.
func (n *Node) fail(err error) {
	n.fatalOnce.Do(func() { n.fatal <- err })
}

// CheckPeers refuses a first start that knows no members: neither
// cluster.peers nor cluster.join, and a data directory that does not
// exist or is empty (config.Cluster.PeersRequired). A restart, on a data
// directory that holds a member, needs neither: its members are in its
// log, as etcd ignores initial-cluster then. A directory that holds
// something but no member is refused by Start once Dragonboat has looked.
// Start checks it; lockstep serve (and --check) before anything listens.
// An error wrapping fs.ErrPermission says the directory could not be read.
func CheckPeers(c config.Cluster) error {
	if c.Join || len(c.Peers) > 0 {
		return nil
	}
	entries, err := os.ReadDir(c.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && len(entries) == 0:
		return c.PeersRequired()
	case err != nil:
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	return nil
}

// deploymentID keeps Lockstep's Raft traffic apart from other Dragonboat
// deployments that might share the addresses. A cluster restored from a
// backup runs under another, drawn by Restore and recorded in the data
// directory (readDeployment), which keeps the lost cluster's members out.
const deploymentID = 0x4c6f636b73746570 // "Lockstep"

// nodeHostConfig is Dragonboat's configuration of the member, as Start
// and Restore (which must write what Start reads) give it.
func nodeHostConfig(cfg config.Config, dir string, deployment uint64) dbconfig.NodeHostConfig {
	rtt, _, _ := cfg.Consensus.RTT()
	logdb := dbconfig.GetTinyMemLogDBConfig()
	logdb.Shards = 1
	return dbconfig.NodeHostConfig{
		DeploymentID:   deployment,
		NodeHostDir:    dir,
		RTTMillisecond: rtt,
		RaftAddress:    cfg.Cluster.RaftAddress,
		ListenAddress:  cfg.Cluster.RaftListenAddress, // empty: RaftAddress
		// Dragonboat's Pebble store, which leaves a commit-only update
		// unwritten (runtime/logstore.go).
		Expert: dbconfig.ExpertConfig{LogDB: logdb, LogDBFactory: logStoreFactory{}},
	}
}

// Start starts the node: opens (or creates) its data directory, starts
// Dragonboat and the shard (replaying its snapshot and log), and returns
// once the shard runs. It does not wait for a leader: Healthy says when one
// is known, and Do waits for one within its retry budget.
func Start(ctx context.Context, opts Options) (*Node, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("node", cfg.Cluster.NodeID)
	cfg, adopted, err := WithRecordedIncarnation(cfg)
	if err != nil && !errors.Is(err, fs.ErrPermission) {
		return nil, err
	} // a directory this user may not read: CheckDataDir says so, below
	if adopted {
		log.Info("running as the incarnation the data directory records", "incarnation", cfg.Cluster.Incarnation)
	}
	clock, mono := opts.Clock, opts.Monotonic
	switch {
	case clock == nil && mono == nil:
		clock = time.Now
		origin := time.Now()
		mono = func() time.Duration { return time.Since(origin) }
	case clock == nil:
		clock = time.Now
	case mono == nil:
		mono = func() time.Duration { return time.Duration(clock().UnixMilli()) * time.Millisecond }
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Cluster.DataDir)
	if err != nil {
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	// Before the directory is made: a first start needs its peers.
	checked := cfg.Cluster
	checked.DataDir = dir
	if err := CheckPeers(checked); err != nil {
		return nil, err
	}
	// Before the directory is made and Dragonboat touches it (under
	// another incarnation it would bootstrap a new replica there): what
	// lockstep serve --check checks too.
	if err := CheckDataDir(cfg); err != nil {
		return nil, err
	}
	fresh := dirFresh(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	if err := adoptDeployment(dir, fresh, cfg.Cluster); err != nil {
		return nil, err
	}
	boot, err := bootPeers(dir, fresh, cfg.Cluster)
	if err != nil {
		return nil, err
	}
	election := time.Duration(cfg.Consensus.ElectionTimeoutMs) * time.Millisecond
	n := &Node{
		cfg: cfg, log: log, clock: clock, mono: mono, metrics: met,
		replicaID: config.ReplicaID(cfg.Cluster.NodeID, cfg.Cluster.Incarnation),
		clients:   newClientPool(cfg.Cluster.NodeID),
		// A forwarded proposal that Dragonboat drops (sent on a connection
		// that died in a partition, whose reconnect its circuit breaker
		// delays) is only retried when this ends, so it bounds how long a
		// healed node takes to serve again (docs/performance.md, Partition).
		// Commits take milliseconds; 1 s leaves two orders of magnitude.
		proposalTimeout: max(time.Second, 3*election),
		retryBudget:     max(time.Second, 5*election),
		readAttempt:     max(500*time.Millisecond, 3*election),
		names:           map[uint64]string{},
		backupTurn:      make(chan struct{}, 1),
		savingSnapshot:  opts.savingSnapshot,
		closing:         make(chan struct{}),
		stopped:         make(chan struct{}),
		stop:            make(chan struct{}),
		bootPeers:       boot,
		fatal:           make(chan error, 1),
	}
	n.drainTimeout = 2*n.proposalTimeout + time.Second
	for id := range cfg.Cluster.Peers {
		n.names[config.ReplicaID(id, 0)] = id
	}
	n.names[n.replicaID] = cfg.Cluster.NodeID
	target := newLogTarget(log, n.shortName, n.isClosing)
	for id, addr := range cfg.Cluster.Peers {
		target.addrs[addr] = id
	}
	for i := range cfg.Consensus.Shards {
		sh, err := newShard(n, uint64(i))
		if err != nil {
			return nil, err
		}
		n.shards = append(n.shards, sh)
	}
	routeDragonboatLogs(target) // after n.shards is set: shortName reads it
	n.cut.changed = func() {
		for _, sh := range n.shards {
			sh.showLeader()
		}
	}

	rtt, hb, el := cfg.Consensus.RTT()
	deployment, err := readDeployment(dir)
	if err != nil {
		return nil, err
	}
	n.deployment = deployment
	if r, found, err := readRestoreRecord(dir); err != nil {
		return nil, err
	} else if found {
		n.restore = &restoreHold{below: core.SessionID(r.below << core.SlotBits), hold: r.hold,
			defaultTTL: time.Duration(cfg.Locks.DefaultTTLSeconds) * time.Second, dir: dir, closed: make(chan struct{})}
		if !r.grantsFrom.IsZero() { // the backup's sessions were closed before this start
			n.restore.until = time.Now().Add(time.Until(r.grantsFrom)) // on the monotonic clock
			close(n.restore.closed)
		}
	}
	nhc := nodeHostConfig(cfg, dir, deployment)
	if opts.heldCommitLost {
		nhc.Expert.LogDBFactory = logStoreFactory{heldLost: true}
	}
	nhc.RaftEventListener = leaderListener{n}
	// Membership changes reach the book of peers' logs.
	nhc.SystemEventListener = membershipListener{n}
	n.versions = opts.compatibility
	if n.versions == "" {
		n.versions = Compatibility()
	}
	// What a peer must share: the log versions, and the shard count, since
	// a member that spread names over another count would look for a name
	// in another shard than the others and could grant it twice.
	n.raftCompat = fmt.Sprintf("%s, shards %d", n.versions, len(n.shards))
	if deployment != deploymentID {
		// A restored cluster's members refuse the lost cluster's, and
		// members restored otherwise, at the hello, where the refusal is
		// logged and counted with its reason; Dragonboat's own check
		// drops their messages without a word an operator sees.
		n.raftCompat += fmt.Sprintf(", %s%016x", deploymentMark, deployment)
	}
	if t := cfg.Security.TLS; t != nil {
		// Raft is mutual TLS with the node's own certificate: a member must
		// present one the cluster's CA signed, and a peer's certificate
		// must name the host of its raft_address. Dragonboat wants the
		// files named under MutualTLS. With RaftCredentials the transport
		// takes the certificate and CA in force at every handshake, its
		// listener's and each dial's, so that what a reload (SIGHUP) put
		// in force after its checks reaches new connections without a
		// restart (docs/security.md, "Rotating certificates and keys");
		// without, it reads the files, its listener once at start.
		nhc.MutualTLS, nhc.CAFile, nhc.CertFile, nhc.KeyFile = true, t.CAFile, t.CertFile, t.KeyFile
		if !opts.dragonboatTransport {
			n.raftCredentials = opts.RaftCredentials
		}
	}
	if !opts.dragonboatTransport {
		// One write per frame and buffered reads, and a hello that keeps
		// members of other versions or shard counts out (runtime/transport).
		cutOff := newCutOffLog(log, n.raftCompat, target.addrs)
		traffic := raftTraffic{m: n.metrics, self: n.replicaID, cut: &n.cut, cutOff: cutOff,
			settings: newSettingsWatch(log, cfg.Consensus.Settings(), n.peerName(cutOff), n.metrics.settingsDiffer)}
		// And an identity that keeps out a member that lost its log, which
		// its peers have seen take part under another (runtime/peerlogs.go).
		if n.logID, err = logID(dir); err != nil {
			return nil, err
		}
		if n.book, err = openPeerLogs(dir); err != nil {
			return nil, err
		}
		nhc.Expert.TransportFactory = transport.Factory{Observer: traffic, Compatibility: n.raftCompat, Credentials: n.raftCredentials,
			Self: transport.Identity{Replica: n.replicaID, Log: n.logID}, Book: n.book, Peers: n.bootPeers,
			Settings: cfg.Consensus.Settings()}
	}
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		return nil, fmt.Errorf("runtime: starting Dragonboat on %s in %s: %w%s", cfg.Cluster.RaftAddress, dir, err, dataDirHint(err))
	}
	n.nh = nh
	if err := n.checkShardCount(dir); err != nil {
		nh.Close()
		return nil, err
	}
	// Once Dragonboat holds the directory's lock: no other process's
	// backup is under way in it.
	removeBackupLeftovers(dir, log)
	n.running = markRunning(dir, log)
	for _, sh := range n.shards {
		sh.session = nh.GetNoOPSession(sh.dbID)
		if err := n.startShard(sh, hb, el); err != nil {
			nh.Close()
			return nil, err
		}
	}
	if err := n.recordIncarnation(dir); err != nil {
		nh.Close()
		return nil, err
	}
	if err := n.recordNodeID(dir); err != nil {
		nh.Close()
		return nil, err
	}
	n.dataDir = newDataDirWatch(dir, opts.dataDirEvery, opts.dataDirStall)
	n.dataDir.onGone = n.fail
	if opts.dataDirWrite != nil {
		n.dataDir.write = opts.dataDirWrite
	}
	if err := n.dataDir.register(opts.Registerer); err != nil {
		nh.Close()
		return nil, err
	}
	if err := n.registerHealth(opts.Registerer); err != nil {
		nh.Close()
		return nil, err
	}
	n.loops.Add(1)
	go func() {
		defer n.loops.Done()
		n.dataDir.run(n.stop, log)
	}()
	for _, sh := range n.shards {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			sh.run(n.stop)
		}()
	}
	if n.book != nil {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			n.shareLogs()
		}()
	}
	if h := n.restore; h != nil {
		select {
		case <-h.closed:
		default:
			log.Warn("restored from a backup: closing the backup's sessions; this member grants nothing until they are closed " +
				"and their leases have run out, while the old cluster's clients may still count them")
			n.loops.Add(1)
			go func() {
				defer n.loops.Done()
				n.closeBackupSessions(h)
			}()
		}
	}
	if len(n.shards) > 1 {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			bt := opts.balance
			if bt == (balanceTimes{}) {
				bt = newBalanceTimes(cfg.Consensus.ElectionTimeoutMs)
			}
			n.balance(bt)
		}()
	}
	// Once the directory's records are written: a line Pebble or
	// Dragonboat logs before it panics first asks whether the directory
	// is gone, and stops the member as the watch would.
	n.logs, n.goneCheck = target, target.setGone(func() error { return n.dataDir.gone(log) })
	log.Info("node started", "replica_id", fmt.Sprintf("%x", n.replicaID), "raft_address", cfg.Cluster.RaftAddress,
		"data_dir", dir, "rtt_ms", rtt, "heartbeat_rtt", hb, "election_rtt", el)
	return n, nil
}

func (n *Node) startShard(sh *shard, hb, el uint64) error {
	c := n.cfg
	rc := dbconfig.Config{
		ReplicaID:           n.replicaID,
		ShardID:             sh.dbID,
		CheckQuorum:         true, // a leader cut off from a quorum steps down instead of answering
		PreVote:             true, // a rejoining node does not disrupt a healthy leader
		ElectionRTT:         el,
		HeartbeatRTT:        hb,
		SnapshotEntries:     uint64(c.Consensus.SnapshotEntries),
		CompactionOverhead:  uint64(c.Consensus.CompactionOverhead),
		OrderedConfigChange: true,
		WaitReady:           true,
	}
	members := map[uint64]dragonboat.Target{}
	join := false
	switch {
	case n.nh.HasNodeInfo(sh.dbID, n.replicaID):
		// A restart: the members are in the log.
	case c.Cluster.Join:
		join = true
	case len(c.Cluster.Peers) == 0:
		// The directory held something (CheckPeers), but no member of
		// this shard.
		return fmt.Errorf("runtime: shard %d: %w", sh.index, c.Cluster.PeersRequired())
	default:
		if err := n.checkBootPeers(); err != nil {
			return err
		}
		for id, addr := range c.Cluster.Peers {
			members[config.ReplicaID(id, 0)] = addr
		}
	}
	create := func(uint64, uint64) sm.IConcurrentStateMachine { return sh.sm }
	if err := n.nh.StartConcurrentReplica(members, join, create, rc); err != nil {
		return fmt.Errorf("runtime: starting shard %d: %w", sh.index, err)
	}
	return nil
}

// membershipListener tells shareLogs that shard 0's membership changed.
type membershipListener struct{ n *Node }

func (l membershipListener) MembershipChanged(info raftio.NodeInfo) {
	if info.ShardID == 1 && l.n.book != nil {
		l.n.book.wake()
	}
}

func (membershipListener) NodeHostShuttingDown()        {}
func (membershipListener) NodeUnloaded(raftio.NodeInfo) {}

// NodeDeleted is Dragonboat's word that a replica applied its own removal
// from a shard (or restored a snapshot whose membership removed it). It
// unloads the replica at once, so the membership shareLogs reads on this
// member has no such shard by then, and a removed member that ran on (a
// leader removed through its own API, as the CLI sends it) said it was a
// follower, healthy in all but its leader: nothing told it otherwise.
func (l membershipListener) NodeDeleted(info raftio.NodeInfo) {
	if info.ReplicaID == l.n.replicaID {
		l.n.removedFromCluster()
	}
}

func (membershipListener) NodeReady(raftio.NodeInfo)                   {}
func (membershipListener) ConnectionEstablished(raftio.ConnectionInfo) {}
func (membershipListener) ConnectionFailed(raftio.ConnectionInfo)      {}
func (membershipListener) SendSnapshotStarted(raftio.SnapshotInfo)     {}
func (membershipListener) SendSnapshotCompleted(raftio.SnapshotInfo)   {}
func (membershipListener) SendSnapshotAborted(raftio.SnapshotInfo)     {}
func (membershipListener) SnapshotReceived(raftio.SnapshotInfo)        {}
func (membershipListener) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (membershipListener) SnapshotCreated(raftio.SnapshotInfo)         {}
func (membershipListener) SnapshotCompacted(raftio.SnapshotInfo)       {}
func (membershipListener) LogCompacted(raftio.EntryInfo)               {}
func (membershipListener) LogDBCompacted(raftio.EntryInfo)             {}

type leaderListener struct{ n *Node }

func (l leaderListener) LeaderUpdated(info raftio.LeaderInfo) {
	if sh := l.n.shardByDB(info.ShardID); sh != nil {
		sh.leaderUpdated(info)
	}
	if info.ShardID == 1 {
		// A leader known: the membership is too (shareLogs reads it; a
		// bootstrap reports no membership change).
		membershipListener(l).MembershipChanged(raftio.NodeInfo{ShardID: 1})
	}
}

func (n *Node) shardByDB(dbID uint64) *shard {
	if dbID >= 1 && dbID <= uint64(len(n.shards)) {
		return n.shards[dbID-1]
	}
	return nil
}

// shardFor returns the shard that owns name (shard 0 for "").
func (n *Node) shardFor(name string) *shard { return n.shards[n.ShardOf(name)] }

// clockEvent reads the node's two clocks for a driver (replica.ClockEvent).
func (n *Node) clockEvent() replica.Event {
	return replica.ClockEvent(core.LogTime(n.clock().UnixMilli()), core.LogTime(n.mono().Milliseconds()))
}

// cancelOnClose cancels ctx, by its cancel, once done is closed, and
// returns then or when ctx ends first: a goroutine's body.
func cancelOnClose(ctx context.Context, cancel context.CancelFunc, done <-chan struct{}) {
	select {
	case <-done:
		cancel()
	case <-ctx.Done():
	}
}

// enter registers a call that Close must drain; false once Close began.
func (n *Node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.calls.Add(1)
	return true
}

func (n *Node) leave() { n.calls.Done() }

// isClosing reports whether Close (or crash) has begun.
func (n *Node) isClosing() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// NodeID is this node's id.
func (n *Node) NodeID() string { return n.cfg.Cluster.NodeID }

// Config is the configuration the node started with.
func (n *Node) Config() config.Config { return n.cfg }

// Close stops the node: new requests are refused (ErrShuttingDown), queued
// waits whose callers can send them again elsewhere (their own ClientID and
// Seq) are left in the queue and answered ErrWaitKept, other queued waits
// are withdrawn through the log, requests already proposed get their
// answer (within the drain timeout), this node hands leadership to another
// member if it leads, and then NodeHost closes.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	close(n.closing)

	drained := make(chan struct{})
	go func() { n.calls.Wait(); close(drained) }()
	timer := time.NewTimer(n.drainTimeout)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		n.log.Warn("closing with requests still in flight", "waited", n.drainTimeout)
	}
	close(n.stopped)
	<-drained // every Do returns once stopped is closed

	// Let the cancels of withdrawn waits reach the log: those in flight,
	// and those whose proposal failed, which the driver asks again a tick
	// interval later (the shard's loop runs until n.stop closes).
	deadline := time.Now().Add(time.Second)
	for _, sh := range n.shards {
		sh.flush(time.Second)
		for time.Now().Before(deadline) {
			sh.mu.Lock()
			idle := sh.drv.Unconfirmed() == 0 && sh.drv.Owed() == 0
			sh.mu.Unlock()
			if idle {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	n.handOffLeadership()
	close(n.stop)
	n.loops.Wait()
	for _, sh := range n.shards {
		sh.watch.close()
	}
	n.nh.Close()
	n.running.stopped()
	if n.logs != nil && n.goneCheck != nil {
		// Dragonboat's lines may go on to this target until another
		// node starts (tests run several): they must not ask about a
		// directory this node no longer runs on.
		n.logs.gone.CompareAndSwap(n.goneCheck, nil)
	}
	n.log.Info("node closed")
	return nil
}

// crash stops the node the way a kill -9 would, as far as the other members
// can tell: no drain, no leadership hand-off. For tests.
func (n *Node) crash() {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		close(n.closing)
		close(n.stopped)
		close(n.stop)
		n.loops.Wait()
		for _, sh := range n.shards {
			sh.watch.close()
		}
		n.nh.Close()
	})
}

// The leadership hand-off's limits (handOffLeadership). Dragonboat's
// leader holds a transfer request for one election timeout, taking no
// proposals meanwhile, and ignores another request until then. Its target
// skips the campaign while it has committed entries left to apply, as it
// often has in a busy cluster, and the request is then lost: it can be
// made again only once the leader dropped it, an election timeout after.
const (
	// handOffHolds bounds the hand-off in election timeouts: Dragonboat's
	// hold on the first request, and on one made again once the first was
	// dropped. By then the leader has taken no proposal for an election
	// timeout, so the target has applied what it had and campaigns. A
	// third hold would end no sooner than the election the others hold
	// once this node is gone (one to two election timeouts), and would
	// hold Close longer.
	handOffHolds = 2
	// handOffSlackHeartbeats is added to the bound, in heartbeat
	// intervals: Dragonboat counts its hold in the ticks of its own loop,
	// which a loaded machine delays, so the request made again may be
	// taken a little after the first hold's election timeout.
	handOffSlackHeartbeats = 2
	// handOffPoll is how often Close looks whether another member leads.
	handOffPoll = 5 * time.Millisecond
)

// handOffBound bounds handOffLeadership: handOffHolds election timeouts
// and the slack.
func handOffBound(election, heartbeat time.Duration) time.Duration {
	return handOffHolds*election + handOffSlackHeartbeats*heartbeat
}

// handOffLeadership moves the leadership of the shards this node leads to
// another member, so that the cluster does not wait an election timeout to
// notice it left. Best effort, bounded by handOffBound. Each shard is
// asked at once, and while this node still leads it an election timeout
// after (the request was lost), asked again every heartbeat interval, to
// the other members in turn, until another member leads: the first
// request made after Dragonboat dropped the last is taken, and those made
// before are ignored. The shards are handed off together.
func (n *Node) handOffLeadership() {
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return
	}
	type handOff struct {
		shard  uint64   // Dragonboat's shard id
		others []uint64 // the other members, asked in turn
		asked  int      // requests made
		again  time.Time
	}
	c := n.cfg.Consensus
	election := time.Duration(c.ElectionTimeoutMs) * time.Millisecond
	heartbeat := time.Duration(c.HeartbeatIntervalMs) * time.Millisecond
	begun := time.Now()
	deadline := begun.Add(handOffBound(election, heartbeat))
	var pending []*handOff
	for _, si := range info.ShardInfoList {
		// ShardInfo.IsLeader is never set by this Dragonboat version's
		// GetNodeHostInfo: ask for the leader instead.
		if leader, _, ok, _ := n.nh.GetLeaderID(si.ShardID); !ok || leader != n.replicaID || len(si.Replicas) < 2 {
			continue
		}
		others := slices.DeleteFunc(slices.Sorted(maps.Keys(si.Replicas)), func(id uint64) bool { return id == n.replicaID })
		pending = append(pending, &handOff{shard: si.ShardID, others: others, again: begun})
	}
	for len(pending) > 0 && time.Now().Before(deadline) {
		now := time.Now()
		pending = slices.DeleteFunc(pending, func(h *handOff) bool {
			leader, _, ok, _ := n.nh.GetLeaderID(h.shard)
			switch {
			case ok && leader != 0 && leader != n.replicaID:
				return true // handed off
			case !ok || leader != n.replicaID || now.Before(h.again):
				// No leader known (an election under way, the target's
				// most likely), or the last request may still stand.
				return false
			}
			target := h.others[h.asked%len(h.others)]
			if h.asked == 0 {
				h.again = now.Add(election)
			} else {
				h.again = now.Add(heartbeat)
				n.log.Debug("leadership hand-off: still leading after the request was held, asking again",
					"shard", h.shard-1, "target", n.nodeName(target), "request", h.asked+1)
			}
			h.asked++
			return n.nh.RequestLeaderTransfer(h.shard, target) != nil
		})
		time.Sleep(handOffPoll)
	}
	for _, h := range pending {
		n.log.Info("leadership not handed off on close: the other members elect a leader once this node is gone",
			"shard", h.shard-1, "requests", h.asked, "within", handOffBound(election, heartbeat))
	}
}

// dataDirHint says what to do about Dragonboat's refusals of a data
// directory, which name no remedy. Its errors live in an internal package,
// so they are told apart by their text.
func dataDirHint(err error) string {
	switch msg := err.Error(); {
	case strings.Contains(msg, "not the owner of the data directory"):
		return ": cluster.data_dir belongs to a member that ran with another cluster.raft_address; start with that address, " +
			"or, to move the member, remove it, add it back at the new address and start it on an empty data directory with --join " +
			"and the incarnation AddNode answers (docs/operations.md, Membership changes, \"Move a member to another Raft address\")"
	case strings.Contains(msg, "failed to lock data directory"):
		return ": another process holds cluster.data_dir (a lockstep serve still running on it?): stop it, or give this member its own data_dir"
	case strings.Contains(msg, "hostname changed"):
		return ": cluster.data_dir was made on another host; a member's data directory moves with its host name, or not at all"
	}
	return ""
}
