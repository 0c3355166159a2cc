package client

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

func pushed(session, token uint64, name string, why pb.Reason) *pb.StreamGrantEnded {
	return &pb.StreamGrantEnded{SessionId: session, FencingToken: token, Kind: pb.Kind_KIND_MUTEX, Name: name, Reason: why}
}

// The push of a grant's end may come before the answer of the acquire
// that made it (another caller released the token at once): the acquire
// then fails with why, and nothing stays held. A push for a token the
// value does not hold (an earlier grant, another session's, another
// name's) changes nothing; one for its grant ends it; the pushes kept for
// grants not yet answered are bounded.
func TestPushedEndBeforeTheGrantsAnswer(t *testing.T) {
	s := &Session{id: 9}
	h := &hold{s: s, kind: pb.Kind_KIND_MUTEX, name: "x"}
	s.grantEnded(pushed(9, 5, "x", pb.Reason_REASON_RELEASED), "test")
	err := h.set(grant{token: 5}, nil, time.Now())
	if !errors.Is(err, ErrReleasedByAnother) || !errors.Is(err, ErrNotHeld) {
		t.Fatalf("an acquire answered a grant already released by another: %v, want ErrReleasedByAnother", err)
	}
	if h.token != 0 || len(s.holds) != 0 || len(s.early) != 0 {
		t.Fatalf("after it: token %d, %d listed, %d kept; want none", h.token, len(s.holds), len(s.early))
	}
	if h.lostErr() != err {
		t.Fatalf("LostErr %v, want %v", h.lostErr(), err)
	}

	if err := h.set(grant{token: 7}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if h.lostErr() != nil {
		t.Fatalf("LostErr %v of a new grant", h.lostErr())
	}
	s.grantEnded(pushed(9, 5, "x", pb.Reason_REASON_RELEASED), "test") // the earlier grant's
	s.grantEnded(pushed(8, 7, "x", pb.Reason_REASON_RELEASED), "test") // another session's
	s.grantEnded(pushed(9, 7, "y", pb.Reason_REASON_RELEASED), "test") // another name's
	if h.token != 7 {
		t.Fatalf("token %d after pushes for other grants, want 7", h.token)
	}
	s.grantEnded(pushed(9, 7, "x", pb.Reason_REASON_MAX_HOLD), "test")
	if h.token != 0 || !errors.Is(h.lostErr(), ErrNotHeld) || errors.Is(h.lostErr(), ErrReleasedByAnother) {
		t.Fatalf("after its max hold was pushed: token %d, LostErr %v", h.token, h.lostErr())
	}
	for tok := uint64(100); tok < 100+2*maxEarlyEnds; tok++ {
		s.grantEnded(pushed(9, tok, "x", pb.Reason_REASON_RELEASED), "test")
	}
	if len(s.early) != maxEarlyEnds || len(s.earlyOrder) != maxEarlyEnds {
		t.Fatalf("%d pushed ends kept (%d in order), want the bound %d", len(s.early), len(s.earlyOrder), maxEarlyEnds)
	}
}

// A session the servers answer does not exist is, for a client that
// presents credentials, possibly another principal's (a certificate
// renewed with another common name): the loss says so, for that client
// only. A user trial read "expired or was closed" of a session that lived
// on under the old principal.
func TestGoneErrNamesAnotherPrincipalUnderCredentials(t *testing.T) {
	notFound := connect.NewError(connect.CodeNotFound, errors.New("session 7 does not exist"))
	for _, c := range []struct {
		what  string
		opts  options
		names bool
	}{
		{"no credentials", options{}, false},
		{"an API key", options{apiKey: "k"}, true},
		{"a client certificate", options{tls: &tls.Config{Certificates: []tls.Certificate{{}}}}, true},
	} {
		s := &Session{id: 7, c: &Client{opts: c.opts}}
		err := s.goneErr(notFound)
		if !errors.Is(err, ErrSessionLost) || strings.Contains(err.Error(), "another principal") != c.names {
			t.Errorf("%s: %v; want ErrSessionLost, naming another principal: %v", c.what, err, c.names)
		}
	}
}
