package config

import (
	"strconv"
	"strings"
)

// Settings are the consensus keys a member says to its peers (the Raft
// hello) and in its cluster status, so that a member running with other
// values than the others is seen: "election_timeout_ms=300,
// heartbeat_interval_ms=100, ...", in this order, keys without
// "consensus.".
//
// These keys should be the same on every member, but running them mixed
// is not unsafe, so a difference is warned of, never refused: Raft is safe
// under any timing (mixed election timeouts and heartbeats move
// leadership back and forth: a leader whose heartbeats are slower than a
// follower's election timeout loses it to that follower), each leader
// fires expiries at its own tick and each forwarder keeps its stamps
// within its own tick (the stamp_lag_ms its session answers advertise), a
// snapshot's schedule and the log kept behind it are each replica's own,
// and an entry of up to core's MaxCommandsPerEntry commands applies
// whatever max_batch packed it. A rolling change of any of them, one
// member at a time, runs mixed for a while. The keys that must agree are
// refused at the hello instead (consensus.shards, with the log's versions:
// runtime.Compatibility), and consensus.ride_along_ms is each leader's own.
func (c Consensus) Settings() string {
	var b strings.Builder
	for i, kv := range c.settings() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(kv.key + "=" + strconv.Itoa(kv.value))
	}
	return b.String()
}

type setting struct {
	key   string
	value int
}

func (c Consensus) settings() []setting {
	return []setting{
		{"election_timeout_ms", c.ElectionTimeoutMs},
		{"heartbeat_interval_ms", c.HeartbeatIntervalMs},
		{"tick_interval_ms", c.TickIntervalMs},
		{"snapshot_entries", c.SnapshotEntries},
		{"compaction_overhead", c.CompactionOverhead},
		{"max_batch", c.MaxBatch},
	}
}

// SettingDiff is one consensus key whose value differs between two
// members' Settings.
type SettingDiff struct {
	Key          string // the full key: "consensus.election_timeout_ms"
	Ours, Theirs string
}

// ParseSettings reads Settings' form: key → value, in order. Parts that
// are not key=value are left out (a later build may say more, in its own
// words).
func ParseSettings(s string) (keys []string, values map[string]string) {
	values = map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			continue
		}
		if _, seen := values[k]; !seen {
			keys = append(keys, k)
		}
		values[k] = v
	}
	return keys, values
}

// DiffSettings lists the keys both Settings give with other values, in
// ours' order. A key only one of them gives (a build of other keys) is no
// difference, and neither is an empty side (a build before Settings).
func DiffSettings(ours, theirs string) []SettingDiff {
	keys, o := ParseSettings(ours)
	_, t := ParseSettings(theirs)
	var out []SettingDiff
	for _, k := range keys {
		if v, ok := t[k]; ok && v != o[k] {
			out = append(out, SettingDiff{Key: "consensus." + k, Ours: o[k], Theirs: v})
		}
	}
	return out
}
