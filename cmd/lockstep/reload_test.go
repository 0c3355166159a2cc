package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
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
		err := reload(f, sec, cfg, nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("reload with %s.pem: %v, want %q", cert, err, want)
		}
	}

	// A member whose file lists it alone is held to a member's checks
	// only once it has peers (AddNode grew it): then a certificate that
	// does not name its raft_address host would cut it off from them.
	lone := cfg
	lone.Cluster.Peers = map[string]string{"node-1": "127.0.0.1:7001"}
	conf("elsewhere")
	for n, want := range map[int]string{1: "", 2: "does not name 127.0.0.1"} {
		err := reload(f, sec, lone, func() int { return n })
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("reload of a lone member's file with elsewhere.pem, %d member(s) now: %v, want %q", n, err, want)
		}
	}
}

// TestReloadReachesTheRaftPort: a member's Raft listener takes the
// certificate and CA in force from the security state, as serve wires it:
// a SIGHUP reload to a new CA's files changes the certificate it presents
// to new connections and the CA it checks peers against, without a
// restart; files written but not reloaded change neither, and AddNode
// checks the certificate in force, not the file.
func TestReloadReachesTheRaftPort(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	issue := func(sub string, hosts ...string) {
		t.Helper()
		ca, err := security.NewAuthority("test CA "+sub, now.Add(-time.Hour), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := ca.Write(filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
		for i, h := range hosts {
			is, err := ca.IssueNode("node-1", []string{h}, now.Add(-time.Minute), now.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := is.Write(filepath.Join(dir, sub), fmt.Sprintf("node%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	issue("a", "10.9.9.9", "127.0.0.1") // a/node0 does not name the raft_address host: a lone member may start with it
	issue("b", "127.0.0.1")
	ports := make([]string, 2)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().String()
		ln.Close()
	}
	raftAddr := ports[0]
	// The configuration names node.pem, node-key.pem and ca.pem; install
	// writes another's files in their place, as an operator renews them.
	path := filepath.Join(dir, "node.yaml")
	body := "cluster:\n  node_id: node-1\n  raft_address: " + raftAddr + "\n  api_address: " + ports[1] + "\n  data_dir: " + filepath.Join(dir, "data") + "\n" +
		"  peers: {node-1: " + raftAddr + "}\nsecurity:\n  tls:\n    cert_file: node.pem\n    key_file: node-key.pem\n    ca_file: ca.pem\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	install := func(cert string) { // "a/node0": a/node0.pem, a/node0-key.pem and a/ca.pem
		t.Helper()
		for from, to := range map[string]string{cert + ".pem": "node.pem", cert + "-key.pem": "node-key.pem", filepath.Dir(cert) + "/ca.pem": "ca.pem"} {
			b, err := os.ReadFile(filepath.Join(dir, from))
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, to), b, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	load := func(cert string) tls.Certificate {
		t.Helper()
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, cert+".pem"), filepath.Join(dir, cert+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// presented dials the Raft port with peer's certificate and says
	// which certificate the listener presented, and whether it refused
	// peer's (it closes at once; one it takes waits for a hello).
	presented := func(peer tls.Certificate) (string, bool) {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", raftAddr,
			// Which certificate is presented is the question here, not
			// whether it verifies.
			&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{peer}})
		if err != nil {
			t.Fatalf("a handshake with the Raft listener: %v", err)
		}
		defer conn.Close()
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, err = conn.Read(make([]byte, 1))
		var timeout net.Error
		taken := err != nil && errors.As(err, &timeout) && timeout.Timeout()
		return string(conn.ConnectionState().PeerCertificates[0].Raw), !taken
	}

	install("a/node0")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := security.New(cfg.Security, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	node, err := runtime.Start(context.Background(), runtime.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), RaftCredentials: sec.Credentials})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	a0, a1, b0 := load("a/node0"), load("a/node1"), load("b/node0")
	if got, refused := presented(a1); got != string(a0.Certificate[0]) || refused {
		t.Fatalf("at start the Raft listener presents another certificate than a/node0 (%v), or refused a member of its CA (%v)", got != string(a0.Certificate[0]), refused)
	}

	// New files, not reloaded: nothing changes, and AddNode judges the
	// certificate in force (it does not name 127.0.0.1, which a peer
	// dialling this member checks).
	install("a/node1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := node.AddNodeIncarnation(ctx, "node-2", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "cannot take a peer with its certificate") {
		t.Fatalf("AddNode with a certificate in force that peers cannot check: %v", err)
	}
	if got, _ := presented(a1); got != string(a0.Certificate[0]) {
		t.Fatal("files written without a reload reached the Raft listener")
	}

	install("b/node0")
	f := newServeFlags(&bytes.Buffer{})
	f.configFile = path
	if err := reload(f, sec, cfg, nil); err != nil {
		t.Fatal(err)
	}
	got, refused := presented(b0)
	if got != string(b0.Certificate[0]) || refused {
		t.Fatalf("after the reload the Raft listener presents another certificate than b/node0 (%v), or refused a member of the new CA (%v)", got != string(b0.Certificate[0]), refused)
	}
	if _, refused := presented(a1); !refused {
		t.Fatal("after the reload to a new CA the Raft listener took a member of the old CA")
	}
}

// TestHangupReopensTheAuditLog: after an outside rotation (logrotate
// without copytruncate: the file moved), SIGHUP reopens the audit log, so
// that later lines go to a new file at its path; they went on into the
// moved file. It does so without --config too, and whatever the reload of
// the security files says.
func TestHangupReopensTheAuditLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	var running config.Config
	running.Security.Audit = &config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}
	audit := security.OpenAudit(*running.Security.Audit, "node-1", nil, nil)
	record := func(name string) {
		audit.Audit(context.Background(), rpc.AuditRecord{Procedure: lockstepv1connect.LockServiceStatusProcedure, Request: &pb.LockStatusRequest{Name: name}})
	}
	record("before")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	record("moved") // buffered: it is written to the file open until the reopen
	var logs bytes.Buffer
	hangup(newServeFlags(&bytes.Buffer{}), running, nil, audit, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	record("after")
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if old := read(path + ".1"); !strings.Contains(old, `"name":"before"`) || !strings.Contains(old, `"name":"moved"`) || strings.Contains(old, `"name":"after"`) {
		t.Errorf("the moved file:\n%s\nwant the lines before the SIGHUP only", old)
	}
	if cur := read(path); strings.Count(cur, "\n") != 1 || !strings.Contains(cur, `"name":"after"`) {
		t.Errorf("the file at the audit path:\n%s\nwant the line after the SIGHUP", cur)
	}
	if !strings.Contains(logs.String(), "reopened the audit log") {
		t.Errorf("the SIGHUP's log:\n%s", &logs)
	}
}
