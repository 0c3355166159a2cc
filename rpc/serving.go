package rpc

import (
	"fmt"
	"time"

	"connectrpc.com/connect"
)

// servingGrace is how long a member that cannot serve (Backend.Health: no
// leader known for a shard, refused by its peers, its data directory
// failing) keeps a Watch or Observe stream open before it ends it with
// unavailable, so that the client opens it again on another member, as
// etcd ends the watches of a member that lost its leader
// (WithRequireLeader). A member cut off from the majority applies nothing:
// its observations stayed open and silent, and its watches kept repeating
// where they stood, which the Go client takes for a quiet cluster, while
// the other members elected new leaders and granted locks. A failover is
// over well within it (under 1 s here), so an election does not end them.
const servingGrace = 3 * time.Second

// serving follows, for one stream, since when its member cannot serve.
type serving struct {
	health func() error
	since  time.Time // zero while the member serves
}

// check answers the error to end the stream with once its member has not
// been able to serve for servingGrace; nil until then.
func (s *serving) check(now time.Time) error {
	err := s.health()
	switch {
	case err == nil:
		s.since = time.Time{}
		return nil
	case s.since.IsZero():
		s.since = now
		return nil
	case now.Sub(s.since) < servingGrace:
		return nil
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("this member has not been able to serve for %v (%v), so what it streams "+
		"may be behind the cluster: %w", now.Sub(s.since).Round(time.Second), err, errStreamEnded))
}
