package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

// TestReloadChecksTheMembersCertificate: a SIGHUP reload refuses what a
// start refuses of a member's own certificate (a client's, one without
// the raft_address host it runs with) and keeps the one in force; a good
// one loads.
func TestReloadChecksTheMembersCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := security.NewAuthority("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	write := func(name string, is security.Issued, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := is.Write(dir, name); err != nil {
			t.Fatal(err)
		}
	}
	is, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
	write("node", is, err)
	is, err = ca.IssueNode("node-1", []string{"10.9.9.9"}, now.Add(-time.Minute), now.Add(time.Hour))
	write("elsewhere", is, err)
	is, err = ca.IssueClient("ci", now.Add(-time.Minute), now.Add(time.Hour))
	write("client", is, err)

	path := filepath.Join(dir, "node.yaml")
	conf := func(cert string) {
		t.Helper()
		body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: data\n" +
			"  peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}\nsecurity:\n  tls:\n    cert_file: " + cert + ".pem\n    key_file: " + cert + "-key.pem\n    ca_file: ca.pem\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf("node")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := security.New(cfg.Security, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newServeFlags(&bytes.Buffer{})
	f.configFile = path
	for cert, want := range map[string]string{"client": "is not for server use", "elsewhere": "does not name 127.0.0.1", "node": ""} {
		conf(cert)
		err := reload(f, sec, cfg)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("reload with %s.pem: %v, want %q", cert, err, want)
		}
	}
}
