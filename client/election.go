package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Election is a named leader election. A session campaigns with a value
// (for example its address); the leader holds the election until it
// resigns or its session is lost, and its fencing token increases with
// every new leader.
type Election struct {
	s    *Session
	name string

	mu    sync.Mutex
	token uint64
}

// Leader is an election's current leader.
type Leader struct {
	Name         string
	Candidate    string
	Value        []byte
	SessionID    uint64
	FencingToken uint64
	ElectedAt    time.Time
}

// NewElection returns the election name on session s (s may be nil for an
// election that is only observed).
func NewElection(s *Session, name string) *Election { return &Election{s: s, name: name} }

// Campaign waits until this session is elected, ctx ends (the candidacy is
// withdrawn) or the session is lost. The session's owner is the candidate.
func (e *Election) Campaign(ctx context.Context, value []byte) error {
	s := e.s
	req := &pb.CampaignRequest{Name: e.name, ClientId: s.c.clientID, RequestSeq: s.c.nextSeq(),
		SessionId: s.id, Candidate: s.owner, Value: value, WaitTimeoutMs: -1}
	token, err := s.acquire(ctx, "campaign", pb.Kind_KIND_ELECTION, e.name,
		func(ctx context.Context, ep *endpoint) (grant, error) {
			res, err := ep.elections.Campaign(ctx, connect.NewRequest(req))
			if err != nil {
				return grant{}, err
			}
			r := res.Msg
			return grant{token: r.FencingToken, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}, e.resignToken)
	if err != nil {
		return err
	}
	s.remember(pb.Kind_KIND_ELECTION, e.name, token, true)
	e.mu.Lock()
	e.token = token
	e.mu.Unlock()
	return nil
}

// Token is the fencing token of this session's leadership (0 when not
// leader).
func (e *Election) Token() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.token
}

// Proclaim changes the leader's value without an election; ErrNotHeld when
// this session is not the leader.
func (e *Election) Proclaim(ctx context.Context, value []byte) error {
	token := e.Token()
	if token == 0 {
		return fmt.Errorf("proclaim %q: %w", e.name, ErrNotHeld)
	}
	req := &pb.ProclaimRequest{Name: e.name, ClientId: e.s.c.clientID, RequestSeq: e.s.c.nextSeq(),
		SessionId: e.s.id, FencingToken: token, Value: value}
	_, err := do(ctx, e.s.c, func(ctx context.Context, ep *endpoint) (*connect.Response[pb.ProclaimResponse], error) {
		return ep.elections.Proclaim(ctx, connect.NewRequest(req))
	})
	return apiErr(fmt.Sprintf("proclaim %q", e.name), err)
}

// Resign steps down, so that the next candidate is elected at once.
func (e *Election) Resign(ctx context.Context) error {
	token := e.Token()
	if token == 0 {
		return fmt.Errorf("resign %q: %w", e.name, ErrNotHeld)
	}
	err := e.resignToken(ctx, token)
	e.mu.Lock()
	if e.token == token {
		e.token = 0
	}
	e.mu.Unlock()
	e.s.remember(pb.Kind_KIND_ELECTION, e.name, token, false)
	return err
}

func (e *Election) resignToken(ctx context.Context, token uint64) error {
	req := &pb.ResignRequest{Name: e.name, ClientId: e.s.c.clientID, RequestSeq: e.s.c.nextSeq(),
		SessionId: e.s.id, FencingToken: token}
	_, err := do(ctx, e.s.c, func(ctx context.Context, ep *endpoint) (*connect.Response[pb.ResignResponse], error) {
		return ep.elections.Resign(ctx, connect.NewRequest(req))
	})
	return apiErr(fmt.Sprintf("resign %q", e.name), err)
}

// Leader answers the current leader (linearizable); ErrNoLeader when none.
func (c *Client) Leader(ctx context.Context, name string) (Leader, error) {
	res, err := do(ctx, c, func(ctx context.Context, ep *endpoint) (*connect.Response[pb.LeaderResponse], error) {
		return ep.elections.Leader(ctx, connect.NewRequest(&pb.LeaderRequest{Name: name}))
	})
	if err != nil {
		return Leader{}, apiErr(fmt.Sprintf("leader of %q", name), err)
	}
	if !res.HasLeader || res.Leader == nil {
		return Leader{}, fmt.Errorf("leader of %q: %w", name, ErrNoLeader)
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
// value, until ctx ends; then the channel closes. A Leader with SessionID 0
// means nobody leads. A broken stream is reopened on the next endpoint;
// changes during the gap are folded into the first message after it.
func (c *Client) Observe(ctx context.Context, name string) <-chan Leader {
	out := make(chan Leader, 16)
	go func() {
		defer close(out)
		pause := c.opts.backoffMin
		for ctx.Err() == nil {
			ep := c.current()
			stream, err := ep.elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: name}))
			if err == nil {
				for stream.Receive() {
					pause = c.opts.backoffMin
					m := stream.Msg()
					l := Leader{Name: name}
					if m.HasLeader && m.Leader != nil {
						l = leaderOf(name, m.Leader)
					}
					select {
					case out <- l:
					case <-ctx.Done():
						stream.Close()
						return
					}
				}
				err = stream.Err()
				stream.Close()
			}
			if ctx.Err() != nil {
				return
			}
			if retryable(err) || err == nil {
				c.failover(ep)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			pause = min(pause*2, c.opts.backoffMax)
		}
	}()
	return out
}

// Observe is Client.Observe for this election.
func (e *Election) Observe(ctx context.Context) <-chan Leader { return e.client().Observe(ctx, e.name) }
