package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
)

// settingsWarning says which consensus keys the members that answered
// run with different values ("" when they agree): each member's status
// gives its own (config.Consensus.Settings), and members of other timing
// take each other's Raft traffic, so nothing else shows it. An operator's
// trial restarted one member with a 5 s election timeout and 1 s
// heartbeats beside 300/100: a leadership transfer to it was undone by a
// PreVote 0.3 s later, and cluster status said nothing. A member that
// gives none (a build before them) is left out.
func settingsWarning(views []client.MemberStatus) string {
	var keys []string
	byKey := map[string]map[string][]string{} // key → value → node ids
	seen := map[string]bool{}
	for _, v := range views {
		if v.Status == nil || v.Status.Consensus == "" || seen[v.Status.NodeId] {
			continue
		}
		seen[v.Status.NodeId] = true
		ks, values := config.ParseSettings(v.Status.Consensus)
		for _, k := range ks {
			if byKey[k] == nil {
				byKey[k] = map[string][]string{}
				keys = append(keys, k)
			}
			byKey[k][values[k]] = append(byKey[k][values[k]], v.Status.NodeId)
		}
	}
	var parts []string
	for _, k := range keys {
		if len(byKey[k]) < 2 {
			continue
		}
		var values []string
		for val, ids := range byKey[k] {
			slices.Sort(ids)
			values = append(values, fmt.Sprintf("%s on %s", val, strings.Join(ids, ", ")))
		}
		slices.Sort(values)
		parts = append(parts, fmt.Sprintf("consensus.%s is %s", k, strings.Join(values, ", ")))
	}
	if len(parts) == 0 {
		return ""
	}
	return "the members run with different consensus settings: " + strings.Join(parts, "; ") + "; they should be the " +
		"same on every member (all but ride_along_ms): while they differ, leadership may move back and forth (a leader whose " +
		"heartbeats are slower than another member's election timeout loses it to that member); expected during a rolling " +
		"change, one member at a time, else give every member the same values (docs/operations.md, Configuration)"
}
