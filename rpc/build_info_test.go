package rpc_test

import (
	goruntime "runtime"
	"strconv"
	"testing"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
)

// TestBuildInfoNamesTheBuild: lockstep_build_info is 1, labelled with the
// version lockstep version prints, the Go version, the highest rules this
// build applies and the node id, so that a dashboard tells which build
// each member runs (a rolling upgrade's members left behind) and joins
// other series by node_id.
func TestBuildInfoNamesTheBuild(t *testing.T) {
	s := startServer(t)
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": rpc.Version(), "go_version": goruntime.Version(),
		"rules_version": strconv.Itoa(core.RulesVersion), "node_id": "node-1"}
	for _, mf := range mfs {
		if mf.GetName() != "lockstep_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("lockstep_build_info has %d series, want 1", len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("lockstep_build_info = %v, want 1", v)
		}
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			t.Errorf("lockstep_build_info's labels: %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("lockstep_build_info{%s=%q}, want %q", k, got[k], v)
			}
		}
		return
	}
	t.Fatal("lockstep_build_info is not registered")
}
