package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestSettingsNameEveryConsensusKeyButTheRefusedAndTheOwn: a member's
// Settings (what its Raft hello and cluster status say, so that a member
// of other timing is warned of) give every consensus key but shards
// (refused at the hello), ride_along_ms (each leader's own) and algorithm
// (only raft): a key added later must be put in one of the two.
func TestSettingsNameEveryConsensusKeyButTheRefusedAndTheOwn(t *testing.T) {
	c := Defaults().Consensus
	keys, values := ParseSettings(c.Settings())
	said := map[string]bool{}
	for _, k := range keys {
		said[k] = true
	}
	typ := reflect.TypeOf(c)
	for i := range typ.NumField() {
		key, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		switch key {
		case "shards", "ride_along_ms", "algorithm":
			if said[key] {
				t.Errorf("consensus.%s is in the settings warned of: %s", key, c.Settings())
			}
		default:
			if !said[key] {
				t.Errorf("consensus.%s is not in the settings (%s): a member running another value is not warned of", key, c.Settings())
			}
		}
	}
	if values["election_timeout_ms"] != "300" || values["max_batch"] != "256" {
		t.Errorf("the defaults' settings: %s", c.Settings())
	}
}

// TestDiffSettings: the keys both sides give with other values, in ours'
// order; a side without settings (a build before them) or without a key
// (a build of other keys) differs in nothing.
func TestDiffSettings(t *testing.T) {
	ours := Defaults().Consensus
	theirs := ours
	theirs.ElectionTimeoutMs, theirs.HeartbeatIntervalMs, theirs.MaxBatch, theirs.RideAlongMs = 5000, 1000, 4, 0
	got := DiffSettings(ours.Settings(), theirs.Settings())
	want := []SettingDiff{{"consensus.election_timeout_ms", "300", "5000"}, {"consensus.heartbeat_interval_ms", "100", "1000"},
		{"consensus.max_batch", "256", "4"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DiffSettings = %v, want %v", got, want)
	}
	for _, other := range []string{"", "election_timeout_ms=300", "later_key=7, election_timeout_ms=300"} {
		if d := DiffSettings(ours.Settings(), other); d != nil {
			t.Errorf("DiffSettings(ours, %q) = %v, want none", other, d)
		}
	}
	if d := DiffSettings(ours.Settings(), ours.Settings()); d != nil {
		t.Errorf("the same settings differ: %v", d)
	}
}
