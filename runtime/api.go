package runtime

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
)

// Options start a Node.
type Options struct {
	Config config.Config
	// Logger receives the runtime's logs and Dragonboat's warnings; nil: slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics; nil: they are kept but not registered.
	Registerer prometheus.Registerer
	// Clock is the wall clock a leader starts each term's log time at;
	// nil: time.Now. Tests inject one.
	Clock func() time.Time
	// Monotonic carries log time forward within a term (docs/design.md,
	// Time): time since any origin, never stepped. nil: Go's monotonic
	// clock when Clock is nil too; with a Clock given and no Monotonic,
	// the Clock is taken as its own monotonic clock (a test's clock moved
	// by hand moves log time).
	Monotonic func() time.Duration
	// RaftCredentials, with security.tls, is the member's certificate and
	// the cluster's CA in force (security.State.Credentials): Raft's
	// listener presents and checks against them at every handshake, and
	// each dial at every dial, so a reload (SIGHUP) reaches new Raft
	// connections without a restart; AddNode checks this certificate. It
	// must answer both whenever security.tls is set. nil: Raft reads the
	// files security.tls names, its listener once at start.
	RaftCredentials func() (cert *tls.Certificate, ca *x509.CertPool)

	// balance paces the leader balancer; zero: from the election timeout.
	// Tests shorten it.
	balance balanceTimes
	// dataDirEvery stands in for dataDirCheckEvery (0: it): a test
	// looks at the data directory sooner.
	dataDirEvery time.Duration
	// dataDirStall stands in for dataDirStallAfter, and dataDirWrite for
	// the watch's synced write (nil: its own): a test's disk hangs.
	dataDirStall time.Duration
	dataDirWrite func() error
	// dragonboatTransport runs Dragonboat's own TCP transport instead of
	// runtime/transport: a test checks that such a member, which sends no
	// hello, is refused.
	dragonboatTransport bool
	// compatibility stands in for Compatibility() in the Raft hello
	// (""): a test runs a member of other versions.
	compatibility string
	// savingSnapshot, when set, is called as the state machine writes a
	// snapshot, in Dragonboat's snapshot worker: a test holds an export
	// there.
	savingSnapshot func()
	// heldCommitLost makes the log store drop, when it closes, the
	// commit-only states it holds instead of writing them
	// (runtime/logstore.go), as a kill -9 leaves them: a test restarts a
	// member that crashed.
	heldCommitLost bool
}

// Errors Do and the other calls return besides ctx's. Test with errors.Is:
// the returned errors wrap these with detail.
var (
	// ErrUnavailable: the request cannot be served now (HTTP 503): no
	// leader or no quorum reachable from this member (the error says which
	// shard and what the member knows of its leader), or the node holds too
	// many requests (ErrOverloaded). Retrying later may succeed.
	ErrUnavailable = errors.New("lockstep: unavailable")
	// ErrShuttingDown: the node is closing and takes no new requests.
	ErrShuttingDown = errors.New("lockstep: the node is shutting down")
	// ErrWaitKept wraps ErrShuttingDown: the node stopped serving a queued
	// wait that carries its caller's own (ClientID, Seq), and left the wait
	// in the queue, as a kill -9 would have. The same command sent to
	// another member re-attaches to it by dedupe and keeps its place; a
	// caller that does not come back leaves it to its session, which ends
	// it when it ends.
	ErrWaitKept = fmt.Errorf("%w: the queued wait keeps its place: retry on another member with the same client id and seq", ErrShuttingDown)
	// ErrCompacted: Watch was asked to resume from an index older than the
	// events this node still keeps.
	ErrCompacted = errors.New("lockstep: the events before this index are no longer kept")
	// ErrAmbiguousIndex: a log index was given where several shards' logs
	// are meant; each shard numbers its own entries (core/shards, OneIndex).
	ErrAmbiguousIndex = shards.ErrAmbiguousIndex
	// ErrTooManyMembers: AddNode past config.MaxMembers voting members.
	ErrTooManyMembers = errors.New("lockstep: too many members")
	// ErrCutOff: Health's answer for a member its peers refuse (it lost
	// its log, was removed, or runs as another replica than the
	// membership has at its address), wrapped with why and what to do. It
	// takes no part until an operator acts.
	ErrCutOff = errors.New("lockstep: this member is cut off from the cluster")
	// ErrDataDir: Health's answer for a member whose data directory went
	// away or takes no writes (dataDirWatch), wrapped with which and what
	// to do.
	ErrDataDir = errors.New("lockstep: data directory")
	// ErrDataDirFull: Degraded's answer for a member whose data
	// directory's file system has under dataDirFullBelow left, wrapped
	// with how much and what to do. The member still serves (Health is
	// not it): the others may need its vote, and it stops only once a
	// write fails.
	ErrDataDirFull = errors.New("lockstep: data directory nearly full")
	// ErrNotMember: RemoveNode's answer for a node id that names no
	// member and never did (a typo), wrapped with the members.
	ErrNotMember = errors.New("lockstep: not a member")
)

// Event is one effect of an applied entry, as Watch streams it.
type Event struct {
	Shard  uint64       // the shard whose entry produced it; indexes are per shard
	Index  uint64       // the entry that produced it
	Time   core.LogTime // log time after that entry
	Effect core.Effect
	// EntryEnd marks the last event of its entry that this stream gets:
	// after it, resuming from Index + 1 neither misses nor repeats one. A
	// stream gets an entry's events together, in order, so an event without
	// it is followed by more of the same entry.
	EntryEnd bool
	// Progress marks a progress marker rather than an event (Effect is
	// zero, EntryEnd true): every event of this shard's entries up to Index
	// that the stream wants came before it, and entries up to Index gave it
	// nothing more. A stream gets markers only when it asks for them (see
	// WithProgress), and only between entries, never inside one.
	Progress bool
}

// WatchOption tunes WatchShard and WatchShards.
type WatchOption func(*watchOptions)

type watchOptions struct {
	progress <-chan struct{}
}

// WithProgress makes the stream answer each receive from req with a
// progress marker per shard (an Event with Progress set) saying how far the
// shard has been scanned for it, events filtered out included: a consumer
// that got little or nothing for a while learns that it missed nothing up
// to there, and can resume from after it. A marker is skipped when it would
// say nothing new (the shard applied nothing since the last one) or when
// the stream's buffer is full (its events are on their way then). req is
// only read, never closed by the runtime; the stream ignores it after ctx
// ends.
func WithProgress(req <-chan struct{}) WatchOption {
	return func(o *watchOptions) { o.progress = req }
}

func watchOpts(opts []WatchOption) watchOptions {
	var o watchOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// ClusterStatus is what /cluster/status shows.
type ClusterStatus struct {
	NodeID string
	// Versions are the versions of the log this node applies by
	// (Compatibility()); members whose Versions differ are cut off
	// from each other.
	Versions string
	// Consensus is the consensus keys that should be the same on every
	// member, as this member runs them (config.Consensus.Settings):
	// members that show others run with other timing.
	Consensus string
	Shards    []ShardStatus
	Members   []Member
}

// ShardStatus is one Raft group as this node sees it.
type ShardStatus struct {
	ShardID      uint64
	LeaderID     string // the leader's node id; "" when none is known
	Role         string // RoleLeader, RoleFollower, or why this member is cut off (RoleLostLog, RoleRemoved, RoleOtherReplica)
	Term         uint64
	AppliedIndex uint64
}

// Member is one voting member of the cluster.
type Member struct {
	NodeID      string
	RaftAddress string
}

// queuedKey carries the queuedHook of a command's Do.
type queuedKey struct{}

// queuedHook is what a caller of Do asked for a command that queues: fn to
// hear its waiter id, and withdraw to ask it withdrawn.
type queuedHook struct {
	fn       func(core.WaiterID)
	withdraw <-chan struct{}
}

// WithQueued returns ctx carrying fn, which Do calls once, when the
// command it runs under ctx applies as queued (a wait that has not been
// granted yet), with its waiter id; Do itself goes on waiting for the
// final answer. The API's session stream pushes it to the client. fn runs
// on Do's goroutine and must not block.
func WithQueued(ctx context.Context, fn func(core.WaiterID)) context.Context {
	return context.WithValue(ctx, queuedKey{}, queuedHook{fn: fn})
}

// WithWithdrawal is WithQueued, and a command that queues is withdrawn
// through the log once withdraw is closed, while Do waits to hear how its
// wait ended. Ending ctx instead would race the grant: a grant applied
// just before the cancel would be held with nobody told of it. So a grant
// the log applied first is Do's answer, as a hold taken before the
// withdrawal; a wait it ended is ErrWithdrawn. A reload that no longer
// allows a queued request ends it this way (the API's rpc/revoke.go).
func WithWithdrawal(ctx context.Context, fn func(core.WaiterID), withdraw <-chan struct{}) context.Context {
	return context.WithValue(ctx, queuedKey{}, queuedHook{fn: fn, withdraw: withdraw})
}

// ErrWithdrawn is Do's answer to a queued command withdrawn through
// WithWithdrawal before it was granted.
var ErrWithdrawn = errors.New("runtime: the queued request was withdrawn before it was granted")

// NotifyQueued calls the function WithQueued or WithWithdrawal put in
// ctx, if any, and answers the withdrawal's channel (nil: none). The
// runtime calls it; a test double of Do calls it too.
func NotifyQueued(ctx context.Context, waiter core.WaiterID) <-chan struct{} {
	h, ok := ctx.Value(queuedKey{}).(queuedHook)
	if !ok {
		return nil
	}
	if h.fn != nil {
		h.fn(waiter)
	}
	return h.withdraw
}
