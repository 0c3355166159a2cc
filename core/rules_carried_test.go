package core

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// The rules in force (rules.go): a fresh machine starts under
// rulesUnmarked, a snapshot carries them, one written before they were
// carried restores as rulesUnmarked, a mark of rules below any build's is
// refused and changes nothing, and a mark of rules newer than this build's
// stops the machine before it changes anything.

// snapshotWithoutRules writes m's snapshot as the build before rules were
// carried wrote it: version 4, without the rules in force (nor what
// version 6 added).
func snapshotWithoutRules(t *testing.T, m *Machine) []byte {
	t.Helper()
	if m.Rules() != rulesUnmarked {
		t.Fatalf("a build before rules were carried could not have written rules %d", m.Rules())
	}
	return m.appendSnapshotAs(nil, snapshotVersionRules-1)
}

func TestRulesStartUnmarkedAndTravelInSnapshots(t *testing.T) {
	h := newTblHarness(t)
	if h.m.Rules() != rulesUnmarked {
		t.Fatalf("a fresh machine is under rules %d, want %d: a log replayed from its start was written under them", h.m.Rules(), rulesUnmarked)
	}
	s := h.session(10_000)
	h.granted(cMutex("m", s, 0))

	// A snapshot of the build before, without the field, restores as
	// rulesUnmarked and otherwise as it was.
	old := snapshotWithoutRules(t, h.m)
	m, err := Restore(old)
	if err != nil {
		t.Fatalf("restoring a version %d snapshot: %v", snapshotVersionRules-1, err)
	}
	if m.Rules() != rulesUnmarked || !bytes.Equal(m.appendSnapshotAs(nil, snapshotVersionRules-1), old) {
		t.Fatalf("a version %d snapshot restored under rules %d, or not as the machine it was taken of", snapshotVersionRules-1, m.Rules())
	}

	// A snapshot under rules this build does not know is refused.
	b := h.m.Snapshot()
	e := encoder{b: []byte(snapshotMagic)}
	e.byte(SnapshotVersion)
	e.limits(&h.m.limits)
	e.uvarint(h.m.index)
	e.varint(int64(h.m.now))
	e.bool(h.m.started)
	at := len(e.b)
	for _, tc := range []struct {
		rules  uint64
		phrase string
	}{
		{RulesVersion + 1, "newer than this build's"},
		{rulesUnmarked - 1, "below"},
	} {
		bad := bytes.Clone(b)
		bad[at] = byte(tc.rules)
		if m, err := Restore(bad); m != nil || err == nil || !strings.Contains(err.Error(), tc.phrase) {
			t.Errorf("a snapshot under rules %d: %v, want a refusal saying %q", tc.rules, err, tc.phrase)
		}
	}
}

func TestMarkRulesBelowUnmarkedRefused(t *testing.T) {
	h := newTblHarness(t)
	s := h.session(1_000)
	for _, r := range []uint64{1, rulesUnmarked - 1} {
		// A mark no build ever wrote (a corrupt one) is refused: it
		// neither raises the rules nor takes its stamp whole. An hour
		// ahead, log time moves one capped step, and the session is not
		// extended.
		before := h.m.Rules()
		out := h.apply(h.now()+3_600_000, Command{Op: OpLeaderChange, Rules: r})
		tblWantErr(t, out.Results[0], CodeInvalidArgument, "marks carry rules")
		if h.m.Rules() != before {
			t.Fatalf("a refused mark of rules %d moved the rules in force to %d", r, h.m.Rules())
		}
		if h.live(s) {
			t.Fatalf("a refused mark of rules %d extended session %d", r, s)
		}
		s = h.session(1_000)
	}
	// A mark of the rules in force, or without rules, is a mark.
	for _, r := range []uint64{0, RulesVersion} {
		out := h.apply(h.now()+3_600_000, Command{Op: OpLeaderChange, Rules: r})
		if out.Results[0].Err != nil || !h.live(s) {
			t.Fatalf("a mark carrying rules %d: %+v, session live %v", r, out.Results[0], h.live(s))
		}
	}
}

// applyStops applies e and returns what Apply panicked with, nil if it
// returned.
func applyStops(m *Machine, e Entry) (stopped any) {
	defer func() { stopped = recover() }()
	m.Apply(e)
	return nil
}

// A log written by a build of newer rules, replayed by this build (a member
// downgraded and restarted from a snapshot older than the newer build's
// first mark, which this build restores): applied by this build's rules, the
// mark would be refused, the new leader's jump not taken whole and the
// sessions not extended, and every later entry would apply by rules this
// build knows, deciding another state than the members that wrote the log,
// silently. Apply stops at the mark instead, before it changes anything,
// saying which build can apply the log; wherever the mark stands in its
// entry, and whether or not this build would accept the rest of it.
func TestMarkOfNewerRulesStopsTheMachine(t *testing.T) {
	newer := uint64(RulesVersion + 1)
	for _, tc := range []struct {
		name string
		cmds []Command
	}{
		{"alone", []Command{{Op: OpLeaderChange, Rules: newer}}},
		{"after another command", []Command{{Op: OpSessionCreate, TTLMs: 30_000}, {Op: OpLeaderChange, Rules: newer}}},
		{"beside a mark of this build's rules", []Command{{Op: OpLeaderChange, Rules: RulesVersion}, {Op: OpLeaderChange, Rules: newer + 2}}},
		{"with a client_id this build refuses on a mark", []Command{{Op: OpLeaderChange, Rules: newer, ClientID: "c", Seq: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTblHarness(t)
			s := h.session(30_000)
			h.granted(cMutex("db/primary", s, 0))
			idx, now, hash, rules := h.m.Index(), h.m.Now(), h.m.Hash(), h.m.Rules()

			e := Entry{Index: idx + 1, Proposal: Proposal{Time: now + 3_600_000, Commands: tc.cmds}}
			stopped := applyStops(h.m, e)
			if stopped == nil {
				t.Fatalf("entry %d carries a mark of rules %d, newer than this build's %d, and applied: %+v",
					e.Index, newerRules(tc.cmds), RulesVersion, h.m.out.Results)
			}
			r := newerRules(tc.cmds)
			msg := fmt.Sprint(stopped)
			for _, want := range []string{
				fmt.Sprintf("entry %d carries a leader mark of rules %d", e.Index, r),
				fmt.Sprintf("newer than this build's rules %d", RulesVersion),
				fmt.Sprintf("run a build of rules %d or later", r),
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("the stop says %q; want it to say %q", msg, want)
				}
			}
			if h.m.Index() != idx || h.m.Now() != now || h.m.Hash() != hash || h.m.Rules() != rules {
				t.Fatalf("the stop left the machine changed: index %d -> %d, now %d -> %d, rules %d -> %d, hash changed %v",
					idx, h.m.Index(), now, h.m.Now(), rules, h.m.Rules(), h.m.Hash() != hash)
			}
			// Stopped, it stays stopped: the same entry, offered again (a
			// restart that replays the log), stops again.
			if applyStops(h.m, e) == nil {
				t.Fatal("the entry applied when offered again")
			}
		})
	}
}

func TestMarkRulesRoundTrip(t *testing.T) {
	p := Proposal{Time: 5, Commands: []Command{{Op: OpLeaderChange, Rules: RulesVersion}}}
	got, err := DecodeProposal(EncodeProposal(p))
	if err != nil || got.Commands[0].Rules != RulesVersion {
		t.Fatalf("a mark carrying rules %d decoded as %+v, %v", RulesVersion, got, err)
	}
	// An entry of the build before (no rules) decodes to the same bytes as
	// it did: old logs replay.
	old := EncodeProposal(Proposal{Time: 5, Commands: []Command{{Op: OpLeaderChange}}})
	if dec, err := DecodeProposal(old); err != nil || dec.Commands[0].Rules != 0 || !bytes.Equal(EncodeProposal(dec), old) {
		t.Fatalf("a mark without rules: %+v, %v", dec, err)
	}
}
