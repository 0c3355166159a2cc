package client

import (
	"fmt"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The servers push on a session's stream (its own, or the Client's shared
// one) the end of each of its grants that ends while the session lives:
// a release by another caller that named the grant's token (a REST release
// by owner label, say), a max hold passing, and the session's own
// releases too (docs/api.md, grant_ended). A grant a value holds is then
// ended here as a confirmed release ends it: Token answers 0, Lost
// closes, the session's gate of the name is let go, and LostErr says why
// (unless it was the value's own release). Without the push, a value
// learnt that another caller had released its grant only when its own
// release was refused as stale, and went on working under a token others
// were granted past meanwhile.
//
// The push and the answer to the value's own release race on the stream:
// whichever comes second finds the token dropped already and does
// nothing (hold.forget). The push can also come before the answer of the
// acquire that made the grant (a release naming a token the moment it is
// granted): the session keeps the last pushed ends no value held, and the
// acquire, answered such a grant, fails with why (hold.set). The push is
// a best effort (a stream that falls behind misses some; a unary client
// gets none): a value that misses it is where it was before, its release
// answering ErrNotHeld.

// grantKey names one grant of a session.
type grantKey struct {
	kind  pb.Kind
	name  string
	token uint64
}

// pushedEnd is a grant's end the servers pushed: why, as an error, and
// whether by a release (which may be the value's own).
type pushedEnd struct {
	err      error
	released bool
}

// maxEarlyEnds bounds the pushed ends a session keeps of grants no value
// holds: ends of grants its values released (their answer came first), of
// acquires withdrawn, and of grants whose answer has not come yet, which
// are the only ones that matter, and come within a round trip.
const maxEarlyEnds = 64

// holding lists h as holding its grant token, for the push of its end,
// unless that push came already: then it answers it (and lists nothing).
func (s *Session) holding(h *hold, token uint64) *pushedEnd {
	k := grantKey{h.kind, h.name, token}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.early[k]; e != nil {
		delete(s.early, k)
		return e
	}
	if s.holds == nil {
		s.holds = map[grantKey]*hold{}
	}
	s.holds[k] = h
	return nil
}

// unlistHolding forgets that h holds token (released, or ended).
func (s *Session) unlistHolding(h *hold, token uint64) {
	k := grantKey{h.kind, h.name, token}
	s.mu.Lock()
	if s.holds[k] == h {
		delete(s.holds, k)
	}
	s.mu.Unlock()
}

// grantEnded acts on the servers' push of the end of one of s's grants,
// received from url.
func (s *Session) grantEnded(g *pb.StreamGrantEnded, url string) {
	if g.GetSessionId() != s.id || g.GetFencingToken() == 0 {
		return
	}
	k := grantKey{g.GetKind(), g.GetName(), g.GetFencingToken()}
	e := &pushedEnd{err: pushedEndErr(g, url), released: g.GetReason() == pb.Reason_REASON_RELEASED}
	s.mu.Lock()
	h := s.holds[k]
	if h == nil {
		if _, ok := s.early[k]; !ok {
			if s.early == nil {
				s.early = map[grantKey]*pushedEnd{}
			}
			if len(s.earlyOrder) >= maxEarlyEnds {
				delete(s.early, s.earlyOrder[0])
				s.earlyOrder = s.earlyOrder[1:]
			}
			s.early[k] = e
			s.earlyOrder = append(s.earlyOrder, k)
		}
		s.mu.Unlock()
		return
	}
	delete(s.holds, k)
	s.mu.Unlock()
	h.endedOnServers(k.token, e)
}

// pushedEndErr says why the servers ended the grant g names.
func pushedEndErr(g *pb.StreamGrantEnded, url string) error {
	what := opName{string(kindOf(g.GetKind())), g.GetName()}
	if g.GetReason() == pb.Reason_REASON_RELEASED {
		return fmt.Errorf("%s: %w: the grant (token %d) was released by another caller that named its token, while session %d lives on (pushed by %s)",
			what, releasedByAnother{}, g.GetFencingToken(), g.GetSessionId(), url)
	}
	how := "its max hold passed"
	if g.GetReason() != pb.Reason_REASON_MAX_HOLD {
		how = "ended on the servers (" + g.GetReason().String() + ")"
	}
	return fmt.Errorf("%s: %w: the grant (token %d) %s, while session %d lives on (pushed by %s)",
		what, ErrNotHeld, g.GetFencingToken(), how, g.GetSessionId(), url)
}

// releasedByAnother is ErrNotHeld that is ErrReleasedByAnother too.
type releasedByAnother struct{}

func (releasedByAnother) Error() string { return ErrNotHeld.Error() }
func (releasedByAnother) Is(target error) bool {
	return target == ErrNotHeld || target == ErrReleasedByAnother
}

// endedOnServers ends h's grant token as a confirmed release does, the
// servers having said it ended: unless it was h's own release (sent, its
// answer not yet come, or lost), LostErr says why from then on.
func (h *hold) endedOnServers(token uint64, e *pushedEnd) {
	h.mu.Lock()
	if h.token != token {
		h.mu.Unlock()
		return // released meanwhile (its answer came first), or another grant now
	}
	if !e.released || h.releasing != token {
		h.endErr = e.err
	}
	h.mu.Unlock()
	h.forget(token)
	h.s.settleRelease(h, token)
}

// lostErr says why lost closed for the grant of the last successful
// acquire: nil while it is held, after this value's own release of it,
// and when nothing was acquired; the session's Err once the session is
// lost, closed or orphaned, a release after that too (goneWithSession);
// an error wrapping ErrNotHeld when the servers ended the
// grant while the session lived (another caller's release naming its
// token, its max hold), or when its max hold passed as this client counts
// it.
func (h *hold) lostErr() error {
	if h.s == nil {
		return nil
	}
	h.mu.Lock()
	token, endErr, bounded := h.token, h.endErr, h.boundedLocked()
	h.mu.Unlock()
	switch {
	case endErr != nil && token == 0:
		return endErr
	case token == 0:
		return nil
	}
	if err := h.s.Err(); err != nil {
		return err
	}
	if bounded && h.current() == 0 {
		return fmt.Errorf("%s: %w: the grant (token %d) outlived its max hold", opName{string(kindOf(h.kind)), h.name}, ErrNotHeld, token)
	}
	return nil
}
