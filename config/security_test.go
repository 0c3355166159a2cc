package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

// secureDir writes a CA, a node certificate, a second CA's node
// certificate, an expired node certificate, a client's certificate and a
// keys file into a fresh directory.
func secureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := security.NewAuthority("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	issue := func(a *security.Authority, name string, from, to time.Time) {
		is, err := a.IssueNode("node-1", []string{"127.0.0.1"}, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := is.Write(dir, name); err != nil {
			t.Fatal(err)
		}
	}
	issue(ca, "node", now.Add(-time.Minute), now.Add(time.Hour))
	issue(ca, "old", now.Add(-2*time.Hour), now.Add(-time.Minute))
	other, err := security.NewAuthority("other CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issue(other, "stranger", now.Add(-time.Minute), now.Add(time.Hour))
	client, err := ca.IssueClient("ci", now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.Write(dir, "client"); err != nil {
		t.Fatal(err)
	}
	_, digest, err := security.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("keys.yaml", "- {principal: ci, sha256: "+digest+"}\n")
	write("badkeys.yaml", "- {principal: ci, sha256: abc}\n")
	return dir
}

const secureBase = `
cluster:
  node_id: node-1
  raft_address: 127.0.0.1:7001
  api_address: 127.0.0.1:8080
  metrics_address: 127.0.0.1:9090
  data_dir: data
  peers: {node-1: 127.0.0.1:7001}
security:
  tls:
    cert_file: node.pem
    key_file: node-key.pem
    ca_file: ca.pem
    client_auth: require
  api_keys_file: keys.yaml
  acl:
    - principal: ci
      prefix: jobs/
      allow: [read, use]
  audit:
    path: audit.jsonl
`

// TestSecurityLoad: the loader refuses each bad input at start with one
// line that names the file or the rule and what is wrong with it.
func TestSecurityLoad(t *testing.T) {
	dir := secureDir(t)
	load := func(body string) (config.Config, error) {
		path := filepath.Join(dir, "node.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return config.Load(path)
	}
	c, err := load(secureBase)
	if err != nil {
		t.Fatalf("the good configuration: %v", err)
	}
	if c.Security.TLS.CertFile != filepath.Join(dir, "node.pem") || c.Security.Audit.Path != filepath.Join(dir, "audit.jsonl") {
		t.Errorf("paths are not relative to the file's folder: %+v %+v", c.Security.TLS, c.Security.Audit)
	}
	if c.Security.Audit.MaxSizeMB != 100 || c.Security.Audit.MaxFiles != 5 {
		t.Errorf("audit defaults: %+v", c.Security.Audit)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"missing file", "cert_file: node.pem", "cert_file: nope.pem", "security.tls.cert_file " + filepath.Join(dir, "nope.pem") + ": no such file"},
		{"missing keys file", "api_keys_file: keys.yaml", "api_keys_file: nokeys.yaml", "security.api_keys_file " + filepath.Join(dir, "nokeys.yaml") + ": no such file"},
		{"key not matching the certificate", "key_file: node-key.pem", "key_file: stranger-key.pem", "is not the key of the certificate in"},
		{"expired certificate", "cert_file: node.pem\n    key_file: node-key.pem", "cert_file: old.pem\n    key_file: old-key.pem", "old.pem: expired at"},
		{"CA that did not sign the node", "cert_file: node.pem\n    key_file: node-key.pem", "cert_file: stranger.pem\n    key_file: stranger-key.pem", "security.tls.ca_file " + filepath.Join(dir, "ca.pem") + ": did not sign the certificate in"},
		{"a client's certificate", "cert_file: node.pem\n    key_file: node-key.pem", "cert_file: client.pem\n    key_file: client-key.pem", "client.pem: is not for server use"},
		// With peers, the certificate must name the raft_address host;
		// a lone member's need not (below).
		{"a certificate without the raft_address host", "raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  metrics_address: 127.0.0.1:9090\n  data_dir: data\n  peers: {node-1: 127.0.0.1:7001}",
			"raft_address: 127.0.0.2:7001\n  api_address: 127.0.0.1:8080\n  metrics_address: 127.0.0.1:9090\n  data_dir: data\n  peers: {node-1: 127.0.0.2:7001, node-2: 127.0.0.1:7002}", "does not name 127.0.0.2, the host of cluster.raft_address"},
		{"CA file that is no certificate", "ca_file: ca.pem", "ca_file: keys.yaml", "holds no PEM certificate"},
		{"unknown ACL action", "allow: [read, use]", "allow: [read, write]", `security.acl[0] (principal "ci", prefix "jobs/"): allow: unknown action "write"`},
		{"ACL rule without actions", "allow: [read, use]", "allow: []", "security.acl[0]"},
		{"ACL rule with a bad principal", "principal: ci", "principal: 'c i'", "security.acl[0]"},
		{"unknown ACL key", "prefix: jobs/", "prefixes: jobs/", "security.acl[0].prefixes: unknown key"},
		{"unknown client_auth", "client_auth: require", "client_auth: always", "security.tls.client_auth: must be none, request or require"},
		{"TLS without a CA", "    ca_file: ca.pem\n", "", "security.tls.ca_file: required"},
		{"a keys file that does not parse", "api_keys_file: keys.yaml", "api_keys_file: badkeys.yaml", "badkeys.yaml: entry 1 (ci): sha256 must be 64 hex digits"},
		{"an ACL nobody can be named for", "  api_keys_file: keys.yaml\n", "", "skip"},
		{"audit without a path", "path: audit.jsonl", "max_files: 3", "security.audit.path: required"},
		{"plaintext on a non-loopback address", "  tls:\n    cert_file: node.pem\n    key_file: node-key.pem\n    ca_file: ca.pem\n    client_auth: require\n", "",
			"is the good one without TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(secureBase, tc.old) {
				t.Fatalf("the base has no %q", tc.old)
			}
			body := strings.Replace(secureBase, tc.old, tc.new, 1)
			if tc.want == "skip" {
				body = strings.Replace(body, "client_auth: require", "client_auth: none", 1)
				tc.want = "security.acl: needs authenticated callers"
			}
			if tc.want == "is the good one without TLS" {
				// Loopback without TLS is fine; the same on 0.0.0.0 is not.
				if _, err := load(body); err != nil {
					t.Fatalf("plaintext on loopback: %v", err)
				}
				body = strings.Replace(body, "api_address: 127.0.0.1:8080", "api_address: 0.0.0.0:8080", 1)
				tc.want = "cluster.api_address: 0.0.0.0:8080 is not a loopback address"
				if _, err := load(strings.Replace(body, "security:", "security:\n  insecure: true", 1)); err != nil {
					t.Fatalf("security.insecure must allow it: %v", err)
				}
			}
			_, err := load(body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("the error is more than one line: %q", err)
			}
		})
	}
}

// TestLoneMemberCertificate: a member without peers dials nobody, so its
// certificate need not name its raft_address host (a lone node's
// raft_address is often 127.0.0.1 while its certificate names the name
// clients use); a member of several must.
func TestLoneMemberCertificate(t *testing.T) {
	dir := secureDir(t)
	lone := strings.Replace(strings.Replace(secureBase, "raft_address: 127.0.0.1:7001", "raft_address: 127.0.0.2:7001", 1),
		"peers: {node-1: 127.0.0.1:7001}", "peers: {node-1: 127.0.0.2:7001}", 1)
	path := filepath.Join(dir, "lone.yaml")
	if err := os.WriteFile(path, []byte(lone), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("a lone member whose certificate does not name its raft_address host: %v", err)
	}
	// Growing it is refused (AddNode asks this): the peer it gets would
	// not reach it.
	if err := c.CheckCertificateForPeers(); err == nil || !strings.Contains(err.Error(), "does not name 127.0.0.2") {
		t.Fatalf("the lone member's certificate, checked for peers: %v", err)
	}
	c.Cluster.RaftAddress = "127.0.0.1:7001"
	if err := c.CheckCertificateForPeers(); err != nil {
		t.Fatalf("a certificate naming the raft_address host, checked for peers: %v", err)
	}
	joining := strings.Replace(lone, "  peers: {node-1: 127.0.0.2:7001}\n", "  join: true\n", 1)
	if err := os.WriteFile(path, []byte(joining), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "does not name 127.0.0.2") {
		t.Fatalf("a joining member whose certificate does not name its raft_address host: %v", err)
	}
	// Neither peers nor join: the restart of a member that joined, which
	// has peers: held to the same checks.
	restarted := strings.Replace(lone, "  peers: {node-1: 127.0.0.2:7001}\n", "", 1)
	if err := os.WriteFile(path, []byte(restarted), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "does not name 127.0.0.2") {
		t.Fatalf("a member restarted without peers whose certificate does not name its raft_address host: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "127.1.2.3:1": true, "[::1]:1": true, "localhost:1": true,
		"0.0.0.0:1": false, "10.0.0.1:1": false, "node1.example:1": false, "[::]:1": false} {
		if got := config.IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%s) = %v", addr, got)
		}
	}
}

// TestReservedPrincipals: "auto" and "rt" begin the server's own owner
// labels and request ids, so no key, certificate or ACL rule may name them.
func TestReservedPrincipals(t *testing.T) {
	for _, p := range []string{"auto", "rt"} {
		if err := config.ValidPrincipal(p); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("principal %q: %v, want reserved", p, err)
		}
	}
	for _, p := range []string{"autobot", "rt2", "ci"} {
		if err := config.ValidPrincipal(p); err != nil {
			t.Errorf("principal %q: %v", p, err)
		}
	}
}

// TestAdminOnAPrefixWarns: admin concerns every name (backup, membership,
// leadership), so a rule that allows it on a prefix grants nothing and is
// warned of, naming the rule; one of prefix "" is not.
func TestAdminOnAPrefixWarns(t *testing.T) {
	s := config.Security{ACL: []config.ACLRule{
		{Principal: "ops", Prefix: "", Allow: []string{"admin"}},
		{Principal: "ci", Prefix: "jobs/", Allow: []string{"read", "use"}},
		{Principal: "jops", Prefix: "jobs/", Allow: []string{"use", "admin"}},
	}}
	ws := s.Warnings()
	if len(ws) != 1 || !strings.Contains(ws[0], `security.acl[2] (principal "jops", prefix "jobs/") allows admin`) ||
		!strings.Contains(ws[0], `prefix ""`) {
		t.Errorf("warnings %q: want one naming rule 2 and prefix \"\"", ws)
	}
}
