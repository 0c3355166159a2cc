package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// What a cancelled or failed acquire guarantees (docs/client.md, "Cancelled
// calls"): the call returns by the caller's deadline, and nothing it may
// have caused on the servers outlives it. The request is withdrawn in the
// background by its own dedupe identity (SessionService.Abandon), which
// settles it whether it is still on its way, queued, or already granted.
// Until that answers, the request's seq stays pending (so the servers keep
// the tombstone that stops a late copy of it) and the session's local gate
// of the name stays taken (so no other holder on the session is answered
// the grant being withdrawn).
//
// The withdrawal is not bounded in time: it keeps trying, with back-off,
// for as long as the session lives, as Curator's guaranteed delete does. A
// withdrawal given up while the session lives (it gave up after a minute)
// left a request that the servers could not be told of to be queued, then
// granted, to a session that lives on with no value knowing the token:
// held until the session ends. It stops when the session ends (lost,
// closed, or its Client closed), which releases everything the session had
// anyway; a withdrawal the servers refuse for good ends the session too
// (giveUpSession).

// maxRestarts bounds how often one acquire starts over after its request
// was cancelled behind its back (see acquire).
const maxRestarts = 16

// acquireSpec is one acquire-like call: a mutex, semaphore or RW lock
// acquire, a campaign, a barrier wait.
type acquireSpec struct {
	op     string
	kind   pb.Kind
	name   string
	waitMs int64 // 0: try once; -1: until granted; > 0: at most that long
	gated  bool  // takes the session's local gate of (kind, name)
	// outlivesSession says the call's success is a fact the session's
	// end does not undo: a barrier's release, which let the other parties
	// through counting this one. When the session is lost while the call
	// waits, the call still hears the servers' answer to its own
	// (client_id, seq) for a while (lossGrace), and a release answered
	// after the lease passed is still the call's result.
	outlivesSession bool
	// send makes one attempt of the request with id against e.
	send func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error)
}

// grant is what a wait for a hold came to.
type grant struct {
	token    uint64
	outcome  pb.Outcome
	reason   pb.Reason
	waiterID uint64
	// grantedAt is the grant's log time (acquired_at_ms; 0: not said).
	grantedAt int64
	// maxHoldUntil is when the grant's max hold ends, in log time
	// (max_hold_until_ms; 0: none, or not said).
	maxHoldUntil int64
	// holder is who holds the object when a try-once acquire was refused,
	// as the answering node last applied it: only a mutex's answer
	// carries it (AcquireLockResponse.holder), and not during a
	// lock-delay, when nobody does.
	holder *pb.Holder
	// blockedUntil is, when a mutex's try-once acquire was refused with
	// nobody holding it, until when a lock-delay keeps it from everyone,
	// in log time (AcquireLockResponse.blocked_until_ms; 0: none said).
	blockedUntil int64
}

// acquire runs an acquire-like call to its end. On success it answers the
// token (a barrier's generation) and the gate pass the caller keeps while
// it holds; on failure it has released the gate, or handed it to the
// background clean-up.
func (s *Session) acquire(ctx context.Context, sp acquireSpec) (grant, *gateHold, error) {
	what := opName{sp.op, sp.name}
	if err := s.lostErrFor(what); err != nil {
		return grant{}, nil, err
	}
	if err := badName(what); err != nil {
		return grant{}, nil, err
	}
	end, err := s.beginOp(what)
	if err != nil {
		return grant{}, nil, err
	}
	defer end()
	// Orphan ends the call (its request withdrawn, as when ctx ends), and
	// waits for that: hctx ends then, ctx is still the caller's.
	hctx, hstop := context.WithCancel(ctx)
	defer hstop()
	defer context.AfterFunc(s.halt, hstop)()
	waitMs := sp.waitMs
	var deadline time.Time
	if waitMs > 0 {
		deadline = time.Now().Add(time.Duration(waitMs) * time.Millisecond)
	}
	var gh *gateHold
	if sp.gated {
		gctx := hctx
		if waitMs > 0 {
			var cancel context.CancelFunc
			gctx, cancel = context.WithDeadline(hctx, deadline)
			defer cancel()
		}
		if gh, err = s.enter(gctx, sp.op, sp.kind, sp.name, waitMs != 0); err != nil {
			if ctx.Err() == nil && s.halted() {
				return grant{}, nil, s.orphaningErr(what)
			}
			if waitMs > 0 && ctx.Err() == nil && gctx.Err() != nil {
				by := "another holder on this session"
				if s.gateWithdrawing(sp.kind, sp.name) {
					by = "this session's earlier acquire of the name is still being withdrawn"
				}
				return grant{}, nil, fmt.Errorf("%s: %w (%s)", what, ErrTimeout, by)
			}
			return grant{}, nil, err
		}
		if waitMs > 0 {
			// The gate took part of the wait; the servers get the rest.
			waitMs = max(time.Until(deadline).Milliseconds(), 1)
		}
	}
	// A blocked call ends when the session is lost, not only when ctx does;
	// one whose answer outlives the session, a lossGrace later.
	wctx, stop := context.WithCancel(hctx)
	defer stop()
	if sp.outlivesSession {
		defer context.AfterFunc(s.done, func() {
			t := time.AfterFunc(s.lossGrace(), stop)
			context.AfterFunc(wctx, func() { t.Stop() })
		})()
	} else {
		defer context.AfterFunc(s.done, stop)()
	}
	mode := unary
	if waitMs != 0 {
		mode = blocking
	}
	for restarts := 0; ; restarts++ {
		if restarts > 0 && waitMs > 0 {
			// A restart waits only for what is left of the bound.
			waitMs = max(time.Until(deadline).Milliseconds(), 1)
		}
		id, err := s.c.inflight.begin(wctx)
		if err != nil {
			gh.release()
			return grant{}, nil, s.endErr(ctx, what, err)
		}
		g, sends, err := s.sendUntilDecided(wctx, mode, sp, id, waitMs)
		if err != nil {
			switch {
			case s.Err() != nil, connect.CodeOf(err) == connect.CodeNotFound:
				// The session is gone (or the client stopped renewing
				// it, and Close will tell the servers): it holds nothing.
				id.finish()
				gh.release()
				err = s.endErr(ctx, what, err)
				if sp.outlivesSession && ctx.Err() == nil && errors.Is(err, ErrSessionLost) && !s.halted() && !s.stopped() {
					err = fmt.Errorf("%w (how the wait ended could not be learnt: the servers answer nothing more for a session that ended; "+
						"the party may have been counted in a round released before then: ask the other parties which generation they passed, "+
						"or look for a GRANTED event of session %d at the barrier among its watch events)", err, s.id)
				}
				return grant{}, nil, err
			case connect.CodeOf(err) == connect.CodeInvalidArgument,
				connect.CodeOf(err) == connect.CodePermissionDenied,
				connect.CodeOf(err) == connect.CodeUnauthenticated,
				sends == 1 && refusedByState(err):
				// Refused as malformed, or refused to this caller before
				// anything is proposed, or refused by the state it met (a
				// semaphore's other limit): nothing was granted. An earlier
				// attempt of the same id may have reached the log (then
				// refused here after an ACL or keys reload on another
				// node), but its clean-up would be refused the same way:
				// Abandon names the same name and needs the same right.
				id.finish()
				gh.release()
				return grant{}, nil, apiErr(what, err)
			}
			// Cancelled, timed out, or failed with its fate unknown: it
			// may still be on its way, queued, or granted.
			s.abandonLater(sp, id, gh)
			return grant{}, nil, s.endErr(ctx, what, err)
		}
		id.finish()
		switch g.outcome {
		case pb.Outcome_OUTCOME_GRANTED, pb.Outcome_OUTCOME_RELEASED:
			// A grant answered after the lease passed, as this client
			// counts it (the process was stopped while it waited, and the
			// keepalive loop has yet to run), is worth nothing: the
			// servers may have expired the session and given the grant
			// to another. The session is lost, and so is the grant. Not
			// so a barrier's release, which the others passed counting
			// this party: the session lost since does not undo it.
			if err := s.lostUnlessHeld(what); err != nil && !(sp.outlivesSession && g.outcome == pb.Outcome_OUTCOME_RELEASED) {
				gh.release()
				return grant{}, nil, err
			}
			return g, gh, nil
		}
		if g.reason == pb.Reason_REASON_CANCELLED && ctx.Err() == nil && s.Err() == nil && restarts < maxRestarts {
			// Nobody here cancelled it: an attempt this call gave up on
			// (a node that stopped answering) was withdrawn by that node
			// when it resumed, after the resent attempt had rejoined the
			// same wait. The request is settled (not granted); ask again.
			continue
		}
		gh.release()
		if g.reason == pb.Reason_REASON_CANCELLED && ctx.Err() != nil {
			return grant{}, nil, fmt.Errorf("%s: %w", what, ctx.Err())
		}
		if left := time.Until(deadline); g.reason == pb.Reason_REASON_TIMEOUT && sp.waitMs > 0 && left > time.Second {
			// The servers ended the wait well before the wait asked for:
			// their cap, which a port of a longer retry loop meets.
			asked := time.Duration(sp.waitMs) * time.Millisecond
			return grant{}, nil, fmt.Errorf("%w after %v of the %v asked: the servers cap a wait at locks.max_wait_time_seconds; to wait longer, use Lock (Acquire, Campaign) with a ctx deadline",
				s.refusal(what, g), (asked - left).Round(time.Second), asked)
		}
		return grant{}, nil, s.refusal(what, g)
	}
}

// stopped says whether this value ended the session itself (Close, or
// the Client's): then its blocked calls' ends are no news to report.
func (s *Session) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// lossGrace is how long a call whose answer outlives the session
// (acquireSpec.outlivesSession) goes on waiting for that answer once the
// session is lost: long enough for the servers to apply the session's end
// after the client gave it up (its lease, less the guard, passed here
// first), which answers a wait still queued, and for an answer already
// on its way (a process stopped past its lease, whose answer waits in
// its socket) to be read.
func (s *Session) lossGrace() time.Duration { return s.c.opts.attemptTimeout + s.guard() }

// sendUntilDecided sends the request with id until the servers decide it.
// A QUEUED answer (the server returned before deciding, for example on
// shutdown) is sent again with the same id, which waits again in the same
// place.
// It also answers how many times the request was, or may have been, put
// on the wire (refusedByState's rule).
func (s *Session) sendUntilDecided(ctx context.Context, mode callMode, sp acquireSpec, id reqID, waitMs int64) (grant, int32, error) {
	ctx, track := trackCall(ctx)
	sends := &track.sends
	for {
		var g grant
		_, err := call(ctx, s.c, mode, func(ctx context.Context, e *endpoint) (*connect.Response[struct{}], error) {
			sends.Add(1)
			var err error
			if g, err = sp.send(ctx, e, id, waitMs); err != nil {
				return nil, err
			}
			return connect.NewResponse(&struct{}{}), nil
		})
		if err != nil {
			return grant{}, sends.Load(), err
		}
		if g.outcome != pb.Outcome_OUTCOME_QUEUED {
			return g, sends.Load(), nil
		}
		t := time.NewTimer(s.c.opts.backoffMin)
		select {
		case <-ctx.Done():
			t.Stop()
			return grant{}, sends.Load(), ctx.Err()
		case <-t.C:
		}
	}
}

// countResend adds one to sendUntilDecided's count of an acquire's sends
// (its callTrack): exchange calls it when it falls back to a unary call
// after its stream may already have carried the request.
func countResend(ctx context.Context) {
	if t := trackOf(ctx); t != nil {
		t.sends.Add(1)
	}
}

// refusedByState says whether err is failed_precondition for what the
// request met (a semaphore's limit, a barrier's parties, a session the
// server made for one request): nothing granted. Nothing is left to
// withdraw only when the request was sent once (the caller checks): such
// a refusal is not kept by the servers' dedupe, so after a resend it says
// nothing of an earlier copy still on its way, which the Abandon's
// tombstone stops. The same code also says the servers forgot the seq,
// whose fate is then unknown (core's "was forgotten", core/dedupe.go).
// Before, every failed_precondition was withdrawn in the background, and
// the session's next try on the name answered ErrLocked until the
// withdrawal did.
func refusedByState(err error) bool {
	return connect.CodeOf(err) == connect.CodeFailedPrecondition && !strings.Contains(err.Error(), "was forgotten")
}

// endErr is the error a call that did not get its grant returns: the
// session's loss, the caller's ctx, or what the servers said.
func (s *Session) endErr(ctx context.Context, what opName, err error) error {
	if ctx.Err() != nil {
		if errors.Is(err, errNoSlot) {
			return fmt.Errorf("%s: %w", what, err) // which says why ctx ran out
		}
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	if lost := s.lostErrFor(what); lost != nil {
		return lost
	}
	if s.halted() && (errors.Is(err, context.Canceled) || connect.CodeOf(err) == connect.CodeCanceled) {
		return s.orphaningErr(what) // Orphan ended the call
	}
	if connect.CodeOf(err) == connect.CodeDeadlineExceeded {
		// The caller's deadline travels with the request; the server may
		// end the wait a moment before ctx itself says so.
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return apiErr(what, err)
}

// abandonLater withdraws the request id in the background (see the top of
// this file), then lets the gate go and the seq finish.
func (s *Session) abandonLater(sp acquireSpec, id reqID, gh *gateHold) {
	gh.withdrawing()
	s.holdOp() // Orphan waits for the withdrawal
	go func() {
		defer s.endOp()
		defer gh.release()
		defer id.finish()
		// Until the session ends: its end releases everything it has.
		ctx, cancel := context.WithCancel(s.done)
		defer cancel()
		aid := s.c.inflight.follow(id)
		defer aid.finish()
		pause := s.c.opts.backoffMin
		for {
			_, err := do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.AbandonResponse], error) {
				req := &pb.AbandonRequest{ClientId: id.ClientID(), RequestSeq: aid.seq,
					LowestPendingSeq: aid.Low(), SessionId: s.id, Kind: sp.kind, Name: sp.name, AbandonSeq: id.seq}
				r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_Abandon{Abandon: req}},
					(*pb.StreamResponse).GetAbandon, func(ctx context.Context) (*connect.Response[pb.AbandonResponse], error) {
						return e.sessions.Abandon(ctx, connect.NewRequest(req))
					})
				if err != nil {
					return nil, err
				}
				return connect.NewResponse(r), nil
			})
			switch {
			case err == nil, connect.CodeOf(err) == connect.CodeNotFound, ctx.Err() != nil, errors.Is(err, ErrClientClosed):
				return // settled, or the session is gone (or going) with everything it had
			case refusedForGood(err):
				// Retrying would not change it (an ACL reloaded since the
				// acquire, a key revoked): what the request may hold can
				// no longer be undone but with the session.
				s.giveUpSession(fmt.Errorf("the withdrawal of a cancelled %s was refused: %w", opName{sp.op, sp.name}, err))
				return
			}
			// Not answered yet, or a limit to wait out: again, until the
			// session ends.
			if s.c.backoff(ctx, &pause) != nil {
				return
			}
		}
	}()
}

// refusedForGood says whether err refuses a request as given, so that
// sending it again would be refused again: malformed, contradicting what
// the servers keep, denied to this caller, a TLS certificate refused, or
// an https:// endpoint that does not speak TLS. Anything else
// (unavailable, no answer in time, a limit) may pass later.
func refusedForGood(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodePermissionDenied,
		connect.CodeUnauthenticated, connect.CodeUnimplemented:
		return true
	}
	return certificateRefused(err) || notTLS(err)
}

// giveUpSession ends a live session whose holds the client can no longer
// account for (the withdrawal of a cancelled call was refused): Done
// closes with why, and the session is closed on the servers, which
// releases everything it has (best effort: should the close not get
// through, the servers expire the session within its TTL, the keepalives
// having stopped).
func (s *Session) giveUpSession(why error) {
	if s.Err() != nil {
		return
	}
	s.lose(fmt.Errorf("%w: session %d was given up by the client: %v", ErrSessionLost, s.id, why))
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.c.opts.attemptTimeout)
	defer cancel()
	_ = s.Close(ctx)
}
