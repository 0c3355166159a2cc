package shards

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/lockstepd/lockstep/core"
)

// Of is the shard that owns name among count shards: FNV-1a 64 of the name,
// modulo count. "" (no name: sessions, reads of no object) is shard 0. The
// mapping depends on count, which is why a cluster's shard count never
// changes after its first start (docs/runtime.md, Shards).
func Of(name string, count int) uint64 {
	if count <= 1 || name == "" {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return h.Sum64() % uint64(count)
}

// Targets is every shard cmd reaches among count shards, in order, over all
// its waves (a create reaches shard 0 first, then the others).
func Targets(cmd core.Command, count int) []uint64 {
	if count <= 1 {
		return []uint64{0}
	}
	switch cmd.Op {
	case core.OpSessionCreate, core.OpSessionKeepAlive, core.OpSessionClose, core.OpCancel:
		return all(0, count)
	}
	return []uint64{Of(cmd.Name, count)}
}

// Send is one command for one shard. Every shard gets the command's own
// (ClientID, Seq): dedupe is per shard, so a retry is recognised in each.
type Send struct {
	Shard uint64
	Cmd   core.Command
}

// Answer is one shard's answer to a Send. Err is set when the shard could
// not answer (no leader or quorum, shutting down, the caller's deadline):
// the command may or may not have been applied there. Otherwise Result is
// authoritative, its Err carrying core's refusal.
type Answer struct {
	Shard  uint64
	Result core.Result
	Err    error
}

// Cleanup asks the caller to close Session in Shards, best effort and in the
// background: copies of a session that is lost or refused elsewhere, whose
// holds would otherwise outlive it by a TTL. A cleanup that fails leaves
// them to their TTL; it never changes the answer.
type Cleanup struct {
	Session core.SessionID
	Shards  []uint64
}

// Close is the command that closes the session in one of Shards (the
// caller gives it its identity). It asks for the lock-delay
// (apply_lock_delay, rules 4): a session lost in one shard failed, and its
// holder may still run until it notices, so its holds elsewhere end as its
// expiry would end them (docs/design.md, Several shards). A copy made by a
// create that failed elsewhere holds nothing, so the flag changes nothing
// there. A shard still under rules 3 refuses such a close and changes
// nothing: its copy is left to its TTL, whose expiry applies the
// lock-delay too.
func (c *Cleanup) Close() core.Command {
	return core.Command{Op: core.OpSessionClose, Session: c.Session, ApplyLockDelay: true}
}

// Outcome is a fanned-out command's one answer: Result when Err is nil,
// with the same meaning as a single shard's (Err wraps the shard's own
// error, so errors.Is still finds it), and the cleanup to perform.
type Outcome struct {
	Result  core.Result
	Err     error
	Cleanup *Cleanup
}

type phase uint8

const (
	phaseFirst phase = iota // the first wave is out
	phaseAdopt              // a create's adopts are out
	phaseDone
)

// Fanout is one command on its way through the shards: Start, then, while
// Sends is not empty, send every one of them at once and Step with all of
// their answers; then Outcome.
type Fanout struct {
	count int
	phase phase
	sends []Send
	// one holds the command (one[0].Cmd, cmd) and, for a wave of one
	// send, the only wave of a command for one name, that send: every
	// request pays for its route, and a slice of its own and a second
	// copy of the command were a third of its bytes.
	one   [1]Send
	first core.Result // a create's answer from shard 0
	out   Outcome
}

// cmd is the command routed.
func (f *Fanout) cmd() *core.Command { return &f.one[0].Cmd }

// Start routes cmd among count shards (count < 1 counts as 1).
func Start(cmd core.Command, count int) *Fanout {
	f := &Fanout{count: max(count, 1), one: [1]Send{{Cmd: cmd}}}
	switch {
	case f.count == 1, cmd.Op == core.OpSessionCreate:
		f.sends = f.only(0)
	case cmd.Op == core.OpSessionKeepAlive, cmd.Op == core.OpSessionClose:
		f.sends = sendAll(cmd, 0, f.count)
	case cmd.Op == core.OpCancel:
		if cmd.Session == 0 && cmd.Waiter != 0 {
			f.finish(Outcome{Result: refused(fmt.Sprintf(
				"cancel needs the session_id of the wait with %d shards: waiter ids are per shard", f.count))})
			return f
		}
		f.sends = sendAll(cmd, 0, f.count)
	default:
		f.sends = f.only(Of(cmd.Name, f.count))
	}
	return f
}

// only is a wave of one send, the command to shard.
func (f *Fanout) only(shard uint64) []Send {
	f.one[0].Shard = shard
	return f.one[:]
}

// Sends is what to send now, all at once; empty when the command is done.
// The slice is the Fanout's: do not change it.
func (f *Fanout) Sends() []Send { return f.sends }

// Done reports whether Outcome is final.
func (f *Fanout) Done() bool { return f.phase == phaseDone }

// Outcome is the merged answer, once Done.
func (f *Fanout) Outcome() Outcome { return f.out }

// Step takes the answers to every Send of the current wave, in any order.
// It refuses answers that do not match the wave one to one (a bug in the
// caller) and changes nothing then.
func (f *Fanout) Step(answers []Answer) error {
	if f.phase == phaseDone {
		return fmt.Errorf("shards: %d answers to a command that is done", len(answers))
	}
	sorted, err := match(f.sends, answers)
	if err != nil {
		return err
	}
	f.sends = nil
	switch {
	case f.count == 1:
		f.finish(single(sorted[0]))
	case f.cmd().Op == core.OpSessionCreate && f.phase == phaseFirst:
		f.created(sorted[0])
	case f.cmd().Op == core.OpSessionCreate:
		f.finish(mergeAdopts(f.first, sorted, f.cmd().TTLMs))
	case f.cmd().Op == core.OpSessionKeepAlive:
		f.finish(mergeKeepAlive(f.cmd().Session, sorted))
	case f.cmd().Op == core.OpSessionClose:
		f.finish(mergeClose(f.cmd().Session, sorted))
	case f.cmd().Op == core.OpCancel:
		f.finish(mergeAny(sorted))
	default:
		f.finish(single(sorted[0]))
	}
	return nil
}

// created takes shard 0's answer to a create: a failure is the answer, a
// session goes out to be adopted, same id, in every other shard.
func (f *Fanout) created(a Answer) {
	if a.Err != nil || a.Result.Err != nil {
		f.finish(single(a))
		return
	}
	f.first = a.Result
	adopt := *f.cmd()
	adopt.Session = a.Result.Session
	f.sends = sendAll(adopt, 1, f.count)
	f.phase = phaseAdopt
}

func (f *Fanout) finish(o Outcome) {
	f.out, f.phase, f.sends = o, phaseDone, nil
}

// match checks that answers answer sends one to one, and sorts them by
// shard, so that "the first" answer of a merge is the same whichever shard
// answered first.
func match(sends []Send, answers []Answer) ([]Answer, error) {
	if len(answers) != len(sends) {
		return nil, fmt.Errorf("shards: %d answers to %d sends", len(answers), len(sends))
	}
	if len(answers) == 1 {
		// Nothing to sort, and no copy to make: the merges read answers
		// and keep nothing of them.
		if answers[0].Shard != sends[0].Shard {
			return nil, fmt.Errorf("shards: an answer from shard %d, which was not sent this wave's command (or answered twice)", answers[0].Shard)
		}
		return answers, nil
	}
	sorted := slices.Clone(answers)
	slices.SortFunc(sorted, func(a, b Answer) int { return cmp.Compare(a.Shard, b.Shard) })
	for i := range sorted {
		// sends are in shard order.
		if sorted[i].Shard != sends[i].Shard {
			return nil, fmt.Errorf("shards: an answer from shard %d, which was not sent this wave's command (or answered twice)", sorted[i].Shard)
		}
	}
	return sorted, nil
}

func all(from uint64, count int) []uint64 {
	out := make([]uint64, 0, count)
	for i := from; i < uint64(count); i++ {
		out = append(out, i)
	}
	return out
}

func sendAll(cmd core.Command, from uint64, count int) []Send {
	out := make([]Send, 0, count)
	for _, s := range all(from, count) {
		out = append(out, Send{Shard: s, Cmd: cmd})
	}
	return out
}

func refused(msg string) core.Result {
	return core.Result{Err: &core.Error{Code: core.CodeInvalidArgument, Msg: msg}}
}
