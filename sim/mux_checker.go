package sim

import (
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

// The checkers of the multiplexed client (mux.go), each the promise one of
// issue 17's bugs broke:
//
//   - kept-alive-expired: a session whose last renewal the client was told
//     succeeded, applied (by log time, the first time the log applied that
//     renewal of that session) less than a TTL before, does not expire;
//   - grant-outlived: once a caller was told its acquire or campaign failed
//     and the clean-up (the abandon) answered, no grant the request made
//     may still hold: it never happened, or it ended by then;
//   - done-before-regrant: while the client believes one of its sessions
//     holds a name and its own lease view has not ended, no other session
//     is granted that name. No excuse: within a term a leader stamps by
//     its monotonic clock, which a wall clock's jump does not move, and a
//     leader change's jump moves every deadline with it, so no lease runs
//     faster than real time, whatever the members' clocks read;
//   - mux-forgotten: no request the client still waits for is refused as
//     forgotten (checked as the answer arrives, in mux.go).
type muxChecker struct {
	w         *world
	sessionOf map[core.SessionID]*muxSession
	kaFirst   map[kaKey]core.LogTime // first application of a renewal (or create: session 0) of a session
	cleanups  []cleanupRec
	cleaned   map[dedupeKey]int           // request → its index in cleanups
	waiterOf  map[core.WaiterID]dedupeKey // the request a multiplexed client's waiter belongs to
}

// cleanupRec is a request a caller was told failed, and when its clean-up
// answered.
type cleanupRec struct {
	client string
	seq    uint64
	by     uint64 // the abandon's own seq (0: the clean-up was not an abandon)
	key    objKey
	at     time.Duration
}

func newMuxChecker(w *world) *muxChecker {
	return &muxChecker{w: w, sessionOf: map[core.SessionID]*muxSession{}, kaFirst: map[kaKey]core.LogTime{},
		cleaned: map[dedupeKey]int{}, waiterOf: map[core.WaiterID]dedupeKey{}}
}

// entry reads an entry at its first application anywhere.
func (x *muxChecker) entry(e core.Entry, out *core.Output) {
	if x == nil || len(x.w.muxes) == 0 {
		return
	}
	for i := range e.Commands {
		c, r := &e.Commands[i], &out.Results[i]
		if r.Err != nil {
			continue
		}
		switch c.Op {
		case core.OpAcquire, core.OpCampaign:
			if r.Duplicate {
				break
			}
			k := dedupeKey{c.ClientID, c.Seq}
			switch r.Outcome {
			case core.OutcomeQueued:
				x.waiterOf[r.Waiter] = k
			case core.OutcomeGranted:
				x.grantedAfter(k, r.Token, e.Index)
			}
		case core.OpSessionKeepAlive:
			k := kaKey{c.ClientID, c.Seq, c.Session}
			if _, ok := x.kaFirst[k]; !ok && x.sessionOf[c.Session] != nil {
				x.kaFirst[k] = out.Time
			}
		case core.OpSessionCreate:
			k := kaKey{c.ClientID, c.Seq, 0}
			if _, ok := x.kaFirst[k]; !ok {
				x.kaFirst[k] = out.Time
			}
		case core.OpAbandon:
			if r.Token != 0 && !r.Duplicate {
				// The grant the abandon released leaves the history as the
				// machine's own act, placed like the others.
				led := x.w.chk.logs[0].led
				led.sysOps = append(led.sysOps, sysOp{key: objKey{c.Kind, c.Name}, token: r.Token, session: c.Session,
					index: e.Index, reason: core.ReasonCancelled})
			}
		}
	}
	// An expiry's releases and the grants they make are emitted before the
	// expiry itself: expiries first.
	for i := range out.Effects {
		if ef := &out.Effects[i]; ef.Kind == core.EffectSessionExpired {
			if s := x.sessionOf[ef.Session]; s != nil && !s.expired {
				s.expired, s.expiredL, s.expiredAt = true, out.Time, x.w.now
				x.checkKept(s)
			}
		}
	}
	for i := range out.Effects {
		ef := &out.Effects[i]
		switch ef.Kind {
		case core.EffectGranted:
			if k, ok := x.waiterOf[ef.Waiter]; ok && ef.Waiter != 0 {
				delete(x.waiterOf, ef.Waiter)
				x.grantedAfter(k, ef.Token, e.Index)
			}
			if ef.Object == core.KindMutex || ef.Object == core.KindElection {
				x.regranted(objKey{ef.Object, ef.Name}, ef.Session, ef.Token)
			}
		}
	}
}

// keptAlive is the client told that a renewal (or the create) succeeded.
func (x *muxChecker) keptAlive(_ *muxClient, s *muxSession) { x.checkKept(s) }

func (x *muxChecker) checkKept(s *muxSession) {
	if !s.expired || s.basisSent == 0 && s.basisKey.client == "" {
		return
	}
	at, ok := x.kaFirst[s.basisKey]
	if !ok {
		return
	}
	if ttl := core.LogTime(s.ttl.Milliseconds()); at+ttl > s.expiredL {
		x.w.chk.fail(Safety, "kept-alive-expired", "session %d expired at log time %d, yet the client was told its renewal "+
			"(%s seq %d) succeeded, applied at log time %d, less than its ttl %d ms before",
			s.id, s.expiredL, s.basisKey.client, s.basisKey.seq, at, ttl)
	}
}

// regranted checks a grant of key to session to against every session of
// a multiplexed client that believes it holds key under a live lease view.
func (x *muxChecker) regranted(key objKey, to core.SessionID, tok core.FencingToken) {
	now := x.w.now
	for _, m := range x.w.muxes {
		for _, s := range m.sessions {
			held, ok := s.held[key]
			if !ok || s.done || s.id == to || s.doneAt <= now {
				continue
			}
			if !s.expired {
				x.w.chk.fail(Safety, "done-before-regrant", "%s %q was granted to session %d (token %d) while client %s's session %d, "+
					"not expired, still held it (token %d)", key.kind, key.name, to, tok, m.id, s.id, held)
				return
			}
			if !x.honest(s) {
				x.w.chk.fail(Safety, "done-before-regrant", "%s %q was granted to session %d (token %d) at %.3fs: client %s's session %d "+
					"expired early because its lease ran faster than real time between its renewal (sent at %.3fs) and its "+
					"expiry (%.3fs): a leader must stamp by its monotonic clock, and a leader change must move every deadline by its jump",
					key.kind, key.name, to, tok, now.Seconds(), m.id, s.id, s.basisSent.Seconds(), s.expiredAt.Seconds())
				return
			}
			x.w.chk.fail(Safety, "done-before-regrant", "%s %q was granted to session %d (token %d) at %.3fs, but client %s's view "+
				"of session %d's lease (renewal sent at %.3fs, ttl %v) ends only at %.3fs: its callers still rely on token %d",
				key.kind, key.name, to, tok, now.Seconds(), m.id, s.id, s.basisSent.Seconds(), s.ttl, s.doneAt.Seconds(), held)
			return
		}
	}
}

// honest says whether log time, from the renewal the client's lease view
// rests on to the session's expiry, ran no faster than real time allows
// within the guard: the leader's drift and the two ticks of stamp lag. A
// forward clock jump or a leader whose clock is skewed ahead makes log time
// run faster; no client clock can see that coming (docs/simulation.md).
func (x *muxChecker) honest(s *muxSession) bool {
	at, ok := x.kaFirst[s.basisKey]
	if !ok {
		return true
	}
	logMs := float64(s.expiredL - at)
	realMs := float64((s.expiredAt - s.basisSent).Microseconds()) / 1000
	drift := float64(x.w.opts.DriftPPM) / 1e6
	return logMs <= realMs*(1+drift)+float64(2*leaseTick/time.Millisecond)
}

func (x *muxChecker) ackedGrant(m *muxClient, k objKey, s core.SessionID, t core.FencingToken) {
	g := x.w.chk.logs[0].led.grants[t]
	if g == nil || g.key != k || g.session != s {
		x.w.chk.fail(Safety, "acked-grant", "client %s was told session %d holds %s %q with token %d, which the log never granted",
			m.id, s, k.kind, k.name, t)
	}
	x.w.chk.toldGrant("client "+m.id, k, s, t)
}

func (x *muxChecker) cleanedUp(m *muxClient, seq uint64, key objKey, by uint64) {
	rec := cleanupRec{client: m.id, seq: seq, key: key, at: x.w.now, by: by}
	x.cleaned[dedupeKey{m.id, seq}] = len(x.cleanups)
	x.cleanups = append(x.cleanups, rec)
	if _, ok := x.w.chk.logs[0].led.results[dedupeKey{m.id, by}]; ok || by == 0 {
		x.check(rec) // what the log applied by now must be undone by now
	}
}

// grantedAfter is a grant the log made to a multiplexed client's request:
// too late, if the request's caller was told it failed and cleaned up.
func (x *muxChecker) grantedAfter(k dedupeKey, tok core.FencingToken, idx uint64) {
	i, ok := x.cleaned[k]
	if !ok {
		return
	}
	rec := x.cleanups[i]
	x.w.chk.fail(Safety, "grant-outlived", "client %s's request seq %d on %s %q was told it failed and cleaned up at %.3fs, "+
		"yet the log granted it afterwards (token %d, index %d)", rec.client, rec.seq, rec.key.kind, rec.key.name, rec.at.Seconds(), tok, idx)
}

// final checks, once the cluster settled, that no request whose caller was
// told it failed left a grant behind its clean-up.
func (x *muxChecker) final() {
	for _, rec := range x.cleanups {
		if x.w.chk.stop {
			return
		}
		x.check(rec)
	}
}

// check looks for the grant a cleaned-up request made: it must have ended
// by the time the clean-up answered.
func (x *muxChecker) check(rec cleanupRec) {
	led := x.w.chk.logs[0].led
	kr, ok := led.results[dedupeKey{rec.client, rec.seq}]
	if !ok || kr.result.Err != nil {
		return // not applied (yet, or ever), or refused: nothing to undo
	}
	var g *grantRec
	switch r := kr.result; r.Outcome {
	case core.OutcomeGranted:
		if gg := led.grants[r.Token]; gg != nil && gg.index == kr.index {
			g = gg // its own grant, not a re-acquire answered with an older one
		}
	case core.OutcomeQueued:
		if we, ok := led.waitEnds[r.Waiter]; ok && we.granted {
			g = led.grants[we.token]
		}
	}
	if g == nil {
		return
	}
	if !g.ended {
		x.w.chk.fail(Safety, "grant-outlived", "client %s's request seq %d on %s %q was told it failed and cleaned up at %.3fs, "+
			"yet its grant (token %d, index %d) still holds", rec.client, rec.seq, rec.key.kind, rec.key.name, rec.at.Seconds(), g.token, g.index)
		return
	}
	if at, ok := x.w.chk.firstApplied(0, g.endIdx); ok && at > rec.at {
		x.w.chk.fail(Safety, "grant-outlived", "client %s's request seq %d on %s %q was told it failed and cleaned up at %.3fs, "+
			"yet its grant (token %d, index %d) held until index %d (%s, applied at %.3fs)",
			rec.client, rec.seq, rec.key.kind, rec.key.name, rec.at.Seconds(), g.token, g.index, g.endIdx, g.reason, at.Seconds())
	}
}

// beginMux records a multiplexed client's lock operation for porcupine.
func (h *history) beginMux(m *muxClient, key objKey, cmd core.Command) int {
	in := model.Input{Key: key.model(), Session: cmd.Session, Token: cmd.Token, Value: string(cmd.Value), Try: cmd.WaitMs == 0}
	switch cmd.Op {
	case core.OpAcquire, core.OpCampaign:
		in.Op = model.Acquire
	case core.OpRelease, core.OpResign:
		in.Op = model.Release
	default:
		return -1
	}
	h.ops = append(h.ops, histOp{client: len(m.w.clients) + 1 + m.idx, in: in, call: m.w.now, clientID: cmd.ClientID, seq: cmd.Seq})
	return len(h.ops) - 1
}
