package client

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Election is a named leader election. A session campaigns with a value
// (for example its address); the leader holds the election until it
// resigns or its session is lost, and its fencing token increases with
// every new leader.
//
// A session campaigns once per name: a second Election value of the name
// on the same session waits in Campaign until the first resigns (the
// servers would answer it the first one's leadership).
type Election struct {
	name string
	hold
}

// Leader is an election's current leader.
type Leader struct {
	Name         string
	Candidate    string
	Value        []byte
	SessionID    uint64
	FencingToken uint64
	ElectedAt    time.Time
	// Event says why Observe sent this value: EVENT_TYPE_UNSPECIFIED for
	// the leader as the stream (re)opened, EVENT_TYPE_LEADER_CHANGED, or
	// EVENT_TYPE_VALUE_CHANGED (a Proclaim). Leader leaves it unset.
	Event pb.EventType
	// Reason is why the previous leader went away, on a LEADER_CHANGED:
	// REASON_RELEASED (it resigned), REASON_SESSION_EXPIRED,
	// REASON_SESSION_CLOSED or REASON_MAX_HOLD.
	Reason pb.Reason
	// Err is set on the last value Observe sends before its channel
	// closes when the observation failed (for example an invalid name).
	Err error
}

// NewElection returns the election name on session s. To only observe an
// election, use Client.Observe and Client.Leader.
func NewElection(s *Session, name string) *Election {
	return &Election{name: name, hold: hold{s: s, kind: pb.Kind_KIND_ELECTION, name: name}}
}

// Campaign waits until this session is elected, ctx ends (the candidacy is
// withdrawn, see Mutex.Lock) or the session is lost; ErrUnavailable while
// no endpoint serves, as Mutex.Lock. The session's owner is the candidate,
// and value (at most 1024 bytes, the servers' limit) what the leader
// proclaims. Campaigning again while this Election leads waits, as a
// Mutex's second Lock does; to change the value, Proclaim. A Campaign on
// a session that already leads the election, or waits for it, from
// another value or process (a session taken over with ResumeSession) is
// answered with that leadership (or joins that wait), and proclaims value
// as etcd's Campaign does: the leader's value changes (Observe sends a
// VALUE_CHANGED), or the waiting candidacy leads with it; servers of
// rules 4 do this, those of rules 3 kept the old value.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	s := e.s
	g, gate, err := s.acquire(ctx, acquireSpec{op: "campaign", kind: pb.Kind_KIND_ELECTION, name: e.name, waitMs: -1, gated: true,
		send: func(ctx context.Context, ep *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.CampaignRequest{Name: e.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, Candidate: s.owner, Value: value, WaitTimeoutMs: waitMs}
			r, err := exchange(ctx, s, ep, &pb.StreamRequest{Request: &pb.StreamRequest_Campaign{Campaign: req}},
				(*pb.StreamResponse).GetCampaign, func(ctx context.Context) (*connect.Response[pb.CampaignResponse], error) {
					return ep.elections.Campaign(ctx, connect.NewRequest(req))
				})
			if err != nil {
				return grant{}, err
			}
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}})
	if err != nil {
		return err
	}
	return e.set(grant{token: g.token}, gate, time.Time{})
}

// Token is the fencing token of this session's leadership (0 when not
// leader, and after the session is lost or closed).
func (e *Election) Token() uint64 { return e.current() }

// Proclaim changes the leader's value (at most 1024 bytes) without an
// election; ErrNotHeld when this session is not the leader.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	what := opName{"proclaim", e.name}
	if lost := e.s.lostErrFor(what); lost != nil {
		return lost
	}
	token := e.Token()
	if token == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotHeld)
	}
	s := e.s
	return s.send(ctx, what, func(ctx context.Context, ep *endpoint, id reqID) error {
		req := &pb.ProclaimRequest{Name: e.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, FencingToken: token, Value: value}
		_, err := exchange(ctx, s, ep, &pb.StreamRequest{Request: &pb.StreamRequest_Proclaim{Proclaim: req}},
			(*pb.StreamResponse).GetProclaim, func(ctx context.Context) (*connect.Response[pb.ProclaimResponse], error) {
				return ep.elections.Proclaim(ctx, connect.NewRequest(req))
			})
		return err
	})
}

// Resign steps down, so that the next candidate is elected at once. A
// failed Resign keeps the leadership's token, as Mutex.Unlock does.
func (e *Election) Resign(ctx context.Context) error {
	s := e.s
	return e.end(ctx, opName{"resign", e.name}, func(ctx context.Context, ep *endpoint, id reqID, token uint64) error {
		req := &pb.ResignRequest{Name: e.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, FencingToken: token}
		_, err := exchange(ctx, s, ep, &pb.StreamRequest{Request: &pb.StreamRequest_Resign{Resign: req}},
			(*pb.StreamResponse).GetResign, func(ctx context.Context) (*connect.Response[pb.ResignResponse], error) {
				return ep.elections.Resign(ctx, connect.NewRequest(req))
			})
		return err
	})
}

// Leader answers the current leader (linearizable); ErrNoLeader when none.
func (c *Client) Leader(ctx context.Context, name string) (Leader, error) {
	if err := badName(opName{"leader of", name}); err != nil {
		return Leader{}, err
	}
	res, err := do(ctx, c, func(ctx context.Context, ep *endpoint) (*connect.Response[pb.LeaderResponse], error) {
		return ep.elections.Leader(ctx, connect.NewRequest(&pb.LeaderRequest{Name: name}))
	})
	if err != nil {
		return Leader{}, apiErr(opName{"leader of", name}, err)
	}
	if !res.HasLeader || res.Leader == nil {
		return Leader{}, fmt.Errorf("%s: %w", opName{"leader of", name}, ErrNoLeader)
	}
	return leaderOf(name, res.Leader), nil
}

// Leader answers the election's current leader; ErrNoLeader when none.
func (e *Election) Leader(ctx context.Context) (Leader, error) { return e.client().Leader(ctx, e.name) }

func (e *Election) client() *Client { return e.s.c }

func leaderOf(name string, l *pb.ElectionLeader) Leader {
	return Leader{Name: name, Candidate: l.Candidate, Value: l.Value, SessionID: l.SessionId,
		FencingToken: l.FencingToken, ElectedAt: time.UnixMilli(l.ElectedAtMs)}
}

// Observe sends the current leader and then every change of leader or
// value, until ctx ends or the Client is closed; then the channel closes.
// A Leader with SessionID 0 means nobody leads. A broken stream is
// reopened on the next endpoint, and so is one whose endpoint stops
// answering health probes (every probe interval while the stream is quiet;
// see WithProbeInterval), or whose member cannot serve for a few seconds
// (the servers end it): changes during the gap are folded into the first
// message after it, so an observer sees the leader, not every leadership.
// etcd's Election.Observe resumes from a revision instead; to see every
// change across failovers, watch the name (WatchName: its LEADER_CHANGED
// and VALUE_CHANGED events resume exactly). A refusal (for example an
// invalid name) ends the observation: the last value sent has Err set.
func (c *Client) Observe(ctx context.Context, name string) <-chan Leader {
	out := make(chan Leader, 16)
	ctx, stop := c.tie(ctx)
	go func() {
		defer close(out)
		defer stop()
		pause := c.opts.backoffMin
		tls := tlsRefusals{c: c}
		c.firstContact(ctx)
		for ctx.Err() == nil {
			ep := c.current()
			stuck, err := c.observeOnce(ctx, ep, name, out, &pause)
			if ctx.Err() != nil {
				return
			}
			end := tls.note(ep, err)
			if end == nil && err != nil && !stuck && !resumable(err) {
				end = ep.explain(err)
			}
			if end != nil {
				select {
				case out <- Leader{Name: name, Err: apiErr(opName{"observe", name}, end)}:
				case <-ctx.Done():
				}
				return
			}
			c.failover(ep)
			if c.backoff(ctx, &pause) != nil {
				return
			}
		}
	}()
	return out
}

// observeOnce runs one Observe stream on ep until it ends, ctx ends, or ep
// stops answering probes (stuck).
func (c *Client) observeOnce(ctx context.Context, ep *endpoint, name string, out chan<- Leader, pause *time.Duration) (stuck bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var gaveUp atomic.Bool
	go func() {
		t := time.NewTicker(c.opts.probeInterval)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if !c.answers(sctx, ep) && sctx.Err() == nil {
				gaveUp.Store(true)
				cancel()
				return
			}
		}
	}()
	stream, err := ep.elections.Observe(sctx, connect.NewRequest(&pb.ObserveRequest{Name: name}))
	if err != nil {
		return gaveUp.Load(), err
	}
	defer stream.Close()
	for stream.Receive() {
		ep.heard()
		*pause = c.opts.backoffMin
		m := stream.Msg()
		l := Leader{Name: name}
		if m.HasLeader && m.Leader != nil {
			l = leaderOf(name, m.Leader)
		}
		l.Event, l.Reason = m.Event, m.Reason
		select {
		case out <- l:
		case <-ctx.Done():
			return false, nil
		}
	}
	return gaveUp.Load(), stream.Err()
}

// Observe is Client.Observe for this election.
func (e *Election) Observe(ctx context.Context) <-chan Leader { return e.client().Observe(ctx, e.name) }

// Lost returns a channel that closes once the leadership won by the last
// Campaign must be taken for lost: resigned (Resign, or another caller's
// resign naming its token, which the servers push on the session's
// stream: LostErr says which) or its session lost, as Token starts
// answering 0 (a goroutine closes it, so a read of Token may see 0 a
// moment before). A closed channel when not leader, so before the first
// Campaign too: take it once Campaign has returned (lost := e.Lost()
// then), not before, as an etcd habit of reading session.Done() early
// would.
func (e *Election) Lost() <-chan struct{} { return e.lost() }

// LostErr says why Lost closed: nil while the grant of the last
// successful call is held, after this value's own Resign, and when nothing
// was granted; the session's Err once the session is lost, closed or
// orphaned (Session.Orphan), a Resign after that too (it released
// nothing: the session's end did); an
// error wrapping ErrNotHeld when the servers ended the grant while the
// session lived (another caller released it by its token, or its max
// hold passed; its message says which, with the token), or when its
// max hold passed as this client counts it.
func (e *Election) LostErr() error { return e.lostErr() }
