package client

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// Barrier is a named counting barrier: Wait returns when parties
// participants have arrived, for every generation anew.
type Barrier struct {
	s           *Session
	name        string
	parties     int64
	participant string
}

// NewBarrier returns the barrier name for parties participants on session
// s. The participant name defaults to the session's owner and id; every
// party must use a different one.
func NewBarrier(s *Session, name string, parties int64) *Barrier {
	return &Barrier{s: s, name: name, parties: parties, participant: fmt.Sprintf("%s/%d", s.owner, s.id)}
}

// WithParticipant names this party (it must differ from the other parties').
func (b *Barrier) WithParticipant(p string) *Barrier { b.participant = p; return b }

// Wait arrives at the barrier and waits until all parties have, ctx ends
// (the arrival is withdrawn) or the session is lost. It answers the
// generation released.
func (b *Barrier) Wait(ctx context.Context) (generation uint64, err error) {
	req := &pb.WaitBarrierRequest{Name: b.name, ClientId: b.s.c.clientID, RequestSeq: b.s.c.nextSeq(),
		SessionId: b.s.id, WaitTimeoutMs: -1, Parties: b.parties, Participant: b.participant}
	return b.s.acquire(ctx, "wait at barrier", pb.Kind_KIND_BARRIER, b.name,
		func(ctx context.Context, e *endpoint) (grant, error) {
			res, err := e.barriers.Wait(ctx, connect.NewRequest(req))
			if err != nil {
				return grant{}, err
			}
			r := res.Msg
			return grant{token: r.Generation, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}, nil)
}
