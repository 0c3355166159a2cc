package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
)

// Fault is one planned fault: what, on whom, when and for how long. Every
// fault heals (or restarts what it killed) before the next one starts.
type Fault struct {
	At     time.Duration `json:"at_ms"` // after the workload starts
	Kind   string        `json:"kind"`  // kill, pause, partition, disk, members, clock, versions, wiped
	Leader bool          `json:"leader"`
	Shard  int           `json:"shard"` // whose leader (or follower) is hit
	Mode   string        `json:"mode,omitempty"`
	Hold   time.Duration `json:"hold_ms"`
	// Offset is a clock fault's move of the victim's clock.
	Offset time.Duration `json:"offset_ms,omitempty"`
	// Delay is what a slow partition adds to each message of the victim's
	// links, both ways.
	Delay time.Duration `json:"delay_ms,omitempty"`
}

func (f Fault) String() string {
	who := "a follower"
	if f.Leader {
		who = "the leader"
	}
	s := fmt.Sprintf("%s %s of shard %d for %v", f.Kind, who, f.Shard, f.Hold)
	switch {
	case f.Kind == "clock":
		s = fmt.Sprintf("clock (%s %+v) %s of shard %d for %v", f.Mode, f.Offset, who, f.Shard, f.Hold)
	case f.Mode == modeSlow || f.Mode == modeClientsSlow:
		s = fmt.Sprintf("%s (%s, +%v a message) %s of shard %d for %v", f.Kind, f.Mode, f.Delay, who, f.Shard, f.Hold)
	case f.Mode != "":
		s = fmt.Sprintf("%s (%s) %s of shard %d for %v", f.Kind, f.Mode, who, f.Shard, f.Hold)
	}
	return s
}

// Partition modes: the node cut off both ways; its messages to every other
// node lost while theirs arrive; only its link to one other node cut; the
// node the only bridge between two halves that cannot reach each other
// (Jepsen's bridge); every link of the node slow both ways; every
// client cut off from the node's API (Raft goes on: the clients must move
// to another member); every client's requests to the node slow.
const (
	modeIsolate     = "isolate"
	modeOneWay      = "one-way"
	modeLink        = "link"
	modeBridge      = "bridge"
	modeSlow        = "slow"
	modeClientsCut  = "clients-cut"
	modeClientsSlow = "clients-slow"
)

// Kill modes: beside one node (no mode), a minority (half the members
// rounded down, the victim among them: two of five) or, briefly, a
// majority (no quorum until they restart: every acknowledged grant must
// survive it on disk).
const (
	killMinority = "minority"
	killMajority = "majority"
)

// Bounds of the slow links and of a majority's outage.
const (
	minSlowLink     = 50 * time.Millisecond
	maxSlowLink     = 250 * time.Millisecond
	maxMajorityDown = 1500 * time.Millisecond
)

// Clock fault modes (docs/chaos.md). Log time moves only with the leader's
// clock: its wall clock when it took the lead, carried forward by its
// monotonic clock, which the hook's slews move and its jumps do not. It
// moves by at most MaxClockStepMs (2 s) per entry, except a new leader's
// first entry, which takes its stamp whole and moves every deadline by the
// jump, then extends every session to now + its TTL before any timer
// fires (docs/design.md, Time). The Go client ends its view of a lease a
// guard (250 ms) early, which covers a follower's stamp lag (up to two
// ticks, 200 ms) and assumes the leader's clock runs at the wall clock's
// rate (docs/client.md). So a jump on a leader moves no log time until it
// next takes the lead; a failover onto a clock behind starts at the log
// time the new leader applied, and log time runs on;
// a clock ahead is harmless on a node that leads nothing, and a failover
// onto it costs no session, however far ahead; a leader's clock running
// fast cuts leases short by the rate error, which
// only the guard's last 50 ms absorbs. The modes keep to that:
const (
	// clockJump: the node hands every shard it leads to a peer, its clock
	// jumps ahead by up to maxJumpAhead, and (for a fault on "the
	// leader") the shard's leadership is moved back to it: a failover onto
	// a clock ahead, whose first entry moves log time and every deadline
	// by the jump. Healed by jumping back (log time keeps its lead; the
	// next term starts from it).
	clockJump = "jump"
	// clockBack: the clock jumps back by up to maxClockOffset (if this node
	// takes the lead meanwhile, its term starts at the log time it
	// applied). Healed by handing its shards to a peer and jumping to true
	// time; if a handover fails, by running clockSlew fast until true.
	clockBack = "back"
	// clockSkew: the clock runs clockSlew fast or slow for the hold, on the
	// leader or a follower. Healed by jumping back (fast) or running fast
	// until true (slow).
	clockSkew = "skew"
	// clockStep: the leader's wall clock steps ahead while it leads and
	// keeps leading (NTP stepping a clock, a virtual machine resumed from
	// a pause). Its log time follows its monotonic clock, which no step
	// moves, so no lease is cut short. Healed by stepping back (log time
	// did not move, so nothing waits).
	clockStep = "step"
)

// Bounds of the clock fault: the largest offset back (a new leader's term
// starts at the log time it applied, so any would do) and ahead (a
// failover onto it moves log time and every deadline by the jump in one
// entry; three times MaxClockStepMs, which a jump stayed under until
// 2026-12-05, when the rest was caught up 2 s per entry and cut leases
// short), the skew's rate (1%: twenty times NTP's largest slew, and over
// the longest TTL well within the client's guard), and the longest hold.
const (
	maxClockOffset = 1500 * time.Millisecond
	maxJumpAhead   = 6 * time.Second
	clockSlew      = 0.01
	maxClockHold   = 4 * time.Second
)

// plan draws the fault schedule of a run from its seed: faults start after
// a quiet second and keep a gap after each heal; held faults last longer
// than the election timeout (300 ms) so that they matter.
func plan(o *Options) []Fault {
	r := stream(o.Seed, streamFaults)
	// Half the jumps on a leader are steps in place, drawn from a stream
	// of their own so that the schedules drawn before the mode existed
	// stay as they were.
	steps := stream(o.Seed, streamStep)
	var out []Fault
	at := time.Second + time.Duration(r.IntN(1000))*time.Millisecond
	for len(out) < maxFaults {
		f := Fault{At: at, Kind: o.Nemesis[r.IntN(len(o.Nemesis))], Leader: r.IntN(4) != 0, Shard: r.IntN(o.Shards)}
		switch f.Kind {
		case "kill":
			f.Hold = time.Duration(500+r.IntN(2500)) * time.Millisecond
			switch r.IntN(6) {
			case 0:
				f.Mode = killMajority
				f.Hold = min(f.Hold, maxMajorityDown)
			case 1:
				f.Mode = killMinority
			}
		case "pause":
			f.Hold = time.Duration(800+r.IntN(2700)) * time.Millisecond
		case "disk":
			f.Hold = time.Duration(500+r.IntN(2500)) * time.Millisecond
		case "members":
			f.Hold = time.Duration(1000+r.IntN(3000)) * time.Millisecond
			f.Leader = false // a member is added, nobody is hit
		case "versions", "wiped":
			f.Hold = time.Duration(1500+r.IntN(2500)) * time.Millisecond
		case "partition":
			modes := []string{modeIsolate, modeOneWay, modeLink, modeBridge, modeSlow, modeClientsCut, modeClientsSlow}
			f.Mode = modes[r.IntN(len(modes))]
			f.Hold = time.Duration(1000+r.IntN(3000)) * time.Millisecond
			if f.Mode == modeSlow || f.Mode == modeClientsSlow {
				f.Delay = minSlowLink + time.Duration(r.IntN(int((maxSlowLink-minSlowLink)/time.Millisecond)+1))*time.Millisecond
			}
		case "clock":
			f.Mode = []string{clockJump, clockBack, clockSkew}[r.IntN(3)]
			f.Hold = time.Duration(1000+r.IntN(int(maxClockHold/time.Millisecond)-1000)) * time.Millisecond
			switch f.Mode {
			case clockJump:
				f.Offset = time.Duration(300+r.IntN(int(maxJumpAhead/time.Millisecond)-299)) * time.Millisecond
				if f.Leader && steps.IntN(2) == 0 {
					f.Mode = clockStep
				}
			case clockBack:
				f.Offset = -time.Duration(200+r.IntN(int(maxClockOffset/time.Millisecond)-199)) * time.Millisecond
			case clockSkew:
				f.Offset = time.Duration(float64(f.Hold) * clockSlew).Round(time.Millisecond)
				if r.IntN(2) == 0 {
					f.Offset = -f.Offset
				}
			}
		}
		if f.At+f.Hold > o.Duration {
			break
		}
		out = append(out, f)
		at += f.Hold + time.Duration(1500+r.IntN(2500))*time.Millisecond
	}
	return out
}

// FaultRecord is what happened when a fault was made.
type FaultRecord struct {
	Fault
	Node string `json:"node"`
	// Started and Healed are offsets from the workload's start.
	Started time.Duration `json:"started_ms"`
	Healed  time.Duration `json:"healed_ms"`
	// ToGrant is from the fault to the first grant any worker got after it
	// (the cluster serving again), filled in after the run; ToService from
	// the heal to every member healthy. -1 when not seen.
	ToGrant   time.Duration `json:"to_grant_ms"`
	ToService time.Duration `json:"to_service_ms"`
	Err       string        `json:"err,omitempty"`
	// Violation is what the fault itself saw go wrong (a member of other
	// versions that applied its peers' entries); the run fails on it.
	Violation string `json:"violation,omitempty"`
}

// MarshalJSON writes the durations in whole milliseconds, as their names
// say (a time.Duration alone is written in nanoseconds), keeping -1 for a
// ToGrant or ToService not seen.
func (r FaultRecord) MarshalJSON() ([]byte, error) {
	type plain FaultRecord // its fields, without this method
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	seen := func(d time.Duration) int64 {
		if d < 0 {
			return -1
		}
		return d.Milliseconds()
	}
	// The fields here are shallower than plain's, so they are the ones
	// written under these names.
	return json.Marshal(struct {
		plain
		At        int64 `json:"at_ms"`
		Hold      int64 `json:"hold_ms"`
		Offset    int64 `json:"offset_ms,omitempty"`
		Delay     int64 `json:"delay_ms,omitempty"`
		Started   int64 `json:"started_ms"`
		Healed    int64 `json:"healed_ms"`
		ToGrant   int64 `json:"to_grant_ms"`
		ToService int64 `json:"to_service_ms"`
	}{plain(r), ms(r.At), ms(r.Hold), ms(r.Offset), ms(r.Delay), ms(r.Started), ms(r.Healed), seen(r.ToGrant), seen(r.ToService)})
}

// nemesis makes the planned faults on the cluster, one after another.
type nemesis struct {
	o       *Options
	c       *cluster.Cluster
	r       *run
	admin   *client.Client // membership changes (disk, members)
	added   int            // members added so far, for fresh ids
	records []FaultRecord
}

// membershipBound bounds each membership change of a lost disk.
const membershipBound = 20 * time.Second

// grow is a membership change: a new node joins (AddNode, then a start
// with join and the incarnation AddNode answered), serves as a member for
// the fault's hold, and is removed again (RemoveNode, then killed).
func (n *nemesis) grow(f Fault, rec FaultRecord) FaultRecord {
	start := time.Now()
	rec.Started = start.Sub(n.r.start)
	id := fmt.Sprintf("node-%d", n.added+len(n.c.Nodes)+1)
	n.added++
	nd, err := n.c.NewNode(id)
	if err != nil {
		rec.Err = err.Error()
		return rec
	}
	rec.Node = id
	n.o.logf("%6.1fs fault: %s joins for %v", rec.Started.Seconds(), id, f.Hold)
	n.r.timeline.add(rec.Started, fmt.Sprintf("members: %s joins for %v", id, f.Hold))
	if err := n.join(nd); err != nil {
		rec.Err = err.Error()
	} else {
		time.Sleep(f.Hold)
	}
	ctx, cancel := context.WithTimeout(context.Background(), membershipBound)
	if err := n.admin.RemoveNode(ctx, id); err != nil && rec.Err == "" {
		rec.Err = fmt.Sprintf("remove %s: %v", id, err)
	}
	cancel()
	n.c.Forget(nd)
	healed := time.Now()
	rec.Healed = healed.Sub(n.r.start)
	n.r.timeline.add(rec.Healed, fmt.Sprintf("healed: members %s removed", id))
	if err := n.c.WaitHealthy(serviceBound, n.c.Nodes...); err == nil {
		rec.ToService = time.Since(healed)
	} else if rec.Err == "" {
		rec.Err = err.Error()
	}
	n.o.logf("%6.1fs %s removed again %s", rec.Healed.Seconds(), id, rec.Err)
	return rec
}

// join adds nd to the membership and starts it empty, to catch up.
func (n *nemesis) join(nd *cluster.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), membershipBound)
	inc, err := n.admin.AddNode(ctx, nd.ID, nd.Raft)
	cancel()
	if err != nil {
		return fmt.Errorf("add %s: %w", nd.ID, err)
	}
	cfg := config.Defaults()
	cfg.Cluster = config.Cluster{NodeID: nd.ID, RaftAddress: nd.Raft, RaftListenAddress: nd.RaftListen, APIAddress: nd.ListenAPI(),
		MetricsAddress: nd.Metrics, DataDir: nd.DataDir, Join: true}
	cfg.Consensus.Shards = n.o.Shards
	n.c.Secure(nd, &cfg)
	n.o.configure(&cfg)
	if inc != "" {
		if cfg.Cluster.Incarnation, err = strconv.Atoi(inc); err != nil {
			return fmt.Errorf("add %s: incarnation %q: %w", nd.ID, inc, err)
		}
	}
	if err := nd.WriteConfig(cfg); err != nil {
		return err
	}
	if err := nd.Start(); err != nil {
		return err
	}
	return n.c.WaitHealthy(serviceBound, nd)
}

// loseDisk is a lost disk: the node is killed, removed from the
// membership, its data directory wiped, and after hold it is added back as
// a new member (a new incarnation, as docs/runtime.md says a removed id
// must be) and started empty with join, to catch up from the others.
func (n *nemesis) loseDisk(nd *cluster.Node, hold time.Duration) error {
	nd.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), membershipBound)
	err := n.admin.RemoveNode(ctx, nd.ID)
	cancel()
	if err != nil {
		// Still a member with its data: bring it back as it was.
		return errors.Join(fmt.Errorf("remove %s: %w", nd.ID, err), nd.Start())
	}
	if err := nd.Wipe(); err != nil {
		return err
	}
	time.Sleep(hold)
	ctx, cancel = context.WithTimeout(context.Background(), membershipBound)
	inc, err := n.admin.AddNode(ctx, nd.ID, nd.Raft)
	cancel()
	if err != nil {
		return fmt.Errorf("add %s back: %w", nd.ID, err)
	}
	cfg, err := nd.Config()
	if err != nil {
		return err
	}
	cfg.Cluster.Join = true
	if inc != "" {
		if cfg.Cluster.Incarnation, err = strconv.Atoi(inc); err != nil {
			return fmt.Errorf("add %s back: incarnation %q: %w", nd.ID, inc, err)
		}
	}
	if err := nd.WriteConfig(cfg); err != nil {
		return err
	}
	return nd.Start()
}

// claimedVersions is what a member restarted by the versions fault names
// in its Raft hello: log versions no build has.
const claimedVersions = "rules 0, entries 0, snapshots 0"

// settleEvery is how often the versions fault reads the restarted member's
// applied indexes while its own log replays; settleGrace is how long past
// the hold it may take (a replay of a snapshot and the log after it takes
// well under a second here).
const (
	settleEvery = 200 * time.Millisecond
	settleGrace = 3 * time.Second
)

// otherVersions restarts the victim as a build of other versions would
// run (its hello names claimedVersions, through the chaos build's
// LOCKSTEP_CHAOS_VERSIONS), holds, and restarts it as it was. Its peers
// must refuse it and it them (runtime/transport's hello): once it has
// replayed its own log, its applied indexes must not move for the rest of
// the hold. Had they moved, it would have applied its peers' entries by
// other rules; that is the violation answered. The cluster serves on the
// others meanwhile, as with a member down.
func (n *nemesis) otherVersions(victim *cluster.Node, hold time.Duration) (violation string, err error) {
	end := time.Now().Add(hold)
	victim.Kill()
	if err := victim.StartWithEnv([]string{"LOCKSTEP_CHAOS_VERSIONS=" + claimedVersions}); err != nil {
		return "", errors.Join(err, victim.Start())
	}
	defer func() {
		victim.Kill()
		err = errors.Join(err, victim.Start())
	}()
	applied := func() ([]uint64, error) { return appliedIndexes(victim) }
	// Its own log first: settled when two reads a step apart agree. One
	// that never settles went on applying past its own log.
	var settled, first, prev []uint64
	for time.Now().Before(end.Add(settleGrace)) {
		now, err := applied()
		if err == nil && first == nil {
			first = now
		}
		if err == nil && prev != nil && slices.Equal(now, prev) {
			settled = now
			break
		}
		if err == nil {
			prev = now
		}
		time.Sleep(settleEvery)
	}
	if settled == nil {
		if first != nil && !slices.Equal(first, prev) {
			return fmt.Sprintf("versions: %s, restarted naming other log versions, kept applying (applied indexes %v, then %v, %v past the hold): its peers did not refuse it",
				victim.ID, first, prev, settleGrace), nil
		}
		return "", fmt.Errorf("%s did not answer its state within the hold", victim.ID)
	}
	time.Sleep(time.Until(end))
	last, err := applied()
	if err != nil {
		return "", err
	}
	for i := range min(len(last), len(settled)) {
		if last[i] > settled[i] {
			return fmt.Sprintf("versions: %s, restarted naming other log versions, applied shard %d's entries %d..%d from peers that should have refused it",
				victim.ID, i, settled[i]+1, last[i]), nil
		}
	}
	return "", nil
}

// appliedIndexes reads what each of nd's shards has applied (its state
// hash hook).
func appliedIndexes(nd *cluster.Node) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clockBound)
	defer cancel()
	hs, err := nd.StateHashes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]uint64, len(hs))
	for i, h := range hs {
		out[i] = h.AppliedIndex
	}
	return out, nil
}

// wipedAsItWas is a lost disk mishandled: the victim is killed, its data
// directory wiped, and it is started again as it was, with its
// configuration and no replacement (what an operator might do after
// changing a disk). It has forgotten its votes and the entries it
// acknowledged, and its peers must refuse it (docs/runtime.md, "The
// identity keeps out a member that lost its log"): for the hold it must
// apply nothing and keep running (a leader's commit index beyond its
// empty log would make Raft panic). Either failing is the violation
// answered. Healed by replacing it, as the disk fault does.
func (n *nemesis) wipedAsItWas(victim *cluster.Node, hold time.Duration) (violation string, err error) {
	victim.Kill()
	if err := victim.Wipe(); err != nil {
		return "", errors.Join(err, victim.Start())
	}
	if err := victim.Start(); err != nil {
		return "", errors.Join(err, n.loseDisk(victim, 0))
	}
	for end := time.Now().Add(hold); violation == "" && time.Now().Before(end); time.Sleep(settleEvery) {
		if !victim.Running() {
			violation = fmt.Sprintf("wiped: %s, started again as it was after its data directory was wiped, exited: %s", victim.ID, victim.Tail(3))
			break
		}
		applied, err := appliedIndexes(victim)
		if err != nil {
			continue // still starting
		}
		for i, a := range applied {
			if a > 0 {
				violation = fmt.Sprintf("wiped: %s, started again as it was after its data directory was wiped, applied shard %d's entries up to %d: its peers did not refuse it",
					victim.ID, i, a)
			}
		}
	}
	return violation, n.loseDisk(victim, 0)
}

// clockBound bounds each call to a node's clock hook, and the wait for a
// slewed clock to come back to true time past its expected end.
const clockBound = 5 * time.Second

// clock moves the victim's clock, holds, and heals it (see the modes).
// The victim's clock is true again when it returns, whatever failed.
func (n *nemesis) clock(f Fault, victim, peer *cluster.Node) (err error) {
	set := func(offset time.Duration, slew float64) error {
		ctx, cancel := context.WithTimeout(context.Background(), clockBound)
		defer cancel()
		_, err := victim.SetClock(ctx, offset, slew)
		return err
	}
	switch f.Mode {
	case clockJump:
		if err := n.leadAway(victim, peer); err != nil {
			return err // nothing moved: a leader's clock must not jump ahead
		}
		if err := set(f.Offset, 0); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, set(0, 0)) }()
		if f.Leader {
			if err := n.c.TransferLeadership(peer, f.Shard, victim, clockBound); err != nil {
				return err
			}
			n.r.timeline.add(time.Since(n.r.start), fmt.Sprintf("clock: %s, %v ahead, leads shard %d", victim.ID, f.Offset, f.Shard))
		}
		time.Sleep(f.Hold)
	case clockStep:
		if err := set(f.Offset, 0); err != nil {
			return err
		}
		n.r.timeline.add(time.Since(n.r.start), fmt.Sprintf("clock: %s stepped %v ahead while it leads", victim.ID, f.Offset))
		time.Sleep(f.Hold)
		return set(0, 0)
	case clockBack:
		if err := set(f.Offset, 0); err != nil {
			return err
		}
		time.Sleep(f.Hold)
		if n.leadAway(victim, peer) == nil {
			return set(0, 0)
		}
		return n.slewBack(victim, -f.Offset)
	case clockSkew:
		if err := set(f.Offset, clockSlew); err != nil {
			return err
		}
		time.Sleep(f.Hold)
		if f.Offset > 0 {
			return set(0, 0)
		}
		return n.slewBack(victim, -f.Offset)
	}
	return nil
}

// slewBack runs the victim's clock clockSlew fast until it is true again,
// behind by at most behind now: catching up at once would be a jump ahead.
func (n *nemesis) slewBack(victim *cluster.Node, behind time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), clockBound)
	_, err := victim.SetClock(ctx, 0, clockSlew)
	cancel()
	if err != nil {
		return err
	}
	limit := time.Duration(float64(behind)/clockSlew) + clockBound
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), clockBound)
		off, err := victim.ClockOffset(ctx)
		cancel()
		if err == nil && off == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s's clock was not true again within %v", victim.ID, limit)
}

// leadAway hands every shard nd leads to to, so that nd's clock may then
// move without moving log time.
func (n *nemesis) leadAway(nd, to *cluster.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), clockBound)
	st, err := nd.Status(ctx)
	cancel()
	if err != nil {
		return err
	}
	for i, sh := range st.Shards {
		if sh.Role == "leader" {
			if err := n.c.TransferLeadership(nd, i, to, clockBound); err != nil {
				return err
			}
		}
	}
	return nil
}

// serviceBound is how long a healed cluster gets to answer /health on
// every member before the fault's heal counts as not recovered (the
// liveness check after the last fault is what fails the run).
const serviceBound = 30 * time.Second

func (n *nemesis) runAll(ctx context.Context, faults []Fault) {
	for _, f := range faults {
		if !sleepUntil(ctx, n.r.start.Add(f.At)) {
			return
		}
		n.records = append(n.records, n.make(f))
	}
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

// target picks the node a fault hits: the shard's leader, or a follower
// drawn by the fault's shard (deterministic given the leader).
func (n *nemesis) target(f Fault) (*cluster.Node, *cluster.Node, error) {
	leader, err := n.c.Leader(f.Shard, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	var others []*cluster.Node
	for _, nd := range n.c.Nodes {
		if nd != leader {
			others = append(others, nd)
		}
	}
	r := rand.New(rand.NewPCG(n.o.Seed, uint64(f.At)))
	other := others[r.IntN(len(others))]
	if f.Leader {
		return leader, other, nil
	}
	return other, leader, nil
}

// killSet is who a kill fault stops: the victim alone, or with it the
// peer and then the members in order until the mode's count is reached.
func (n *nemesis) killSet(f Fault, victim, peer *cluster.Node) []*cluster.Node {
	count := 1
	switch f.Mode {
	case killMinority:
		count = max(1, len(n.c.Nodes)/2)
	case killMajority:
		count = len(n.c.Nodes)/2 + 1
	}
	down := []*cluster.Node{victim}
	for _, nd := range append([]*cluster.Node{peer}, n.c.Nodes...) {
		if len(down) == count {
			break
		}
		if !slices.Contains(down, nd) {
			down = append(down, nd)
		}
	}
	return down
}

func (n *nemesis) make(f Fault) FaultRecord {
	rec := FaultRecord{Fault: f, ToGrant: -1, ToService: -1}
	if f.Kind == "members" {
		return n.grow(f, rec)
	}
	victim, peer, err := n.target(f)
	if err != nil {
		rec.Err = err.Error()
		n.o.logf("fault %v: skipped: %v", f, err)
		return rec
	}
	rec.Node = victim.ID
	start := time.Now()
	rec.Started = start.Sub(n.r.start)
	n.o.logf("%6.1fs fault: %v on %s", rec.Started.Seconds(), f, victim.ID)
	n.r.timeline.add(rec.Started, fmt.Sprintf("%v on %s", f, victim.ID))
	switch f.Kind {
	case "kill":
		down := n.killSet(f, victim, peer)
		for _, nd := range down {
			nd.Kill()
		}
		time.Sleep(f.Hold)
		for _, nd := range down {
			if err := nd.Start(); err != nil && rec.Err == "" {
				rec.Err = err.Error()
			}
		}
	case "disk":
		if err := n.loseDisk(victim, f.Hold); err != nil {
			rec.Err = err.Error()
		}
	case "pause":
		if err := victim.Pause(); err != nil {
			rec.Err = err.Error()
		}
		time.Sleep(f.Hold)
		if err := victim.Resume(); err != nil && rec.Err == "" {
			rec.Err = err.Error()
		}
	case "clock":
		if err := n.clock(f, victim, peer); err != nil {
			rec.Err = err.Error()
		}
	case "versions":
		violation, err := n.otherVersions(victim, f.Hold)
		rec.Violation = violation
		if err != nil {
			rec.Err = err.Error()
		}
	case "wiped":
		violation, err := n.wipedAsItWas(victim, f.Hold)
		rec.Violation = violation
		if err != nil {
			rec.Err = err.Error()
		}
	case "partition":
		switch f.Mode {
		case modeIsolate:
			n.c.Net.Isolate(victim)
		case modeOneWay:
			for _, nd := range n.c.Nodes {
				if nd != victim {
					n.c.Net.CutOneWay(victim, nd)
				}
			}
		case modeLink:
			n.c.Net.Cut(victim, peer)
		case modeBridge:
			var others []*cluster.Node
			for _, nd := range n.c.Nodes {
				if nd != victim {
					others = append(others, nd)
				}
			}
			half := len(others) / 2
			for _, a := range others[:half] {
				for _, b := range others[half:] {
					n.c.Net.Cut(a, b)
				}
			}
		case modeSlow:
			for _, nd := range n.c.Nodes {
				if nd != victim {
					n.c.Net.Delay(victim, nd, f.Delay)
					n.c.Net.Delay(nd, victim, f.Delay)
				}
			}
		case modeClientsCut:
			n.c.Net.CutClients(victim)
		case modeClientsSlow:
			n.c.Net.DelayClients(victim, f.Delay)
		}
		time.Sleep(f.Hold)
		n.c.Net.Heal()
	}
	healed := time.Now()
	rec.Healed = healed.Sub(n.r.start)
	n.r.timeline.add(rec.Healed, fmt.Sprintf("healed: %s %s", f.Kind, victim.ID))
	if err := n.c.WaitHealthy(serviceBound, n.c.Nodes...); err == nil {
		rec.ToService = time.Since(healed)
	} else if rec.Err == "" {
		rec.Err = err.Error()
	}
	n.o.logf("%6.1fs healed %s: every member healthy %v after the heal %s", rec.Healed.Seconds(), victim.ID,
		rec.ToService.Round(time.Millisecond), rec.Err)
	return rec
}
