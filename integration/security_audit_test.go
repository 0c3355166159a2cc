//go:build integration

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// keyedNode is one plaintext member on loopback that knows one API key and
// keeps an audit log at auditPath.
type keyedNode struct {
	c         *cluster
	nd        *node
	key       string
	auditPath string
}

func newKeyedNode(t *testing.T, audit config.Audit) *keyedNode {
	t.Helper()
	c := newCluster(t, 1)
	s := &secureCluster{cluster: c}
	key, entry := s.newKey("tester")
	s.keysFile = filepath.Join(c.dir, "keys.yaml")
	s.writeKeys(entry)
	nd := c.nodes[0]
	cfg := config.Defaults()
	cfg.Cluster = config.Cluster{NodeID: nd.ID, RaftAddress: nd.Raft, APIAddress: nd.API, MetricsAddress: nd.Metrics,
		DataDir: nd.DataDir, Peers: map[string]string{nd.ID: nd.Raft}}
	cfg.Security = config.Security{APIKeysFile: "keys.yaml", Audit: &audit}
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(nd.ConfigPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &keyedNode{c: c, nd: nd, key: key, auditPath: filepath.Join(c.dir, audit.Path)}
}

// get sends GET path with the key and answers the status and body.
func (k *keyedNode) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", k.nd.url()+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+k.key)
	resp, err := k.c.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestAuditRotation floods one member with requests until its audit log
// rotates several times: max_files old files are kept, the oldest dropped,
// and every line of every file parses.
func TestAuditRotation(t *testing.T) {
	k := newKeyedNode(t, config.Audit{Path: "audit.jsonl", MaxSizeMB: 1, MaxFiles: 2})
	k.c.start(k.nd)
	k.c.waitHealthy(30*time.Second, k.nd)
	// Long names make fat lines: ~4.5 MB of lines rotate four times.
	name := strings.Repeat("n", 200)
	const workers, perWorker = 8, 1200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				st, body, err := k.get(fmt.Sprintf("/locks/%s-%d-%d/status?stale=true", name, w, i))
				if err == nil && st != 200 {
					err = fmt.Errorf("%d %s", st, body)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := k.nd.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, p := range []string{k.auditPath, k.auditPath + ".1", k.auditPath + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v (want the file and max_files=2 old ones)", p, err)
		}
		if st.Size() > 1<<20+4096 {
			t.Fatalf("%s is %d bytes: rotation is at 1 MiB", p, st.Size())
		}
		total += len(readAudit(t, p))
	}
	if _, err := os.Stat(k.auditPath + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s.3 exists (%v): max_files is 2", k.auditPath, err)
	}
	// The files kept hold the newest lines: more than two full files' worth.
	if total < 2*(1<<20)/600 {
		t.Fatalf("only %d lines in the kept files", total)
	}
}

// TestAuditUnwritable: a member whose audit log cannot be written refuses
// every request with 503 and counts the failures, then serves again once it
// can write.
func TestAuditUnwritable(t *testing.T) {
	k := newKeyedNode(t, config.Audit{Path: "missing/audit.jsonl", MaxSizeMB: 1, MaxFiles: 2})
	k.c.start(k.nd)
	eventually(t, 30*time.Second, "the node answers 503", func() error {
		st, body, err := k.get("/locks/x/status")
		if err != nil {
			return err
		}
		if st != 503 || !strings.Contains(body, `"code":"unavailable"`) || !strings.Contains(body, "audit log") {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	resp, err := http.Get("http://" + k.nd.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metrics, []byte("lockstep_audit_write_errors_total ")) ||
		bytes.Contains(metrics, []byte("lockstep_audit_write_errors_total 0\n")) {
		t.Fatalf("no audit write errors counted:\n%s", grepLines(metrics, "lockstep_audit"))
	}
	if err := os.MkdirAll(filepath.Dir(k.auditPath), 0o700); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the node serves once the log can be written", func() error {
		st, body, err := k.get("/locks/x/status")
		if err != nil {
			return err
		}
		if st != 200 {
			return fmt.Errorf("%d %s", st, body)
		}
		return nil
	})
	if err := k.nd.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if lines := readAudit(t, k.auditPath); len(lines) == 0 || *lines[len(lines)-1].Outcome != "ok" {
		t.Fatalf("the audit log after recovery: %d lines", len(lines))
	}
}

// TestAuditReopenedOnHangup: logrotate without copytruncate moves the
// audit log, then sends SIGHUP; the member then writes a new file at
// security.audit.path. Before, SIGHUP did not reopen it, and every later
// line went on into the moved file.
func TestAuditReopenedOnHangup(t *testing.T) {
	k := newKeyedNode(t, config.Audit{Path: "audit.jsonl", MaxSizeMB: 100, MaxFiles: 2})
	k.c.start(k.nd)
	k.c.waitHealthy(30*time.Second, k.nd)
	status := func(name string) {
		t.Helper()
		if st, body, err := k.get("/locks/" + name + "/status"); err != nil || st != 200 {
			t.Fatalf("status of %s: %d %s %v", name, st, body, err)
		}
	}
	status("before")
	if err := os.Rename(k.auditPath, k.auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	k.nd.hangup(t)
	eventually(t, 10*time.Second, "a new audit file after SIGHUP", func() error {
		status("after")
		time.Sleep(2 * 100 * time.Millisecond) // the flush interval, twice
		b, err := os.ReadFile(k.auditPath)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), `"name":"after"`) {
			return fmt.Errorf("%s holds no line of a request after the SIGHUP", k.auditPath)
		}
		return nil
	})
	if err := k.nd.stop(t, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	moved := readAudit(t, k.auditPath+".1")
	if len(moved) == 0 || *moved[0].Name != "before" {
		t.Fatalf("the moved file's lines: %d, want the request before the rotation first", len(moved))
	}
	for _, l := range readAudit(t, k.auditPath) {
		if *l.Name == "before" {
			t.Fatalf("the new file holds a line from before the rotation")
		}
	}
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestStartRefusals: a node that would serve plaintext off loopback, or
// whose certificate another CA signed, exits at start with one line that
// says what is wrong, before it listens anywhere. The non-loopback address
// is from TEST-NET-1 (192.0.2.0/24), which no interface here has: even a
// node that failed to refuse could not bind it.
func TestStartRefusals(t *testing.T) {
	c := newCluster(t, 1)
	nd := c.nodes[0]
	s := &secureCluster{cluster: c}
	s.pki = filepath.Join(c.dir, "pki")
	other := filepath.Join(c.dir, "other")
	s.cli("certs", "ca", "--out", s.pki)
	s.cli("certs", "ca", "--out", other)
	s.cli("certs", "node", nd.ID, "--hosts", "127.0.0.1", "--ca", other, "--out", other)
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want string
	}{
		{"plaintext API off loopback", func(c *config.Config) { c.Cluster.APIAddress = "192.0.2.1:8080" },
			"cluster.api_address: 192.0.2.1:8080 is not a loopback address"},
		{"plaintext Raft off loopback", func(c *config.Config) {
			c.Cluster.RaftAddress = "192.0.2.1:7001"
			c.Cluster.Peers = map[string]string{nd.ID: c.Cluster.RaftAddress}
		}, "cluster.raft_address: 192.0.2.1:7001 is not a loopback address"},
		{"a node certificate another CA signed", func(c *config.Config) {
			c.Security.TLS = &config.TLS{CertFile: "other/node-1.pem", KeyFile: "other/node-1-key.pem", CAFile: "pki/ca.pem"}
		}, "security.tls.ca_file " + filepath.Join(s.pki, "ca.pem") + ": did not sign the certificate in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Cluster = config.Cluster{NodeID: nd.ID, RaftAddress: nd.Raft, APIAddress: nd.API, MetricsAddress: nd.Metrics,
				DataDir: nd.DataDir, Peers: map[string]string{nd.ID: nd.Raft}}
			tc.edit(&cfg)
			b, _ := cfg.Marshal()
			if err := os.WriteFile(nd.ConfigPath, b, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, binary, "serve", "--config", nd.ConfigPath).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit: %v, want 2\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("output %q, want one line containing %q", out, tc.want)
			}
		})
	}
}
