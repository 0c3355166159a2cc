package core

import (
	"strings"
	"testing"
)

func TestSessionTable(t *testing.T) {
	t.Run("create returns an id from the log index and a deadline", func(t *testing.T) {
		h := newTblHarness(t)
		r := h.ok(Command{Op: OpSessionCreate, TTLMs: 5_000, Owner: "worker-1"})
		if r.Outcome != OutcomeDone || r.Session == 0 || r.Deadline != h.now()+5_000 {
			t.Fatalf("create: %+v", r)
		}
		if FencingToken(r.Session).LogIndex() != h.idx {
			t.Fatalf("session id %d does not derive from index %d", r.Session, h.idx)
		}
		info, err := h.m.SessionInfo(r.Session)
		if err != nil || info.TTLMs != 5_000 || info.Deadline != r.Deadline || info.CreatedAt != h.now() || info.Owner != "worker-1" {
			t.Fatalf("SessionInfo: %+v, %v", info, err)
		}
	})
	t.Run("two sessions in one entry get different ids", func(t *testing.T) {
		h := newTblHarness(t)
		out := h.run(cCreate(1_000), cCreate(1_000))
		if a, b := out.Results[0].Session, out.Results[1].Session; a == 0 || a >= b {
			t.Fatalf("ids %d, %d", a, b)
		}
	})
	t.Run("a session lives until its deadline and expires at it", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)
		if effs := h.advance(4_999); len(effs) != 0 || !h.live(s) {
			t.Fatalf("expired early:\n%s", tblEffects(effs))
		}
		effs := h.advance(1)
		if e := tblOne(t, effs, EffectSessionExpired); e.Session != s || e.Reason != ReasonSessionExpired {
			t.Fatalf("expiry effect %+v", e)
		}
		if h.live(s) {
			t.Fatal("session outlived its deadline")
		}
	})
	t.Run("TTLs are milliseconds: a 10 ms session", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(10)
		h.advance(9)
		if !h.live(s) {
			t.Fatal("expired before 10 ms")
		}
		h.advance(1)
		if h.live(s) {
			t.Fatal("alive after 10 ms")
		}
	})
	t.Run("keepalive extends the lease to now+ttl", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)
		for i := 0; i < 5; i++ { // 20 s of keepalives every 4 s
			h.advance(4_000)
			r := h.ok(cKeep(s))
			if r.Outcome != OutcomeDone || r.Session != s || r.Deadline != h.now()+5_000 {
				t.Fatalf("keepalive: %+v", r)
			}
		}
		h.advance(4_999)
		if !h.live(s) {
			t.Fatal("kept-alive session expired")
		}
		h.advance(1)
		if h.live(s) {
			t.Fatal("session outlived its last keepalive")
		}
	})
	t.Run("keepalive with a ttl changes the ttl, up or down", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)
		if r := h.ok(Command{Op: OpSessionKeepAlive, Session: s, TTLMs: 20_000}); r.Deadline != h.now()+20_000 {
			t.Fatalf("longer ttl: %+v", r)
		}
		h.advance(10_000)
		if r := h.ok(Command{Op: OpSessionKeepAlive, Session: s, TTLMs: 1_000}); r.Deadline != h.now()+1_000 {
			t.Fatalf("shorter ttl: %+v", r)
		}
		if info, _ := h.m.SessionInfo(s); info.TTLMs != 1_000 {
			t.Fatalf("ttl %d", info.TTLMs)
		}
		h.advance(1_000) // the deadline moved back: the earlier timer must not keep it alive
		if h.live(s) {
			t.Fatal("session outlived its shortened lease")
		}
	})
	t.Run("close releases holds, ends waits, resigns and leaves barriers", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(60_000), h.session(60_000)
		tokM := h.granted(cMutex("m", a, 0))
		h.granted(cCampaign("e", a, "a", 0))
		wb := h.queued(cMutex("m", b, WaitForever))
		h.granted(cMutex("n", b, 0))
		wa := h.queued(cMutex("n", a, 5_000))
		h.queued(cArrive("bar", a, 3, "", 5_000))
		out := h.run(cClose(a))
		if r := out.Results[0]; r.Err != nil || r.Outcome != OutcomeDone || r.Session != a {
			t.Fatalf("close: %+v", r)
		}
		want := []Effect{
			{Kind: EffectWaitEnded, Reason: ReasonSessionClosed, Object: KindMutex, Name: "n", Session: a, Waiter: wa},
			{Kind: EffectWaitEnded, Reason: ReasonSessionClosed, Object: KindBarrier, Name: "bar", Session: a},
			{Kind: EffectReleased, Reason: ReasonSessionClosed, Object: KindMutex, Name: "m", Session: a, Token: tokM},
			{Kind: EffectGranted, Object: KindMutex, Name: "m", Session: b, Waiter: wb},
			{Kind: EffectReleased, Reason: ReasonSessionClosed, Object: KindElection, Name: "e", Session: a},
			{Kind: EffectLeaderChanged, Object: KindElection, Name: "e"},
			{Kind: EffectSessionClosed, Reason: ReasonSessionClosed, Session: a},
		}
		got := out.Effects
		if len(got) != len(want) {
			t.Fatalf("effects:\n%s", tblEffects(got))
		}
		for i := range want { // ids the test does not know are copied over
			if want[i].Waiter == 0 {
				want[i].Waiter = got[i].Waiter
			}
			if want[i].Token == 0 {
				want[i].Token = got[i].Token
			}
		}
		if a, b := tblEffects(got), tblEffects(want); a != b {
			t.Fatalf("effects:\n%s\nwant:\n%s", a, b)
		}
		if h.live(a) || len(tblFind(got, EffectSessionExpired)) != 0 {
			t.Fatal("a closed session lives on or is reported expired")
		}
		if st := h.status(KindBarrier, "bar"); len(st.Waiters) != 0 {
			t.Fatalf("closed session still waits at the barrier: %+v", st)
		}
	})
	t.Run("expiry ends everything with reason session_expired", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(1_000), h.session(60_000)
		h.granted(cSem("s", a, 2, 2, 0))
		h.granted(cRW("rw", a, ModeRead, 0))
		w := h.queued(cSem("s", b, 2, 1, WaitForever))
		effs := h.advance(1_000)
		for _, e := range tblFind(effs, EffectReleased) {
			if e.Reason != ReasonSessionExpired || e.Session != a {
				t.Fatalf("release %+v", e)
			}
		}
		if n := len(tblFind(effs, EffectReleased)); n != 2 {
			t.Fatalf("%d releases:\n%s", n, tblEffects(effs))
		}
		if g := tblOne(t, effs, EffectGranted); g.Waiter != w || g.Session != b {
			t.Fatalf("grant %+v", g)
		}
		if last := effs[len(effs)-1]; last.Kind != EffectSessionExpired || last.Session != a {
			t.Fatalf("session_expired is not the last effect:\n%s", tblEffects(effs))
		}
	})
	t.Run("the TTL bounds themselves are accepted", func(t *testing.T) {
		h := newTblHarness(t)
		l := h.m.Limits()
		h.session(l.MinTTLMs)
		h.session(l.MaxTTLMs)
	})
	t.Run("leader change extends every live session to now+ttl", func(t *testing.T) {
		h := newTblHarness(t)
		a, b := h.session(5_000), h.session(60_000)
		h.advance(3_000)
		r := h.ok(cLeader())
		if r.Outcome != OutcomeDone {
			t.Fatalf("leader change: %+v", r)
		}
		if info, _ := h.m.SessionInfo(a); info.Deadline != h.now()+5_000 {
			t.Fatalf("a's deadline %d, want %d", info.Deadline, h.now()+5_000)
		}
		if info, _ := h.m.SessionInfo(b); info.Deadline != h.now()+60_000 {
			t.Fatalf("b's deadline %d, want %d", info.Deadline, h.now()+60_000)
		}
	})
	t.Run("a session that would have expired survives a failover gap", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(5_000)     // deadline 6000
		h.apply(tblStart + 2_000) // the old leader's last tick
		twin := h.twin()
		// The new leader's first entry, 4 s after the old leader's last
		// (the clock moves by its 2 s step).
		h.apply(tblStart+6_000, cLeader()) // now 5000: deadline 10000
		twin.apply(tblStart + 6_000)
		h.advance(4_000)
		twin.advance(4_000)
		if !h.live(s) {
			t.Fatal("a failover expired the session")
		}
		if twin.live(s) {
			t.Fatal("without the leader change the session should have expired: the test proves nothing")
		}
	})
	t.Run("a leader change whose own gap passes the deadline still saves the session", func(t *testing.T) {
		h := newTblHarness(t)
		s := h.session(1_000) // deadline 2000
		h.apply(tblStart + 500)
		// No entry for 1.5 s (an election), then the new leader's first
		// entry: the session could not be kept alive meanwhile, so the
		// failover must not expire it (docs/design.md, Time).
		out := h.apply(tblStart+2_000, cLeader())
		if !h.live(s) || len(tblFind(out.Effects, EffectSessionExpired)) != 0 {
			t.Fatalf("the leader-change entry expired a session that lived before the failover:\n%s", tblEffects(out.Effects))
		}
		if info, _ := h.m.SessionInfo(s); info.Deadline != h.now()+1_000 {
			t.Fatalf("deadline %d, want %d", info.Deadline, h.now()+1_000)
		}
	})
}

func TestSessionErrorsTable(t *testing.T) {
	tests := []struct {
		name   string
		tweak  func(*Limits)
		cmd    func(h *tblHarness) Command
		code   Code
		phrase string
	}{
		{"create without a ttl", nil, func(h *tblHarness) Command { return cCreate(0) },
			CodeInvalidArgument, "ttl_ms 0 is out of range: use 10..86400000"},
		{"create below the minimum ttl", nil, func(h *tblHarness) Command { return cCreate(9) },
			CodeInvalidArgument, "ttl_ms 9 is out of range"},
		{"create above the maximum ttl", nil, func(h *tblHarness) Command { return cCreate(24*3600*1000 + 1) },
			CodeInvalidArgument, "out of range"},
		{"create with a negative ttl", nil, func(h *tblHarness) Command { return cCreate(-1) },
			CodeInvalidArgument, "out of range"},
		{"create with a long owner", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, TTLMs: 1_000, Owner: strings.Repeat("o", 129)}
		}, CodeInvalidArgument, "owner is 129 bytes: at most 128"},
		{"create with an owner that is not UTF-8", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, TTLMs: 1_000, Owner: "\xff"}
		}, CodeInvalidArgument, "owner is not valid UTF-8"},
		{"create with a field it does not take", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionCreate, TTLMs: 1_000, Name: "x"}
		}, CodeInvalidArgument, "session_create does not take name: leave it empty"},
		{"create past the session limit", func(l *Limits) { l.MaxSessions = 2 }, func(h *tblHarness) Command {
			h.session(1_000)
			h.session(1_000)
			return cCreate(1_000)
		}, CodeResourceExhausted, "2 sessions are live, the limit: close unused sessions"},
		{"keepalive without a session", nil, func(h *tblHarness) Command { return cKeep(0) },
			CodeInvalidArgument, "session_keepalive needs session_id"},
		{"keepalive of a session that never was", nil, func(h *tblHarness) Command { return cKeep(12345) },
			CodeNotFound, "session 12345 does not exist (it expired, was closed, or never was): create a new session"},
		{"keepalive of an expired session", nil, func(h *tblHarness) Command {
			s := h.session(1_000)
			h.advance(1_000)
			return cKeep(s)
		}, CodeNotFound, "create a new session"},
		{"keepalive with a ttl out of range", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionKeepAlive, Session: h.session(1_000), TTLMs: 5}
		}, CodeInvalidArgument, "ttl_ms 5 is out of range"},
		{"close without a session", nil, func(h *tblHarness) Command { return cClose(0) },
			CodeInvalidArgument, "session_close needs session_id"},
		{"close of a closed session", nil, func(h *tblHarness) Command {
			s := h.session(1_000)
			h.ok(cClose(s))
			return cClose(s)
		}, CodeNotFound, "does not exist"},
		{"close with a ttl", nil, func(h *tblHarness) Command {
			return Command{Op: OpSessionClose, Session: h.session(1_000), TTLMs: 1_000}
		}, CodeInvalidArgument, "session_close does not take ttl_ms"},
		// A session whose lease an invalid leader change must not extend.
		{"leader change with a client id", nil, func(h *tblHarness) Command {
			h.session(1_000)
			h.advance(500)
			return with(cLeader(), "c", 1)
		}, CodeInvalidArgument, "leader_change is proposed by the replicas themselves, never with a client_id"},
		{"leader change with a field", nil, func(h *tblHarness) Command {
			h.session(1_000)
			h.advance(500)
			return Command{Op: OpLeaderChange, Session: 1}
		}, CodeInvalidArgument, "leader_change does not take session_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tweaks []func(*Limits)
			if tc.tweak != nil {
				tweaks = append(tweaks, tc.tweak)
			}
			h := newTblHarness(t, tweaks...)
			h.fails(tc.cmd(h), tc.code, tc.phrase)
		})
	}
}
