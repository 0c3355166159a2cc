package main

import (
	"slices"
	"strings"
	"testing"
)

func TestQuietSysmonEnviron(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    []string
		want  []string
		again bool
	}{
		{"no GODEBUG", []string{"A=1", "B=2"}, []string{"A=1", "B=2", "GODEBUG=" + quietSchedtrace}, true},
		{"other settings kept", []string{"GODEBUG=http2client=0", "A=1"}, []string{"A=1", "GODEBUG=http2client=0," + quietSchedtrace}, true},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=" + quietSchedtrace}, true},
		{"the first GODEBUG counts", []string{"GODEBUG=panicnil=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=panicnil=1," + quietSchedtrace}, true},
		{"the operator's schedtrace", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"the operator's schedtrace among others", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		{"a name that only ends so", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1," + quietSchedtrace}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, again := quietSysmonEnviron(tc.in)
			if !slices.Equal(got, tc.want) || again != tc.again {
				t.Fatalf("quietSysmonEnviron(%q) = %q, %v; want %q, %v", tc.in, got, again, tc.want, tc.again)
			}
			if again { // started again, the server goes on as it is: no loop
				if _, more := quietSysmonEnviron(got); more {
					t.Fatalf("quietSysmonEnviron(%q) would start the server again", got)
				}
			}
		})
	}
}

func TestIsServe(t *testing.T) {
	for args, want := range map[string]bool{
		"serve":                true,
		"serve --dev":          true,
		"--config x.yaml":      true,
		"-config x.yaml":       true,
		"--config=x.yaml":      true,
		"-config=x.yaml":       true,
		"--check":              false,
		"lock name -- true":    false,
		"version":              false,
		"":                     false,
		"status --endpoints x": false,
	} {
		if got := isServe(strings.Fields(args)); got != want {
			t.Errorf("isServe(%q) = %v, want %v", args, got, want)
		}
	}
}
