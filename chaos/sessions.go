package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

// The sessions check (docs/chaos.md). Every session the workload opens is
// tracked from its creation: when its client's lease ran out (Done closed
// without our Close), when we closed it, and, for a session stopped on
// purpose (the sleeper's, the lapser's), when its client stopped renewing
// and when its last renewal was sent and answered. The watch delivers each
// expiry (SESSION_EXPIRED, any shard) with the log time of the entry that
// made it. Then:
//
//   - a session kept alive is never expired: the cluster must not expire a
//     session whose client still believed in its lease when the watch
//     delivered the expiry (the client counts its lease to end first,
//     docs/client.md);
//   - a stopped session is expired — by the log time of its expiry, which
//     a watch slow to deliver does not move — within its TTL plus the
//     grace (expiryGrace) after its last renewal was answered, and it is
//     not delivered before its TTL less earlyAllowance after that renewal
//     was sent.

// sessionRec is one session of the workload, times as offsets from the
// run's start; -1 when it did not happen.
type sessionRec struct {
	id      uint64
	owner   string
	ttl     time.Duration
	created time.Duration
	lost    time.Duration // the client's lease ran out (Done closed), not by our Close
	closed  time.Duration // we began closing it
	// A session stopped on purpose: when its client stopped renewing, and
	// its last renewal's send and answer times (read from its freezer when
	// judged: a renewal in flight when it froze may still land).
	stopped          time.Duration
	renewSent, renew time.Duration
	freezer          *freezer
}

// Bounds of the check. A stopped session expires by its TTL after its last
// renewal, plus:
//   - one TTL more: a leader change extends every live session to now +
//     TTL (Chubby's grace, docs/design.md), and a fault can move the
//     leader once within a lease;
//   - maxClockOffset twice: a leader's clock behind held log time back
//     (before a new term started at the applied log time; kept as slack),
//     and the expiry is timed by its log time, which a leader's clock
//     ahead puts ahead of the wall clock (the clock fault);
//   - expirySlack: the election during which no leader ticks, the tick
//     interval (expiries happen at ticks), and a loaded machine.
//
// It may be delivered before its TTL after the renewal was sent by at most
// the client's lease guard (a renewal forwarded by a follower is stamped
// with the log time it has applied) and the clock fault's skew over one
// TTL (a leader's clock running clockSlew fast).
const (
	expirySlack = 3 * time.Second
	leaseGuard  = 250 * time.Millisecond // client.leaseGuard, docs/client.md
)

func expiryGrace(ttl time.Duration) time.Duration {
	return ttl + 2*maxClockOffset + expirySlack
}

func earlyAllowance(ttl time.Duration) time.Duration {
	return leaseGuard + time.Duration(float64(ttl)*clockSlew)
}

// track registers a new session and notes when its client's lease runs
// out. close must be used to close it, so the check tells our closes from
// losses.
func (r *run) track(s *client.Session, owner string) *sessionRec {
	rec := &sessionRec{id: s.ID(), owner: owner, ttl: s.TTL(), created: r.h.now(), lost: -1, closed: -1, stopped: -1,
		renewSent: -1, renew: -1}
	r.h.mu.Lock()
	r.h.sessions[rec.id] = rec
	r.h.mu.Unlock()
	go func() {
		<-s.Done()
		at := r.h.now()
		r.h.mu.Lock()
		if rec.closed < 0 {
			rec.lost = at
		}
		r.h.mu.Unlock()
	}()
	return rec
}

// closeSession closes a tracked session, noting that we did.
func (r *run) closeSession(s *client.Session) {
	r.h.mu.Lock()
	if rec := r.h.sessions[s.ID()]; rec != nil && rec.closed < 0 && !r.bug.is(bugUnnotedClose) {
		rec.closed = r.h.now()
	}
	r.h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), callSlack)
	_ = s.Close(ctx)
	cancel()
}

// stop notes that a session's client stopped renewing it on purpose (its
// freezer froze).
func (r *run) stop(rec *sessionRec, f *freezer) {
	r.h.mu.Lock()
	rec.stopped, rec.freezer = r.h.now(), f
	rec.renewals(r.start)
	r.h.mu.Unlock()
}

// renewals reads the last renewal the session's freezer saw.
func (rec *sessionRec) renewals(start time.Time) {
	sent, answered := rec.freezer.lastRenewal()
	rec.renewSent, rec.renew = sent.Sub(start), answered.Sub(start)
}

// expiredAt is when the session expired, if the watch delivered it.
func (h *history) expiredAt(id uint64) (expiry, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x, ok := h.expired[id]
	return x, ok
}

// deliverySlack is how late past the bound the watch may deliver an
// expiry: a stream stuck on a paused node is abandoned after the client's
// stream silence (5 s) and resumed elsewhere.
const deliverySlack = 6 * time.Second

// judgeable is how long after its last renewal's answer a stopped
// session's expiry must have been delivered: a run whose watch ended
// before then leaves it unjudged, unless the expiry came.
func judgeable(ttl time.Duration) time.Duration { return ttl + expiryGrace(ttl) + deliverySlack }

// waitExpired waits until the watch delivers the session's expiry, at most
// until it is judgeable or ctx ends.
func (r *run) waitExpired(ctx context.Context, rec *sessionRec) bool {
	r.h.mu.Lock()
	deadline := r.start.Add(rec.renew + judgeable(rec.ttl))
	r.h.mu.Unlock()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, ok := r.h.expiredAt(rec.id); ok {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// SessionStats sum up the sessions check for the report.
type SessionStats struct {
	KeptAlive int `json:"kept_alive"`
	Stopped   int `json:"stopped"`
	// Closed: the sessions whose SESSION_CLOSED the watch delivered, each
	// checked against its client's close.
	Closed int `json:"closed"`
	// ExpiredAfter: for each stopped session judged, from its last
	// renewal's answer to its expiry (log time), in milliseconds.
	ExpiredAfter []int64 `json:"expired_after_ms"`
}

// checkSessions returns the violations of the sessions check.
func (h *history) checkSessions() ([]string, SessionStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var bad []string
	var st SessionStats
	ids := make([]uint64, 0, len(h.sessions))
	for id := range h.sessions {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		s := h.sessions[id]
		x, expired := h.expired[id]
		e := x.delivered
		// Only its client closes a session, or the servers once it expired
		// in another shard (a keepalive then finds it gone and the rest of
		// it is closed): a close no one asked for ends holds behind their
		// clients' backs.
		shut, closed := h.shut[id]
		if closed {
			st.Closed++
		}
		if closed && !expired && (s.closed < 0 || s.closed > shut) {
			bad = append(bad, fmt.Sprintf("sessions: %s's session %d (TTL %v) was closed on the servers (delivered at %.3fs) though its client never closed it and it never expired",
				s.owner, id, s.ttl, shut.Seconds()))
		}
		if s.stopped < 0 {
			st.KeptAlive++
			if expired && (s.lost < 0 || s.lost > e) && (s.closed < 0 || s.closed > e) {
				bad = append(bad, fmt.Sprintf("sessions: %s's session %d (TTL %v) was kept alive — its client's lease never ran out — and the cluster expired it (delivered at %.3fs, shard %d first, log time %.3fs)",
					s.owner, id, s.ttl, e.Seconds(), x.shard, x.log.Seconds()))
			}
			continue
		}
		if s.closed >= 0 && s.closed < s.stopped {
			continue
		}
		s.renewals(h.start)
		if !expired && h.watchEnd < s.renew+judgeable(s.ttl) {
			continue // the run ended before its expiry was due
		}
		st.Stopped++
		late := s.renew + s.ttl + expiryGrace(s.ttl)
		switch {
		case !expired:
			bad = append(bad, fmt.Sprintf("sessions: %s's session %d (TTL %v) stopped renewing at %.3fs (last renewal answered at %.3fs) and was not expired within its TTL plus %v",
				s.owner, id, s.ttl, s.stopped.Seconds(), s.renew.Seconds(), expiryGrace(s.ttl)))
		case e > late:
			bad = append(bad, fmt.Sprintf("sessions: %s's session %d (TTL %v) was expired %.3fs after its last renewal was answered, past its TTL plus %v",
				s.owner, id, s.ttl, (e-s.renew).Seconds(), expiryGrace(s.ttl)))
		case e < s.renewSent+s.ttl-earlyAllowance(s.ttl):
			bad = append(bad, fmt.Sprintf("sessions: %s's session %d (TTL %v) was expired (delivered at %.3fs, shard %d first, log time %.3fs) %.3fs after its last renewal was sent: early",
				s.owner, id, s.ttl, e.Seconds(), x.shard, x.log.Seconds(), (e-s.renewSent).Seconds()))
		default:
			st.ExpiredAfter = append(st.ExpiredAfter, (x.log - s.renew).Milliseconds())
		}
	}
	return bad, st
}

// renewal is a freezer's record of the session calls that set a lease:
// Create and KeepAlive.
func isRenewal(req *http.Request) bool {
	p := req.URL.Path
	return strings.HasSuffix(p, "/lockstep.v1.SessionService/KeepAlive") || strings.HasSuffix(p, "/lockstep.v1.SessionService/Create")
}

// lapser expires sessions on purpose: every few seconds it opens a session
// of lapserTTL on its own client, takes a cold mutex with it half the
// time, keeps it alive for a while, then stops renewing (its client
// freezes: a paused process) and waits for the cluster to expire it. The
// sessions check judges when that happened.
type lapser struct {
	idx int
	run *run
	r   *rand.Rand
	n   int
}

// Bounds of the lapser: its sessions' TTL (the client's minimum, so that a
// chain of leader changes rarely extends it twice), how long it keeps one
// alive before it stops.
const (
	lapserTTL     = client.MinTTL
	lapserMaxLive = 2 * time.Second
)

func (l *lapser) loop(ctx context.Context) {
	for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
		sleepCtx(ctx, time.Duration(2000+l.r.IntN(3000))*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		l.lapse(ctx)
	}
}

func (l *lapser) lapse(ctx context.Context) {
	c, f, err := l.run.newClient(fmt.Sprintf("lapser-%d", l.n), true)
	if err != nil {
		return
	}
	defer closeClient(c, f)
	l.n++
	hold := l.r.IntN(2) == 0
	live := time.Duration(300+l.r.IntN(int(lapserMaxLive/time.Millisecond)-300)) * time.Millisecond
	cctx, cancel := context.WithTimeout(ctx, callSlack)
	s, err := c.NewSession(cctx, client.WithTTL(lapserTTL), client.WithOwner("lapser"))
	cancel()
	if err != nil {
		return
	}
	rec := l.run.track(s, "lapser")
	defer l.run.closeSession(s)
	if hold {
		name := fmt.Sprintf("chaos/m/lapse-%d", l.n)
		k := model.Key{Kind: core.KindMutex, Name: name}
		m := client.NewMutex(s, name)
		o := op{worker: l.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(s.ID()), Try: true}}
		cctx, cancel := context.WithTimeout(ctx, callSlack)
		o.call = l.run.h.now()
		err := m.TryLock(cctx)
		cancel()
		o.ret, o.answer = l.run.h.now(), answerOf(err)
		if o.answer == answerGranted {
			o.token = m.Token()
		}
		l.run.h.add(o)
	}
	sleepCtx(ctx, live)
	if ctx.Err() != nil {
		return
	}
	f.freeze(l.run.bug.is(bugGhostKeepalive))
	l.run.stop(rec, f)
	l.run.o.logf("%6.1fs lapser stopped renewing session %d", l.run.h.now().Seconds(), s.ID())
	l.run.waitExpired(ctx, rec)
	f.thaw()
}
