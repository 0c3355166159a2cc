package runtime

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
)

// TestGrantsEndedInEveryShard: a grant-end subscription registered in two
// shards' hubs gets the end of its session's grant in either shard, with
// the shard, the entry and why, and nothing for another session's grant
// or for the grants its session's own end releases (the session's end
// says that); a full subscription drops what does not fit without
// waiting, and counts it; a dropped subscription is forgotten.
func TestGrantsEndedInEveryShard(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_watchers"})
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_dropped"})
	hubs := []*watchHub{newWatchHub(gauge, 0), newWatchHub(gauge, 1)}
	for _, h := range hubs {
		h.dropped = dropped
	}
	e := &grantEnds{ch: make(chan GrantEnd, grantEndBuffer)}
	for _, h := range hubs {
		h.watchGrants(7, e)
	}
	released := func(s core.SessionID, tok core.FencingToken, why core.Reason) core.Effect {
		return core.Effect{Kind: core.EffectReleased, Reason: why, Object: core.KindMutex, Name: "jobs/rel", Session: s, Token: tok}
	}
	hubs[1].publish(&core.Output{Index: 3, Effects: []core.Effect{released(8, 30, core.ReasonReleased), released(7, 31, core.ReasonReleased)}})
	hubs[0].publish(&core.Output{Index: 5, Effects: []core.Effect{released(7, 50, core.ReasonMaxHold)}})
	want := []GrantEnd{
		{Shard: 1, Index: 3, Kind: core.KindMutex, Name: "jobs/rel", Session: 7, Token: 31, Reason: core.ReasonReleased},
		{Shard: 0, Index: 5, Kind: core.KindMutex, Name: "jobs/rel", Session: 7, Token: 50, Reason: core.ReasonMaxHold},
	}
	for _, w := range want {
		select {
		case g := <-e.ch:
			if g != w {
				t.Fatalf("got %+v, want %+v", g, w)
			}
		default:
			t.Fatalf("no end delivered, want %+v", w)
		}
	}
	// The session's own end: its grants end with it, which is not a push
	// of its own.
	hubs[0].publish(&core.Output{Index: 6, Effects: []core.Effect{released(7, 60, core.ReasonSessionClosed), released(7, 61, core.ReasonSessionExpired)}})
	select {
	case g := <-e.ch:
		t.Fatalf("an end with the session's own end delivered: %+v", g)
	default:
	}
	// Full: the hub does not wait, and counts what it dropped.
	var many []core.Effect
	for i := range grantEndBuffer + 3 {
		many = append(many, released(7, core.FencingToken(100+i), core.ReasonReleased))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		hubs[1].publish(&core.Output{Index: 7, Effects: many})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish waited for a full grant-end subscription")
	}
	if n := len(e.ch); n != grantEndBuffer {
		t.Fatalf("%d ends buffered, want the bound %d", n, grantEndBuffer)
	}
	if n := testCounterValue(t, dropped); n != 3 {
		t.Fatalf("%v ends counted dropped, want 3", n)
	}
	for _, h := range hubs {
		h.unwatchGrants(7, e)
		if len(h.grants) != 0 {
			t.Fatalf("shard %d keeps a dropped subscription: %v", h.shard, h.grants)
		}
	}
}

func testCounterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	return counter(t, reg, "test_dropped")
}

// TestGrantsEndedOnANode: on a node of two shards, a subscription to a
// session's grant ends sees the grant in each shard end by another
// caller's release naming its token (no session given, as a release by
// owner label over REST is), and by its max hold, while the session lives
// on; the session's expiry afterwards is SessionEnded's, not a grant end.
func TestGrantsEndedOnANode(t *testing.T) {
	const shards = 2
	c := newTestCluster(t, clusterOpts{size: 1, shards: shards})
	n := c.nodes[0]
	names := namesPerShard(t, "ge-", shards)
	s := session(t, n, 30*time.Second)
	grants, stop := n.GrantsEnded(s)
	defer stop()
	ended, stopEnded := n.SessionEnded(s)
	defer stopEnded()

	next := func(what string) GrantEnd {
		t.Helper()
		select {
		case g := <-grants:
			return g
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no grant end within 10 s", what)
			return GrantEnd{}
		}
	}
	for i, name := range names {
		tok := do(t, n, mutex(name, s, 0)).Token
		// Another caller: the token and the name, no session.
		do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: name, Token: tok})
		g := next("a release by another caller")
		if g.Shard != uint64(i) || g.Kind != core.KindMutex || g.Name != name || g.Session != s || g.Token != tok || g.Reason != core.ReasonReleased {
			t.Fatalf("shard %d: got %+v, want the release of %s token %d", i, g, name, tok)
		}
	}
	for i, name := range names {
		cmd := mutex(name, s, 0)
		cmd.MaxHoldMs = 300
		tok := do(t, n, cmd).Token
		g := next("a max hold")
		if g.Shard != uint64(i) || g.Name != name || g.Token != tok || g.Reason != core.ReasonMaxHold {
			t.Fatalf("shard %d: got %+v, want the max hold of %s token %d", i, g, name, tok)
		}
	}
	select {
	case why := <-ended:
		t.Fatalf("the session ended (%v) while its grants ended", why)
	default:
	}
	// Its own release, too: the push does not tell callers apart.
	tok := do(t, n, mutex(names[0], s, 0)).Token
	do(t, n, core.Command{Op: core.OpRelease, Kind: core.KindMutex, Name: names[0], Session: s, Token: tok})
	if g := next("its own release"); g.Token != tok || g.Reason != core.ReasonReleased {
		t.Fatalf("got %+v, want its own release of token %d", g, tok)
	}
	// Held when the session closes: the session's end, no grant end.
	do(t, n, mutex(names[1], s, 0))
	do(t, n, core.Command{Op: core.OpSessionClose, Session: s})
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the session's close was not seen")
	}
	select {
	case g := <-grants:
		t.Fatalf("a grant released by the session's close came as a grant end: %+v", g)
	case <-time.After(200 * time.Millisecond):
	}
}
