package rpc

import (
	"context"
	"errors"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime"
)

// The steps that acquires (mutex, semaphore, RW lock) and releases share.

type acquireArgs struct {
	cmd        core.Command // Op, Kind, Name, ClientID, Seq, WaitMs and the kind's fields
	session    uint64
	owner      string
	ttlSeconds int64
	ttlMs      int64
}

type acquired struct {
	r      core.Result
	lease  lease
	holder core.Holder // when granted and still held
	closed bool        // the session made for it was closed again: nothing was granted
}

// acquire runs an acquire or a campaign in the given session or in one made
// for it. A session made for it is closed again when nothing was granted
// (unless the call returned while still queued: a retry may wait again), or
// when this member stopped serving the wait and left it queued for the
// client's resend elsewhere (keptForResend).
func (s *service) acquire(ctx context.Context, a acquireArgs) (acquired, error) {
	l, err := s.sessionFor(ctx, a.session, a.owner, a.ttlSeconds, a.ttlMs, &a.cmd)
	if err != nil {
		return acquired{}, err
	}
	cmd := a.cmd
	cmd.Session = l.id
	cmd.Owner = a.owner
	if cmd.Owner == "" {
		// An acquire in a given session that names no owner is its
		// session's: the holder showed owner "", and a release by the
		// session's label was refused as another holder's.
		cmd.Owner = l.owner
	}
	cmd.WaitMs = s.waitMs(ctx, cmd.WaitMs)
	stop := s.keepWhileWaiting(ctx, l)
	r, err := s.do(ctx, cmd)
	stop()
	if err != nil {
		if l.created && !keptForResend(err) {
			s.closeSession(ctx, l.id)
		}
		return acquired{}, err
	}
	out := acquired{r: r, lease: l}
	switch r.Outcome {
	case core.OutcomeGranted:
		kind := cmd.Kind
		if cmd.Op == core.OpCampaign {
			kind = core.KindElection
		}
		out.holder, _ = s.grantDetails(ctx, kind, cmd.Name, r.Token)
	case core.OutcomeQueued:
	default:
		if l.created {
			out.closed = s.closeSession(ctx, l.id)
		}
	}
	return out, nil
}

type releaseArgs struct {
	kind       core.Kind
	name       string
	clientID   string
	seq        uint64
	low        uint64 // lowest_pending_seq
	session    uint64
	owner      string
	ownerField string
	token      uint64
}

// rememberedRelease answers a release, named by owner, of a grant not
// held: nil when core remembers this (client_id, request_seq) as a release
// of that token that succeeded, a stale-token conflict otherwise.
func (s *service) rememberedRelease(ctx context.Context, a releaseArgs) error {
	var r core.Result
	var ok bool
	if _, err := s.read(ctx, a.name, false, func(m *core.Machine) error {
		r, ok = m.Remembered(s.clientKey(ctx, a.clientID), a.seq)
		return nil
	}); err != nil {
		return err
	}
	switch {
	case ok && r.Err != nil && r.Err.Code == core.CodeFailedPrecondition:
		return s.resultError(r) // forgotten: its outcome is unknown
	case ok && r.Err == nil && r.Outcome == core.OutcomeDone && r.Token == core.FencingToken(a.token):
		noteEnded(ctx, uint64(r.Session), a.token)
		return nil
	}
	return staleToken(a.kind, a.name, a.token)
}

// release ends the grant a caller names by holder and token, and closes its
// session when the server created that session for the grant. released is
// always true on success: a wrong holder or stale token is an error (409).
func (s *service) release(ctx context.Context, a releaseArgs) (sessionClosed bool, err error) {
	h, found, err := s.findHolding(ctx, a.kind, a.name, a.token, a.session, a.owner, a.ownerField, false)
	if err != nil {
		return false, err
	}
	cmd := core.Command{Op: core.OpRelease, Kind: a.kind, Name: a.name, ClientID: a.clientID, Seq: a.seq, LowestPending: a.low,
		Session: core.SessionID(a.session), Token: core.FencingToken(a.token)}
	if a.kind == core.KindElection {
		cmd.Op, cmd.Kind = core.OpResign, 0
	}
	switch {
	case found:
		cmd.Session = h.holder.Session
	case a.clientID == "" || (cmd.Op == core.OpResign && cmd.Session == 0):
		// Not held, even by the leader's account: the token is stale. Only
		// a retry of a release that succeeded can still be answered, by
		// core's dedupe, and that needs client_id (and resign a session).
		return false, staleToken(a.kind, a.name, a.token)
	case cmd.Session == 0:
		// Named by owner label, not held: only a retry of a release that
		// succeeded is answered, from core's memory of it. It is never
		// proposed anew: the command would carry only the token, and core
		// would end whichever grant holds that token when it applies (a
		// token guessed ahead of the grant it will name: fencing tokens
		// follow the log index).
		return false, s.rememberedRelease(ctx, a)
	}
	r, err := s.do(ctx, cmd)
	if err != nil {
		return false, err
	}
	// The grant's session and token, as core ended it, for the audit
	// line: a release by owner label names no session.
	noteEnded(ctx, uint64(r.Session), uint64(r.Token))
	if found && h.owned {
		return s.closeSession(ctx, h.holder.Session), nil
	}
	return false, nil
}

// keptForResend says whether err is a wait this member stopped serving as
// it closes and left in the queue (runtime.ErrWaitKept), for its client's
// resend to another member to re-attach to by dedupe. A session the server
// made for the request stays open for it: closing it would withdraw the
// wait, and send the resend to the back of the queue. The resend finds the
// same session (sessionFor's derived client id) and keeps it alive while it
// waits; a client that never comes back leaves it to expire with its TTL,
// and with it the wait, or the grant that landed on it meanwhile.
func keptForResend(err error) bool { return errors.Is(err, runtime.ErrWaitKept) }
