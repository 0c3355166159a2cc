package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
	ca := testCA(t, dir, now)
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
	cfg, sec, f := loaded(t, path)
	for cert, want := range map[string]string{"client": "is not for server use", "elsewhere": "does not name 127.0.0.1", "node": ""} {
		conf(cert)
		_, _, err := reload(f, sec, cfg, nil)
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
		_, _, err := reload(f, sec, lone, func() int { return n })
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
	cfg, sec, _ := loaded(t, path)
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
	if _, _, err := reload(f, sec, cfg, nil); err != nil {
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

// TestHangupSaysWhatChanged: the SIGHUP's line names what the reload
// changed (the certificate by serial, the CA by name and fingerprint, the
// API keys by principal, never the key or its digest, the ACL by its
// count of rules, the audit log reopened), or that nothing did.
func TestHangupSaysWhatChanged(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := security.NewAuthority("Lockstep CA one", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	other, err := security.NewAuthority("Lockstep CA two", now.Add(-time.Hour), now.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	node := func() *x509.Certificate {
		t.Helper()
		is, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := is.Write(dir, "node"); err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(is.CertPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	node()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ciKey, ciDigest, _ := security.NewAPIKey()
	deployKey, deployDigest, _ := security.NewAPIKey()
	conf := func(keys, acl string) {
		t.Helper()
		write("keys.yaml", keys)
		write("node.yaml", "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: data\n"+
			"  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  tls:\n    cert_file: node.pem\n    key_file: node-key.pem\n    ca_file: ca.pem\n"+
			"  api_keys_file: keys.yaml\n  audit: {path: audit.jsonl}\n"+acl)
	}
	conf("- {principal: ci, sha256: "+ciDigest+"}\n", "  acl:\n    - {principal: ci, prefix: \"\", allow: [use]}\n")
	cfg, sec, f := loaded(t, filepath.Join(dir, "node.yaml"))
	hup := func(audit *security.AuditLog) string {
		t.Helper()
		var logs bytes.Buffer
		hangup(f, cfg, sec, audit, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		if n := strings.Count(logs.String(), "\n"); n != 1 {
			t.Fatalf("the SIGHUP logged %d lines, want 1:\n%s", n, &logs)
		}
		return logs.String()
	}
	if got := hup(nil); !strings.Contains(got, "level=INFO") || !strings.Contains(got, "SIGHUP: reloaded the security settings: nothing changed") {
		t.Errorf("a SIGHUP with nothing changed logged:\n%s", got)
	}

	// Another key for ci, one for deploy, a second rule, a new
	// certificate and a second CA in ca_file; the audit log reopened.
	conf("- {principal: deploy, sha256: "+deployDigest+"}\n",
		"  acl:\n    - {principal: ci, prefix: \"\", allow: [use]}\n    - {principal: deploy, prefix: jobs/, allow: [use]}\n")
	leaf := node()
	write("ca.pem", string(ca.CertPEM())+string(other.CertPEM()))
	audit := security.OpenAudit(*cfg.Security.Audit, "node-1", nil, nil)
	defer audit.Close()
	got := hup(audit)
	fp := func(c *x509.Certificate) string { sum := sha256.Sum256(c.Raw); return fmt.Sprintf("%X", sum[:8]) }
	for _, want := range []string{
		"level=INFO",
		fmt.Sprintf("certificate changed to serial %X (not after %s)", leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339)),
		fmt.Sprintf(`CA changed to \"Lockstep CA one\" (sha256 %s, not after %s), \"Lockstep CA two\" (sha256 %s, not after %s)`,
			fp(ca.Cert), ca.Cert.NotAfter.UTC().Format(time.RFC3339), fp(other.Cert), other.Cert.NotAfter.UTC().Format(time.RFC3339)),
		"API keys added for deploy",
		"API keys removed for ci",
		"ACL 1 rule -> 2 rules",
		"audit log reopened at " + cfg.Security.Audit.Path,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the SIGHUP's line lacks %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{ciKey, deployKey, ciDigest, deployDigest} {
		if strings.Contains(got, secret) {
			t.Errorf("the SIGHUP's line shows a key or its digest:\n%s", got)
		}
	}
	if got := hup(audit); !strings.Contains(got, "reloaded the security settings: audit log reopened at "+cfg.Security.Audit.Path+"; nothing else changed") {
		t.Errorf("a second SIGHUP with nothing changed but the reopen logged:\n%s", got)
	}
	// Each reload is a line of the audit log too, saying what it changed:
	// who may do what changed, and only the member's log said so.
	recorded, err := os.ReadFile(cfg.Security.Audit.Path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(recorded)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"procedure":"SIGHUP","kind":"security","name":"`+filepath.Join(dir, "node.yaml")+`"`) ||
		!strings.Contains(lines[0], `"outcome":"reloaded"`) || !strings.Contains(lines[0], "API keys added for deploy") ||
		!strings.Contains(lines[1], "nothing else changed") {
		t.Errorf("the audit log after two reloads:\n%s", recorded)
	}
	for _, secret := range []string{ciKey, deployKey, ciDigest, deployDigest} {
		if strings.Contains(string(recorded), secret) {
			t.Errorf("the audit log shows a key or its digest:\n%s", recorded)
		}
	}

	// Without the ACL key: every principal may do everything, as the
	// line says.
	conf("- {principal: deploy, sha256: "+deployDigest+"}\n", "")
	if got := hup(nil); !strings.Contains(got, "ACL 2 rules -> absent (every principal may do everything)") {
		t.Errorf("a SIGHUP that removed the ACL logged:\n%s", got)
	}
}

// loaded reads the configuration file at path and puts its security in
// force, as a start from it does, with the flags of such a start.
func loaded(t *testing.T, path string) (config.Config, *security.State, *serveFlags) {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := security.New(cfg.Security, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := newServeFlags(&bytes.Buffer{})
	f.configFile, f.readAtStart = path, cfg
	return cfg, sec, f
}

// TestHangupSaysWhatWaitsForARestart: a SIGHUP after a change outside
// security (which only a restart puts in force) warns, naming the keys;
// it said "nothing changed", and the next restart took the change up
// unannounced.
func TestHangupSaysWhatWaitsForARestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	base := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: data\n" +
		"  peers: {node-1: 127.0.0.1:7001}\n"
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, sec, f := loaded(t, path)
	hup := func() string {
		var logs bytes.Buffer
		hangup(f, cfg, sec, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		return logs.String()
	}
	if got := hup(); strings.Contains(got, "WARN") {
		t.Fatalf("a SIGHUP with the file as it started warned:\n%s", got)
	}
	if err := os.WriteFile(path, []byte(base+"locks: {default_ttl_seconds: 7}\nconsensus: {ride_along_ms: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := hup()
	if !strings.Contains(got, "level=WARN") || !strings.Contains(got, "consensus.ride_along_ms, locks.default_ttl_seconds changed in "+path) ||
		!strings.Contains(got, "until it is restarted") {
		t.Fatalf("a SIGHUP after a change outside security logged:\n%s", got)
	}
}

// testCA writes a CA valid an hour either side of now into dir.
func testCA(t *testing.T, dir string, now time.Time) *security.Authority {
	t.Helper()
	ca, err := security.NewAuthority("test CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestHangupPutsTheLogLevelInForce: log.level is the one setting outside
// security that a SIGHUP puts in force, so debug lines can be had while
// something is wrong without a restart; the line that says so is written
// when the level goes up too, and a level given by --log-level stays.
func TestHangupPutsTheLogLevelInForce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.yaml")
	base := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: data\n" +
		"  peers: {node-1: 127.0.0.1:7001}\n"
	write := func(level string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(base+"log: {level: "+level+"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info")
	cfg, sec, f := loaded(t, path)
	var logs bytes.Buffer
	f.level = new(slog.LevelVar)
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: f.level}))
	hup := func() string {
		logs.Reset()
		hangup(f, cfg, sec, nil, nil, log)
		return logs.String()
	}
	for _, tc := range []struct {
		level string
		want  slog.Level
		line  string
	}{
		{"debug", slog.LevelDebug, "log level info -> debug"},
		{"warn", slog.LevelWarn, "log level debug -> warn"},
		{"warn", slog.LevelWarn, ""}, // "nothing changed" is an INFO line
	} {
		write(tc.level)
		got := hup()
		if f.level.Level() != tc.want || !strings.Contains(got, tc.line) || (tc.line == "") != (got == "") || strings.Contains(got, "WARN") {
			t.Fatalf("a SIGHUP with log.level %s: the level in force is %s, and it logged:\n%s\nwant %s, the line %q and no warning",
				tc.level, f.level.Level(), got, tc.want, tc.line)
		}
	}
	// A level the file gets wrong is refused, and the one in force stays.
	write("verbose")
	if got := hup(); f.level.Level() != slog.LevelWarn || !strings.Contains(got, `log.level: \"verbose\" is not a level`) {
		t.Fatalf("a SIGHUP with log.level verbose: the level in force is %s, and it logged:\n%s", f.level.Level(), got)
	}
	// --log-level wins over the file, at a reload as at the start.
	if err := f.fs.Parse([]string{"--log-level", "error"}); err != nil {
		t.Fatal(err)
	}
	write("debug")
	if hup(); f.level.Level() != slog.LevelError {
		t.Fatalf("with --log-level error given, a SIGHUP set the level to %s from the file", f.level.Level())
	}
}

// TestHangupSaysWhichSecuritySettingsWaitForARestart: the security
// settings read only at start (client_auth, the stream bound, the audit
// log's file and rotation) are named in a warning when a SIGHUP finds them
// changed, where the line said "nothing else changed"; and a change of
// client_auth no longer fails the whole reload, so that a key revoked in
// the same edit is revoked.
func TestHangupSaysWhichSecuritySettingsWaitForARestart(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca := testCA(t, dir, now)
	is, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := is.Write(dir, "node"); err != nil {
		t.Fatal(err)
	}
	_, ciDigest, _ := security.NewAPIKey()
	_, deployDigest, _ := security.NewAPIKey()
	conf := func(keys, clientAuth, more string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte(keys), 0o600); err != nil {
			t.Fatal(err)
		}
		body := "cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n  api_address: 127.0.0.1:8080\n  data_dir: data\n" +
			"  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  tls:\n    cert_file: node.pem\n    key_file: node-key.pem\n    ca_file: ca.pem\n" +
			"    client_auth: " + clientAuth + "\n  api_keys_file: keys.yaml\n" + more
		if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	both := "- {principal: ci, sha256: " + ciDigest + "}\n- {principal: deploy, sha256: " + deployDigest + "}\n"
	conf(both, "none", "  audit: {path: audit.jsonl}\n")
	cfg, sec, f := loaded(t, filepath.Join(dir, "node.yaml"))
	hup := func() string {
		t.Helper()
		var logs bytes.Buffer
		hangup(f, cfg, sec, nil, nil, slog.New(slog.NewTextHandler(&logs, nil)))
		return logs.String()
	}
	if got := hup(); strings.Contains(got, "WARN") || strings.Contains(got, "ERROR") {
		t.Fatalf("a SIGHUP with the files as they started:\n%s", got)
	}
	// client_auth, the stream bound and the audit rotation change, and
	// deploy's key is revoked in the same edit.
	conf("- {principal: ci, sha256: "+ciDigest+"}\n", "request",
		"  max_streams_per_principal: 3\n  audit: {path: audit.jsonl, max_size_mb: 1}\n")
	got := hup()
	if strings.Contains(got, "ERROR") || !strings.Contains(got, "API keys removed for deploy") {
		t.Fatalf("a SIGHUP that revoked a key beside a client_auth change did not revoke it:\n%s", got)
	}
	if !strings.Contains(got, "level=WARN") ||
		!strings.Contains(got, "security.tls.client_auth, security.max_streams_per_principal, security.audit changed in "+filepath.Join(dir, "node.yaml")) ||
		!strings.Contains(got, "read only at start") {
		t.Fatalf("a SIGHUP after changes of settings read at start did not name them:\n%s", got)
	}
	// Whether TLS is on at all still fails the reload, and keeps
	// everything in force.
	if err := os.WriteFile(filepath.Join(dir, "node.yaml"), []byte("cluster:\n  node_id: node-1\n  raft_address: 127.0.0.1:7001\n"+
		"  api_address: 127.0.0.1:8080\n  data_dir: data\n  peers: {node-1: 127.0.0.1:7001}\nsecurity:\n  api_keys_file: keys.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := hup(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "security.tls") {
		t.Fatalf("a SIGHUP that turned TLS off:\n%s", got)
	}
}
