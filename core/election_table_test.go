package core

import (
	"strings"
	"testing"
)

func TestElectionTable(t *testing.T) {
	t.Run("the first candidate is elected at once, with its value", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		c := cCampaign("e", a, "addr-a", 0)
		c.Owner = "node-a"
		out := h.run(c)
		r := out.Results[0]
		if r.Outcome != OutcomeGranted || r.Token == 0 || r.Session != a {
			t.Fatalf("campaign %+v", r)
		}
		lc := tblOne(t, out.Effects, EffectLeaderChanged)
		if lc.Session != a || lc.Token != r.Token || string(lc.Value) != "addr-a" {
			t.Fatalf("leader_changed %+v", lc)
		}
		st := h.status(KindElection, "e")
		if len(st.Holders) != 1 || st.Holders[0].Owner != "node-a" || string(st.Holders[0].Value) != "addr-a" {
			t.Fatalf("status %+v", st)
		}
		if !h.fence(KindElection, "e", r.Token) {
			t.Fatal("the leader's token does not fence")
		}
	})
	t.Run("later candidates queue, or are refused when they will not wait", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		h.granted(cCampaign("e", a, "a", 0))
		if r := h.ok(cCampaign("e", b, "b", 0)); r.Outcome != OutcomeRefused {
			t.Fatalf("try campaign %+v", r)
		}
		wb := h.queued(cCampaign("e", b, "b", WaitForever))
		wc := h.queued(cCampaign("e", c, "c", 5_000))
		if got := h.waiting(KindElection, "e"); len(got) != 2 || got[0] != wb || got[1] != wc {
			t.Fatalf("queue %v", got)
		}
	})
	t.Run("campaigning again returns the leadership or the place in line", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tok := h.granted(cCampaign("e", a, "a", 0))
		w := h.queued(cCampaign("e", b, "b", WaitForever))
		if r := h.ok(cCampaign("e", a, "other", WaitForever)); r.Token != tok || r.Outcome != OutcomeGranted {
			t.Fatalf("leader again %+v", r)
		}
		if r := h.ok(cCampaign("e", b, "b", WaitForever)); r.Waiter != w || r.Outcome != OutcomeQueued {
			t.Fatalf("candidate again %+v", r)
		}
	})
	t.Run("proclaim changes the value without an election", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tok := h.granted(cCampaign("e", a, "v1", 0))
		out := h.run(cProclaim("e", a, tok, "v2"))
		if r := out.Results[0]; r.Outcome != OutcomeDone || r.Token != tok {
			t.Fatalf("proclaim %+v", r)
		}
		vc := tblOne(t, out.Effects, EffectValueChanged)
		if vc.Session != a || vc.Token != tok || string(vc.Value) != "v2" || len(tblFind(out.Effects, EffectLeaderChanged)) != 0 {
			t.Fatalf("effects:\n%s", tblEffects(out.Effects))
		}
		if st := h.status(KindElection, "e"); string(st.Holders[0].Value) != "v2" || st.Holders[0].Token != tok {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("resign hands over to the next candidate in order", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		ta := h.granted(cCampaign("e", a, "a", 0))
		wb := h.queued(cCampaign("e", b, "b", WaitForever))
		h.queued(cCampaign("e", c, "c", WaitForever))
		out := h.run(cResign("e", a, ta))
		if r := out.Results[0]; r.Outcome != OutcomeDone || r.Token != ta {
			t.Fatalf("resign %+v", r)
		}
		rel := tblOne(t, out.Effects, EffectReleased)
		g := tblOne(t, out.Effects, EffectGranted)
		lc := tblOne(t, out.Effects, EffectLeaderChanged)
		if rel.Token != ta || rel.Reason != ReasonReleased || g.Waiter != wb || lc.Session != b || lc.Token != g.Token ||
			string(lc.Value) != "b" || lc.Token <= ta {
			t.Fatalf("hand-over:\n%s", tblEffects(out.Effects))
		}
		if h.fence(KindElection, "e", ta) || !h.fence(KindElection, "e", lc.Token) {
			t.Fatal("fencing after the hand-over")
		}
	})
	t.Run("the last leader's resignation leaves no leader", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(60_000)
		tok := h.granted(cCampaign("e", a, "a", 0))
		out := h.run(cResign("e", a, tok))
		if lc := tblOne(t, out.Effects, EffectLeaderChanged); lc.Session != 0 || lc.Token != 0 {
			t.Fatalf("leader_changed %+v", lc)
		}
		if st := h.status(KindElection, "e"); len(st.Holders) != 0 || h.m.Counts().Objects != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("the leader's session expiry hands over", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		h.granted(cCampaign("e", a, "a", 0))
		h.queued(cCampaign("e", b, "b", WaitForever))
		effs := h.advance(1_000)
		if rel := tblOne(t, effs, EffectReleased); rel.Reason != ReasonSessionExpired || rel.Session != a {
			t.Fatalf("release %+v", rel)
		}
		if lc := tblOne(t, effs, EffectLeaderChanged); lc.Session != b {
			t.Fatalf("leader_changed %+v", lc)
		}
	})
	t.Run("a candidate whose session expires is told at once", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(1_000)
		h.granted(cCampaign("e", a, "a", 0))
		w := h.queued(cCampaign("e", b, "b", WaitForever))
		effs := h.advance(1_000)
		if e := tblOne(t, effs, EffectWaitEnded); e.Waiter != w || e.Reason != ReasonSessionExpired {
			t.Fatalf("wait ended %+v", e)
		}
		if len(tblFind(effs, EffectLeaderChanged)) != 0 {
			t.Fatal("the leader changed")
		}
	})
	t.Run("a campaign times out or is cancelled", func(t *testing.T) {
		h := newTblHarness(t)
		a, b, c := h.session(60_000), h.session(60_000), h.session(60_000)
		h.granted(cCampaign("e", a, "a", 0))
		h.queued(cCampaign("e", b, "b", 1_000))
		wc := h.queued(cCampaign("e", c, "c", WaitForever))
		if e := tblOne(t, h.advance(1_000), EffectWaitEnded); e.Session != b || e.Reason != ReasonTimeout {
			t.Fatalf("timeout %+v", e)
		}
		if e := tblOne(t, h.run(cCancel(c, wc)).Effects, EffectWaitEnded); e.Reason != ReasonCancelled {
			t.Fatalf("cancel %+v", e)
		}
		if st := h.status(KindElection, "e"); len(st.Waiters) != 0 {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("a leadership lasts while its session is kept alive", func(t *testing.T) {
		h := newTblHarness(t)
		a := h.session(5_000)
		tok := h.granted(cCampaign("e", a, "a", 0))
		for i := 0; i < 3; i++ {
			h.advance(4_000)
			h.ok(cKeep(a))
		}
		if !h.fence(KindElection, "e", tok) {
			t.Fatal("a kept-alive leader lost its leadership")
		}
	})
}

func TestElectionErrorsTable(t *testing.T) {
	type fix struct {
		leader, cand SessionID
		tok          FencingToken
	}
	tests := []struct {
		name   string
		cmd    func(f fix) Command
		code   Code
		phrase string
	}{
		{"campaign without a session", func(f fix) Command { return cCampaign("e", 0, "", 0) },
			CodeInvalidArgument, "campaign needs session_id"},
		{"campaign with an unknown session", func(f fix) Command { return cCampaign("e", 4, "", 0) },
			CodeNotFound, "session 4 does not exist"},
		{"campaign with a kind", func(f fix) Command { c := cCampaign("e", f.cand, "", 0); c.Kind = KindElection; return c },
			CodeInvalidArgument, "campaign does not take kind: leave it empty"},
		{"campaign with a large value", func(f fix) Command { return cCampaign("e", f.cand, strings.Repeat("v", 1025), 0) },
			CodeInvalidArgument, "value is 1025 bytes: at most 1024"},
		{"campaign with a long candidate name", func(f fix) Command {
			c := cCampaign("e", f.cand, "", 0)
			c.Owner = strings.Repeat("o", 129)
			return c
		}, CodeInvalidArgument, "owner is 129 bytes: at most 128"},
		{"campaign with a wait out of range", func(f fix) Command { return cCampaign("e", f.cand, "", 3600*1000+1) },
			CodeInvalidArgument, "wait_timeout_ms 3600001 is out of range"},
		{"proclaim without a token", func(f fix) Command { return cProclaim("e", f.leader, 0, "x") },
			CodeInvalidArgument, "proclaim needs fencing_token: give the leadership's token"},
		{"proclaim without a session", func(f fix) Command { return cProclaim("e", 0, f.tok, "x") },
			CodeInvalidArgument, "proclaim needs session_id: give the leader's session"},
		{"proclaim by a candidate with the leader's token", func(f fix) Command { return cProclaim("e", f.cand, f.tok, "x") },
			CodeConflict, "does not hold election \"e\": the grant ended or belongs to someone else"},
		{"proclaim on another election", func(f fix) Command { return cProclaim("other", f.leader, f.tok, "x") },
			CodeConflict, "election \"other\" is not held"},
		{"proclaim with a large value", func(f fix) Command { return cProclaim("e", f.leader, f.tok, strings.Repeat("v", 1025)) },
			CodeInvalidArgument, "value is 1025 bytes"},
		{"proclaim with a wait", func(f fix) Command { c := cProclaim("e", f.leader, f.tok, "x"); c.WaitMs = 1; return c },
			CodeInvalidArgument, "proclaim does not take wait_timeout_ms"},
		{"resign without a token", func(f fix) Command { return cResign("e", f.leader, 0) },
			CodeInvalidArgument, "resign needs fencing_token"},
		{"resign by a candidate", func(f fix) Command { return cResign("e", f.cand, f.tok) },
			CodeConflict, "does not hold election \"e\""},
		{"resign with a made-up token", func(f fix) Command { return cResign("e", f.leader, f.tok+7) },
			CodeConflict, "the grant ended or belongs to someone else"},
		{"resign with a value", func(f fix) Command { c := cResign("e", f.leader, f.tok); c.Value = []byte("v"); return c },
			CodeInvalidArgument, "resign does not take value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			f := fix{leader: h.session(60_000), cand: h.session(60_000)}
			f.tok = h.granted(cCampaign("e", f.leader, "v", 0))
			h.queued(cCampaign("e", f.cand, "w", WaitForever))
			h.fails(tc.cmd(f), tc.code, tc.phrase)
		})
	}

	// A stale token: the leadership it named has ended.
	h := newTblHarness(t)
	a := h.session(60_000)
	old := h.granted(cCampaign("e", a, "v", 0))
	h.ok(cResign("e", a, old))
	h.fails(cProclaim("e", a, old, "x"), CodeConflict, "election \"e\" is not held: token")
	h.fails(cResign("e", a, old), CodeConflict, "is stale (its grant ended)")
}
