package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/model"
)

// Bounds of the workload: operations per worker, the longest wait of a
// blocking acquire, the time any one call may take beyond its wait, and
// the pause between a worker's operations.
const (
	maxOpsPerWorker = 100_000
	maxWait         = 1500 * time.Millisecond
	callSlack       = 5 * time.Second
	thinkTime       = 20 * time.Millisecond
	semaphoreLimit  = 2
)

// freezer is a client's HTTP transport: frozen, every request fails at
// once, so that its session's keepalives stop and the lease runs out
// while the holder still believes it holds what it held (a paused
// process, from the cluster's point of view). It notes the last renewal
// (Create or KeepAlive) that succeeded, for the sessions check.
type freezer struct {
	base   http.RoundTripper
	frozen atomic.Bool
	ghost  atomic.Bool // the planted bug ghost-keepalive: renewals pass a frozen client

	mu             sync.Mutex
	sent, answered time.Time
}

func (f *freezer) closeIdleConnections() {
	if t, ok := f.base.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

var errFrozen = errors.New("chaos: this client is frozen")

func (f *freezer) RoundTrip(req *http.Request) (*http.Response, error) {
	renewal, frozen := isRenewal(req), f.frozen.Load()
	if frozen && !(renewal && f.ghost.Load()) {
		return nil, errFrozen
	}
	sent := time.Now()
	resp, err := f.base.RoundTrip(req)
	// A renewal a frozen client sends (the planted bug's) is not the
	// client's: it stopped renewing when it froze.
	if renewal && !frozen && err == nil && resp.StatusCode == http.StatusOK {
		f.mu.Lock()
		if sent.After(f.sent) {
			f.sent = sent
		}
		f.answered = time.Now()
		f.mu.Unlock()
	}
	return resp, err
}

// freeze stops every request; ghost lets renewals through all the same.
func (f *freezer) freeze(ghost bool) {
	f.ghost.Store(ghost)
	f.frozen.Store(true)
}

func (f *freezer) thaw() { f.frozen.Store(false) }

func (f *freezer) lastRenewal() (sent, answered time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent, f.answered
}

// newClient is a client of the run's cluster through a freezer. In a
// secured run it trusts the cluster's CA and proves who it is with the
// client certificate or, for every other client, the API key. Workers
// carry their sessions on session streams (the client's default), over the
// client's own stream transport (HTTP/2, h2c without TLS, batched writes),
// so that the faults meet the path users run; a client that will freeze
// on purpose sends one call per request (WithUnary), because the freezer
// stops requests, and an open stream is one request whose keepalives it
// would not see or stop.
func (r *run) newClient(prefix string, freezes bool) (*client.Client, *freezer, error) {
	tr := client.StreamTransport(nil)
	tr.IdleConnTimeout = 30 * time.Second
	opts := []client.Option{client.WithClientID(prefix), client.WithAttemptTimeout(time.Second), client.WithRetryTimeout(10 * time.Second)}
	if freezes {
		opts = append(opts, client.WithUnary())
	}
	if r.pki != nil {
		tr.TLSClientConfig = r.pki.TLSConfig()
		if r.clients.Add(1)%2 == 0 {
			tr.TLSClientConfig.Certificates = nil
			opts = append(opts, client.WithAPIKey(r.pki.APIKey))
		}
	}
	f := &freezer{base: tr}
	c, err := client.New(r.endpoints, append(opts, client.WithHTTPClient(&http.Client{Transport: f}))...)
	if err != nil {
		return nil, nil, err
	}
	r.own(func() { closeClient(c, f) })
	return c, f, nil
}

// toolClient is a client for the run's own tools (the watches, the
// resource's fence checks, the nemesis's membership calls), made with the
// client's own TLS options in a secured run: the CA file and the client
// certificate.
func (r *run) toolClient(prefix string) (*client.Client, error) {
	opts := []client.Option{client.WithClientID(prefix), client.WithAttemptTimeout(time.Second), client.WithRetryTimeout(10 * time.Second)}
	if r.pki != nil {
		opts = append(opts, client.WithCAFile(r.pki.CAFile), client.WithClientCert(r.pki.ClientCert, r.pki.ClientKey))
	}
	c, err := client.New(r.endpoints, opts...)
	if err != nil {
		return nil, err
	}
	r.own(func() { closeClient(c, nil) })
	return c, nil
}

// worker is one goroutine of the workload with its own Client and session.
type worker struct {
	idx  int
	run  *run
	r    *rand.Rand
	c    *client.Client
	s    *client.Session
	last map[string]uint64 // the highest token seen per name
	// walked are sessions a planted bug walked away from, closed at the end.
	walked []*client.Session

	mu        sync.Mutex
	lastGrant time.Time
	grants    int
}

func (w *worker) granted() {
	now := time.Now()
	w.mu.Lock()
	w.lastGrant = now
	w.grants++
	w.mu.Unlock()
	w.run.noteGrant(now)
}

func (w *worker) grantedSince(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastGrant.After(t)
}

func (w *worker) session(ctx context.Context) bool {
	if w.s != nil {
		select {
		case <-w.s.Done():
			w.s = nil
		default:
			return true
		}
	}
	cctx, cancel := context.WithTimeout(ctx, callSlack)
	defer cancel()
	owner := fmt.Sprintf("worker-%d", w.idx)
	s, err := w.c.NewSession(cctx, client.WithTTL(w.run.o.TTL), client.WithOwner(owner))
	if err != nil {
		return false
	}
	w.run.track(s, owner)
	w.s = s
	return true
}

// closeSession ends the session (and with it whatever it may still hold).
func (w *worker) closeSession() {
	if w.s == nil {
		return
	}
	w.run.closeSession(w.s)
	w.s = nil
}

func (w *worker) name(kind string) string {
	if w.r.IntN(10) < 7 {
		return fmt.Sprintf("chaos/%s/hot-%d", kind, w.r.IntN(w.run.o.Hot))
	}
	return fmt.Sprintf("chaos/%s/cold-%d", kind, w.r.IntN(coldNames))
}

func (w *worker) loop(ctx context.Context) {
	defer func() {
		w.closeSession()
		for _, s := range w.walked {
			w.s = s
			w.closeSession()
		}
	}()
	for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
		if !w.session(ctx) {
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		switch x := w.r.IntN(20); {
		case x < 10:
			w.mutex(ctx)
		case x < 14:
			w.semaphore(ctx)
		case x < 17:
			w.rwlock(ctx)
		default:
			w.election(ctx)
		}
		sleepCtx(ctx, time.Duration(w.r.Int64N(int64(thinkTime))))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// answerOf classifies an acquire's error.
func answerOf(err error) outcome {
	switch {
	case err == nil:
		return answerGranted
	case errors.Is(err, client.ErrLocked):
		return answerRefused
	}
	return answerUnknown
}

func (w *worker) mutex(ctx context.Context) {
	name := w.name("m")
	k := model.Key{Kind: core.KindMutex, Name: name}
	try := w.r.IntN(3) == 0
	wait := time.Duration(100+w.r.IntN(int(maxWait/time.Millisecond)-100)) * time.Millisecond
	hold := time.Duration(w.r.IntN(300)) * time.Millisecond
	phantom := w.run.bug.is(bugPhantomRelease) && w.r.IntN(4) == 0
	m := client.NewMutex(w.s, name)
	o := op{worker: w.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(w.s.ID()), Try: try}}
	cctx, cancel := context.WithTimeout(ctx, wait+callSlack)
	o.call = w.run.h.now()
	var err error
	if try {
		err = m.TryLock(cctx)
	} else {
		err = m.LockWithin(cctx, wait)
	}
	cancel()
	o.ret = w.run.h.now()
	o.answer = answerOf(err)
	held := o.answer == answerGranted // by the cluster's answer, not a planted bug's
	if o.answer == answerGranted {
		o.token = m.Token()
	} else if o.answer == answerRefused && w.run.bug.is(bugAckRefused) {
		o.answer, o.token = answerGranted, w.last[name]+1
	}
	w.run.h.add(o)
	if o.answer != answerGranted {
		return
	}
	w.last[name] = max(w.last[name], o.token)
	w.granted()
	w.run.res.Write(ctx, w.idx, k, o.token)
	sleepCtx(ctx, hold)
	w.run.res.Write(ctx, w.idx, k, o.token)
	if !held {
		return
	}
	rel := op{worker: w.idx, in: model.Input{Op: model.Release, Key: k, Session: o.in.Session, Token: core.FencingToken(o.token)}}
	if phantom {
		rel.call = w.run.h.now()
		rel.ret, rel.answer = w.run.h.now(), answerOK
		w.run.h.add(rel)
		// Walk away from the session, still holding; it lives on in the
		// background until the run ends.
		w.walked = append(w.walked, w.s)
		w.s = nil
		return
	}
	w.release(rel, m.Unlock)
}

// release ends a hold with unlock (bounded by callSlack, whatever the
// run's context) and records it in the history. An answer that is neither
// done nor "not held" leaves the hold unknown: the worker ends its session
// rather than keep a grant that would block its own next acquire of the
// name.
func (w *worker) release(rel op, unlock func(context.Context) error) {
	rel.call = w.run.h.now()
	ctx, cancel := context.WithTimeout(context.Background(), callSlack)
	err := unlock(ctx)
	cancel()
	rel.ret = w.run.h.now()
	switch {
	case err == nil:
		rel.answer = answerOK
	case errors.Is(err, client.ErrNotHeld):
		rel.answer = answerNotHeld
	default:
		rel.answer = answerUnknown
		w.closeSession()
	}
	w.run.h.add(rel)
}

func (w *worker) semaphore(ctx context.Context) {
	name := w.name("s")
	k := model.Key{Kind: core.KindSemaphore, Name: name}
	try := w.r.IntN(3) == 0
	wait := time.Duration(100+w.r.IntN(int(maxWait/time.Millisecond)-100)) * time.Millisecond
	hold := time.Duration(w.r.IntN(300)) * time.Millisecond
	sem := client.NewSemaphore(w.s, name, semaphoreLimit)
	o := op{worker: w.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(w.s.ID()), Try: try,
		Permits: 1, Limit: semaphoreLimit}}
	cctx, cancel := context.WithTimeout(ctx, wait+callSlack)
	o.call = w.run.h.now()
	var err error
	if try {
		err = sem.TryAcquire(cctx, 1)
	} else {
		err = sem.AcquireWithin(cctx, 1, wait)
	}
	cancel()
	o.ret = w.run.h.now()
	o.answer = answerOf(err)
	if o.answer == answerGranted {
		o.token = sem.Token()
	}
	w.run.h.add(o)
	if o.answer != answerGranted {
		return
	}
	w.granted()
	sleepCtx(ctx, hold)
	w.release(op{worker: w.idx, in: model.Input{Op: model.Release, Key: k, Session: o.in.Session, Token: core.FencingToken(o.token),
		Permits: 1, Limit: semaphoreLimit}}, sem.Release)
}

// rwlock takes a read hold (2 in 3) or the write hold, try-once or waiting
// a bounded time, holds it and releases it. The model allows many readers
// or one writer, never both.
func (w *worker) rwlock(ctx context.Context) {
	name := w.name("rw")
	k := model.Key{Kind: core.KindRWLock, Name: name}
	try := w.r.IntN(3) == 0
	mode := core.ModeRead
	if w.r.IntN(3) == 0 {
		mode = core.ModeWrite
	}
	wait := time.Duration(100+w.r.IntN(int(maxWait/time.Millisecond)-100)) * time.Millisecond
	hold := time.Duration(w.r.IntN(300)) * time.Millisecond
	m := client.NewRWMutex(w.s, name)
	o := op{worker: w.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(w.s.ID()), Try: try, Mode: mode}}
	timeout := callSlack
	if !try {
		timeout = wait // a blocking hold waits until ctx ends, then is withdrawn
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	o.call = w.run.h.now()
	var err error
	switch {
	case try && mode == core.ModeRead:
		err = m.TryRLock(cctx)
	case try:
		err = m.TryLock(cctx)
	case mode == core.ModeRead:
		err = m.RLock(cctx)
	default:
		err = m.Lock(cctx)
	}
	cancel()
	o.ret = w.run.h.now()
	o.answer = answerOf(err)
	if o.answer == answerGranted {
		o.token = m.Token()
	}
	w.run.h.add(o)
	if o.answer != answerGranted {
		return
	}
	w.granted()
	sleepCtx(ctx, hold)
	w.release(op{worker: w.idx, in: model.Input{Op: model.Release, Key: k, Session: o.in.Session, Token: core.FencingToken(o.token), Mode: mode}}, m.Unlock)
}

// election campaigns for a bounded time, and once elected writes to the
// resource as the leader, holds, and resigns. The model allows one leader
// per name at a time: two leaders at once make the history illegal.
func (w *worker) election(ctx context.Context) {
	name := w.name("e")
	k := model.Key{Kind: core.KindElection, Name: name}
	wait := time.Duration(100+w.r.IntN(int(maxWait/time.Millisecond)-100)) * time.Millisecond
	hold := time.Duration(w.r.IntN(300)) * time.Millisecond
	value := fmt.Sprintf("worker-%d", w.idx)
	e := client.NewElection(w.s, name)
	o := op{worker: w.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(w.s.ID()), Value: value}}
	cctx, cancel := context.WithTimeout(ctx, wait)
	o.call = w.run.h.now()
	err := e.Campaign(cctx, []byte(value))
	cancel()
	o.ret = w.run.h.now()
	o.answer = answerOf(err)
	if o.answer == answerGranted {
		o.token = e.Token()
	}
	w.run.h.add(o)
	if o.answer != answerGranted {
		return
	}
	w.granted()
	w.run.res.Write(ctx, w.idx, k, o.token)
	sleepCtx(ctx, hold)
	w.run.res.Write(ctx, w.idx, k, o.token)
	w.release(op{worker: w.idx, in: model.Input{Op: model.Release, Key: k, Session: o.in.Session, Token: core.FencingToken(o.token)}}, e.Resign)
}

// sleeper is the holder that pauses on purpose: it takes a mutex, writes
// with its token, freezes its client until the cluster has expired its
// session (the log releases the grant), thaws and writes again with the
// old token. The resource must refuse that write; the check after the run
// proves it did. Half of its names are hot (someone else may have written
// since), half its own (only the fence can refuse).
type sleeper struct {
	idx int
	run *run
	r   *rand.Rand
	n   int
}

// Bounds of the sleeper: its session's TTL, how long it waits for the log
// to expire it, and the gap between its naps.
const (
	sleeperTTL    = time.Second
	sleeperExpiry = 15 * time.Second
)

func (sl *sleeper) loop(ctx context.Context) {
	for i := 0; i < maxOpsPerWorker && ctx.Err() == nil; i++ {
		sleepCtx(ctx, time.Duration(2000+sl.r.IntN(4000))*time.Millisecond)
		if ctx.Err() != nil {
			return
		}
		sl.nap(ctx)
	}
}

func (sl *sleeper) nap(ctx context.Context) {
	c, f, err := sl.run.newClient(fmt.Sprintf("sleeper-%d", sl.n), true)
	if err != nil {
		return
	}
	defer closeClient(c, f)
	sl.n++
	cctx, cancel := context.WithTimeout(ctx, callSlack)
	s, err := c.NewSession(cctx, client.WithTTL(sleeperTTL), client.WithOwner("sleeper"))
	cancel()
	if err != nil {
		return
	}
	rec := sl.run.track(s, "sleeper")
	name := fmt.Sprintf("chaos/m/sleep-%d", sl.n)
	if sl.r.IntN(2) == 0 {
		name = fmt.Sprintf("chaos/m/hot-%d", sl.r.IntN(sl.run.o.Hot))
	}
	k := model.Key{Kind: core.KindMutex, Name: name}
	m := client.NewMutex(s, name)
	o := op{worker: sl.idx, in: model.Input{Op: model.Acquire, Key: k, Session: core.SessionID(s.ID())}}
	cctx, cancel = context.WithTimeout(ctx, maxWait+callSlack)
	o.call = sl.run.h.now()
	err = m.LockWithin(cctx, maxWait)
	cancel()
	o.ret = sl.run.h.now()
	o.answer = answerOf(err)
	if o.answer == answerGranted {
		o.token = m.Token()
	}
	sl.run.h.add(o)
	if o.answer != answerGranted {
		sl.run.closeSession(s)
		return
	}
	defer sl.run.closeSession(s)
	sl.run.noteGrant(time.Now())
	sl.run.res.Write(ctx, sl.idx, k, o.token)
	f.freeze(false)
	sl.run.stop(rec, f)
	sl.run.o.logf("%6.1fs sleeper froze holding %q token %d", sl.run.h.now().Seconds(), name, o.token)
	select {
	case <-s.Done():
	case <-ctx.Done():
	case <-time.After(sleeperExpiry):
	}
	expired := sl.run.h.waitReleased(ctx, k, o.token, sleeperExpiry)
	f.thaw()
	if !expired {
		return // faults kept the lease alive (or the run ended): nothing to prove this time
	}
	ok := sl.run.res.Write(ctx, sl.idx, k, o.token)
	sl.run.o.logf("%6.1fs sleeper woke: write with token %d accepted=%v", sl.run.h.now().Seconds(), o.token, ok)
	sl.run.noteSleeperWrite()
}
