package runtime

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
)

// TestSessionEndedOnExpiry: a session-end subscription registered in two
// shards' hubs ends when either shard applies the session's expiry or its
// close, once, with why, and not for another session's; a dropped one is
// forgotten.
func TestSessionEndedOnExpiry(t *testing.T) {
	gauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_watchers"})
	hubs := []*watchHub{newWatchHub(gauge, 0), newWatchHub(gauge, 1)}
	watch := func(id core.SessionID) (*sessionEnd, func()) {
		e := newSessionEnd()
		for _, h := range hubs {
			h.watchEnd(id, e)
		}
		return e, func() {
			for _, h := range hubs {
				h.unwatchEnd(id, e)
			}
		}
	}
	expired := func(id core.SessionID) []core.Effect {
		return []core.Effect{{Kind: core.EffectSessionExpired, Reason: core.ReasonSessionExpired, Session: id}}
	}
	a, stopA := watch(7)
	b, stopB := watch(8)
	hubs[1].publish(&core.Output{Index: 1, Effects: expired(8)})
	select {
	case <-a.ch:
		t.Fatal("session 7's subscription ended on session 8's expiry")
	default:
	}
	select {
	case why := <-b.ch:
		if why != core.ReasonSessionExpired {
			t.Fatalf("session 8's subscription ended for %v, want session_expired", why)
		}
	default:
		t.Fatal("session 8's subscription did not end on its expiry in shard 1")
	}
	stopB()                                                      // after the end: harmless
	hubs[0].publish(&core.Output{Index: 2, Effects: expired(8)}) // the other shard too: no second close
	hubs[0].publish(&core.Output{Index: 3, Effects: expired(7)})
	select {
	case <-a.ch:
	default:
		t.Fatal("session 7's subscription did not end on its expiry in shard 0")
	}
	if len(hubs[0].ends) != 0 || len(hubs[1].ends) != 1 {
		t.Fatalf("hubs keep %d and %d session-end lists, want 0 and 1 (session 7's, until dropped)", len(hubs[0].ends), len(hubs[1].ends))
	}
	stopA()
	if len(hubs[1].ends) != 0 {
		t.Fatalf("a dropped subscription is still kept: %v", hubs[1].ends)
	}
	// A close by any caller ends it too, and says so.
	c, stopC := watch(9)
	hubs[1].publish(&core.Output{Index: 4, Effects: []core.Effect{{Kind: core.EffectSessionClosed, Reason: core.ReasonSessionClosed, Session: 9}}})
	select {
	case why := <-c.ch:
		if why != core.ReasonSessionClosed {
			t.Fatalf("session 9's subscription ended for %v, want session_closed", why)
		}
	default:
		t.Fatal("session 9's subscription did not end on its close in shard 1")
	}
	stopC()
	if len(hubs[0].ends) != 0 || len(hubs[1].ends) != 0 {
		t.Fatalf("hubs keep %d and %d session-end lists after the close, want none", len(hubs[0].ends), len(hubs[1].ends))
	}
}
