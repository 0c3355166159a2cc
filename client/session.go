package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// MinTTL is the shortest session lease the client accepts: room for a
// keepalive round (every third of the TTL), a hedged keepalive to another
// endpoint when one does not answer, and leaseGuard. A shorter lease would
// be lost on the first slow node.
const MinTTL = time.Second

// MaxTTL is the longest session lease the servers grant (core's
// MaxTTLMs): a session that outlives its process by more than a day would
// hold its locks that long.
const MaxTTL = 24 * time.Hour

// leaseGuard is how much earlier than the servers the client lets a lease
// end (Chubby's rule: the client's lease always ends first). The servers
// measure a lease in log time from the entry that applied the keepalive;
// a keepalive forwarded by a follower is stamped with the log time that
// follower has applied, which lags the leader's clock by up to one tick
// (100 ms by default) plus the follower's apply delay. So the servers'
// lease may have begun up to about a tick before the keepalive left the
// client; 250 ms covers two and a half ticks. Servers with a longer tick
// interval say so in every session answer (stamp_lag_ms), and the larger
// of the two is the guard. The client's lease is therefore: the moment the
// keepalive was sent + TTL − guard (docs/client.md, "The lease").
const leaseGuard = 250 * time.Millisecond

// Session is a lease on the cluster that every hold and wait belongs to. It
// is kept alive in the background until Close, or until the servers say it
// is gone or the client could not renew it within its lease; then Done
// closes and everything it held is (or must be assumed) released. Orphan
// gives a Session value up without closing the session on the servers,
// and Client.ResumeSession takes a live session over by id (etcd's
// Session.Orphan and concurrency.WithLease).
//
// Within one session, each (kind, name) has one holder at a time: a second
// Mutex, Semaphore, RWMutex or Election of the same name on the same
// session waits, like sync.Mutex, until the first lets go (the servers see
// one session and would answer it the same grant).
type Session struct {
	c   *Client
	id  uint64
	ttl time.Duration
	// owner is the label its requests give (empty on a resumed session
	// without WithOwner: the servers then label its holds with the
	// session's own); label is the one Owner answers.
	owner, label string
	// resumed says the session was taken over by ResumeSession, not made
	// by NewSession: it may hold grants older than this value
	// (hold.deadline).
	resumed bool

	// Orphan (resume.go): halt ends the session's blocked calls when
	// Orphan begins; under mu, orphaning refuses new requests from then,
	// ops counts the requests (and withdrawals) still in flight, and
	// opsIdle closes when they reach 0.
	halt      context.Context
	haltNow   context.CancelFunc
	orphaning bool
	orphaned  atomic.Bool
	ops       int
	opsIdle   chan struct{}
	// unsettled are the releases of unknown outcome (ctx ended, no endpoint
	// answered, an answer that says nothing of an earlier copy), by hold
	// and grant, each with a call that sends it again: Orphan settles them
	// before it hands the session over, since such a release may still
	// land on the grant the successor is answered. Under mu.
	unsettled map[pendingRelease]func(context.Context) error

	// done ends, once, when the session is lost or closed (Done): a
	// context, so that a call can be tied to it with context.AfterFunc
	// rather than a goroutine waiting on it. endDone ends it.
	done      context.Context
	endDone   context.CancelFunc
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	// Close (below): whether the session was lost before it, set once;
	// closer lets one close on the servers run at a time; closed is set
	// once the servers answered one.
	lostBeforeClose bool
	closer          chan struct{}
	closed          atomic.Bool

	// stampLag is the longest the servers said they may stamp a forwarded
	// request behind the leader's clock (stamp_lag_ms), in nanoseconds.
	stampLag atomic.Int64

	// The lease as the client counts it ends leaseEnd after born, both
	// on the monotonic clock (nanoseconds since born): the keepalive loop
	// moves it, and a grant or a Token is checked against it, since the
	// loop may not have run yet when it passed (a process stopped, then
	// resumed, sees the grant it waited for before its timer fires).
	born     time.Time
	leaseEnd atomic.Int64
	// logAt ties the servers' log time to this client's clock: the last
	// answered keepalive (or the create), when it was sent and the log
	// time its lease began at (expires_at_ms less ttl_ms). Log time X is
	// then no later than sent + (X - stamp) here, as the lease counts
	// (docs/client.md, The lease), so a grant's max-hold deadline, given
	// in log time, is placed on this clock by it (hold.set).
	logAt atomic.Pointer[logAnchor]
	// renewSoon asks the keepalive loop to renew now (renewNow).
	renewSoon chan struct{}
	// anchorMoved is closed, and replaced, each time logAt moves
	// (noteLogTime): a grant's max-hold deadline placed by it may move,
	// earlier too, and a Lost watcher looks again (hold.watchLost).
	anchorMu    sync.Mutex
	anchorMoved chan struct{}

	mu      sync.Mutex
	lostErr error
	gates   map[gateKey]*gate
	// Under mu: the grants its values hold, for the servers' pushes of
	// their end (grantend.go), and the pushed ends of grants no value
	// held yet, the last maxEarlyEnds of them, in the order they came.
	holds      map[grantKey]*hold
	early      map[grantKey]*pushedEnd
	earlyOrder []grantKey
	// Under mu: the barrier participants of the session waiting now
	// (Session.arrive).
	arrivals map[arrival]struct{}

	// The session's own streams (stream.go), one per endpoint at most:
	// with WithStreamPerSession, or to a server without Multiplex.
	streams  streamSet[*sessionStream]
	noStream atomic.Bool // a server answered that it has no session stream
	// lostUnclosed is set when the session is lost without Close, as it
	// leaves its streams (unlisted, leaveStreams).
	lostUnclosed atomic.Bool
	forgotten    atomic.Bool // set by Close once its own requests are done (shutStreams)
}

// guard is how much earlier than send time + TTL the client's view of the
// lease ends: leaseGuard, or the servers' stamp lag when a member says it
// may stamp forwarded requests further behind (a tick interval above the
// default).
func (s *Session) guard() time.Duration {
	return max(leaseGuard, time.Duration(s.stampLag.Load()))
}

// noteStampLag records a member's stamp_lag_ms; the largest one seen counts.
func (s *Session) noteStampLag(ms int64) {
	d := int64(time.Duration(ms) * time.Millisecond)
	for {
		cur := s.stampLag.Load()
		if d <= cur || s.stampLag.CompareAndSwap(cur, d) {
			return
		}
	}
}

// SessionOption configures a Session.
type SessionOption func(*sessionOptions)

type sessionOptions struct {
	ttl   time.Duration
	owner string
}

// WithTTL sets the session's lease: how long the servers keep it without a
// keepalive. At least MinTTL (1s), at most MaxTTL (24h). Defaults to 30s.
func WithTTL(d time.Duration) SessionOption { return func(o *sessionOptions) { o.ttl = d } }

// WithOwner sets the label shown in status answers for the session's holds.
// Defaults to "HOSTNAME/pid-PID".
func WithOwner(owner string) SessionOption { return func(o *sessionOptions) { o.owner = owner } }

// NewSession creates a session and starts keeping it alive.
func (c *Client) NewSession(ctx context.Context, opts ...SessionOption) (*Session, error) {
	o := sessionOptions{ttl: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.owner == "" {
		host, _ := os.Hostname()
		o.owner = fmt.Sprintf("%s/pid-%d", host, os.Getpid())
	}
	if c.live.isClosing() {
		return nil, ErrClientClosed
	}
	if o.ttl > MaxTTL {
		return nil, fmt.Errorf("%w: session TTL %v is above the maximum %v: a lease that long holds a dead process's locks for a day or more; keep the TTL short and the session alive", ErrInvalid, o.ttl, MaxTTL)
	}
	if o.ttl < MinTTL {
		return nil, fmt.Errorf("%w: session TTL %v is below the minimum %v: a lease must leave room for a keepalive round and a failover to another endpoint", ErrInvalid, o.ttl, MinTTL)
	}
	id, err := c.inflight.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	defer id.finish()
	// The lease is measured from before the request leaves: the servers'
	// lease cannot begin earlier than that (less leaseGuard, see there).
	sent := time.Now()
	res, err := do(ctx, c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CreateSessionResponse], error) {
		return e.sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{ClientId: id.ClientID(), RequestSeq: id.seq,
			LowestPendingSeq: id.Low(), TtlMs: o.ttl.Milliseconds(), Owner: o.owner}))
	})
	if err != nil {
		return nil, apiErr("create session", err)
	}
	return c.startSession(ctx, sent, lease{res.SessionId, res.TtlMs, res.ExpiresAtMs, res.StampLagMs}, o.owner, o.owner, false)
}

// lease is what the servers answered of a session's lease: to its create,
// or to the keepalive that resumed it.
type lease struct {
	id                           uint64
	ttlMs, expiresAtMs, stampLag int64
}

// startSession hands out the session whose lease l the servers answered to
// a request sent at sent, and starts keeping it alive. A session it cannot
// hand out (the lease too short, or over already as this client counts
// it) is closed on the servers when it was just made, and left to its
// lease when resumed (it may be another's to close).
func (c *Client) startSession(ctx context.Context, sent time.Time, l lease, owner, label string, resumed bool) (*Session, error) {
	s := &Session{c: c, id: l.id, ttl: time.Duration(l.ttlMs) * time.Millisecond, owner: owner, label: label, resumed: resumed,
		stop: make(chan struct{}), loopDone: make(chan struct{}), closer: make(chan struct{}, 1), renewSoon: make(chan struct{}, 1)}
	s.done, s.endDone = context.WithCancel(context.Background())
	s.halt, s.haltNow = context.WithCancel(context.Background())
	s.noteStampLag(l.stampLag)
	s.noteLogTime(sent, l.expiresAtMs, l.ttlMs)
	// refuse closes a session made but not handed out (or forgets one
	// resumed), and says why.
	refuse := func(err error) (*Session, error) {
		close(s.loopDone) // no keepalive loop was started for Close to wait for
		if resumed {
			_ = s.Orphan(ctx)
		} else {
			_ = s.Close(ctx)
		}
		return nil, err
	}
	// Four guards: the lease as the client counts it (TTL less a guard)
	// then leaves room for the renewals every TTL/3 to land with a guard to
	// spare, and MinTTL is four times the least guard.
	if g := s.guard(); s.ttl < 4*g {
		return refuse(fmt.Errorf("lockstep: session TTL %v is too short for these servers: they may stamp a request up to %v behind their leader (twice their tick interval), so the lease would end almost at once; use a TTL of at least %v",
			s.ttl, g, 4*g))
	}
	leaseEnd := sent.Add(s.ttl - s.guard())
	if took := time.Since(sent); !time.Now().Before(leaseEnd) {
		// The answer came after the lease it asked for, as this client
		// counts it (a slow shard, or a retry answered from the servers'
		// memory of the first attempt): the servers may have expired the
		// session already, and a session returned now would be lost at
		// once, after the fact.
		what := "creating the session"
		if resumed {
			what = "renewing the session to resume it"
		}
		return refuse(fmt.Errorf("lockstep: %s took %v, longer than its lease (TTL %v less %v for the servers' clock lag): the servers may already have expired it; create a new one, or ask for a longer TTL",
			what, took.Round(time.Millisecond), s.ttl, s.guard()))
	}
	switch added, dup := c.live.add(s); {
	case !added:
		return refuse(ErrClientClosed) // Close began while the create was on its way
	case dup:
		// A ResumeSession of the same id, alongside this one, came first.
		return refuse(fmt.Errorf("resume session %d: %w: a live Session value of this Client has it already: use that value, or Orphan it first", s.id, ErrInvalid))
	}
	s.born = sent
	s.leaseEnd.Store(int64(leaseEnd.Sub(sent)))
	go s.keepAlive(leaseEnd)
	return s, nil
}

// logAnchor is one answer that ties log time to the client's clock.
type logAnchor struct {
	sent  time.Time
	stamp int64 // log time, ms
}

// noteLogTime records an answer to a lease request sent at sent, which
// said the lease ends at expiresAtMs (log time) after ttlMs. The latest
// stamp is kept: a late answer to an older renewal does not replace it.
func (s *Session) noteLogTime(sent time.Time, expiresAtMs, ttlMs int64) {
	if expiresAtMs <= 0 || ttlMs <= 0 {
		return
	}
	a := &logAnchor{sent: sent, stamp: expiresAtMs - ttlMs}
	for {
		old := s.logAt.Load()
		if old != nil && old.stamp >= a.stamp {
			return
		}
		if s.logAt.CompareAndSwap(old, a) {
			s.anchorMu.Lock()
			if s.anchorMoved != nil {
				close(s.anchorMoved)
				s.anchorMoved = nil
			}
			s.anchorMu.Unlock()
			return
		}
	}
}

// anchorChanged answers a channel that closes the next time logAt moves.
func (s *Session) anchorChanged() <-chan struct{} {
	s.anchorMu.Lock()
	defer s.anchorMu.Unlock()
	if s.anchorMoved == nil {
		s.anchorMoved = make(chan struct{})
	}
	return s.anchorMoved
}

// onClock is when log time ms comes, on this client's clock, as the lease
// counts it, less the guard. Only an answer stamped at or after since (log
// time) ties them: log time may have jumped forward between an older one
// and since (a new leader whose clock was ahead), which would put ms later
// here than it comes. ok false when no such answer came yet.
func (s *Session) onClock(ms, since int64) (at time.Time, ok bool) {
	a := s.logAt.Load()
	if a == nil || a.stamp < since {
		return time.Time{}, false
	}
	return s.placeOn(a, ms), true
}

// placeOn is when log time ms comes on this client's clock, as anchor a
// ties the two, less the guard.
func (s *Session) placeOn(a *logAnchor, ms int64) time.Time {
	return a.sent.Add(time.Duration(ms-a.stamp)*time.Millisecond - s.guard())
}

// onClockAfter is onClock for a log time read when an answer came at
// read: only an answer to a request sent after read ties them, since it
// was applied after that read, and so after every jump of log time the
// read carries.
func (s *Session) onClockAfter(ms int64, read time.Time) (at time.Time, ok bool) {
	a := s.logAt.Load()
	if a == nil || a.sent.Before(read) {
		return time.Time{}, false
	}
	return s.placeOn(a, ms), true
}

// renewNow asks the keepalive loop for a renewal now, without waiting.
func (s *Session) renewNow() {
	select {
	case s.renewSoon <- struct{}{}:
	default:
	}
}

// leaseHeld says whether the lease, as the client counts it, has not
// passed. When it has, the servers may have expired the session and given
// what it held to another: the session is lost, whatever the keepalive
// loop has yet to notice.
func (s *Session) leaseHeld() bool { return s.leaseLeft() > 0 }

// leaseLeft is how long the lease, as the client counts it, has left
// (0 or less: it passed), whether or not the session was lost since. The
// monotonic clock stops while the machine is suspended (a laptop's lid
// shut, a VM suspended); the servers' clocks do not. The wall clock runs
// on through a suspend: the lease has passed when either says so. A wall
// clock stepped back cannot extend it (the monotonic one still counts);
// one stepped forward ends it early, the safe way.
func (s *Session) leaseLeft() time.Duration {
	end := time.Duration(s.leaseEnd.Load())
	wall := time.Now().Round(0).Add(time.Duration(wallAhead.Load()))
	return min(end-time.Since(s.born), end-wall.Sub(s.born.Round(0)))
}

// LeaseLeft is how long the session's lease, as the client counts it, has
// left: until the servers may expire the session, unless a renewal is
// answered meanwhile. 0 once it passed, and after the session was lost or
// closed. A process that hands work to another (lockstep lock's guard)
// can bound that work by it.
func (s *Session) LeaseLeft() time.Duration {
	if s.Err() != nil {
		return 0
	}
	return max(0, s.leaseLeft())
}

// wallAhead moves the wall clock the client reads ahead of the monotonic
// one, in nanoseconds, as a suspend does: 0 but in tests.
var wallAhead atomic.Int64

// leaseCheckEvery bounds how long the keepalive loop waits between looks
// at the lease: its timers run on the monotonic clock, which a suspend
// stops, so a lease that passed during one is noticed within this of the
// resume rather than when the monotonic lease timer fires, as much later
// as the suspend was long.
const leaseCheckEvery = time.Second

// armLease sets t to fire at the lease's end, or at leaseCheckEvery if
// sooner.
func armLease(t *time.Timer, leaseEnd time.Time) {
	t.Reset(min(time.Until(leaseEnd), leaseCheckEvery))
}

// lostUnlessHeld declares the session lost when its lease has passed, as
// the keepalive loop would at that moment, and answers the loss; nil while
// the session lives.
func (s *Session) lostUnlessHeld(what opName) error {
	if s.Err() == nil && !s.leaseHeld() {
		s.leaseLapsed("")
	}
	return s.lostErrFor(what)
}

// leaseLapsed loses the session because its lease, as the client counts
// it, passed unrenewed; why adds what the renewals met.
func (s *Session) leaseLapsed(why string) {
	s.lose(fmt.Errorf("%w: session %d was not renewed within its lease (TTL %v less %v for the servers' clock lag)%s",
		ErrSessionLost, s.id, s.ttl, s.guard(), why))
}

// ID is the session's id on the servers.
func (s *Session) ID() uint64 { return s.id }

// TTL is the lease the servers granted.
func (s *Session) TTL() time.Duration { return s.ttl }

// Owner is the session's label.
func (s *Session) Owner() string { return s.label }

// Client is the client the session belongs to.
func (s *Session) Client() *Client { return s.c }

// Done closes when the session is lost (expired, closed elsewhere, or not
// renewed within its lease as the client counts it, which ends before the
// servers' does) or closed by Close. A loss on the servers is learned from
// their push on the session's stream, or from the first keepalive or other
// call on the session that they answer not_found. Stop acting on anything it held:
// another holder may have it once the servers' lease ends too. Orphan
// closes it too, once it has handed the session over.
func (s *Session) Done() <-chan struct{} { return s.done.Done() }

// Err says why Done closed: nil while the session lives, an error wrapping
// ErrSessionLost after a loss, Close or Orphan.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostErr
}

func (s *Session) lose(err error) {
	s.mu.Lock()
	if s.lostErr == nil {
		s.lostErr = err
	}
	s.mu.Unlock()
	s.endDone()
	s.c.live.remove(s)
	select {
	case <-s.stop: // Close: it still sends the close, then forgets s (shutStreams)
	default:
		s.lostUnclosed.Store(true)
		s.leaveStreams(nil)
	}
}

// unlisted says s keeps no stream open any more: it was taken off the
// shared streams, and its own shut once nothing on them is unanswered.
// So it is when lost without Close (until Close, which lists it again for
// its own request), and once forgotten by Close (shutStreams), after which
// nothing of it is listed again.
func (s *Session) unlisted() bool {
	if s.forgotten.Load() {
		return true
	}
	if !s.lostUnclosed.Load() {
		return false
	}
	select {
	case <-s.stop:
		return false
	default:
		return true
	}
}

// keepAlive renews the lease every third of the TTL until stop. The lease
// as the client counts it ends at leaseEnd (the last renewal's send time +
// TTL − leaseGuard); when it passes without a renewal, the session is lost
// at that moment, even while a renewal is still on its way: after that the
// servers may have expired it and given its holds away.
func (s *Session) keepAlive(leaseEnd time.Time) {
	defer close(s.loopDone)
	interval := s.ttl / 3
	if s.streaming() {
		interval = min(interval, streamKeepAliveMax) // the servers cut a silent stream
	}
	lease := time.NewTimer(min(time.Until(leaseEnd), leaseCheckEvery))
	defer lease.Stop()
	// A Create that took long (retried across endpoints) has used part of
	// the lease already: renew sooner.
	next := time.NewTimer(max(0, min(interval, time.Until(leaseEnd)/2)))
	defer next.Stop()
	var lastErr error
	lost := func() {
		why := "; no renewal was answered in time"
		if lastErr != nil {
			why = fmt.Sprintf("; last error: %v", lastErr)
		}
		s.leaseLapsed(why)
	}
	for {
		select {
		case <-s.stop:
			return
		case <-lease.C:
			if s.leaseHeld() {
				armLease(lease, leaseEnd)
				continue
			}
			lost()
			return
		case <-next.C:
		case <-s.renewSoon:
			next.Stop()
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(context.Background(), leaseEnd)
		answer := make(chan error, 1)
		go func() { answer <- s.renew(ctx) }()
		var err error
	wait:
		for {
			select {
			case <-s.stop:
				cancel()
				return
			case <-lease.C:
				if s.leaseHeld() {
					armLease(lease, leaseEnd)
					continue
				}
				cancel()
				lost()
				return
			case err = <-answer:
				cancel()
				break wait
			}
		}
		switch {
		case err == nil:
			leaseEnd = sent.Add(s.ttl - s.guard())
			s.leaseEnd.Store(int64(leaseEnd.Sub(s.born)))
			armLease(lease, leaseEnd)
			next.Reset(interval)
		case connect.CodeOf(err) == connect.CodeNotFound:
			s.lose(s.goneErr(err))
			return
		default:
			lastErr = err
			next.Reset(max(s.c.opts.backoffMin, min(interval, time.Until(leaseEnd)/4)))
		}
	}
}

// hedgeDelay is how long a keepalive waits for one endpoint before it asks
// the next one as well: an eighth of the TTL, at most half the attempt
// timeout. With the minimum TTL, a keepalive still reaches all three
// endpoints of a cluster well within the lease.
func (s *Session) hedgeDelay() time.Duration {
	return min(s.ttl/8, s.c.opts.attemptTimeout/2)
}

// renew sends one keepalive, hedged: to the current endpoint, and whenever
// the attempts so far have failed or not answered within hedgeDelay, to the
// next endpoint as well; the first success wins. Keepalives carry no
// client_id: extending a lease twice is harmless, and without an id they
// never share a dedupe identity with anything (the servers give each a
// node-local one).
func (s *Session) renew(ctx context.Context) error {
	c := s.c
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := len(c.endpoints)
	first := int(c.cur.Load())
	answers := make(chan error, n)
	launched, received := 0, 0
	hedge := time.NewTimer(s.hedgeDelay())
	defer hedge.Stop()
	launch := func() {
		e := c.endpoints[(first+launched)%n]
		onStream := launched == 0 // the hedges go unary: they ask endpoints the session does not use
		launched++
		go func() {
			actx, stop := context.WithTimeout(ctx, c.opts.attemptTimeout)
			defer stop()
			sent := time.Now()
			req := &pb.KeepAliveRequest{SessionId: s.id}
			unary := func(ctx context.Context) (*connect.Response[pb.KeepAliveResponse], error) {
				return e.sessions.KeepAlive(ctx, connect.NewRequest(req))
			}
			var r *pb.KeepAliveResponse
			var err error
			if onStream {
				r, err = exchange(actx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_KeepAlive{KeepAlive: req}},
					(*pb.StreamResponse).GetKeepAlive, unary)
			} else {
				var res *connect.Response[pb.KeepAliveResponse]
				if res, err = unary(actx); err == nil {
					r = res.Msg
				}
			}
			if err == nil {
				s.noteStampLag(r.StampLagMs)
				s.noteLogTime(sent, r.ExpiresAtMs, r.TtlMs)
			}
			if err == nil || connect.IsWireError(err) {
				e.heard()
			}
			answers <- err
		}()
		hedge.Reset(s.hedgeDelay())
	}
	launch()
	var last error
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hedge.C:
			if launched < n {
				launch()
			}
			continue
		case err := <-answers:
			received++
			if err == nil || connect.CodeOf(err) == connect.CodeNotFound {
				return err
			}
			last = err
		}
		if launched < n {
			launch()
		} else if received == launched {
			return last
		}
	}
}

// Close stops the keepalive and closes the session on the servers, which
// releases everything it holds and withdraws everything it waits for. The
// session is closed on the client's side at the first call, whatever the
// servers answer: Done closes, and nothing more is sent for it but the
// close. A Close that failed (ctx ended, no endpoint answered) left the
// session on the servers, holding what it held until its TTL runs out:
// call Close again, which sends the close again. Close is safe to call
// concurrently and more than once; once the servers have answered one,
// later calls answer nil. After the session was lost on the client's side
// (its lease ran out unrenewed), the servers may still keep it: Close
// still tells them, best effort and bounded by three attempt timeouts, and
// answers nil (a later Close tries again if that did not get through).
// It is a graceful close, by the process that held the locks: no
// lock-delay follows it, as none follows a release (Client.CloseSession,
// an operator's close of another process's session, applies one).
// After Orphan, Close sends nothing and answers nil: the session is
// another value's to close. During an Orphan that waits, Close ends the
// session on the servers, and the Orphan answers that it was closed.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.loopDone
		s.lostBeforeClose = s.Err() != nil
		if s.c.live.isClosing() {
			// Client.Close: the caller's own shutdown, which a blocked
			// Lock's ErrSessionLost alone did not tell from an operator's
			// close or an expiry but by its words.
			s.lose(fmt.Errorf("%w: session %d was closed with its Client (%w)", ErrSessionLost, s.id, ErrClientClosed))
		} else {
			s.lose(fmt.Errorf("%w: session %d was closed", ErrSessionLost, s.id))
		}
	})
	if s.closed.Load() {
		return nil
	}
	// One close at a time: a later one goes only if no earlier one was
	// answered.
	select {
	case s.closer <- struct{}{}:
	case <-ctx.Done():
		s.c.live.closeFailed(s, true)
		return fmt.Errorf("close session: %w", ctx.Err())
	}
	defer func() { <-s.closer }()
	if s.closed.Load() {
		return nil
	}
	if s.lostBeforeClose {
		ctx2, cancel := context.WithTimeout(ctx, 3*s.c.opts.attemptTimeout)
		defer cancel()
		s.closed.Store(s.closeOnServers(ctx2) == nil)
		return nil
	}
	err := s.closeOnServers(ctx)
	s.closed.Store(err == nil)
	s.c.live.closeFailed(s, err != nil) // Client.Close tries again
	return err
}

func (s *Session) closeOnServers(ctx context.Context) error {
	id := s.c.inflight.beginEnding()
	defer id.finish()
	defer s.shutStreams()
	_, err := do(ctx, s.c, func(ctx context.Context, e *endpoint) (*connect.Response[pb.CloseSessionResponse], error) {
		req := &pb.CloseSessionRequest{ClientId: id.ClientID(), RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id}
		r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_CloseSession{CloseSession: req}},
			(*pb.StreamResponse).GetCloseSession, func(ctx context.Context) (*connect.Response[pb.CloseSessionResponse], error) {
				return e.sessions.Close(ctx, connect.NewRequest(req))
			})
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(r), nil
	})
	if connect.CodeOf(err) == connect.CodeNotFound {
		err = nil // gone already: what Close wanted
	}
	return apiErr("close session", err)
}

// alive returns the loss error if the session is gone.
func (s *Session) alive() error {
	if err := s.Err(); err != nil {
		return err
	}
	return nil
}

// lostErrFor wraps the session's loss for op, or answers nil while it
// lives.
func (s *Session) lostErrFor(op opName) error {
	if s == nil {
		// A Mutex (Semaphore, ...) declared, not made by NewMutex: its
		// zero value panicked on a nil session.
		return fmt.Errorf("%s: %w: it has no session; make it with NewMutex (NewSemaphore, NewRWMutex, NewBarrier, NewElection) on a Session", op, ErrInvalid)
	}
	if err := s.Err(); err != nil {
		if errors.Is(err, ErrSessionLost) {
			return fmt.Errorf("%s: %w", op, err)
		}
		return fmt.Errorf("%s: %w: %v", op, ErrSessionLost, err)
	}
	return nil
}

// refusal turns a refused wait's reason into an error. A try-once refusal
// says who holds the object when the answer names the holder (a mutex's
// does), or the lock-delay that keeps it from everyone, as `lockstep lock
// --wait 0` does.
func (s *Session) refusal(op opName, g grant) error {
	reason := g.reason
	switch reason {
	case pb.Reason_REASON_UNSPECIFIED:
		if h := g.holder; h != nil {
			return fmt.Errorf("%s: %w: %s", op, ErrLocked, describeHolder(h))
		}
		if g.blockedUntil > 0 {
			// Nobody holds it: "held by someone else" (ErrLocked's words)
			// would send the caller looking for a holder that is not there.
			return fmt.Errorf("%s: %w", op, lockDelayed(fmt.Sprintf("lockstep: nobody holds it, but a lock-delay keeps it from everyone until %s (log time), after its holder failed (its session was lost or its maximum hold passed) or its session was closed by an operator: try again after it",
				time.UnixMilli(g.blockedUntil).UTC().Format("15:04:05.000 MST"))))
		}
		return fmt.Errorf("%s: %w", op, ErrLocked)
	case pb.Reason_REASON_TIMEOUT:
		return fmt.Errorf("%s: %w", op, ErrTimeout)
	case pb.Reason_REASON_SESSION_CLOSED, pb.Reason_REASON_SESSION_EXPIRED:
		// In the words every other call on the session uses, once the
		// client has heard of the loss; the proto's name otherwise.
		if lost := s.lostErrFor(op); lost != nil {
			return lost
		}
		why := "was closed on the servers"
		if reason == pb.Reason_REASON_SESSION_EXPIRED {
			why = "expired on the servers"
		}
		return fmt.Errorf("%s: %w: session %d %s", op, ErrSessionLost, s.id, why)
	}
	return fmt.Errorf("%s: wait ended: %s", op, reason)
}

// describeHolder is who holds a grant, for an error: `"worker-3", session
// 12, token 34` (`session 12, token 34` when the holder gave no owner
// label). What the server's answer says: the holder may have gone since.
func describeHolder(h *pb.Holder) string {
	who := fmt.Sprintf("session %d, token %d", h.SessionId, h.FencingToken)
	if h.Owner != "" {
		who = quote.Bounded(h.Owner) + ", " + who
	}
	return who
}
