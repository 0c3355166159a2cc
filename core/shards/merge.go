package shards

import (
	"fmt"

	"github.com/lockstepd/lockstep/core"
)

// The merge rules. Each takes the answers of one wave sorted by shard, so
// that "the first" error or refusal is the lowest shard's, whatever order
// they arrived in.

// single is one shard's answer, unchanged.
func single(a Answer) Outcome { return Outcome{Result: a.Result, Err: a.Err} }

func notFound(r core.Result) bool { return r.Err != nil && r.Err.Code == core.CodeNotFound }

// mergeAdopts merges a create's adopts with shard 0's answer first. The
// session is made only when every shard made it; the deadline is the
// earliest, since the first copy to expire loses the session.
//
// A shard that did not answer makes the create an error and leaves the
// copies made to their TTL: the client retries with the same (ClientID,
// Seq), shard 0's dedupe answers the same id, and the adopts that failed
// complete (those that succeeded answer their stored result). A shard that
// refused (a limit) makes the create that refusal, and the copies made are
// closed, so that a session the client never learned does not linger.
//
// A copy whose lease ran out before another shard took the session is
// gone: an adopt slower than the TTL (a shard cut off), or a retry
// answered from the shards' memory of an attempt made more than a TTL
// before, would otherwise answer "created" for a session already expired
// in some shards. Each copy's lease began at its deadline less ttlMs (no
// keepalive can have moved it: the client has not learned the session), so
// when the earliest deadline is not after the latest such beginning, the
// create answers not_found and closes the copies: the client must create a
// new session. Shards' log times come from their leaders' clocks, so the
// comparison is as good as those agree; a leader change that extended a
// copy makes it err towards not_found, never towards a dead session.
func mergeAdopts(first core.Result, adopts []Answer, ttlMs int64) Outcome {
	res := first
	var err error
	var refusal *core.Result
	made := []uint64{0}
	for i, a := range adopts {
		switch {
		case a.Err != nil:
			if err == nil {
				err = a.Err
			}
		case a.Result.Err != nil:
			if refusal == nil {
				refusal = &adopts[i].Result
			}
		default:
			made = append(made, a.Shard)
			res.Deadline = min(res.Deadline, a.Result.Deadline)
			res.Duplicate = res.Duplicate && a.Result.Duplicate
		}
	}
	switch {
	case err != nil:
		return Outcome{Err: err}
	case refusal != nil:
		r := *refusal
		r.Err = &core.Error{Code: r.Err.Code, Msg: fmt.Sprintf("session %d could not be made in every shard: %s", first.Session, r.Err.Msg)}
		return Outcome{Result: r, Cleanup: &Cleanup{Session: first.Session, Shards: made}}
	}
	if ttlMs > 0 {
		began := first.Deadline - core.LogTime(ttlMs)
		for _, a := range adopts {
			began = max(began, a.Result.Deadline-core.LogTime(ttlMs))
		}
		if res.Deadline <= began {
			return Outcome{Result: core.Result{Err: &core.Error{Code: core.CodeNotFound, Msg: fmt.Sprintf(
				"session %d expired in one shard before the create reached every shard (a shard was slow to take it, "+
					"or this retry came more than a TTL after the first attempt): create a new session, with a new request_seq", first.Session)}},
				Cleanup: &Cleanup{Session: first.Session, Shards: made}}
		}
	}
	return Outcome{Result: res}
}

// mergeKeepAlive merges a keepalive sent to every shard. Alive everywhere:
// the earliest deadline. Missing in any shard (expired or closed there):
// the session is lost, the answer is that shard's not_found (the client
// must treat its session as gone), and the copies still alive are closed so
// that their holds do not outlive the session by a TTL. A keepalive never
// makes a session live again where it is gone: core's keepalive cannot
// create one.
func mergeKeepAlive(id core.SessionID, answers []Answer) Outcome {
	var res core.Result
	var err error
	var lost, refusal *core.Result
	var alive []uint64
	allDuplicate := true
	for i, a := range answers {
		switch {
		case a.Err != nil:
			if err == nil {
				err = a.Err
			}
		case notFound(a.Result):
			if lost == nil {
				lost = &answers[i].Result
			}
		case a.Result.Err != nil:
			if refusal == nil {
				refusal = &answers[i].Result
			}
		default:
			alive = append(alive, a.Shard)
			allDuplicate = allDuplicate && a.Result.Duplicate
			if res.Session == 0 || a.Result.Deadline < res.Deadline {
				res = a.Result
			}
		}
	}
	switch {
	case lost != nil:
		o := Outcome{Result: *lost}
		if len(alive) > 0 {
			o.Cleanup = &Cleanup{Session: id, Shards: alive}
		}
		return o
	case refusal != nil:
		return Outcome{Result: *refusal}
	case err != nil:
		return Outcome{Err: err}
	}
	res.Duplicate = allDuplicate
	return Outcome{Result: res}
}

// mergeClose merges a close sent to every shard, under the single-shard
// rule (docs/design.md, Several shards: close releases all its holds and
// waits): the close is done only when the session is gone from every
// shard, and it is, in one shard, when that shard closed it (now, or in an
// earlier attempt whose result its dedupe answers) or answers not_found
// (an earlier attempt without the same (ClientID, Seq), or its expiry
// there).
//
// A shard that did not answer makes the close an error, even when others
// closed: the session may still hold and wait there, and a success would
// tell the client its names are free while they are not until that
// shard's copy runs out of TTL. The client retries with the same
// (ClientID, Seq), which per-shard dedupe makes safe. A refusal (e.g. a
// seq older than a shard's dedupe window, or apply_lock_delay in a shard
// still on rules 3 just after an upgrade) is not a close either; when other
// shards did close, its message says so.
// Gone everywhere, closed by no shard, is not_found.
func mergeClose(id core.SessionID, answers []Answer) Outcome {
	var err error
	var errShard uint64
	var closed []uint64
	var done, gone, refusal *core.Result
	var refusalShard uint64
	allDuplicate := true
	for i, a := range answers {
		switch {
		case a.Err != nil:
			if err == nil {
				err, errShard = a.Err, a.Shard
			}
		case notFound(a.Result):
			if gone == nil {
				gone = &answers[i].Result
			}
		case a.Result.Err != nil:
			if refusal == nil {
				refusal, refusalShard = &answers[i].Result, a.Shard
			}
		default:
			closed = append(closed, a.Shard)
			allDuplicate = allDuplicate && a.Result.Duplicate
			if done == nil {
				done = &answers[i].Result
			}
		}
	}
	switch {
	case err != nil:
		return Outcome{Err: fmt.Errorf("session %d is not closed in every shard (%d of %d closed it; shard %d did not answer, and the session may still hold there): %w",
			id, len(closed), len(answers), errShard, err)}
	case refusal != nil && len(closed) > 0:
		// Some shards closed it: the refusal alone would say the close
		// changed nothing. Just after an upgrade, a close that asks for
		// the lock-delay is refused by a shard still on the old rules
		// while the others close; the retry (dedupe answers the shards
		// that closed) closes the rest once that shard's rules rose.
		r := *refusal
		r.Err = &core.Error{Code: r.Err.Code, Msg: fmt.Sprintf("session %d is closed in %d of %d shards, and shard %d refused: %s; retry the close to end it in the rest",
			id, len(closed), len(answers), refusalShard, r.Err.Msg)}
		return Outcome{Result: r}
	case refusal != nil:
		return Outcome{Result: *refusal}
	case done != nil:
		r := *done
		r.Duplicate = allDuplicate
		return Outcome{Result: r}
	}
	return Outcome{Result: *gone}
}

// mergeAny merges a command where one shard's success is enough, because
// what it names lives in one shard (a cancel's waiter): the first success,
// else the first error (that shard may have it), else the first refusal.
func mergeAny(answers []Answer) Outcome {
	var err error
	var refusal *core.Result
	for i, a := range answers {
		switch {
		case a.Err != nil:
			if err == nil {
				err = a.Err
			}
		case a.Result.Err != nil:
			if refusal == nil {
				refusal = &answers[i].Result
			}
		default:
			return Outcome{Result: a.Result}
		}
	}
	if err != nil {
		return Outcome{Err: err}
	}
	return Outcome{Result: *refusal}
}
