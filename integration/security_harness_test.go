//go:build integration

package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
)

// secureCluster is a cluster whose members serve TLS with certificates from
// `lockstep certs`, and know API keys from `lockstep keys create`.
type secureCluster struct {
	*cluster
	pki      string            // ca.pem, NODE.pem, PRINCIPAL.pem and their keys
	keys     map[string]string // principal → API key
	keysFile string
}

// secureOptions shape the members' security key.
type secureOptions struct {
	clientAuth string
	acl        []config.ACLRule
	principals []string // get a client certificate and an API key each
}

// newSecureCluster prepares n members (not started) like newCluster, with
// a CA, one certificate per member (Raft mutual TLS, API and metrics TLS),
// client certificates and API keys for the principals, an ACL, and an audit
// log per member (dir/NODE-audit.jsonl).
func newSecureCluster(t *testing.T, n int, o secureOptions) *secureCluster {
	t.Helper()
	s := &secureCluster{cluster: newCluster(t, n), keys: map[string]string{}}
	s.pki = filepath.Join(s.dir, "pki")
	s.cli("certs", "ca", "--out", s.pki)
	for _, nd := range s.nodes {
		s.cli("certs", "node", nd.ID, "--hosts", "127.0.0.1,localhost", "--ca", s.pki, "--out", s.pki)
	}
	var entries []string
	for _, p := range o.principals {
		s.cli("certs", "client", p, "--ca", s.pki, "--out", s.pki)
		key, entry := s.newKey(p)
		s.keys[p] = key
		entries = append(entries, entry)
	}
	s.keysFile = filepath.Join(s.dir, "keys.yaml")
	s.writeKeys(entries...)
	peers := map[string]string{}
	for _, nd := range s.nodes {
		peers[nd.ID] = nd.Raft
	}
	for _, nd := range s.nodes {
		nd.https = true
		s.writeSecureConfig(nd, peers, o)
	}
	// The base harness's requests (health, leader) go as the admin
	// principal over mutual TLS.
	s.http = s.httpClient("admin")
	return s
}

// cli runs the lockstep binary and fails the test unless it exits 0.
func (s *secureCluster) cli(args ...string) string {
	s.t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("lockstep %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var keyLine = regexp.MustCompile(`(lsk_[A-Za-z0-9_-]+)`)

// newKey runs `lockstep keys create` and answers the key and the entry.
func (s *secureCluster) newKey(principal string) (key, entry string) {
	s.t.Helper()
	out := s.cli("keys", "create", principal)
	key = keyLine.FindString(out)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "- {principal: ") {
			entry = l
		}
	}
	if key == "" || entry == "" || strings.Contains(entry, key) {
		s.t.Fatalf("lockstep keys create: unexpected output %q", out)
	}
	return key, entry
}

func (s *secureCluster) writeKeys(entries ...string) {
	s.t.Helper()
	if err := os.WriteFile(s.keysFile, []byte(strings.Join(entries, "\n")+"\n"), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func (s *secureCluster) auditPath(nd *node) string { return filepath.Join(s.dir, nd.ID+"-audit.jsonl") }

func (s *secureCluster) writeSecureConfig(nd *node, peers map[string]string, o secureOptions) {
	s.t.Helper()
	cfg := config.Defaults()
	cfg.Cluster = config.Cluster{NodeID: nd.ID, RaftAddress: nd.Raft, APIAddress: nd.API, MetricsAddress: nd.Metrics,
		DataDir: nd.DataDir, Peers: peers}
	cfg.Locks.MaxWaitTimeSeconds = 10
	// Paths relative to the configuration file's folder, as users write them.
	cfg.Security = config.Security{
		TLS: &config.TLS{CertFile: "pki/" + nd.ID + ".pem", KeyFile: "pki/" + nd.ID + "-key.pem", CAFile: "pki/ca.pem",
			ClientAuth: o.clientAuth},
		APIKeysFile: "keys.yaml",
		ACL:         o.acl,
		Audit:       &config.Audit{Path: nd.ID + "-audit.jsonl", MaxSizeMB: 100, MaxFiles: 5},
	}
	b, err := cfg.Marshal()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(nd.ConfigPath, b, 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// httpClient trusts the cluster's CA and, for a principal, presents its
// client certificate ("" for none).
func (s *secureCluster) httpClient(principal string) *http.Client {
	s.t.Helper()
	ca, err := os.ReadFile(filepath.Join(s.pki, "ca.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if principal != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(s.pki, principal+".pem"), filepath.Join(s.pki, principal+"-key.pem"))
		if err != nil {
			s.t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
}

// cred is how a request authenticates: an HTTP client (with or without a
// client certificate) and an API key ("" for none).
type cred struct {
	h   *http.Client
	key string
}

// call sends a REST request with cred and decodes the JSON answer.
func (s *secureCluster) call(c cred, method string, nd *node, path, body string) (int, map[string]any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, nd.url()+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.h.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s on %s: %v", method, path, nd.ID, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: not JSON: %q", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

// goClient is a Go client of every member, over TLS, with opts.
func (s *secureCluster) goClient(opts ...client.Option) *client.Client {
	s.t.Helper()
	var eps []string
	for _, nd := range s.nodes {
		eps = append(eps, nd.url())
	}
	opts = append([]client.Option{client.WithCAFile(filepath.Join(s.pki, "ca.pem")), client.WithRetryTimeout(10 * time.Second)}, opts...)
	c, err := client.New(eps, opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

func (s *secureCluster) endpoints() string {
	var eps []string
	for _, nd := range s.nodes {
		eps = append(eps, nd.url())
	}
	return strings.Join(eps, ",")
}

// auditLine is what every audit line must hold.
type auditLine struct {
	Time         *string  `json:"time"`
	NodeID       *string  `json:"node_id"`
	Principal    *string  `json:"principal"`
	Auth         *string  `json:"auth"`
	Remote       *string  `json:"remote"`
	Procedure    *string  `json:"procedure"`
	Kind         *string  `json:"kind"`
	Name         *string  `json:"name"`
	SessionID    *uint64  `json:"session_id"`
	ClientID     *string  `json:"client_id"`
	Seq          *uint64  `json:"seq"`
	Outcome      *string  `json:"outcome"`
	FencingToken uint64   `json:"fencing_token"`
	DurationMs   *float64 `json:"duration_ms"`
}

var rfc3339ms = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$`)

// readAudit parses every line of an audit file, failing on any line that
// misses a field.
func readAudit(t *testing.T, path string) []auditLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditLine
	for i, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Fatalf("%s line %d is not JSON: %v: %q", path, i+1, err, l)
		}
		if a.Time == nil || !rfc3339ms.MatchString(*a.Time) || a.NodeID == nil || a.Principal == nil || a.Auth == nil ||
			a.Remote == nil || a.Procedure == nil || a.Kind == nil || a.Name == nil || a.SessionID == nil ||
			a.ClientID == nil || a.Seq == nil || a.Outcome == nil || a.DurationMs == nil {
			t.Fatalf("%s line %d misses a field: %q", path, i+1, l)
		}
		out = append(out, a)
	}
	return out
}

// hangup sends SIGHUP to a node.
func (nd *node) hangup(t *testing.T) {
	t.Helper()
	if err := nd.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// untilStatus retries a request until it answers want, within limit.
func (s *secureCluster) untilStatus(limit time.Duration, what string, want int, f func() (int, map[string]any)) {
	s.t.Helper()
	eventually(s.t, limit, what, func() error {
		if st, body := f(); st != want {
			return fmt.Errorf("%d %v", st, body)
		}
		return nil
	})
}
