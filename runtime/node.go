package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"
	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
)

// Node is one running Lockstep member.
type Node struct {
	cfg       config.Config
	log       *slog.Logger
	clock     func() time.Time
	metrics   *metrics
	nh        *dragonboat.NodeHost
	replicaID uint64
	shards    []*shard
	clients   *clientPool

	proposalTimeout time.Duration // how long Dragonboat may take to commit one proposal
	retryBudget     time.Duration // how long Do retries after leader loss before ErrUnavailable
	readAttempt     time.Duration // how long one ReadIndex may take before it is sent again
	drainTimeout    time.Duration // how long Close waits for in-flight requests

	namesMu sync.Mutex
	names   map[uint64]string // replica id → node id, from the config; the replicated names come first

	mu      sync.Mutex
	closed  bool
	calls   sync.WaitGroup
	closing chan struct{} // closed when Close begins: queued waits end, no new requests
	stopped chan struct{} // closed when Close stops waiting: every Do returns
	stop    chan struct{} // stops the shard loops
	loops   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// deploymentID keeps Lockstep's Raft traffic apart from other Dragonboat
// deployments that might share the addresses.
const deploymentID = 0x4c6f636b73746570 // "Lockstep"

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
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Cluster.DataDir)
	if err != nil {
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster.data_dir: %w", err)
	}
	election := time.Duration(cfg.Consensus.ElectionTimeoutMs) * time.Millisecond
	n := &Node{
		cfg: cfg, log: log, clock: clock, metrics: met,
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
		closing:         make(chan struct{}),
		stopped:         make(chan struct{}),
		stop:            make(chan struct{}),
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

	rtt, hb, el := cfg.Consensus.RTT()
	logdb := dbconfig.GetTinyMemLogDBConfig()
	logdb.Shards = 1
	nhc := dbconfig.NodeHostConfig{
		DeploymentID:      deploymentID,
		NodeHostDir:       dir,
		RTTMillisecond:    rtt,
		RaftAddress:       cfg.Cluster.RaftAddress,
		ListenAddress:     cfg.Cluster.RaftListenAddress, // empty: RaftAddress
		RaftEventListener: leaderListener{n},
		Expert:            dbconfig.ExpertConfig{LogDB: logdb},
	}
	if t := cfg.Security.TLS; t != nil {
		// Raft is mutual TLS with the node's own certificate: a member must
		// present one the cluster's CA signed, and a peer's certificate
		// must name the host of its raft_address. Dragonboat reads the
		// files when it starts listening and at every dial, so a renewed
		// certificate reaches outgoing connections at once and the
		// listener at the next restart (docs/security.md).
		nhc.MutualTLS, nhc.CAFile, nhc.CertFile, nhc.KeyFile = true, t.CAFile, t.CertFile, t.KeyFile
	}
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		return nil, fmt.Errorf("runtime: starting Dragonboat on %s in %s: %w", cfg.Cluster.RaftAddress, dir, err)
	}
	n.nh = nh
	if err := n.checkShardCount(dir); err != nil {
		nh.Close()
		return nil, err
	}
	for _, sh := range n.shards {
		sh.session = nh.GetNoOPSession(sh.dbID)
		if err := n.startShard(sh, hb, el); err != nil {
			nh.Close()
			return nil, err
		}
	}
	for _, sh := range n.shards {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			sh.run(n.stop)
		}()
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
	default:
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

type leaderListener struct{ n *Node }

func (l leaderListener) LeaderUpdated(info raftio.LeaderInfo) {
	if sh := l.n.shardByDB(info.ShardID); sh != nil {
		sh.leaderUpdated(info)
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

func (n *Node) now() core.LogTime { return core.LogTime(n.clock().UnixMilli()) }

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

// ErrOverloaded wraps ErrUnavailable: this node holds too many requests
// (HTTP 429 or 503). Retry later.
var ErrOverloaded = fmt.Errorf("%w: this node holds too many requests", ErrUnavailable)

// Do proposes cmd and blocks until its final answer: for an acquire,
// campaign or barrier wait that queues, until granted or ended (the Result
// then says granted, released, or refused with a Reason). If ctx ends while
// queued, Do proposes OpCancel for the waiter and returns ctx.Err(). If cmd
// has no ClientID, Do assigns a node-local one and a Seq, so that its own
// retries after a leader loss are idempotent.
//
// A nil error means the Result is authoritative (Result.Err carries core's
// refusals; a command core.CheckCommand refuses, and OpLeaderChange, which
// is the runtime's own, are refused there before anything is proposed). A non-nil
// error is ErrUnavailable (no leader or quorum within the retry budget: HTTP
// 503; ErrOverloaded wraps it), ErrShuttingDown, or ctx's error.
//
// Do works on any member: on a follower, the command is forwarded to the
// leader through Dragonboat (see shard). With several shards, Do sends the
// command to its name's shard, and session commands to every shard (see
// route).
func (n *Node) Do(ctx context.Context, cmd core.Command) (core.Result, error) {
	if !n.enter() {
		return core.Result{}, ErrShuttingDown
	}
	defer n.leave()
	if cmd.Op == core.OpLeaderChange {
		return refused("op leader_change is the runtime's own: clients cannot send it"), nil
	}
	if err := core.CheckCommand(machineLimits, &cmd); err != nil {
		return core.Result{Err: err}, nil // bad input costs no log entry
	}
	if c := n.identify(&cmd); c != nil {
		defer n.clients.put(c)
	}
	return n.route(ctx, cmd)
}

// identify gives a command without a ClientID a node-local one and the next
// Seq, so that the runtime's own retries of it are idempotent. The client it
// returns (nil when cmd had its own) goes back to the pool once the
// command's answer is final, so that no other command shares its Seqs.
func (n *Node) identify(cmd *core.Command) *localClient {
	if cmd.ClientID != "" {
		return nil
	}
	c := n.clients.get()
	c.seq++
	cmd.ClientID, cmd.Seq = c.id, c.seq
	return c
}

func refused(msg string) core.Result {
	return core.Result{Err: &core.Error{Code: core.CodeInvalidArgument, Msg: msg}}
}

func (s *shard) do(ctx context.Context, cmd core.Command) (core.Result, error) {
	n := s.n
	start := time.Now()
	why := ""
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-n.closing:
				return core.Result{}, ErrShuttingDown
			default:
			}
			if time.Since(start) > n.retryBudget {
				return core.Result{}, fmt.Errorf("%w: %s: %s after %v", ErrUnavailable, s, why, time.Since(start).Round(time.Millisecond))
			}
		}
		p, err := s.submit(cmd)
		if errors.Is(err, errNoLeader) {
			why = "no leader is known"
			if err := s.waitLeader(ctx, start, n.retryBudget); err != nil {
				return core.Result{}, err
			}
			continue
		}
		if err != nil {
			return core.Result{}, err
		}
		rep, queued, err := s.await(ctx, p)
		if err != nil {
			return core.Result{}, err
		}
		if queued {
			start = time.Now() // it waited, healthy, until now: the budget counts from here
		}
		switch rep.Kind {
		case replica.ReplyResult, replica.ReplyGranted, replica.ReplyWaitEnded:
			return rep.Result, nil
		case replica.ReplyNotLeader:
			why = "leadership moved"
			if err := s.waitLeader(ctx, time.Now(), 10*time.Millisecond); err != nil && !errors.Is(err, ErrUnavailable) {
				return core.Result{}, err
			}
		case replica.ReplyUnknown:
			why = "the proposal was not confirmed (leader lost, or no quorum)"
		case replica.ReplyBusy:
			return core.Result{}, ErrOverloaded
		case replica.ReplyRejected:
			return refused("the runtime cannot propose this command"), nil
		default:
			return core.Result{}, fmt.Errorf("runtime: unexpected reply %v", rep.Kind)
		}
	}
}

// waitLeader waits for a leadership event, until budget has passed since
// start.
func (s *shard) waitLeader(ctx context.Context, start time.Time, budget time.Duration) error {
	left := budget - time.Since(start)
	if left <= 0 {
		return fmt.Errorf("%w: %s: no leader is known after %v", ErrUnavailable, s, budget)
	}
	_, _, _, changed := s.leadership()
	t := time.NewTimer(min(left, 20*time.Millisecond)) // the forwarder also waits for a first applied entry
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.n.stopped:
		return ErrShuttingDown
	}
	return nil
}

// await waits for p's final reply. A queued request keeps waiting until
// granted, ended, its ctx ends, or the node closes. Until it is queued (or
// answered), a request is bounded by the proposal timeout plus the retry
// budget, whatever ctx says: the drivers answer sooner when leadership is
// lost, but a request must not wait on a stuck pipeline forever.
func (s *shard) await(ctx context.Context, p *pending) (rep replica.Reply, queued bool, err error) {
	closing := s.n.closing
	stuck := time.NewTimer(s.n.proposalTimeout + s.n.retryBudget)
	defer stuck.Stop()
	stuckC := stuck.C
	for {
		select {
		case rep = <-p.ch:
			if rep.Kind != replica.ReplyQueued {
				return rep, queued, nil
			}
			if !queued {
				NotifyQueued(ctx, rep.Result.Waiter)
			}
			queued = true
			if closing == nil { // the node is closing: do not start a long wait
				s.withdraw(p)
				return replica.Reply{}, queued, ErrShuttingDown
			}
			stuckC = nil
		case <-ctx.Done():
			s.withdraw(p)
			return replica.Reply{}, queued, ctx.Err()
		case <-closing:
			if s.isBlocked(p) {
				s.withdraw(p)
				return replica.Reply{}, queued, ErrShuttingDown
			}
			closing = nil // let it finish: Close drains in-flight requests
		case <-stuckC:
			s.withdraw(p)
			return replica.Reply{}, queued, fmt.Errorf("%w: %s: no answer within %v (it may still apply)", ErrUnavailable, s,
				s.n.proposalTimeout+s.n.retryBudget)
		case <-s.n.stopped:
			s.withdraw(p)
			return replica.Reply{}, queued, ErrShuttingDown
		}
	}
}

// withdraw abandons p and makes sure a wait it holds in the machine is
// cancelled through the log.
func (s *shard) withdraw(p *pending) {
	waiter, session, proposed := s.abandon(p)
	if waiter == 0 || proposed {
		return
	}
	// The driver cannot propose now (no leader is known, or nothing is
	// applied yet): cancel through Do, which waits for a leader.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.n.retryBudget)
		defer cancel()
		// This shard's own: with several shards, waiter ids are per shard.
		if _, err := s.n.doOn(ctx, s, core.Command{Op: core.OpCancel, Waiter: waiter, Session: session}); err != nil {
			s.log.Debug("could not cancel an abandoned wait", "waiter", waiter, "err", err)
		}
	}()
}

// Read runs fn on the state machine of the shard that owns name (shard 0
// when name is ""), after a ReadIndex unless stale, and returns the applied
// index fn saw. fn runs under the machine's read lock: it must be quick, must
// not keep the machine, and must not call back into the Node. Without a
// deadline on ctx, the ReadIndex is bounded by the node's retry budget.
//
// A linearizable read needs a leader and a quorum; it fails with
// ErrUnavailable when there is none. A stale read answers from this
// replica's state, however old.
func (n *Node) Read(ctx context.Context, name string, stale bool, fn func(m *core.Machine) error) (uint64, error) {
	if !n.enter() {
		return 0, ErrShuttingDown
	}
	defer n.leave()
	return n.readShard(ctx, n.shardFor(name), stale, fn)
}

// readIndex retries SyncRead while the shard has no leader, within ctx or,
// when ctx has no deadline, the retry budget.
func (n *Node) readIndex(ctx context.Context, s *shard, q readQuery) (any, error) {
	parent := ctx
	ctx, cancel := n.opContext(ctx, n.retryBudget)
	defer cancel()
	for {
		// Each attempt is bounded by a few election timeouts: a ReadIndex
		// sent to a leader that died is never answered, and only a new
		// attempt reaches the next leader.
		attempt, cancelAttempt := context.WithTimeout(ctx, n.readAttempt)
		v, err := n.nh.SyncRead(attempt, s.dbID, q)
		attemptExpired := attempt.Err() != nil
		cancelAttempt()
		if err == nil {
			return v, nil
		}
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s: no read index within %v: %v", ErrUnavailable, s, n.retryBudget, err)
		}
		if !retryable(err) && !attemptExpired {
			return nil, n.dragonboatErr(s, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, dragonboat.ErrShardNotReady) || errors.Is(err, dragonboat.ErrSystemBusy) ||
		errors.Is(err, dragonboat.ErrTimeout) || errors.Is(err, dragonboat.ErrShardNotInitialized) ||
		errors.Is(err, dragonboat.ErrAborted) || errors.Is(err, dragonboat.ErrRejected)
}

func (n *Node) dragonboatErr(s *shard, err error) error {
	if errors.Is(err, dragonboat.ErrClosed) || errors.Is(err, dragonboat.ErrShardClosed) {
		return ErrShuttingDown
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, s, err)
}

// Watch streams copies of the effects whose Name starts with prefix ("" for
// all), from the next applied entry on when fromIndex is 0, or from the
// entry fromIndex on (ErrCompacted when this node no longer keeps it: it
// keeps the last few thousand events, since its start or its last snapshot
// install). The channel closes when ctx ends, when the node closes, or when
// the consumer falls behind by more than the stream's buffer; resume with
// the last Index received plus one.
func (n *Node) Watch(ctx context.Context, prefix string, fromIndex uint64) (<-chan Event, error) {
	if !n.enter() {
		return nil, ErrShuttingDown
	}
	defer n.leave()
	if len(n.shards) == 1 {
		return n.shards[0].watch.subscribe(ctx, prefix, fromIndex, nil)
	}
	if fromIndex != 0 {
		return nil, fmt.Errorf("%w: from index %d is ambiguous with %d shards (each numbers its own log): "+
			"watch one shard with WatchShard, or start from now (0)", ErrAmbiguousIndex, fromIndex, len(n.shards))
	}
	return n.watchAll(ctx, prefix)
}

// Status reports the shards and members as this node sees them. It needs no
// quorum.
func (n *Node) Status(ctx context.Context) (ClusterStatus, error) {
	if !n.enter() {
		return ClusterStatus{}, ErrShuttingDown
	}
	defer n.leave()
	if err := ctx.Err(); err != nil {
		return ClusterStatus{}, err
	}
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return ClusterStatus{}, ErrShuttingDown
	}
	st := ClusterStatus{NodeID: n.cfg.Cluster.NodeID}
	var members map[uint64]string
	for _, sh := range n.shards {
		ss := ShardStatus{ShardID: sh.index, Role: "follower", AppliedIndex: sh.sm.appliedIndex.Load()}
		for _, si := range info.ShardInfoList {
			if si.ShardID != sh.dbID {
				continue
			}
			if si.LeaderID != 0 {
				ss.LeaderID = n.nodeName(si.LeaderID)
			}
			if si.LeaderID != 0 && si.LeaderID == si.ReplicaID {
				ss.Role = "leader"
			}
			ss.Term = si.Term
			if members == nil {
				members = si.Replicas
			}
		}
		st.Shards = append(st.Shards, ss)
	}
	for id, addr := range members {
		st.Members = append(st.Members, Member{NodeID: n.nodeName(id), RaftAddress: addr})
	}
	slices.SortFunc(st.Members, func(a, b Member) int {
		if a.NodeID < b.NodeID {
			return -1
		}
		if a.NodeID > b.NodeID {
			return 1
		}
		return 0
	})
	return st, nil
}

// nodeName maps a replica id to its node id: from the names the log
// carries, then the config's peers, else the id in hex.
func (n *Node) nodeName(replicaID uint64) string {
	sh := n.shards[0]
	sh.sm.mu.RLock()
	name, ok := sh.sm.names[replicaID]
	sh.sm.mu.RUnlock()
	if ok {
		return name
	}
	n.namesMu.Lock()
	defer n.namesMu.Unlock()
	if name, ok := n.names[replicaID]; ok {
		return name
	}
	return fmt.Sprintf("replica-%x", replicaID)
}

// shortName maps Dragonboat's short form of a replica id (its low five
// decimal digits) to a node id, when exactly one known replica has it.
func (n *Node) shortName(short uint64) (string, bool) {
	found, name := 0, ""
	seen := map[uint64]bool{}
	check := func(id uint64, nm string) {
		if id%100000 == short && !seen[id] {
			seen[id] = true
			found++
			name = nm
		}
	}
	if len(n.shards) > 0 {
		sh := n.shards[0]
		sh.sm.mu.RLock()
		for id, nm := range sh.sm.names {
			check(id, nm)
		}
		sh.sm.mu.RUnlock()
	}
	n.namesMu.Lock()
	for id, nm := range n.names {
		check(id, nm)
	}
	n.namesMu.Unlock()
	return name, found == 1
}

// isClosing reports whether Close (or crash) has begun.
func (n *Node) isClosing() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// Healthy reports whether a leader is known for every shard.
func (n *Node) Healthy() bool {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return false
	}
	for _, sh := range n.shards {
		id, _, ok, err := n.nh.GetLeaderID(sh.dbID)
		if err != nil || !ok || id == 0 {
			return false
		}
	}
	return true
}

// NodeID is this node's id.
func (n *Node) NodeID() string { return n.cfg.Cluster.NodeID }

// Config is the configuration the node started with.
func (n *Node) Config() config.Config { return n.cfg }

// AddNode adds a voting member. The new node then starts with cluster.join
// set; if nodeID was a member before and was removed, Raft refuses its old
// replica id, so it also needs the cluster.incarnation that AddNodeIncarnation
// reports (and the log names). Adding a current member at the same address
// succeeds and changes nothing.
func (n *Node) AddNode(ctx context.Context, nodeID, raftAddress string) error {
	_, err := n.AddNodeIncarnation(ctx, nodeID, raftAddress)
	return err
}

// AddNodeIncarnation is AddNode, returning the incarnation the new node must
// start with (cluster.incarnation): 0 unless nodeID was removed before.
func (n *Node) AddNodeIncarnation(ctx context.Context, nodeID, raftAddress string) (int, error) {
	if !n.enter() {
		return 0, ErrShuttingDown
	}
	defer n.leave()
	if err := config.ValidNodeID(nodeID); err != nil {
		return 0, fmt.Errorf("runtime: node id %w", err)
	}
	if err := config.ValidHostPort(raftAddress); err != nil {
		return 0, fmt.Errorf("runtime: raft address: %w", err)
	}
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	incarnation := -1
	for _, sh := range n.shards {
		err := n.membershipAttempts(ctx, sh, func(actx context.Context) error {
			mem, err := n.nh.SyncGetShardMembership(actx, sh.dbID)
			if err != nil {
				return err
			}
			inc, id, err := pickIncarnation(nodeID, raftAddress, mem)
			if err != nil {
				return err
			}
			incarnation = inc
			if id == 0 {
				return nil // already a member (perhaps by an earlier attempt)
			}
			if len(mem.Nodes) >= config.MaxMembers {
				return fmt.Errorf("%w: %s has %d voting members, the most a cluster may have (docs/operations.md): remove one first",
					ErrTooManyMembers, sh, len(mem.Nodes))
			}
			// The name first, so that every member (and the new one, from
			// the log or a snapshot) shows it.
			if _, err := n.nh.SyncPropose(actx, sh.session, encodeNames(map[uint64]string{id: nodeID})); err != nil {
				return err
			}
			if err := n.nh.SyncRequestAddReplica(actx, sh.dbID, id, raftAddress, mem.ConfigChangeID); err != nil {
				return err
			}
			n.log.Info("node added", "shard", sh.index, "added", nodeID, "raft_address", raftAddress,
				"replica_id", fmt.Sprintf("%x", id), "incarnation", inc)
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("runtime: adding %s to %s: %w", nodeID, sh, err)
		}
	}
	return incarnation, nil
}

// pickIncarnation finds nodeID's replica id in mem: the current one (id 0
// returned: nothing to do), or the first incarnation Raft has not seen removed.
func pickIncarnation(nodeID, addr string, mem *dragonboat.Membership) (int, uint64, error) {
	for inc := 0; inc <= config.MaxIncarnation; inc++ {
		id := config.ReplicaID(nodeID, inc)
		if cur, ok := mem.Nodes[id]; ok {
			if cur != addr {
				return 0, 0, fmt.Errorf("%s is already a member at %s, not %s: remove it first", nodeID, cur, addr)
			}
			return inc, 0, nil
		}
		if _, removed := mem.Removed[id]; removed {
			continue
		}
		for other, a := range mem.Nodes {
			if a == addr {
				return 0, 0, fmt.Errorf("%s is already the address of replica %x", addr, other)
			}
		}
		return inc, id, nil
	}
	return 0, 0, fmt.Errorf("%s was removed %d times: use another node id", nodeID, config.MaxIncarnation+1)
}

// RemoveNode removes a member. Removing a node that is not a member
// succeeds and changes nothing.
func (n *Node) RemoveNode(ctx context.Context, nodeID string) error {
	if !n.enter() {
		return ErrShuttingDown
	}
	defer n.leave()
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	for _, sh := range n.shards {
		err := n.membershipAttempts(ctx, sh, func(actx context.Context) error {
			mem, err := n.nh.SyncGetShardMembership(actx, sh.dbID)
			if err != nil {
				return err
			}
			id := n.memberID(nodeID, mem.Nodes)
			if id == 0 {
				return nil // not a member (perhaps no longer, by an earlier attempt)
			}
			if len(mem.Nodes) == 1 {
				return fmt.Errorf("%s is the last member of %s: a cluster cannot remove its last node", nodeID, sh)
			}
			if err := n.nh.SyncRequestDeleteReplica(actx, sh.dbID, id, mem.ConfigChangeID); err != nil {
				return err
			}
			n.log.Info("node removed", "shard", sh.index, "removed", nodeID, "replica_id", fmt.Sprintf("%x", id))
			return nil
		})
		if err != nil {
			return fmt.Errorf("runtime: removing %s from %s: %w", nodeID, sh, err)
		}
	}
	return nil
}

// membershipAttempts runs one membership step (read the membership, then
// change it) in attempts of a bounded length, again while Dragonboat's
// answer says a later attempt may succeed and ctx allows. Dragonboat never
// answers a request it dropped (sent while the shard had no leader, or to a
// leader that just died), so one attempt bounded only by ctx would wait all
// of it out; and each attempt reads the membership again, so a change an
// earlier attempt made after all is seen as done, not refused for its stale
// config change id.
func (n *Node) membershipAttempts(ctx context.Context, sh *shard, step func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*n.proposalTimeout)
		err := step(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%w: %s: the membership change was not confirmed in time: %v", ErrUnavailable, sh, err)
		case !retryable(err) && !errors.Is(err, context.DeadlineExceeded):
			if errors.Is(err, dragonboat.ErrClosed) || errors.Is(err, dragonboat.ErrShardClosed) {
				return ErrShuttingDown
			}
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shardMembers is the voting members of sh as this node knows them (none
// when it does not know sh); ok is false when the NodeHost is closed.
func (n *Node) shardMembers(sh *shard) (members map[uint64]string, ok bool) {
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return nil, false
	}
	for _, si := range info.ShardInfoList {
		if si.ShardID == sh.dbID {
			return si.Replicas, true
		}
	}
	return nil, true
}

// memberID finds nodeID among the members.
func (n *Node) memberID(nodeID string, members map[uint64]string) uint64 {
	for _, id := range slices.Sorted(maps.Keys(members)) {
		if n.nodeName(id) == nodeID {
			return id
		}
	}
	return 0
}

// TransferLeadership asks the leader of shardID to hand over to toNodeID
// and waits until toNodeID leads (or ctx ends; without a deadline, the
// node's retry budget bounds the wait).
func (n *Node) TransferLeadership(ctx context.Context, shardID uint64, toNodeID string) error {
	if !n.enter() {
		return ErrShuttingDown
	}
	defer n.leave()
	if shardID >= uint64(len(n.shards)) {
		return fmt.Errorf("runtime: there is no shard %d: shards are 0..%d", shardID, len(n.shards)-1)
	}
	sh := n.shards[shardID]
	ctx, cancel := n.opContext(ctx, n.membershipTimeout())
	defer cancel()
	members, ok := n.shardMembers(sh)
	if !ok {
		return ErrShuttingDown
	}
	target := n.memberID(toNodeID, members)
	if target == 0 {
		return fmt.Errorf("runtime: %s is not a member of %s", toNodeID, sh)
	}
	for i := 0; ; i++ {
		leader, _, ok, err := n.nh.GetLeaderID(sh.dbID)
		if err != nil {
			return n.dragonboatErr(sh, err)
		}
		if ok && leader == target {
			return nil
		}
		// Ask again now and then: a transfer is dropped when the target
		// does not catch up within an election timeout.
		if ok && leader != 0 && i%25 == 0 {
			if err := n.nh.RequestLeaderTransfer(sh.dbID, target); err != nil && !retryable(err) {
				return n.dragonboatErr(sh, err)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errOpTimeout) {
				return fmt.Errorf("%w: %s: leadership did not move to %s", ErrUnavailable, sh, toNodeID)
			}
			return ctx.Err()
		case <-n.closing:
			return ErrShuttingDown
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var errOpTimeout = errors.New("runtime: operation timed out")

// opContext bounds an operation whose ctx has no deadline by limit
// (Dragonboat's synchronous calls need one); the cause is then errOpTimeout.
func (n *Node) opContext(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, limit, errOpTimeout)
}

// membershipTimeout bounds a membership change whose ctx has no deadline.
func (n *Node) membershipTimeout() time.Duration { return 2*n.retryBudget + 2*n.proposalTimeout }

// Close stops the node: new requests are refused (ErrShuttingDown), queued
// waits are withdrawn through the log, requests already proposed get their
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

	// Let the cancels of withdrawn waits reach the log.
	deadline := time.Now().Add(time.Second)
	for _, sh := range n.shards {
		sh.flush(time.Second)
		for time.Now().Before(deadline) {
			sh.mu.Lock()
			idle := sh.drv.Unconfirmed() == 0
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

// handOffLeadership moves the leadership of the shards this node leads to
// another member, so that the cluster does not wait an election timeout to
// notice it left. Best effort, bounded by an election timeout.
func (n *Node) handOffLeadership() {
	info := n.nh.GetNodeHostInfo(dragonboat.NodeHostInfoOption{SkipLogInfo: true})
	if info == nil {
		return
	}
	wait := time.Duration(n.cfg.Consensus.ElectionTimeoutMs) * time.Millisecond
	for _, si := range info.ShardInfoList {
		// ShardInfo.IsLeader is never set by this Dragonboat version's
		// GetNodeHostInfo: ask for the leader instead.
		if leader, _, ok, _ := n.nh.GetLeaderID(si.ShardID); !ok || leader != n.replicaID || len(si.Replicas) < 2 {
			continue
		}
		var target uint64
		for _, id := range slices.Sorted(maps.Keys(si.Replicas)) {
			if id != n.replicaID {
				target = id
				break
			}
		}
		if err := n.nh.RequestLeaderTransfer(si.ShardID, target); err != nil {
			continue
		}
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if leader, _, ok, _ := n.nh.GetLeaderID(si.ShardID); ok && leader != n.replicaID && leader != 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
