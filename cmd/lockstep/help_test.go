package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestHelpGivesEachCommandsOwnHelp: `lockstep help COMMAND [SUB...]` is
// `lockstep COMMAND [SUB...] -h` for every command that has help, the
// server's, backup's and security's as well as the client commands; a
// name that is no command is a usage error. (help snapshot and help certs
// printed the overview: help knew only the client commands.)
func TestHelpGivesEachCommandsOwnHelp(t *testing.T) {
	var overview bytes.Buffer
	usage(&overview)
	cases := [][]string{{"serve"}, {"certs"}, {"keys"}, {"snapshot"}, {"snapshot", "save"}, {"snapshot", "restore"}, {"version"},
		{"cluster", "status"}}
	for name := range clientCommands {
		cases = append(cases, []string{name})
	}
	for _, c := range cases {
		var hOut, hErr, out, errb bytes.Buffer
		hCode := run(append([]string{"help"}, c...), &hOut, &hErr)
		code := run(append(slices.Clone(c), "-h"), &out, &errb)
		what := strings.Join(c, " ")
		if hCode != code || hOut.String() != out.String() || hErr.String() != errb.String() {
			t.Errorf("help %s: exit %d, %d bytes out, %d bytes err; %s -h: exit %d, %d bytes out, %d bytes err\n%s",
				what, hCode, hOut.Len(), hErr.Len(), what, code, out.Len(), errb.Len(), hOut.String()+hErr.String())
			continue
		}
		if code != exitOK || strings.Contains(hOut.String()+hErr.String(), overview.String()) ||
			!strings.Contains(hOut.String()+hErr.String(), "lockstep "+c[0]) {
			t.Errorf("help %s: exit %d, not its own help:\n%s", what, code, hOut.String()+hErr.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != exitOK || out.String() != overview.String() {
		t.Errorf("help: exit %d, want the overview:\n%s%s", code, &out, &errb)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"help", "snapshots"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `no command "snapshots"`) {
		t.Errorf("help snapshots: exit %d:\n%s%s", code, &out, &errb)
	}
}

// TestHelpShowsNoSentinelDefaults: no flag's help shows a default that
// only stands for "not given" (snapshot restore's --hold-grants showed
// "(default -1ns)" right after the prose that gives its real default).
func TestHelpShowsNoSentinelDefaults(t *testing.T) {
	cases := [][]string{{"serve"}, {"certs"}, {"keys"}, {"snapshot", "save"}, {"snapshot", "restore"}, {"version"}, {"cluster", "status"}}
	for name := range clientCommands {
		cases = append(cases, []string{name})
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		run(append(slices.Clone(c), "-h"), &out, &errb)
		if text := out.String() + errb.String(); strings.Contains(text, "(default -") {
			t.Errorf("%s -h shows a negative default:\n%s", strings.Join(c, " "), text)
		}
	}
}
