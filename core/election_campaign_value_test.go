package core

import "testing"

// Rules 4: a campaign of a session that already leads, or waits for, the
// election sets its value, as etcd's Campaign proclaims a repeated
// campaign's value; under rules 3 it keeps the old one.

func TestCampaignAgainSetsValue(t *testing.T) {
	t.Run("a leader's campaign with another value proclaims it, answered with its leadership", func(t *testing.T) {
		h := newRules4(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cCampaign("e", a, "10.0.0.1:80", 0))
		w := h.queued(cCampaign("e", b, "b", WaitForever))
		out := h.run(cCampaign("e", a, "10.0.0.2:80", WaitForever))
		if r := out.Results[0]; r.Err != nil || r.Outcome != OutcomeGranted || r.Token != tok || r.Session != a {
			t.Fatalf("campaign again %+v", r)
		}
		vc := tblOne(t, out.Effects, EffectValueChanged)
		if vc.Object != KindElection || vc.Name != "e" || vc.Session != a || vc.Token != tok || string(vc.Value) != "10.0.0.2:80" || len(out.Effects) != 1 {
			t.Fatalf("effects, want one value_changed as Proclaim's:\n%s", tblEffects(out.Effects))
		}
		st := h.status(KindElection, "e")
		if len(st.Holders) != 1 || st.Holders[0].Token != tok || string(st.Holders[0].Value) != "10.0.0.2:80" {
			t.Fatalf("status %+v", st)
		}
		if got := h.waiting(KindElection, "e"); len(got) != 1 || got[0] != w {
			t.Fatalf("queue %v, want the other candidate's wait alone", got)
		}
		// It is the same change a Proclaim makes: a twin that proclaimed
		// instead ends in the same state.
		p := newRules4(t)
		pa, pb := p.session(60_000), p.session(60_000)
		ptok := p.granted(cCampaign("e", pa, "10.0.0.1:80", 0))
		p.queued(cCampaign("e", pb, "b", WaitForever))
		pout := p.run(cProclaim("e", pa, ptok, "10.0.0.2:80"))
		if tblEffects(pout.Effects) != tblEffects(out.Effects) || heardless(p.m) != heardless(h.m) {
			t.Fatalf("campaign again and proclaim differ:\n%s\nproclaim:\n%s", tblEffects(out.Effects), tblEffects(pout.Effects))
		}
	})
	t.Run("an equal value changes nothing and emits nothing", func(t *testing.T) {
		h := newRules4(t)
		a := h.session(60_000)
		tok := h.granted(cCampaign("e", a, "v", 0))
		twin := h.twin()
		out := h.run(cCampaign("e", a, "v", 0))
		tick := twin.run()
		if r := out.Results[0]; r.Outcome != OutcomeGranted || r.Token != tok {
			t.Fatalf("campaign again %+v", r)
		}
		if len(out.Effects) != 0 || heardless(h.m) != heardless(twin.m) || len(tick.Effects) != 0 {
			t.Fatalf("an equal value changed something:\n%s", tblEffects(out.Effects))
		}
	})
	t.Run("a waiting candidate's campaign with another value leads with it when granted", func(t *testing.T) {
		h := newRules4(t)
		a, b := h.session(60_000), h.session(60_000)
		ta := h.granted(cCampaign("e", a, "a", 0))
		w := h.queued(cCampaign("e", b, "b-old", WaitForever))
		out := h.run(cCampaign("e", b, "b-new", WaitForever))
		if r := out.Results[0]; r.Err != nil || r.Outcome != OutcomeQueued || r.Waiter != w {
			t.Fatalf("campaign again %+v", r)
		}
		if len(out.Effects) != 0 {
			t.Fatalf("a waiting candidate's new value was announced:\n%s", tblEffects(out.Effects))
		}
		if st := h.status(KindElection, "e"); string(st.Holders[0].Value) != "a" {
			t.Fatalf("the leader's value changed: %+v", st)
		}
		// Through a snapshot too: a member restored from one grants the new value.
		for _, m := range []*tblHarness{h, h.twin()} {
			out = m.run(cResign("e", a, ta))
			lc := tblOne(t, out.Effects, EffectLeaderChanged)
			if lc.Session != b || string(lc.Value) != "b-new" {
				t.Fatalf("leader_changed %+v, want session %d with b-new", lc, b)
			}
			if g := tblOne(t, out.Effects, EffectGranted); g.Waiter != w {
				t.Fatalf("granted %+v, want waiter %d", g, w)
			}
			if st := m.status(KindElection, "e"); string(st.Holders[0].Value) != "b-new" {
				t.Fatalf("status %+v", st)
			}
		}
	})
	t.Run("under rules 3 a campaign again keeps the old value", func(t *testing.T) {
		h := newTblHarness(t)
		if h.m.Rules() != rulesUnmarked {
			t.Fatalf("rules %d in force, want %d", h.m.Rules(), rulesUnmarked)
		}
		a, b := h.session(60_000), h.session(60_000)
		ta := h.granted(cCampaign("e", a, "a-old", 0))
		w := h.queued(cCampaign("e", b, "b-old", WaitForever))
		out := h.run(cCampaign("e", a, "a-new", 0), cCampaign("e", b, "b-new", WaitForever))
		if r := out.Results[0]; r.Outcome != OutcomeGranted || r.Token != ta {
			t.Fatalf("leader again %+v", r)
		}
		if r := out.Results[1]; r.Outcome != OutcomeQueued || r.Waiter != w {
			t.Fatalf("candidate again %+v", r)
		}
		if len(out.Effects) != 0 {
			t.Fatalf("effects under rules 3:\n%s", tblEffects(out.Effects))
		}
		if st := h.status(KindElection, "e"); string(st.Holders[0].Value) != "a-old" {
			t.Fatalf("status %+v", st)
		}
		lc := tblOne(t, h.run(cResign("e", a, ta)).Effects, EffectLeaderChanged)
		if string(lc.Value) != "b-old" {
			t.Fatalf("leader_changed %+v, want b-old", lc)
		}
	})
	t.Run("a leadership won under rules 3 takes a new value once a mark raised the rules", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tok := h.granted(cCampaign("e", a, "old", 0))
		h.run(Command{Op: OpLeaderChange, Rules: rulesCampaignValue})
		out := h.run(cCampaign("e", a, "new", 0))
		if r := out.Results[0]; r.Token != tok || r.Outcome != OutcomeGranted {
			t.Fatalf("campaign again %+v", r)
		}
		if vc := tblOne(t, out.Effects, EffectValueChanged); string(vc.Value) != "new" || vc.Token != tok {
			t.Fatalf("value_changed %+v", vc)
		}
	})
	t.Run("a retry is answered from the dedupe table; a new seq is a new request", func(t *testing.T) {
		h := newRules4(t)
		a := h.session(60_000)
		tok := h.granted(with(cCampaign("e", a, "v1", 0), "cl", 1))
		h.ok(with(cProclaim("e", a, tok, "v2"), "cl", 2))
		// A retry of the first campaign changes nothing: the value stays v2.
		out := h.run(with(cCampaign("e", a, "v1", 0), "cl", 1))
		if r := out.Results[0]; !r.Duplicate || r.Token != tok || r.Outcome != OutcomeGranted || len(out.Effects) != 0 {
			t.Fatalf("retry %+v\n%s", r, tblEffects(out.Effects))
		}
		if st := h.status(KindElection, "e"); string(st.Holders[0].Value) != "v2" {
			t.Fatalf("a retry set the value back: %+v", st)
		}
		// The same seq asking another value is not a retry: refused, changing nothing.
		h.fails(with(cCampaign("e", a, "v3", 0), "cl", 1), CodeFailedPrecondition, "already used for another request")
		// A new seq with a new value sets it, and its retry does not emit again.
		out = h.run(with(cCampaign("e", a, "v3", 0), "cl", 3))
		if vc := tblOne(t, out.Effects, EffectValueChanged); string(vc.Value) != "v3" || out.Results[0].Token != tok {
			t.Fatalf("new seq %+v\n%s", out.Results[0], tblEffects(out.Effects))
		}
		out = h.run(with(cCampaign("e", a, "v3", 0), "cl", 3))
		if r := out.Results[0]; !r.Duplicate || r.Token != tok || len(out.Effects) != 0 {
			t.Fatalf("retry of the new seq %+v\n%s", r, tblEffects(out.Effects))
		}
	})
}
