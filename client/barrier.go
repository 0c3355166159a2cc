package client

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
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
// s. Each Wait is a party of its own: unless WithParticipant names it, its
// participant name is the session's owner and id ("OWNER/ID"), with "/2",
// "/3", ... added while other such Waits of the session wait at the same
// barrier. (Every Wait was "OWNER/ID" before, and the servers, which know
// a party by its session and participant name, took two Barrier values of
// one session for one arrival: both hung.)
func NewBarrier(s *Session, name string, parties int64) *Barrier {
	return &Barrier{s: s, name: name, parties: parties}
}

// WithParticipant names this party. A Wait of a participant that already
// waits at the barrier on the same session is refused: the servers would
// take the two for one arrival.
func (b *Barrier) WithParticipant(p string) *Barrier { b.participant = p; return b }

// Wait arrives at the barrier and waits until all parties have, ctx ends
// (the arrival is withdrawn, see Mutex.Lock, unless its round released
// first: the others then passed counting it, and Wait still answers ctx's
// error, as Curator's and etcd's barriers do) or the session is lost. It
// answers the generation released: the id of the barrier's round that
// this arrival took part in, the same for every party released together.
// It is the waiter id of the arrival that opened the round, whether or
// not that party is still there when the round is released (one that was
// killed, or whose Wait was cancelled, leaves its id to the round); a
// waiter id is derived from the Raft log index of the entry that queued
// it (index<<20 | position in the entry), so generations are unique, the
// generations of one barrier strictly increase from round to round, are
// not consecutive, and are never 0. A set/remove barrier (parties 0) has
// no rounds: Wait answers an id of the Remove (or the setter's end) that
// let it through, the same for every Wait let through together, or 0
// when the barrier was not up.
//
// A release is not undone by the session's loss: when the session is
// lost while Wait waits (a process stopped past its lease, whose round
// was released meanwhile), Wait still reads the servers' answer to its
// own request, for an attempt timeout and the lease guard, and answers
// the generation when that says the round released it. When that answer
// cannot be had (the stream to the servers broke, and they answer
// nothing more for a session that ended), Wait answers ErrSessionLost
// saying the party may have been counted in a released round.
func (b *Barrier) Wait(ctx context.Context) (generation uint64, err error) {
	s := b.s
	if s == nil {
		return 0, s.lostErrFor(opName{"wait at barrier", b.name}) // a zero Barrier: ErrInvalid
	}
	participant, leave, err := s.arrive(b.name, b.participant)
	if err != nil {
		return 0, err
	}
	defer leave()
	gen, _, err := s.acquire(ctx, acquireSpec{op: "wait at barrier", kind: pb.Kind_KIND_BARRIER, name: b.name, waitMs: -1, outlivesSession: true,
		send: func(ctx context.Context, e *endpoint, id reqID, waitMs int64) (grant, error) {
			req := &pb.WaitBarrierRequest{Name: b.name, ClientId: id.ClientID(),
				RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id, WaitTimeoutMs: waitMs,
				Parties: b.parties, Participant: participant}
			r, err := exchange(ctx, s, e, &pb.StreamRequest{Request: &pb.StreamRequest_WaitBarrier{WaitBarrier: req}},
				(*pb.StreamResponse).GetWaitBarrier, func(ctx context.Context) (*connect.Response[pb.WaitBarrierResponse], error) {
					return e.barriers.Wait(ctx, connect.NewRequest(req))
				})
			if err != nil {
				return grant{}, err
			}
			return grant{token: r.Generation, outcome: r.Outcome, reason: r.Reason, waiterID: r.WaiterId}, nil
		}})
	return gen.token, err
}

// Set raises a set/remove barrier (one made with parties 0, as Curator's
// DistributedBarrier): every Wait on it blocks until Remove lowers it, or
// the session that set it ends, which lowers it too, so a barrier is never
// left up by a client that died. Setting it again on the same session does
// nothing. Set while another session has it up answers ErrLocked; on a
// Barrier made with parties > 0, ErrInvalid (without asking the servers);
// on a name that others wait at with parties, ErrPrecondition.
func (b *Barrier) Set(ctx context.Context) error {
	what := opName{"set barrier", b.name}
	if err := b.setRemove(what); err != nil {
		return err
	}
	s := b.s
	if lost := s.lostErrFor(what); lost != nil {
		return lost
	}
	var setByOther error
	err := s.send(ctx, what, func(ctx context.Context, e *endpoint, id reqID) error {
		req := &pb.SetBarrierRequest{Name: b.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low(), SessionId: s.id}
		_, err := e.barriers.Set(ctx, connect.NewRequest(req))
		if connect.CodeOf(err) == connect.CodeAborted {
			setByOther = err
		}
		return s.heardOfLoss(err)
	})
	if setByOther != nil && errors.Is(err, ErrNotHeld) {
		// The servers answer conflict when another session has it up:
		// for the caller that is the barrier held by someone else.
		return fmt.Errorf("%s: %w: %w", what, ErrLocked, setByOther)
	}
	return err
}

// setRemove refuses Set and Remove on a counting barrier.
func (b *Barrier) setRemove(what opName) error {
	if b.s == nil {
		return b.s.lostErrFor(what) // a zero Barrier: ErrInvalid
	}
	if b.parties != 0 {
		return fmt.Errorf("%s: %w: a barrier of %d parties is released by arrivals; Set and Remove are for one made with parties 0", what, ErrInvalid, b.parties)
	}
	return nil
}

// Remove lowers a set/remove barrier and releases everything waiting at
// it, whichever session set it. Removing one that is not up does nothing,
// as in Curator: the caller wanted it down, and it is.
func (b *Barrier) Remove(ctx context.Context) error {
	what := opName{"remove barrier", b.name}
	if err := b.setRemove(what); err != nil {
		return err
	}
	s := b.s
	return s.send(ctx, what, func(ctx context.Context, e *endpoint, id reqID) error {
		req := &pb.RemoveBarrierRequest{Name: b.name, ClientId: id.ClientID(),
			RequestSeq: id.seq, LowestPendingSeq: id.Low()}
		_, err := e.barriers.Remove(ctx, connect.NewRequest(req))
		return err
	})
}

const (
	// maxParticipantBytes is the servers' bound on a participant name
	// (their owner labels' bound, core's MaxOwnerBytes).
	maxParticipantBytes = 128
	// maxPrincipalMark is the most a secured cluster puts before it: the
	// longest principal (config.MaxPrincipalBytes, 64) and ':'.
	maxPrincipalMark = 65
)

// defaultParticipant is the n-th participant name of a session's Waits
// given none: "OWNER/ID", then "OWNER/ID/N". The owner is cut, at a
// character's end, to leave room for the rest and for what a secured
// cluster puts before it (PRINCIPAL:): an owner label near its own bound
// made a name the servers refused, so every such Wait failed.
func defaultParticipant(owner string, id uint64, n int) string {
	tail := fmt.Sprintf("/%d", id)
	if n > 1 {
		tail += fmt.Sprintf("/%d", n)
	}
	room := maxParticipantBytes - maxPrincipalMark - len(tail)
	for len(owner) > room {
		_, size := utf8.DecodeLastRuneInString(owner)
		owner = owner[:len(owner)-size]
	}
	return owner + tail
}

// arrival is a participant waiting at a barrier, on a session.
type arrival struct{ name, participant string }

// arrive notes that a participant of s waits at the barrier name, and
// answers its name and how to note that it left. Given none, it is the
// first of "OWNER/ID", "OWNER/ID/2", ... that does not wait there now (a
// Wait after a cancelled one takes the same name, as before: the servers
// may still have the cancelled arrival, and take the two for one). Given
// one that waits there now, it refuses: the servers would merge the two
// Waits into one arrival, and both would hang one party short.
func (s *Session) arrive(name, participant string) (string, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.arrivals == nil {
		s.arrivals = map[arrival]struct{}{}
	}
	key := arrival{name, participant}
	if participant == "" {
		key.participant = defaultParticipant(s.label, s.id, 1)
		for n := 2; ; n++ {
			if _, ok := s.arrivals[key]; !ok {
				break
			}
			key.participant = defaultParticipant(s.label, s.id, n)
		}
	} else if _, ok := s.arrivals[key]; ok {
		return "", nil, fmt.Errorf("wait at barrier %s: participant %s already waits there on this session: give each party its own name (WithParticipant)", quote.Bounded(name), quote.Bounded(participant))
	}
	s.arrivals[key] = struct{}{}
	return key.participant, func() {
		s.mu.Lock()
		delete(s.arrivals, key)
		s.mu.Unlock()
	}, nil
}
