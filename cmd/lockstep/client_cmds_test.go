package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// Flags may come before or after the name; everything after -- is the
// command, its own flags included.
func TestParseInterleaved(t *testing.T) {
	var out, errb bytes.Buffer
	c := newCommand("lock", "help\n", &out, &errb)
	wait := c.fs.Duration("wait", -1, "")
	pos, argv, _, ok := c.parse([]string{"--endpoints", "http://x:1", "jobs/a", "--wait", "0", "--", "sh", "-c", "--wait 5"})
	if !ok {
		t.Fatalf("parse failed: %s", errb.String())
	}
	if !reflect.DeepEqual(pos, []string{"jobs/a"}) || !reflect.DeepEqual(argv, []string{"sh", "-c", "--wait 5"}) {
		t.Fatalf("pos %q argv %q", pos, argv)
	}
	if *wait != 0 || c.endpoints != "http://x:1" {
		t.Fatalf("wait %v endpoints %q", *wait, c.endpoints)
	}
}

func TestClientCommandUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"lock"},                      // no name
		{"lock", "a"},                 // no command
		{"sem", "a", "--", "true"},    // no limit
		{"rwlock", "a", "--", "true"}, // neither --read nor --write
		{"barrier", "b"},              // no parties
		{"lock", "a", "-o", "xml", "--", "true"},
		{"cluster", "frobnicate"},
		{"completion", "fish"},
		// Refused before any server is asked (found as exit 1 with the
		// client's own message, prefixed twice).
		{"status", "a", "--kind", "bogus"},
		{"lock", "a", "--ttl", "500ms", "--", "true"},
		{"lock", "a", "--max-hold", "500ms", "--", "true"},
		{"sem", "a", "--limit", "2", "--ttl", "0s", "--", "true"},
		{"sem", "a", "--limit", "-1", "--", "true"},
		{"barrier", "b", "--parties", "1"},
		{"barrier", "b", "--parties", "2", "--ttl", "10ms"},
		{"elect", "e", "--ttl", "999ms"},
		{"certs", "node", "n1", "--ca", "pki", "--out", "pki"}, // no --hosts
		{"certs", "ca", "--out", "pki", "--valid-for", "-1h"},
		{"certs", "ca", "--out", "pki", "--valid-for", "30s"}, // expired when written
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		if !strings.Contains(errb.String(), "lockstep") || strings.Contains(errb.String(), "lockstep: lockstep") {
			t.Errorf("%q: no message, or a doubled prefix: %q", args, errb.String())
		}
	}
}

// TestHelpHasExamples: every command's -h ends with examples, as
// docs/client.md says (version had none).
func TestHelpHasExamples(t *testing.T) {
	names := []string{"version", "serve"}
	for name := range clientCommands {
		names = append(names, name)
	}
	for _, name := range names {
		var out, errb bytes.Buffer
		if code := run([]string{name, "-h"}, &out, &errb); code != exitOK {
			t.Errorf("%s -h: exit %d", name, code)
		}
		if !strings.Contains(out.String()+errb.String(), "Examples:") {
			t.Errorf("%s -h has no examples", name)
		}
	}
}

// TestCompletionFlagsMatchHelp: the bash completion offers each command
// exactly the flags its -h lists (it offered --owner where no command had
// it, and lacked most of serve's).
func TestCompletionFlagsMatchHelp(t *testing.T) {
	vars := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^  local (\w+)="([^"]*)"`).FindAllStringSubmatch(bashCompletion, -1) {
		vars[m[1]] = strings.Fields(m[2])
	}
	cases := regexp.MustCompile(`(?m)^    ([a-z]+)\)\s+COMPREPLY=\(\$\(compgen -W "([^"]*)"`).FindAllStringSubmatch(bashCompletion, -1)
	if len(cases) < 10 {
		t.Fatalf("found %d commands in the completion script", len(cases))
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, c := range cases {
		cmd := c[1]
		if cmd == "completion" || cmd == "keys" || cmd == "snapshot" {
			continue // no flags of their own beyond -h (snapshot's subcommands have theirs: TestSnapshotCompletionFlagsMatchHelp)
		}
		offered := map[string]bool{}
		for _, w := range strings.Fields(c[2]) {
			if name, ok := strings.CutPrefix(w, "$"); ok {
				for _, v := range vars[name] {
					offered[strings.TrimLeft(v, "-")] = true
				}
			} else if strings.HasPrefix(w, "-") && w != "--" && w != "-h" {
				offered[strings.TrimLeft(w, "-")] = true
			}
		}
		delete(offered, "h")
		var out, errb bytes.Buffer
		run([]string{cmd, "-h"}, &out, &errb)
		listed := map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(out.String()+errb.String(), -1) {
			listed[m[1]] = true
		}
		if len(listed) == 0 {
			t.Errorf("%s -h lists no flags", cmd)
		}
		for f := range listed {
			if !offered[f] {
				t.Errorf("%s: -%s is in -h but not completed", cmd, f)
			}
		}
		for f := range offered {
			if !listed[f] {
				t.Errorf("%s: -%s is completed but not in -h", cmd, f)
			}
		}
	}
}

// TestPlaintextToATLSServerHints: http:// pointed at a TLS port fails with
// Go's bare 400, which said nothing to the user; the hint says https://.
func TestPlaintextToATLSServerHints(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	var out, errb bytes.Buffer
	code := run([]string{"status", "a", "--endpoints", strings.Replace(srv.URL, "https://", "http://", 1)}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "use https:// endpoints") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestHelpProseIsWrapped: each command's help text, above its flags,
// keeps to 80 columns (a paragraph of cluster -h ran on unwrapped).
func TestHelpProseIsWrapped(t *testing.T) {
	for name := range clientCommands {
		var out, errb bytes.Buffer
		run([]string{name, "-h"}, &out, &errb)
		prose, _, _ := strings.Cut(out.String()+errb.String(), "\nFlags:")
		for _, line := range strings.Split(prose, "\n") {
			if len(line) > 80 {
				t.Errorf("%s -h: a line of %d columns: %q", name, len(line), line)
			}
		}
	}
}

// TestServeHelpSaysWhatKeysMean: serve -h says what the keys mean now
// (docs/operations.md): the wait cap applies on every API, not REST only,
// and the tick interval bounds how late an expiry fires; an idle cluster
// writes nothing.
func TestServeHelpSaysWhatKeysMean(t *testing.T) {
	var out, errb bytes.Buffer
	run([]string{"serve", "-h"}, &out, &errb)
	help := out.String() + errb.String()
	for _, stale := range []string{"REST waits", "moves log time"} {
		if strings.Contains(help, stale) {
			t.Errorf("serve -h still says %q", stale)
		}
	}
	for _, want := range []string{"on every API", "how late an expiry"} {
		if !strings.Contains(help, want) {
			t.Errorf("serve -h lacks %q", want)
		}
	}
}
