package core

import (
	"bytes"
	"strings"
	"testing"
)

// The rules in force (rules.go): a fresh machine starts under
// rulesUnmarked, a snapshot carries them, one written before they were
// carried restores as rulesUnmarked, and a mark of rules this build does
// not know is refused and changes nothing.

// snapshotWithoutRules rewrites a snapshot of version snapshotVersionRules
// as the build before wrote it: version 4, without the rules in force.
func snapshotWithoutRules(t *testing.T, m *Machine) []byte {
	t.Helper()
	b := m.Snapshot()
	if m.Rules() != rulesUnmarked {
		t.Fatalf("a build before rules were carried could not have written rules %d", m.Rules())
	}
	e := encoder{b: []byte(snapshotMagic)}
	e.byte(SnapshotVersion)
	e.limits(&m.limits)
	e.uvarint(m.index)
	e.varint(int64(m.now))
	e.bool(m.started)
	head := len(e.b)
	e.uvarint(m.rules)
	if !bytes.Equal(b[:len(e.b)], e.b) {
		t.Fatal("the snapshot does not start as snapshotWithoutRules expects")
	}
	old := append(bytes.Clone(b[:head]), b[len(e.b):]...)
	old[len(snapshotMagic)] = snapshotVersionRules - 1
	return old
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
	if m.Rules() != rulesUnmarked || !bytes.Equal(m.Snapshot(), h.m.Snapshot()) {
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

func TestMarkRulesRefusedWhenUnknown(t *testing.T) {
	h := newTblHarness(t)
	s := h.session(1_000)
	for _, tc := range []struct {
		rules  uint64
		code   Code
		phrase string
	}{
		{RulesVersion + 1, CodeFailedPrecondition, "newer than this build's"},
		{1, CodeInvalidArgument, "marks carry rules"},
	} {
		// Refused, the mark neither raises the rules nor takes its stamp
		// whole: an hour ahead, log time moves one capped step, and the
		// session is not extended.
		before := h.m.Rules()
		out := h.apply(h.now()+3_600_000, Command{Op: OpLeaderChange, Rules: tc.rules})
		tblWantErr(t, out.Results[0], tc.code, tc.phrase)
		if h.m.Rules() != before {
			t.Fatalf("a refused mark of rules %d moved the rules in force to %d", tc.rules, h.m.Rules())
		}
		if h.live(s) {
			t.Fatalf("a refused mark of rules %d extended session %d", tc.rules, s)
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
