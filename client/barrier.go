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
// (the arrival is withdrawn, see Mutex.Lock) or the session is lost. It
// answers the generation released: the id of the barrier's round that
// this arrival took part in, the same for every party released together.
// It is the waiter id of the round's first arrival, derived from the Raft
// log index of the entry that queued it (index<<20 | position in the
// entry), so the generations of one barrier strictly increase from round to
// round, are not consecutive, and are never 0. A set/remove barrier
// (parties 0) has no rounds: Wait answers 0.
func (b *Barrier) Wait(ctx context.Context) (generation uint64, err error) {
	s := b.s
	gen, _, err := s.acquire(ctx, acquireSpec{op: "wait at barrier", kind: pb.Kind_KIND_BARRIER, name: b.name, waitMs: -1,
		send: func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.WaitBarrierRequest{Name: b.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, WaitTimeoutMs: waitMs,
				Parties: b.parties, Participant: b.participant}
			r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_WaitBarrier{WaitBarrier: req}},
				(*pb.StreamResponse).GetWaitBarrier, func(ctx context.Context) (*connect.Response[pb.WaitBarrierResponse], error) {
					return e.barriers.Wait(ctx, connect.NewRequest(req))
				})
			if err != nil {
				return grant{}, err
			}
			return grant{token: r.Generation, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}})
	return gen, err
}
