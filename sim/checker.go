package sim

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Severity says which exit code a violation earns.
type Severity uint8

const (
	Safety Severity = iota + 1
	Liveness
	Crash
)

func (s Severity) String() string {
	switch s {
	case Safety:
		return "safety"
	case Liveness:
		return "liveness"
	case Crash:
		return "crash"
	}
	return "?"
}

// Violation is one failed check.
type Violation struct {
	At       time.Duration `json:"at"`
	Severity Severity      `json:"-"`
	Kind     string        `json:"kind"`
	Check    string        `json:"check"`
	Msg      string        `json:"msg"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s violation at %.3fs [%s]: %s", v.Severity, v.At.Seconds(), v.Check, v.Msg)
}

// hashEvery is how often (in log indexes) replicas compare full state
// hashes, and invariantsEvery how often each replica walks its whole
// machine (staggered across replicas). Outputs are compared at every index;
// the full walks cost more than simulating the entry, so they are sampled.
const (
	hashEvery       = 32
	invariantsEvery = 4
)

// indexRecord is what the first replica to apply an index saw; every other
// replica applying it must see the same.
type indexRecord struct {
	node       int
	dataHash   uint64
	outHash    uint64
	stateHash  [32]byte
	hashed     bool
	firstApply time.Duration
}

// checker runs the safety checks at every step. It never changes the run:
// it reads what replicas and clients report.
type checker struct {
	w          *world
	violations []Violation
	logs       []*shardLog // by shard
	stop       bool        // a violation was found: the run ends at the next step
	warnings   []Violation
	warned     map[string]int
	buf        []byte
	// closed holds the sessions whose close a client was told succeeded,
	// with when: no shard may hold the session after that (close-everywhere).
	closed map[core.SessionID]time.Duration
	// toldEnded holds the waits whose caller was told they ended without a
	// grant, with when: no shard may grant them afterwards (wait-end).
	toldEnded map[waitKey]time.Duration
	// acked holds every grant a client was told of, and unheard every
	// grant a replica's unheard release ended: no grant may be in both
	// (acked-grant-lost), whichever came first.
	acked   map[tokenKey]ack
	unheard map[tokenKey]uint64 // the index of the release
	// private holds the identities of the private requests clients sent
	// (Options.Private), for the ledger to tell the grants they asked for.
	private map[dedupeKey]bool
	// publicRetries holds the identities of the public retries clients
	// sent after giving up on a private request (giveUpPrivate), for the
	// ledger to tell the joins they made.
	publicRetries map[dedupeKey]bool
}

// tokenKey names a grant: tokens are a shard's own.
type tokenKey struct {
	shard uint64
	token core.FencingToken
}

// ack is a client told of a grant.
type ack struct {
	who string
	at  time.Duration
}

// waitKey names a wait: waiter ids are a shard's own.
type waitKey struct {
	shard  uint64
	waiter core.WaiterID
}

// shardLog is what the checker knows of one shard's Raft group: each shard
// has its own log, indexes, terms and ledger.
type shardLog struct {
	byIndex    map[uint64]*indexRecord
	appendedAt map[uint64]time.Duration
	leaders    map[uint64]int // term → the replica that led it
	led        *ledger
	// forwarded counts the proposals followers forwarded, by content
	// (hashProposal), until their entry first applies: such an entry must
	// leave log time where it was. One never committed stays, bounded by
	// the run's forwards.
	forwarded map[uint64]int
}

// log is the shard whose log n appends to.
func (c *checker) log(n *node) *shardLog { return c.logs[n.shard] }

// ledgerOf is the ledger of the shard that owns a name.
func (c *checker) ledgerOf(name string) *ledger {
	return c.logs[shards.Of(name, len(c.logs))].led
}

// hash fingerprints a machine's whole state: the SHA-256 of its snapshot,
// which is what core's Hash computes, in a buffer kept between calls.
func (c *checker) hash(m Machine) [32]byte {
	c.buf = m.AppendSnapshot(c.buf[:0])
	return sha256.Sum256(c.buf)
}

func newChecker(w *world) *checker {
	c := &checker{w: w, warned: make(map[string]int), closed: make(map[core.SessionID]time.Duration),
		toldEnded: make(map[waitKey]time.Duration), acked: make(map[tokenKey]ack), unheard: make(map[tokenKey]uint64),
		private: make(map[dedupeKey]bool), publicRetries: make(map[dedupeKey]bool)}
	for i := range max(w.opts.Shards, 1) {
		l := &shardLog{
			byIndex:    make(map[uint64]*indexRecord),
			appendedAt: make(map[uint64]time.Duration),
			leaders:    make(map[uint64]int),
			forwarded:  make(map[uint64]int),
		}
		l.led = newLedger(c)
		l.led.shard = uint64(i)
		c.logs = append(c.logs, l)
	}
	return c
}

func (c *checker) fail(sev Severity, check, format string, args ...any) {
	v := Violation{At: c.w.now, Severity: sev, Kind: sev.String(), Check: check, Msg: fmt.Sprintf(format, args...)}
	if c.w.tolerated(check) {
		// A known failure the run was told to step over: noted, not fatal.
		if c.warned[check] == 0 {
			c.warnings = append(c.warnings, v)
		}
		c.warned[check]++
		c.w.tr.logf(c.w.now, "TOLERATED %s", v)
		return
	}
	c.violations = append(c.violations, v)
	c.w.tr.logf(c.w.now, "VIOLATION %s", v)
	c.stop = true
}

// appended notes when an index first reached any log: the earliest moment
// its entry can have committed.
func (c *checker) appended(n *node, ents []*pb.Entry) {
	at := c.log(n).appendedAt
	for _, e := range ents {
		i := e.GetIndex()
		if _, ok := at[i]; !ok {
			at[i] = c.w.now
		}
	}
}

// leaderElected checks Raft's election safety: one leader per term.
func (c *checker) leaderElected(n *node, term uint64) {
	leaders := c.log(n).leaders
	if other, ok := leaders[term]; ok && other != n.id {
		c.fail(Safety, "election-safety", "replicas %d and %d both led term %d of shard %d", other, n.id, term, n.shard)
		return
	}
	leaders[term] = n.id
	c.w.stats.leaderChanges++
}

func (c *checker) appliedEmpty(n *node, idx uint64) {
	c.agree(n, idx, 0, 0)
}

// applied checks one replica's application of one entry.
func (c *checker) applied(n *node, e core.Entry, out *core.Output) {
	c.w.stats.applies++
	if (e.Index+uint64(n.id))%invariantsEvery == 0 {
		if err := n.sm.CheckInvariants(); err != nil {
			c.fail(Safety, "core-invariants", "%s after index %d: %v", n, e.Index, err)
		}
	}
	if out.Index != e.Index || len(out.Results) != len(e.Commands) {
		c.fail(Safety, "output-shape", "%s index %d: output index %d with %d results for %d commands",
			n, e.Index, out.Index, len(out.Results), len(e.Commands))
		return
	}
	first := c.agree(n, e.Index, hashProposal(&e.Proposal), hashOutput(out))
	if e.Index%hashEvery == 0 {
		h := c.hash(n.sm)
		r := c.log(n).byIndex[e.Index]
		switch {
		case !r.hashed:
			r.stateHash, r.hashed = h, true
		case r.stateHash != h:
			c.fail(Safety, "state-hash", "%s has state hash %x at index %d, replica %d had %x",
				n, h[:6], e.Index, r.node, r.stateHash[:6])
		}
	}
	if first {
		c.countTime(e)
		l := c.log(n)
		h := hashProposal(&e.Proposal)
		fwd := l.forwarded[h] > 0
		if fwd {
			if l.forwarded[h]--; l.forwarded[h] == 0 {
				delete(l.forwarded, h)
			}
		}
		l.led.entryRules(e, out, fwd, n.sm.Rules())
		c.w.muxChk.entry(e, out)
	}
	c.w.tr.mix(0xa991, n.word(), e.Index, uint64(out.Time), uint64(len(out.Effects)))
}

// countTime counts the entries that exist only to move log time.
func (c *checker) countTime(e core.Entry) {
	if len(e.Commands) == 0 {
		c.w.stats.ticks++
	}
	for i := range e.Commands {
		if e.Commands[i].Op == core.OpTickRequest {
			c.w.stats.tickRequests++
		}
	}
}

// forwardedProposal records a proposal a follower handed to raft for the
// leader (forward-stamp).
func (c *checker) forwardedProposal(n *node, p *core.Proposal) {
	c.log(n).forwarded[hashProposal(p)]++
}

// agree records or compares what an index produced. It reports whether this
// was the first application of the index anywhere.
func (c *checker) agree(n *node, idx, dataHash, outHash uint64) bool {
	l := c.log(n)
	r := l.byIndex[idx]
	if r == nil {
		l.byIndex[idx] = &indexRecord{node: n.id, dataHash: dataHash, outHash: outHash, firstApply: c.w.now}
		if dataHash == 0 {
			l.led.empty(idx)
		}
		return true
	}
	if r.dataHash != dataHash {
		c.fail(Safety, "log-agreement", "%s applied a different entry at index %d than replica %d", n, idx, r.node)
	} else if r.outHash != outHash {
		c.fail(Safety, "output-agreement", "%s's output at index %d differs from replica %d's", n, idx, r.node)
	}
	return false
}

// restored checks a machine that was rebuilt from a snapshot against what
// the index recorded, when it recorded a hash.
func (c *checker) restored(n *node) {
	if r := c.log(n).byIndex[n.applied]; r != nil && r.hashed {
		if h := c.hash(n.sm); h != r.stateHash {
			c.fail(Safety, "snapshot-hash", "%s restored index %d with state hash %x, replica %d had %x",
				n, n.applied, h[:6], r.node, r.stateHash[:6])
		}
	}
}

// firstApplied returns when an index of a shard's log was first applied
// anywhere.
func (c *checker) firstApplied(shard uint64, idx uint64) (time.Duration, bool) {
	r := c.logs[shard].byIndex[idx]
	if r == nil {
		return 0, false
	}
	return r.firstApply, true
}

func hashProposal(p *core.Proposal) uint64 {
	h := newFNV()
	h.word(uint64(p.Time) + 1)
	for i := range p.Commands {
		x := &p.Commands[i]
		h.word(uint64(x.Op))
		h.str(x.ClientID)
		h.word(x.Seq)
		h.word(uint64(x.Kind))
		h.str(x.Name)
		h.word(uint64(x.Session))
		h.word(uint64(x.Token))
		h.word(uint64(x.Waiter))
		h.word(uint64(x.TTLMs))
		h.word(uint64(x.WaitMs))
		h.word(uint64(x.Limit))
		h.word(uint64(x.Permits))
		h.word(uint64(x.Mode))
		h.word(uint64(x.Parties))
		h.str(x.Participant)
		h.str(x.Owner)
		h.str(string(x.Value))
	}
	return h.sum()
}

func hashOutput(o *core.Output) uint64 {
	h := newFNV()
	h.word(o.Index)
	h.word(uint64(o.Time))
	for i := range o.Results {
		r := &o.Results[i]
		if r.Err != nil {
			h.word(uint64(r.Err.Code) + 1)
		}
		h.word(uint64(r.Outcome))
		h.word(uint64(r.Token))
		h.word(uint64(r.Session))
		h.word(uint64(r.Waiter))
		h.word(uint64(r.Deadline))
		h.word(r.Generation)
		h.word(uint64(r.Reason))
		h.word(boolWord(r.Duplicate))
	}
	for i := range o.Effects {
		e := &o.Effects[i]
		h.word(uint64(e.Kind))
		h.word(uint64(e.Reason))
		h.word(uint64(e.Object))
		h.str(e.Name)
		h.word(uint64(e.Session))
		h.word(uint64(e.Waiter))
		h.word(uint64(e.Token))
		h.word(e.Generation)
		h.str(string(e.Value))
	}
	return h.sum() | 1 // never 0, which marks an empty entry
}

type fnv struct{ h uint64 }

func newFNV() fnv { return fnv{14695981039346656037} }

func (f *fnv) word(w uint64) {
	for i := 0; i < 8; i++ {
		f.h ^= w & 0xff
		f.h *= fnvPrime
		w >>= 8
	}
}

func (f *fnv) str(s string) {
	for i := 0; i < len(s); i++ {
		f.h ^= uint64(s[i])
		f.h *= fnvPrime
	}
	f.word(uint64(len(s)))
}

func (f *fnv) sum() uint64 { return f.h }

// ackedGrant checks a grant a client was told about: the log must have made
// it, to that session, on that name, and no unheard release may have
// ended it (unheardEnded).
func (c *checker) ackedGrant(cl *client, k objKey, s core.SessionID, t core.FencingToken) {
	g := c.ledgerOf(k.name).grants[t]
	if g == nil || g.key != k || g.session != s {
		c.fail(Safety, "acked-grant", "client %d was told session %d holds %s %q with token %d, which the log never granted",
			cl.idx, s, k.kind, k.name, t)
	}
	c.toldGrant(fmt.Sprintf("client %d", cl.idx), k, s, t)
}

// toldGrant remembers a grant a client (who) was told of, which no
// unheard release may end (acked-grant-lost).
func (c *checker) toldGrant(who string, k objKey, s core.SessionID, t core.FencingToken) {
	key := tokenKey{shards.Of(k.name, len(c.logs)), t}
	if idx, ok := c.unheard[key]; ok {
		c.fail(Safety, "acked-grant-lost", "%s was told session %d holds %s %q with token %d, which a replica's unheard release "+
			"ended at index %d: a release for a caller that never heard of the grant ended one another caller was told of (rules 5)",
			who, s, k.kind, k.name, t, idx)
	}
	if _, ok := c.acked[key]; !ok {
		c.acked[key] = ack{who: who, at: c.w.now}
	}
}

// unheardEnded checks a grant a replica's unheard release (Command.Unheard)
// ended at index idx of a shard's log: the machine ends one only if no
// request but the one that asked for it was answered it, and that request's
// caller never heard of it, so no client may have been told of it, before
// or after (ackedGrant).
func (c *checker) unheardEnded(shard uint64, k objKey, t core.FencingToken, idx uint64) {
	key := tokenKey{shard, t}
	c.unheard[key] = idx
	if a, ok := c.acked[key]; ok {
		c.fail(Safety, "acked-grant-lost", "index %d: a replica's unheard release ended %s %q token %d, which %s was told it holds "+
			"at %.3fs: the release must have been refused for a grant another request was answered (rules 5)",
			idx, k.kind, k.name, t, a.who, a.at.Seconds())
	}
}

// privateSent notes a private request's identity (Options.Private).
func (c *checker) privateSent(cmd core.Command) { c.private[dedupeKey{cmd.ClientID, cmd.Seq}] = true }

// publicRetrySent notes the identity of a public retry of a private
// request that was given up (giveUpPrivate).
func (c *checker) publicRetrySent(cmd core.Command) {
	c.publicRetries[dedupeKey{cmd.ClientID, cmd.Seq}] = true
}

// unheardCounts sums, over every shard, the unheard releases that ended a
// grant, those refused for a grant another request was answered, of which
// those of a grant a private request asked for (a caller's retry answered
// it, or joined its wait, before the release), and those refused under
// rules before 5.
func (c *checker) unheardCounts() (ended, kept, raced, unruled int) {
	for _, l := range c.logs {
		ended += l.led.unheardEnded
		kept += l.led.unheardKept
		raced += l.led.unheardRaced
		unruled += l.led.unheardUnruled
	}
	return ended, kept, raced, unruled
}

// joinedCounts sums, over every shard, the requests answered "queued" on
// a wait their session already had, those of them a private request's
// public retry (giveUpPrivate), and the retries of one answered how
// that wait ended.
func (c *checker) joinedCounts() (joined, byRetry, ended int) {
	for _, l := range c.logs {
		joined += l.led.joined
		byRetry += l.led.joinedByRetry
		ended += l.led.joinedEnded
	}
	return joined, byRetry, ended
}

// fenceAccepted checks a write the fenced resource accepted: its token was
// granted on that name, and its grant had not ended (been applied anywhere)
// before the resource's CheckFence read began.
func (c *checker) fenceAccepted(k objKey, t core.FencingToken, readStart time.Duration, client int) {
	g := c.ledgerOf(k.name).grants[t]
	if g == nil || g.key != k {
		c.fail(Safety, "fence", "the resource accepted token %d on %s %q from client %d, which the log never granted there",
			t, k.kind, k.name, client)
		return
	}
	if g.ended {
		if at, ok := c.firstApplied(shards.Of(k.name, len(c.logs)), g.endIdx); ok && at < readStart {
			c.fail(Safety, "fence", "the resource accepted a stale token %d on %s %q from client %d: its grant ended at index %d "+
				"(applied at %.3fs), before the fence read began at %.3fs", t, k.kind, k.name, client, g.endIdx, at.Seconds(), readStart.Seconds())
		}
	}
}

// closeAnswered checks a close a client was told succeeded (docs/runtime.md,
// Shards, the close rule): the session must be gone from every shard's
// committed log by then (closed or expired there), so that it holds and
// waits nowhere; and it is remembered, so that no shard grants it anything
// later (ledger.grant).
func (c *checker) closeAnswered(cl *client, s core.SessionID) {
	c.closed[s] = c.w.now
	for k, l := range c.logs {
		if l.led.sessions[s] != nil {
			c.fail(Safety, "close-everywhere", "client %d was told session %d is closed, but shard %d still has it live, holding %d grants",
				cl.idx, s, k, len(l.led.liveOf(s)))
			return
		}
	}
}

// waitEndAnswered checks a client told its queued request ended without a
// grant (a withdrawal, a cancel, its session's end): the caller must hear
// what the log did (docs/design.md, withdrawn waits), so the log must have
// ended that wait, without a grant and for the reason told, and it is
// remembered, so that no later entry grants it (ledger.effect).
func (c *checker) waitEndAnswered(who string, cmd core.Command, r core.Result) {
	shard := shards.Of(cmd.Name, len(c.logs))
	led := c.logs[shard].led
	c.toldEnded[waitKey{shard, r.Waiter}] = c.w.now
	we, ok := led.waitEnds[r.Waiter]
	switch {
	case !ok:
		c.fail(Safety, "wait-end", "%s was told its %v %s seq=%d ended (%s) as waiter %d, which the log has not ended",
			who, cmd.Op, cmd.Name, cmd.Seq, r.Reason, r.Waiter)
	case we.granted:
		c.fail(Safety, "wait-end", "%s was told its %v %s seq=%d ended (%s) as waiter %d, which the log granted at index %d",
			who, cmd.Op, cmd.Name, cmd.Seq, r.Reason, r.Waiter, we.index)
	case we.reason != r.Reason:
		c.fail(Safety, "wait-end", "%s was told its %v %s seq=%d ended (%s) as waiter %d, which the log ended at index %d (%s)",
			who, cmd.Op, cmd.Name, cmd.Seq, r.Reason, r.Waiter, we.index, we.reason)
	}
}

// forcedCloses counts the closes with apply_lock_delay applied, and the
// lock-delays they started, over every shard (a close counts once per
// shard).
func (c *checker) forcedCloses() (closes, delays int) {
	for _, l := range c.logs {
		closes += l.led.forcedCloses
		delays += l.led.closeDelays
	}
	return closes, delays
}

// cleanupCloses counts the cleanup closes applied, and the lock-delays
// they started, over every shard.
func (c *checker) cleanupCloses() (closes, delays int) {
	for _, l := range c.logs {
		closes += l.led.cleanupCloses
		delays += l.led.cleanupDelays
	}
	return closes, delays
}

// expiryCloses counts the closes of an expired session's copies
// (shards.Expired) applied, and the lock-delays they started, over every
// shard.
func (c *checker) expiryCloses() (closes, delays int) {
	for _, l := range c.logs {
		closes += l.led.expiryCloses
		delays += l.led.expiryDelays
	}
	return closes, delays
}

// rulesCounts sums, over every shard, the closes with apply_lock_delay
// refused under rules 3 and the campaigns of a leader with another value
// under rules 3 (value kept) and from rules 4 (value set).
func (c *checker) rulesCounts() (refused, kept, set int) {
	for _, l := range c.logs {
		refused += l.led.refusedCloses
		kept += l.led.keptValues
		set += l.led.setValues
	}
	return refused, kept, set
}

// expiries counts the sessions that expired, over every shard (a session
// lives in every shard, so one that expires counts once per shard).
func (c *checker) expiries() int {
	k := 0
	for _, l := range c.logs {
		k += l.led.expiries
	}
	return k
}
