//go:build integration

package integration

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/core"
)

// TestRestoreAfterLosingTheMajority is the disaster the backup exists for,
// on real processes and the CLI: two of three members are killed for good.
// A consistent backup is refused without a quorum and says how to take a
// stale one; the survivor's stale backup is restored onto three new data
// directories. The restored cluster closes the backup's sessions (the old
// cluster may have acknowledged grants the survivor never had): the
// client learns its session is lost, the lock is free, nothing is granted
// until the restore's hold has passed, and a later grant's
// fencing token lies past the bump.
func TestRestoreAfterLosingTheMajority(t *testing.T) {
	c := newCluster(t, 3)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	var endpoints []string
	for _, nd := range c.nodes {
		endpoints = append(endpoints, nd.url())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cl, err := client.New(endpoints, client.WithRetryTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	sess, err := cl.NewSession(ctx, client.WithTTL(60*time.Second), client.WithOwner("backup-test"))
	if err != nil {
		t.Fatal(err)
	}
	mu := client.NewMutex(sess, "jobs/backup")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := mu.Token()

	survivor := c.nodes[2]
	c.nodes[0].Kill()
	c.nodes[1].Kill()
	file := filepath.Join(c.dir, "backup.tar")
	out, err := exec.Command(binary, "snapshot", "save", file, "--endpoints", survivor.url()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--stale") {
		t.Fatalf("a consistent backup without a quorum: %v\n%s\nwant a refusal naming --stale", err, out)
	}
	out, err = exec.Command(binary, "snapshot", "save", file, "--stale", "--endpoints", survivor.url()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "stale: what "+survivor.ID) {
		t.Fatalf("snapshot save --stale: %v\n%s", err, out)
	}
	survivor.Kill()

	deployments := map[string]bool{}
	for _, nd := range c.nodes {
		dir := nd.DataDir + ".restored"
		out, err := exec.Command(binary, "snapshot", "restore", file, "--config", nd.ConfigPath, "--data-dir", dir, "--hold-grants", "3s").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "restored "+nd.ID) || !strings.Contains(string(out), "stale backup") ||
			!strings.Contains(string(out), "closes the backup's sessions") {
			t.Fatalf("snapshot restore %s: %v\n%s", nd.ID, err, out)
		}
		// Every member of one restored cluster prints the same deployment.
		_, rest, _ := strings.Cut(string(out), "deployment ")
		deployments[strings.Fields(rest + " ")[0]] = true
		if err := exec.Command(binary, "snapshot", "restore", file, "--config", nd.ConfigPath, "--data-dir", nd.DataDir).Run(); err == nil {
			t.Fatalf("a restore over %s's old data directory succeeded", nd.ID)
		}
	}
	if len(deployments) != 1 {
		t.Fatalf("the members' restores printed deployments %v, want one", deployments)
	}
	started := time.Now()
	for _, nd := range c.nodes {
		c.start(nd, "--data-dir", nd.DataDir+".restored")
	}
	c.waitHealthy(30*time.Second, c.nodes...)

	// The restored cluster closes the session; the client hears it.
	select {
	case <-sess.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the backup's session lived on after the restore: its client may know of grants the backup does not")
	}
	if !errors.Is(sess.Err(), client.ErrSessionLost) {
		t.Errorf("the session ended with %v, want ErrSessionLost", sess.Err())
	}
	st, err := cl.Status(ctx, client.KindMutex, "jobs/backup")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Holders) != 0 {
		t.Fatalf("jobs/backup after the restore closed the backup's sessions: %+v, want free", st)
	}
	fresh, err := cl.NewSession(ctx, client.WithTTL(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	next := client.NewMutex(fresh, "jobs/after")
	if err := next.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(started); waited < 3*time.Second { // 3 s from when a member saw the sessions closed, after it started
		t.Errorf("granted %v after the restored members started, inside the restore's hold of 3 s", waited)
	}
	if got, floor := core.FencingToken(next.Token()).LogIndex(), core.FencingToken(token).LogIndex()+1_000_000_000; got <= floor {
		t.Errorf("a grant after the restore is at index %d; want past %d (the backup's index plus the default bump)", got, floor)
	}
}
