//go:build integration

package integration

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

var logLevel = regexp.MustCompile(`\blevel=([A-Z]+)`)

// logSince returns the lines of a node's log from byte offset from on.
func logSince(t *testing.T, nd *node, from int64) []string {
	t.Helper()
	b, err := os.ReadFile(nd.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if from > int64(len(b)) {
		from = int64(len(b))
	}
	s := strings.TrimSpace(string(b[from:]))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func logSize(t *testing.T, nd *node) int64 {
	t.Helper()
	fi, err := os.Stat(nd.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// linesAt returns the lines logged at level.
func linesAt(lines []string, level string) []string {
	var out []string
	for _, l := range lines {
		if m := logLevel.FindStringSubmatch(l); m != nil && m[1] == level {
			out = append(out, l)
		}
	}
	return out
}

// TestQuietLogs: the operator's first hour (issue 16). A follower killed
// and restarted five seconds later, then a member stopped by SIGTERM, are
// expected conditions: no member logs an ERROR, the survivor logs a few
// warnings ("peer unreachable" once per spell, not three lines a second),
// and the Dragonboat lines there are carry node and name no raw replica id.
func TestQuietLogs(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	lead := c.leader()
	var followers []*node
	for _, nd := range c.nodes {
		if nd != lead {
			followers = append(followers, nd)
		}
	}
	down, stopped := followers[0], followers[1]
	from := map[*node]int64{}
	for _, nd := range c.nodes {
		from[nd] = logSize(t, nd)
	}

	// A follower down for five seconds, then back.
	down.Kill()
	time.Sleep(5 * time.Second)
	c.start(down)
	c.waitHealthy(30*time.Second, down)
	c.ok("POST", lead, "/locks/quiet/acquire", `{"owner": "t"}`)

	// A member stopped the ordinary way.
	if err := stopped.stop(t, 30*time.Second); err != nil {
		t.Fatalf("%s: SIGTERM exit: %v", stopped.ID, err)
	}
	time.Sleep(2 * time.Second) // the survivors notice it is gone
	survivor := lead
	if !survivor.Running() {
		t.Fatalf("%s exited", survivor.ID)
	}

	for _, nd := range c.nodes {
		lines := logSince(t, nd, from[nd]) // for down: its end and its restart
		if errs := linesAt(lines, "ERROR"); len(errs) > 0 {
			t.Errorf("%s logged errors:\n%s", nd.ID, strings.Join(errs, "\n"))
		}
		for _, l := range lines {
			if strings.Contains(l, "component=dragonboat/") && !strings.Contains(l, "node="+nd.ID) {
				t.Errorf("%s: a Dragonboat line without node=%s: %s", nd.ID, nd.ID, l)
			}
		}
	}
	// The survivors saw peers go: a warning per spell, where there used to
	// be about three lines a second. (The restarted one also warns once at
	// start that Raft has no TLS.)
	for _, nd := range []*node{lead, down} {
		warns := linesAt(logSince(t, nd, from[nd]), "WARN")
		if len(warns) > 4 {
			t.Errorf("%s logged %d warnings, want at most 4:\n%s", nd.ID, len(warns), strings.Join(warns, "\n"))
		}
	}
	lines := logSince(t, lead, from[lead])
	warns := linesAt(lines, "WARN")
	unreachable := 0
	for _, w := range warns {
		if strings.Contains(w, `msg="peer unreachable"`) {
			unreachable++
			if !strings.Contains(w, "peer="+down.ID) && !strings.Contains(w, "peer="+stopped.ID) {
				t.Errorf("a peer warning that does not name the peer by node id: %s", w)
			}
		}
	}
	if unreachable == 0 {
		t.Errorf("%s never said a peer was unreachable:\n%s", lead.ID, strings.Join(lines, "\n"))
	}
	if !strings.Contains(strings.Join(lines, "\n"), `msg="peer reachable again"`) {
		t.Errorf("%s never said %s was reachable again", lead.ID, down.ID)
	}
}
