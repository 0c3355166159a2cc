package rpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestStreamsOfAMemberThatCannotServeEnd: an Observe and a Watch on a
// member that cannot serve (cut off from the majority: no leader known)
// end with unavailable once it has not served for a few seconds, so that
// their clients open them on another member; a blip shorter than that (an
// election) ends nothing. They stayed open before: an observation showed
// a leader the majority had replaced, and a watch kept repeating where it
// stood, which the Go client takes for a quiet cluster.
func TestStreamsOfAMemberThatCannotServeEnd(t *testing.T) {
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setHealth := func(err error) {
		s.b.mu.Lock()
		s.b.unhealthy = err
		s.b.mu.Unlock()
	}
	elections := lockstepv1connect.NewElectionServiceClient(h2c(), s.url)
	obs, err := elections.Observe(ctx, connect.NewRequest(&pb.ObserveRequest{Name: "cut/el"}))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	watches := lockstepv1connect.NewWatchServiceClient(h2c(), s.url)
	w, err := watches.Watch(ctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "cut/"}}))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if !obs.Receive() || !w.Receive() {
		t.Fatalf("the streams' first messages: %v, %v", obs.Err(), w.Err())
	}
	// A blip: unhealthy for less than the grace.
	setHealth(errNoQuorum)
	time.Sleep(1500 * time.Millisecond)
	setHealth(nil)
	time.Sleep(1500 * time.Millisecond)
	// Still open: a campaign reaches the observation.
	sessions := lockstepv1connect.NewSessionServiceClient(h2c(), s.url)
	cr, err := sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 30}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := elections.Campaign(ctx, connect.NewRequest(&pb.CampaignRequest{Name: "cut/el", SessionId: cr.Msg.SessionId})); err != nil {
		t.Fatal(err)
	}
	if !obs.Receive() || !obs.Msg().HasLeader {
		t.Fatalf("after a blip, the observation: %v %v, want the new leader", obs.Msg(), obs.Err())
	}
	// For good: both end, saying why.
	setHealth(errNoQuorum)
	for what, end := range map[string]func() error{
		"observe": func() error {
			for obs.Receive() {
			}
			return obs.Err()
		},
		"watch": func() error {
			for w.Receive() {
			}
			return w.Err()
		},
	} {
		err := end()
		if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "not been able to serve") {
			t.Errorf("the %s of a member that cannot serve ended with %v, want unavailable saying it cannot serve", what, err)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the %s did not end", what)
		}
	}
}
