package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/runtime/transport"
)

// metrics are the runtime's Prometheus series. The names of docs/design.md are
// kept (leader_elections_total, consensus_commit_latency_seconds,
// active_locks_gauge); the others follow their style. Every series has a
// shard label, but the Raft transport's (raftTraffic), which are the node's,
// by peer.
type metrics struct {
	leaderElections  *prometheus.CounterVec
	commitLatency    *prometheus.HistogramVec
	applyLatency     *prometheus.HistogramVec
	entriesApplied   *prometheus.CounterVec
	commandsApplied  *prometheus.CounterVec
	proposalsFailed  *prometheus.CounterVec
	proposalsFlight  *prometheus.GaugeVec
	pendingRequests  *prometheus.GaugeVec
	activeLocks      *prometheus.GaugeVec
	sessions         *prometheus.GaugeVec
	waiters          *prometheus.GaugeVec
	objects          *prometheus.GaugeVec
	isLeader         *prometheus.GaugeVec
	hasLeader        *prometheus.GaugeVec
	clockOffset      *prometheus.GaugeVec
	snapshotsSaved   *prometheus.CounterVec
	snapshotsLoaded  *prometheus.CounterVec
	snapshotBytes    *prometheus.GaugeVec
	sessionsExpired  *prometheus.CounterVec
	watchSubscribers prometheus.Gauge
	pushesDropped    prometheus.Counter

	peerDials        *prometheus.CounterVec
	peerSentBytes    *prometheus.CounterVec
	peerSendFailures *prometheus.CounterVec
	peerDisconnects  *prometheus.CounterVec
	raftReceived     prometheus.Counter
	raftRefused      *prometheus.CounterVec
	lostLog          prometheus.Gauge
	removed          prometheus.Gauge
	settingsDiffer   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	shard := []string{"shard"}
	latency := []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	m := &metrics{
		leaderElections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "leader_elections_total",
			Help: "Leader changes this node saw (a new leader known for a new term)."}, shard),
		commitLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "consensus_commit_latency_seconds",
			Help: "From proposing an entry to applying it on this node.", Buckets: latency}, shard),
		applyLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lockstep_apply_latency_seconds",
			Help: "Applying one committed entry to the state machine and routing its results.", Buckets: latency}, shard),
		entriesApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_entries_applied_total",
			Help: "Log entries applied (ticks, packed client commands, runtime records)."}, shard),
		commandsApplied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_commands_applied_total",
			Help: "Client commands applied; divided by lockstep_raft_entries_applied_total it shows group commit."}, shard),
		proposalsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_proposals_failed_total",
			Help: "Proposals Dragonboat refused, dropped or timed out (their requests retry)."}, shard),
		proposalsFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_proposals_in_flight",
			Help: "Entries proposed by this node and not yet applied here."}, shard),
		pendingRequests: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_pending_requests",
			Help: "Requests this node holds: queued for proposal, in flight, or blocked on a wait."}, shard),
		activeLocks: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "active_locks_gauge",
			Help: "Grants held now (mutex, semaphore, rwlock, barrier and election holds)."}, shard),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_sessions_gauge",
			Help: "Live sessions."}, shard),
		waiters: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_waiters_gauge",
			Help: "Queued requests in the state machine."}, shard),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_objects_gauge",
			Help: "Live objects (names held or waited on)."}, shard),
		isLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_raft_is_leader",
			Help: "1 when this node leads the shard."}, shard),
		hasLeader: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_raft_has_leader",
			Help: "1 when this node knows a leader for the shard (its /health needs one for every shard)."}, shard),
		clockOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_clock_offset_seconds",
			Help: "How far this member's wall clock stands from the shard's log time (wall minus log time). On the leader: a step of its wall clock during its term, or (negative) a wall clock behind log time when it took the lead. On a follower: its clock's offset from the leader's, within a tick; if it took the lead, log time would jump that far ahead (leases unaffected)."}, shard),
		snapshotsSaved: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_snapshots_saved_total",
			Help: "State machine snapshots written by this node."}, shard),
		snapshotsLoaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_snapshots_restored_total",
			Help: "Snapshots this node's state machine was rebuilt from (at a restart, or to catch up)."}, shard),
		snapshotBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_snapshot_size_bytes",
			Help: "Size of the last snapshot written or restored."}, shard),
		sessionsExpired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_sessions_expired_total",
			Help: "Sessions expired (their lease ran out), counted by the shard's leader when it applies the expiry: sum over members."}, shard),
		watchSubscribers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockstep_watch_subscribers",
			Help: "Open Watch streams."}),
		pushesDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockstep_session_pushes_dropped_total",
			Help: "Ends of a session's grants not pushed on its session stream because the stream was behind (its client learns of them from its next release instead)."}),
		peerDials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_peer_dials_total",
			Help: "Raft connections dialled to a peer (by its Raft address), by result (ok, failed)."}, []string{"peer", "result"}),
		peerSentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_peer_sent_bytes_total",
			Help: "Raft frame bytes written to a peer (messages and snapshot chunks)."}, []string{"peer"}),
		peerSendFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_peer_send_failures_total",
			Help: "Raft frames that could not be sent to a peer (a failed write or redial): Dragonboat drops them and backs off."}, []string{"peer"}),
		peerDisconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_peer_disconnects_total",
			Help: "Raft connections a peer ended (it restarted, or the link dropped); the next send dials again."}, []string{"peer"}),
		raftReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "lockstep_raft_received_bytes_total",
			Help: "Raft frame bytes read from peers."}),
		raftRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lockstep_raft_refused_connections_total",
			Help: "Inbound Raft connections closed for what they sent, by reason (" + strings.Join(transport.RefusalReasons, ", ") + ")."}, []string{"reason"}),
		lostLog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockstep_raft_lost_log",
			Help: "1 once a peer refused this member as one that lost its log (its data directory made anew under a replica id that took part before): it must be replaced."}),
		removed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lockstep_raft_removed",
			Help: "1 once a peer refused this member as removed from the cluster, or it applied its own removal: it takes no part; stop it, or add it back."}),
		settingsDiffer: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lockstep_raft_peer_settings_differ",
			Help: "Consensus keys (timing, snapshots, batch) a peer (by its Raft address) runs with other values than this member, as its last Raft connection to this member said: 0 when they agree. Expected during a rolling change of one of them; otherwise give every member the same values."}, []string{"peer"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.leaderElections, m.commitLatency, m.applyLatency, m.entriesApplied,
		m.commandsApplied, m.proposalsFailed, m.proposalsFlight, m.pendingRequests, m.activeLocks, m.sessions,
		m.waiters, m.objects, m.isLeader, m.hasLeader, m.clockOffset, m.snapshotsSaved, m.snapshotsLoaded, m.snapshotBytes, m.sessionsExpired, m.watchSubscribers, m.pushesDropped,
		m.peerDials, m.peerSentBytes, m.peerSendFailures, m.peerDisconnects, m.raftReceived, m.raftRefused, m.lostLog, m.removed, m.settingsDiffer} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("runtime: the metrics are already registered on this Registerer: give each Node its own")
			}
			return nil, err
		}
	}
	// Each reason from 0 (the alerts watch their increase), and the help
	// lists them all.
	for _, r := range transport.RefusalReasons {
		m.raftRefused.WithLabelValues(r)
	}
	return m, nil
}

// shardMetrics are one shard's children of the series, resolved once so
// that the apply path does not hash label values per entry.
type shardMetrics struct {
	leaderElections, entriesApplied, commandsApplied, proposalsFailed         prometheus.Counter
	snapshotsSaved, snapshotsLoaded, sessionsExpired                          prometheus.Counter
	commitLatency, applyLatency                                               prometheus.Observer
	proposalsFlight, pendingRequests, activeLocks, sessions, waiters, objects prometheus.Gauge
	isLeader, hasLeader, snapshotBytes, clockOffset                           prometheus.Gauge
}

func (m *metrics) forShard(label string) shardMetrics {
	return shardMetrics{
		leaderElections: m.leaderElections.WithLabelValues(label),
		entriesApplied:  m.entriesApplied.WithLabelValues(label),
		commandsApplied: m.commandsApplied.WithLabelValues(label),
		proposalsFailed: m.proposalsFailed.WithLabelValues(label),
		snapshotsSaved:  m.snapshotsSaved.WithLabelValues(label),
		snapshotsLoaded: m.snapshotsLoaded.WithLabelValues(label),
		sessionsExpired: m.sessionsExpired.WithLabelValues(label),
		commitLatency:   m.commitLatency.WithLabelValues(label),
		applyLatency:    m.applyLatency.WithLabelValues(label),
		proposalsFlight: m.proposalsFlight.WithLabelValues(label),
		pendingRequests: m.pendingRequests.WithLabelValues(label),
		activeLocks:     m.activeLocks.WithLabelValues(label),
		sessions:        m.sessions.WithLabelValues(label),
		waiters:         m.waiters.WithLabelValues(label),
		objects:         m.objects.WithLabelValues(label),
		isLeader:        m.isLeader.WithLabelValues(label),
		hasLeader:       m.hasLeader.WithLabelValues(label),
		snapshotBytes:   m.snapshotBytes.WithLabelValues(label),
		clockOffset:     m.clockOffset.WithLabelValues(label),
	}
}

// raftTraffic counts what the Raft transport does (transport.Observer),
// and logs a peer cut off.
type raftTraffic struct {
	m      *metrics
	self   uint64  // this member's replica id
	cut    *cutOff // the node's record of this member cut off (nil: none)
	cutOff *cutOffLog
	// settings says what peers run with other consensus settings (nil:
	// nothing is said).
	settings *settingsWatch
}

var _ transport.Observer = raftTraffic{}

func (r raftTraffic) Dialed(peer string, err error) {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	r.m.peerDials.WithLabelValues(peer, result).Inc()
}

func (r raftTraffic) Sent(peer string, n int, err error) {
	if n > 0 {
		r.m.peerSentBytes.WithLabelValues(peer).Add(float64(n))
	}
	if err != nil {
		r.m.peerSendFailures.WithLabelValues(peer).Inc()
	}
}

func (r raftTraffic) Ended(peer string) { r.m.peerDisconnects.WithLabelValues(peer).Inc() }
func (r raftTraffic) Received(n int)    { r.m.raftReceived.Add(float64(n)) }
func (r raftTraffic) Refused(reason string) {
	r.m.raftRefused.WithLabelValues(reason).Inc()
}
func (r raftTraffic) OtherPeers(peer, theirs, ours string) {
	if r.cutOff != nil {
		r.cutOff.otherPeers(peer, theirs, ours)
	}
}
func (r raftTraffic) PeerSettings(peer, theirs string) {
	if r.settings != nil {
		r.settings.heard(peer, theirs)
	}
}
func (r raftTraffic) Incompatible(peer, theirs string) {
	if r.cutOff != nil {
		r.cutOff.incompatible(peer, theirs)
	}
}

// CutOff counts this member cut off (its gauge for the reason), records
// it for Health and Status, and says why, whichever member was.
func (r raftTraffic) CutOff(peer string, replica uint64, reason string, ours bool) {
	if ours && r.cut != nil { // first: what shows the gauge at 1 sees it
		r.cut.set(reason)
	}
	switch {
	case ours && reason == transport.CutLostLog:
		r.m.lostLog.Set(1)
	case ours && reason == transport.CutRemoved:
		r.m.removed.Set(1)
	}
	if r.cutOff == nil {
		return
	}
	// A replica id is its node id's hash with the incarnation in the low
	// byte (config.ReplicaID): the same node under another incarnation
	// is told which one to run as.
	if ours && reason == transport.CutOtherReplica && replica>>8 == r.self>>8 {
		r.cutOff.say("other incarnation", peer, replica, ours,
			"runs_as_incarnation", r.self&0xff, "added_as_incarnation", replica&0xff)
		return
	}
	r.cutOff.say(reason, peer, replica, ours)
}

// cutOffLog logs each peer cut off (for its versions, or a lost log), at
// most once per cutOffEvery: the peer redials at every message it sends,
// ten times a second or more.
type cutOffLog struct {
	log   *slog.Logger
	ours  string
	names map[string]string // Raft address → node id, for the message
	now   func() time.Time

	mu   sync.Mutex
	last map[string]time.Time // by peer and what cut it off
}

const cutOffEvery = time.Minute

// maxCutOffKept is how many peers the log remembers before it forgets
// those it has not heard of within cutOffEvery.
const maxCutOffKept = 256

func newCutOffLog(log *slog.Logger, ours string, names map[string]string) *cutOffLog {
	return &cutOffLog{log: log, ours: ours, names: names, now: time.Now, last: map[string]time.Time{}}
}

// due says whether what cut peer off is to be logged now.
func (l *cutOffLog) due(peer, what string) bool {
	now := l.now()
	key := what + " " + peer
	l.mu.Lock()
	defer l.mu.Unlock()
	if at, ok := l.last[key]; ok && now.Sub(at) < cutOffEvery {
		return false
	}
	if len(l.last) >= maxCutOffKept {
		for p, at := range l.last { // forget the peers not heard of lately
			if now.Sub(at) >= cutOffEvery {
				delete(l.last, p)
			}
		}
	}
	l.last[key] = now
	return true
}

func (l *cutOffLog) who(peer string) string {
	if id, ok := l.names[peer]; ok {
		return id + " (" + peer + ")"
	}
	return peer
}

// deploymentMark begins the part of a Raft hello's compatibility that names
// the deployment of a cluster restored from a backup (none for another).
const deploymentMark = "deployment "

// otherDeployment says whether two hellos' compatibilities differ only in
// their deployment: the same build, a cluster restored from a backup on
// one side.
func otherDeployment(a, b string) bool {
	cut := func(s string) string {
		if i := strings.Index(s, ", "+deploymentMark); i >= 0 {
			return s[:i]
		}
		return s
	}
	return a != b && cut(a) == cut(b)
}

func (l *cutOffLog) incompatible(peer, theirs string) {
	if !l.due(peer, "versions") {
		return
	}
	if otherDeployment(theirs, l.ours) {
		l.log.Error("cut off from a member of another deployment: one of the two runs a cluster restored from a backup "+
			"(lockstep snapshot restore), the other the cluster it was restored from or another restore; every member of a "+
			"restored cluster is restored from the same backup with the same peers, which gives it the deployment the restore "+
			"printed (docs/operations.md, Backup and restore)",
			"peer", l.who(peer), "theirs", theirs, "ours", l.ours)
		return
	}
	if theirs == "" {
		theirs = "a build from before versions were checked, or another transport (it sent no hello)"
	}
	l.log.Error("cut off from a member that applies the log differently: "+
		"every member of a cluster must run a build of the same versions (docs/operations.md, Upgrading)",
		"peer", l.who(peer), "theirs", theirs, "ours", l.ours)
}

// otherPeers says, at ERROR, that the member at peer bootstrapped the
// cluster with other cluster.peers than this member (its hello's peers
// are theirs, this member's ours), naming the entries that differ.
func (l *cutOffLog) otherPeers(peer, theirs, ours string) {
	if !l.due(peer, "peers") {
		return
	}
	name := l.who(peer)
	var differ string
	if t, o := transport.ParsePeers(theirs), transport.ParsePeers(ours); t != nil && o != nil {
		var theirEntries, ourEntries []string
		entry := func(m map[string]string, id string) string {
			if addr, ok := m[id]; ok {
				return id + "=" + addr
			}
			return "no " + id
		}
		ids := slices.Sorted(maps.Keys(t))
		for id := range o {
			if _, ok := t[id]; !ok {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range ids {
			if t[id] != o[id] {
				theirEntries, ourEntries = append(theirEntries, entry(t, id)), append(ourEntries, entry(o, id))
			}
		}
		differ = fmt.Sprintf("%s was started with cluster.peers %s, this member with %s", name,
			strings.Join(theirEntries, ", "), strings.Join(ourEntries, ", "))
	} else {
		differ = fmt.Sprintf("%s was started with other cluster.peers than this member (too many to compare in the hello: compare the two files)", name)
	}
	l.log.Error(differ+": the members that bootstrapped the cluster disagree on its initial members, and Raft traffic between "+
		"the two is refused. A member keeps the peers of its first start in its data directory for good (cluster.peers is "+
		"read only then): correcting its file does not repair it. Replace the member whose peers are wrong (the one the others "+
		"refuse): lockstep cluster remove, stop it, wipe its cluster.data_dir, lockstep cluster add, and start it with --join and "+
		"the incarnation add answers (docs/operations.md, Members bootstrapped with other peers)",
		"peer", name, "theirs", theirs, "ours", ours)
}

// cutOffSay is what the log says of a member cut off for one reason:
// when it is this member (at ERROR), and when it is a peer.
type cutOffSay struct {
	ours, theirs string
	theirsLevel  slog.Level
	key          string // the replica id's attribute
}

var cutOffSays = map[string]cutOffSay{
	"other incarnation": {
		ours: "a peer expects another incarnation of this node at its Raft address: the cluster added it as " +
			"added_as_incarnation, and it runs as runs_as_incarnation, which its data directory has recorded; stop it, " +
			"empty cluster.data_dir, and start it with --join --incarnation added_as_incarnation (docs/operations.md, Membership changes)",
		key: "expected_replica_id",
	},
	transport.CutOtherReplica: {
		ours: "a peer expects another member at this member's Raft address: this member took another member's raft_address; " +
			"give it an address of its own",
		theirs: "the member at a peer's Raft address is not the replica the membership has there: an old incarnation still " +
			"running, or another process on its address; it is cut off",
		theirsLevel: slog.LevelWarn, key: "expected_replica_id",
	},
	transport.CutRemoved: {
		ours: "a peer refuses this member: it was removed from the cluster (lockstep cluster remove), and a removed replica " +
			"never takes part again; stop it, or to bring it back: lockstep cluster add, then start it on an empty cluster.data_dir " +
			"with --join and the incarnation add answers (docs/operations.md, Membership changes)",
		theirs:      "refused a member removed from the cluster: it still runs; stop it, or add it back (docs/operations.md, Membership changes)",
		theirsLevel: slog.LevelWarn, key: "replica_id",
	},
	transport.CutLostLog: {
		ours: "a peer refuses this member as one that lost its log: the cluster knows this replica from another data directory " +
			"(this one was wiped, or is not its own), and a member that forgot its votes and acknowledged entries must not take part; " +
			"stop it; " + lostLogRemedy,
		theirs: "refused a member that lost its log: it took part before under another data directory, and comes back without " +
			"its votes and acknowledged entries (or it is a second process started with a running member's node id); it is cut " +
			"off until it is replaced (removed, then added back with --join: docs/operations.md, Membership changes), or, if " +
			"it is a second process, stopped",
		theirsLevel: slog.LevelError, key: "replica_id",
	},
}

// say logs that a member was cut off for what (a key of cutOffSays), with
// attrs after the peer and the replica id.
func (l *cutOffLog) say(what, peer string, replica uint64, ours bool, attrs ...any) {
	if !l.due(peer, what) {
		return
	}
	s := cutOffSays[what]
	msg, level := s.theirs, s.theirsLevel
	if ours {
		msg, level = s.ours, slog.LevelError
	}
	l.log.Log(context.Background(), level, msg, append([]any{"peer", l.who(peer), s.key, fmt.Sprintf("%x", replica)}, attrs...)...)
}
