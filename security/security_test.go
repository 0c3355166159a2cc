package security

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// fixture writes a CA, a node certificate and a keys file, and answers the
// security key that names them.
func fixture(t *testing.T, clientAuth string, acl []config.ACLRule) (config.Security, *Authority, string) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := NewAuthority("test", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir); err != nil {
		t.Fatal(err)
	}
	is, err := ca.IssueNode("node-1", []string{"127.0.0.1"}, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := is.Write(dir, "node-1")
	if err != nil {
		t.Fatal(err)
	}
	apiKey, digest, err := NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.yaml")
	if err := os.WriteFile(keys, []byte("- {principal: ci, sha256: "+digest+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Security{TLS: &config.TLS{CertFile: cert, KeyFile: key, CAFile: filepath.Join(dir, "ca.pem"), ClientAuth: clientAuth},
		APIKeysFile: keys, ACL: acl}, ca, apiKey
}

// withPeer is a request context as the API sees it after a TLS handshake
// that presented chain.
func withPeer(t *testing.T, chain ...*x509.Certificate) context.Context {
	t.Helper()
	return rpc.WithConnection(context.Background(), &tls.ConnectionState{PeerCertificates: chain}, "127.0.0.1:9")
}

func clientCert(t *testing.T, ca *Authority, cn string, from, to time.Time) *x509.Certificate {
	t.Helper()
	is, err := ca.IssueClient(cn, from, to)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestAuthenticate(t *testing.T) {
	sec, ca, key := fixture(t, config.ClientAuthRequest, nil)
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	stranger, err := NewAuthority("stranger", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	good := clientCert(t, ca, "ci", now.Add(-time.Hour), now.Add(time.Hour))
	expired := clientCert(t, ca, "ci", now.Add(-2*time.Hour), now.Add(-time.Hour))
	foreign := clientCert(t, stranger, "ci", now.Add(-time.Hour), now.Add(time.Hour))
	bearer := func(k string) http.Header { return http.Header{"Authorization": {"Bearer " + k}} }
	const acquire = lockstepv1connect.LockServiceAcquireProcedure
	// A refusal names no one, but says how the caller tried: the audit
	// line's auth.
	cases := []struct {
		name   string
		ctx    context.Context
		h      http.Header
		want   rpc.Principal
		reason string // "" for success
	}{
		{"api key", context.Background(), bearer(key), rpc.Principal{ID: "ci", Auth: "api_key"}, ""},
		{"client certificate", withPeer(t, good), nil, rpc.Principal{ID: "ci", Auth: "mtls"}, ""},
		{"nothing", context.Background(), nil, rpc.Principal{Auth: "none"}, "no credentials"},
		{"wrong key", context.Background(), bearer("lsk_nope"), rpc.Principal{Auth: "api_key"}, "not known"},
		{"another scheme", context.Background(), http.Header{"Authorization": {"Token " + key}}, rpc.Principal{Auth: "api_key"}, "Bearer"},
		{"basic auth", context.Background(), http.Header{"Authorization": {"Basic eDp5"}}, rpc.Principal{Auth: "basic"}, "Basic header is not accepted"},
		{"basic auth in lower case", context.Background(), http.Header{"Authorization": {"basic eDp5"}}, rpc.Principal{Auth: "basic"}, "Bearer"},
		{"expired certificate", withPeer(t, expired), nil, rpc.Principal{Auth: "mtls"}, "expired"},
		{"expired certificate with a good key", withPeer(t, expired), bearer(key), rpc.Principal{Auth: "mtls"}, "expired"},
		{"foreign certificate", withPeer(t, foreign), nil, rpc.Principal{Auth: "mtls"}, "not one the cluster's CA signed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := s.Authenticate(tc.ctx, acquire, tc.h)
			p.Expires = time.Time{} // TestAuthenticateSaysWhenCredentialsExpire
			if tc.reason == "" {
				if err != nil || p != tc.want {
					t.Fatalf("got %+v, %v; want %+v", p, err, tc.want)
				}
				return
			}
			if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), tc.reason) || p != tc.want {
				t.Fatalf("got %+v, %v; want %+v, unauthenticated: %s", p, err, tc.want, tc.reason)
			}
		})
	}
	// Health needs no credentials: load balancers probe it.
	if _, err := s.Authenticate(context.Background(), lockstepv1connect.ClusterServiceHealthProcedure, nil); err != nil {
		t.Fatalf("health: %v", err)
	}
}

// TestAuthenticateSaysWhenCredentialsExpire: a principal proven by a
// client certificate carries the certificate's expiry, at which the API
// ends what it opened (a reviewer's stream outlived its certificate); so
// does one proven by a key sent alongside a certificate, which must be
// good too; a key alone does not expire (the keys file gives no expiry).
func TestAuthenticateSaysWhenCredentialsExpire(t *testing.T) {
	sec, ca, key := fixture(t, config.ClientAuthRequest, nil)
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	until := now.Add(90 * time.Second).Truncate(time.Second) // whole seconds, as certificates carry
	cert := clientCert(t, ca, "ci", now.Add(-time.Hour), until)
	bearer := http.Header{"Authorization": {"Bearer " + key}}
	const acquire = lockstepv1connect.LockServiceAcquireProcedure
	for _, tc := range []struct {
		name string
		ctx  context.Context
		h    http.Header
		want time.Time
	}{
		{"certificate", withPeer(t, cert), nil, until},
		{"key and certificate", withPeer(t, cert), bearer, until},
		{"key", context.Background(), bearer, time.Time{}},
	} {
		p, err := s.Authenticate(tc.ctx, acquire, tc.h)
		if err != nil || !p.Expires.Equal(tc.want) {
			t.Errorf("%s: %+v, %v; want it to expire at %v", tc.name, p, err, tc.want)
		}
	}
	// A CA that expires before the certificate ends it first.
	sec2, ca2, _ := fixture(t, config.ClientAuthRequest, nil)
	caEnd := ca2.Cert.NotAfter
	s2, err := New(sec2, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	long := clientCert(t, ca2, "ci", now.Add(-time.Hour), caEnd.Add(time.Hour))
	if p, err := s2.Authenticate(withPeer(t, long), acquire, nil); err != nil || !p.Expires.Equal(caEnd) {
		t.Errorf("a certificate outliving its CA: %+v, %v; want it to expire with the CA at %v", p, err, caEnd)
	}
}

// TestTwoCommonNamesAreRefused: a client certificate whose subject has
// more than one common name (openssl -subj /CN=ci/CN=ops, signed by the
// cluster's CA) is refused, as a bad principal, saying what to fix. It
// authenticated as the last (ops), which a PKI, proxy or log that reads
// the first (ci) would not expect.
func TestTwoCommonNamesAreRefused(t *testing.T) {
	sec, ca, _ := fixture(t, config.ClientAuthRequest, nil)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(sec, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	cn := func(v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: v}
	}
	for _, tc := range []struct {
		name    string
		subject pkix.RDNSequence
	}{
		{"two RDNs", pkix.RDNSequence{{cn("ci")}, {cn("ops")}}},
		{"one multi-valued RDN", pkix.RDNSequence{{cn("ci"), cn("ops")}}},
	} {
		raw, err := asn1.Marshal(tc.subject)
		if err != nil {
			t.Fatal(err)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(7), RawSubject: raw,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca.Cert, &key.PublicKey, ca.Key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != "ops" {
			t.Fatalf("%s: Go reads the common name as %q; the test expects the last, ops", tc.name, cert.Subject.CommonName)
		}
		p, err := s.Authenticate(withPeer(t, cert), lockstepv1connect.LockServiceAcquireProcedure, nil)
		if connect.CodeOf(err) != connect.CodeUnauthenticated || p.ID != "" ||
			!strings.Contains(err.Error(), `has 2 common names ("ci", "ops")`) || !strings.Contains(err.Error(), "single CN") {
			t.Fatalf("%s: %+v, %v; want unauthenticated naming both common names and what to fix", tc.name, p, err)
		}
	}
	if n := authFailures(t, reg, "bad_principal"); n != 2 {
		t.Fatalf("lockstep_auth_failures_total{reason=bad_principal} = %v, want 2", n)
	}
}

// authFailures reads lockstep_auth_failures_total{reason}.
func authFailures(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if f.GetName() == "lockstep_auth_failures_total" && l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestRequireNeedsACertificate(t *testing.T) {
	sec, _, key := fixture(t, config.ClientAuthRequire, nil)
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(context.Background(), lockstepv1connect.LockServiceAcquireProcedure, http.Header{"Authorization": {"Bearer " + key}})
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("a key without a certificate under client_auth require: %v", err)
	}
}

// TestClusterStatusNeedsAnyRule: cluster status (which member leads each
// shard) is allowed to a principal with any rule, use or admin only
// included, since the Go client and the CLI ask it before a command's
// first request; a principal no rule names is refused, and counted.
func TestClusterStatusNeedsAnyRule(t *testing.T) {
	sec, _, _ := fixture(t, config.ClientAuthRequest, []config.ACLRule{
		{Principal: "uo", Prefix: "jobs/", Allow: []string{"use"}},
		{Principal: "ao", Prefix: "", Allow: []string{"admin"}},
		{Principal: "ro", Prefix: "pub/", Allow: []string{"read"}},
	})
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for who, want := range map[string]bool{"uo": true, "ao": true, "ro": true, "nobody": false} {
		err := s.Authorize(ctx, rpc.Principal{ID: who}, lockstepv1connect.ClusterServiceStatusProcedure, &pb.ClusterStatusRequest{})
		if (err == nil) != want {
			t.Errorf("%s asks cluster status: %v, want allowed=%v", who, err, want)
		}
	}
	// Use only grants no read of a name's status.
	if err := s.Authorize(ctx, rpc.Principal{ID: "uo"}, lockstepv1connect.LockServiceStatusProcedure, &pb.LockStatusRequest{Name: "jobs/a"}); err == nil {
		t.Error("uo, use only, read jobs/a's status")
	}
}

func TestAuthorize(t *testing.T) {
	sec, _, _ := fixture(t, config.ClientAuthRequest, []config.ACLRule{
		{Principal: "ci", Prefix: "jobs/", Allow: []string{"read", "use"}},
		{Principal: "*", Prefix: "pub/", Allow: []string{"read"}},
		{Principal: "ops", Prefix: "", Allow: []string{"admin"}},
		{Principal: "jadmin", Prefix: "jobs/", Allow: []string{"read", "use", "admin"}},
	})
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ci, ops, anyone, jadmin := rpc.Principal{ID: "ci"}, rpc.Principal{ID: "ops"}, rpc.Principal{ID: "zed"}, rpc.Principal{ID: "jadmin"}
	acq := func(name string) any { return &pb.AcquireLockRequest{Name: name} }
	status := func(name string) any { return &pb.LockStatusRequest{Name: name} }
	cases := []struct {
		who       rpc.Principal
		procedure string
		msg       any
		allowed   bool
	}{
		{ci, lockstepv1connect.LockServiceAcquireProcedure, acq("jobs/a"), true},
		{ci, lockstepv1connect.LockServiceAcquireProcedure, acq("job"), false},
		{ci, lockstepv1connect.LockServiceStatusProcedure, status("pub/x"), true},
		{anyone, lockstepv1connect.LockServiceStatusProcedure, status("pub/x"), true},
		{anyone, lockstepv1connect.LockServiceAcquireProcedure, acq("pub/x"), false},
		{ci, lockstepv1connect.SessionServiceCreateProcedure, &pb.CreateSessionRequest{}, true},
		{anyone, lockstepv1connect.SessionServiceCreateProcedure, &pb.CreateSessionRequest{}, false},
		{ci, lockstepv1connect.ClusterServiceAddNodeProcedure, &pb.AddNodeRequest{}, false},
		{ops, lockstepv1connect.ClusterServiceAddNodeProcedure, &pb.AddNodeRequest{}, true},
		// Membership and leadership stop or move every name's service:
		// admin on one prefix is not enough.
		{jadmin, lockstepv1connect.ClusterServiceAddNodeProcedure, &pb.AddNodeRequest{}, false},
		{jadmin, lockstepv1connect.ClusterServiceRemoveNodeProcedure, &pb.RemoveNodeRequest{}, false},
		{jadmin, lockstepv1connect.ClusterServiceTransferLeadershipProcedure, &pb.TransferLeadershipRequest{}, false},
		{ops, lockstepv1connect.ClusterServiceRemoveNodeProcedure, &pb.RemoveNodeRequest{}, true},
		{ops, lockstepv1connect.ClusterServiceTransferLeadershipProcedure, &pb.TransferLeadershipRequest{}, true},
		{ops, lockstepv1connect.LockServiceAcquireProcedure, acq("jobs/a"), false},
		// A backup reads every name: admin on one prefix is not enough.
		{ops, lockstepv1connect.ClusterServiceBackupProcedure, &pb.BackupRequest{}, true},
		{jadmin, lockstepv1connect.ClusterServiceBackupProcedure, &pb.BackupRequest{}, false},
		{ci, lockstepv1connect.ClusterServiceBackupProcedure, &pb.BackupRequest{}, false},
		// List is never refused: it leaves names out instead.
		{anyone, lockstepv1connect.LockServiceListProcedure, &pb.ListRequest{Prefix: "jobs/"}, true},
	}
	for _, tc := range cases {
		err := s.Authorize(ctx, tc.who, tc.procedure, tc.msg)
		if (err == nil) != tc.allowed {
			t.Errorf("%s %s %v: %v, want allowed=%v", tc.who.ID, tc.procedure, tc.msg, err, tc.allowed)
		}
		if err != nil && (connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), tc.who.ID)) {
			t.Errorf("%s %s: %v: want permission_denied naming the principal", tc.who.ID, tc.procedure, err)
		}
	}
	if !s.CanRead(ctx, ci, "jobs/x") || !s.CanRead(ctx, anyone, "pub/y") || s.CanRead(ctx, anyone, "jobs/x") || s.CanRead(ctx, ci, "") {
		t.Error("CanRead disagrees with the rules")
	}
	// Another principal's sessions: admin on every name sees and closes
	// them; admin on a prefix, or use, does not.
	if !s.AdministersSessions(ctx, ops) || s.AdministersSessions(ctx, jadmin) || s.AdministersSessions(ctx, ci) ||
		s.AdministersSessions(ctx, anyone) || s.AdministersSessions(ctx, rpc.Principal{}) {
		t.Error("AdministersSessions disagrees with the rules")
	}
	// The rules apply before validation, so a refused name may be of any
	// length: the refusal quotes it bounded.
	long := strings.Repeat("x", 5000)
	err = s.Authorize(ctx, ci, lockstepv1connect.LockServiceAcquireProcedure, acq(long))
	if err == nil || len(err.Error()) > 300 || !strings.Contains(err.Error(), "(5000 bytes)") {
		t.Errorf("a 5000-byte name refused: %d bytes of message, want it quoted bounded with its length: %.200v", len(err.Error()), err)
	}
}

// TestReloadCredentials: Credentials answers the certificate and CA in
// force (what Raft's mutual TLS presents and checks against): a reload
// with files that fail its checks keeps them, one that passes replaces
// them, a new CA's included.
func TestReloadCredentials(t *testing.T) {
	sec, _, _ := fixture(t, config.ClientAuthNone, nil)
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, ca := s.Credentials()
	if cert == nil || ca == nil {
		t.Fatalf("credentials in force at start: %v, %v", cert, ca)
	}
	// A new CA and a member certificate it signed, in other files.
	next, _, _ := fixture(t, config.ClientAuthNone, nil)
	broken := *sec.TLS
	broken.CAFile = next.TLS.CAFile // did not sign the certificate in force
	sec.TLS = &broken
	if err := s.Reload(sec); err == nil {
		t.Fatal("a CA that did not sign the certificate reloaded")
	}
	if c, p := s.Credentials(); c != cert || p != ca {
		t.Fatal("a failed reload changed the credentials in force")
	}
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	c, p := s.Credentials()
	if c == cert || p == ca || c.Leaf == nil {
		t.Fatal("a reload kept the old credentials")
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: p, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("the reloaded certificate and CA do not go together: %v", err)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: p, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
		t.Fatal("the reloaded CA is still the old one")
	}
}

// TestNewCheckedPutsInForceWhatWasChecked: a member's start checks its
// certificate (config.Config.LoadMaterial) and hands the material it
// checked to the state, which must not read the files a second time (a
// file replaced between the two reads would go into force unchecked, on
// the Raft port too).
func TestNewCheckedPutsInForceWhatWasChecked(t *testing.T) {
	sec, _, _ := fixture(t, config.ClientAuthNone, nil)
	checked, err := sec.LoadMaterial(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The files now hold another CA's certificate: only the checked one counts.
	next, _, _ := fixture(t, config.ClientAuthNone, nil)
	for _, f := range [][2]string{{next.TLS.CertFile, sec.TLS.CertFile}, {next.TLS.KeyFile, sec.TLS.KeyFile}, {next.TLS.CAFile, sec.TLS.CAFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewChecked(sec, checked, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cert, ca := s.Credentials(); cert != checked.Cert || ca != checked.CA {
		t.Fatal("the state put in force something other than the material it was given")
	}
}

func TestReloadKeepsWhatIsInForceOnFailure(t *testing.T) {
	sec, _, key := fixture(t, config.ClientAuthNone, nil)
	s, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sec.APIKeysFile, []byte("- {principal: ci, sha256: nothex}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What the API runs at each reload (rpc.Reloadable): it runs only
	// after a reload that put something in force, and sees it in force.
	var afterReload []error
	s.OnReload(func() {
		_, err := s.Authenticate(context.Background(), lockstepv1connect.LockServiceAcquireProcedure, http.Header{"Authorization": {"Bearer " + key}})
		afterReload = append(afterReload, err)
	})
	if err := s.Reload(sec); err == nil {
		t.Fatal("a bad keys file reloaded")
	}
	if len(afterReload) != 0 {
		t.Fatalf("the reload hooks ran after a failed reload: %v", afterReload)
	}
	if _, err := s.Authenticate(context.Background(), lockstepv1connect.LockServiceAcquireProcedure, http.Header{"Authorization": {"Bearer " + key}}); err != nil {
		t.Fatalf("the key in force before the failed reload: %v", err)
	}
	if err := os.WriteFile(sec.APIKeysFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(sec); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(context.Background(), lockstepv1connect.LockServiceAcquireProcedure, http.Header{"Authorization": {"Bearer " + key}}); err == nil {
		t.Fatal("a removed key still works")
	}
	if len(afterReload) != 1 || afterReload[0] == nil {
		t.Fatalf("the reload hooks: ran %d times, seeing %v; want once, seeing the key removed", len(afterReload), afterReload)
	}
	sec.TLS = nil
	if err := s.Reload(sec); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("turning TLS off by reload: %v", err)
	}
}

func TestAuditLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	a.Audit(context.Background(), rpc.AuditRecord{
		Principal: rpc.Principal{ID: "ci", Auth: "mtls"}, Procedure: lockstepv1connect.LockServiceAcquireProcedure, Peer: "127.0.0.1:5",
		Request:  &pb.AcquireLockRequest{Name: "jobs/a", ClientId: "c1", RequestSeq: 7, SessionId: 9},
		Response: &pb.AcquireLockResponse{Acquired: true, FencingToken: 42, Outcome: pb.Outcome_OUTCOME_GRANTED},
		Duration: 1500 * time.Microsecond,
	})
	a.Audit(context.Background(), rpc.AuditRecord{Procedure: lockstepv1connect.LockServiceAcquireProcedure,
		Request: &pb.AcquireLockRequest{Name: "jobs/b"}, Code: connect.CodeUnauthenticated, Err: errors.New("no")})
	a.Audit(context.Background(), rpc.AuditRecord{Procedure: lockstepv1connect.LockServiceAcquireProcedure,
		Request: &pb.AcquireLockRequest{Name: strings.Repeat("€", 2000)}, Code: connect.CodeInvalidArgument, Err: errors.New("too long")})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readAuditLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	// A name of 6000 bytes, refused: its first maxAuditName bytes, cut at
	// a character, and its length.
	if name, _ := lines[2]["name"].(string); name != strings.Repeat("€", maxAuditName/3) || lines[2]["name_bytes"] != 6000.0 {
		t.Errorf("an over-long name's line: %d bytes of name, name_bytes %v; want %d whole characters and 6000", len(name), lines[2]["name_bytes"], maxAuditName/3)
	}
	if _, has := lines[0]["name_bytes"]; has {
		t.Errorf("a name within bounds has name_bytes: %v", lines[0])
	}
	g := lines[0]
	for k, want := range map[string]any{"node_id": "node-1", "principal": "ci", "auth": "mtls", "remote": "127.0.0.1:5",
		"kind": "mutex", "name": "jobs/a", "session_id": 9.0, "client_id": "c1", "seq": 7.0, "outcome": "granted",
		"fencing_token": 42.0, "duration_ms": 1.5} {
		if g[k] != want {
			t.Errorf("%s = %v, want %v", k, g[k], want)
		}
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", g["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if lines[1]["outcome"] != "unauthenticated" || lines[1]["auth"] != "none" {
		t.Errorf("the refusal's line: %v", lines[1])
	}
	if _, has := lines[1]["fencing_token"]; has {
		t.Errorf("a refusal has a fencing token: %v", lines[1])
	}
}

// TestSecurityCountersStartAtZero: every reason and action has its series
// from the start, so that an alert on an increase sees the first refusal
// after a restart; and the reasons are those docs/security.md lists.
func TestSecurityCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string][]string{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				series[f.GetName()] = append(series[f.GetName()], l.GetValue())
			}
		}
	}
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, line := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(line, "| `lockstep_auth_failures_total{reason}`") {
			for _, part := range strings.Split(line, "`")[3:] {
				if part != "" && !strings.ContainsAny(part, " ,|") {
					documented = append(documented, part)
				}
			}
		}
	}
	slices.Sort(documented)
	got := slices.Sorted(slices.Values(series["lockstep_auth_failures_total"]))
	if len(got) == 0 || !slices.Equal(got, documented) {
		t.Fatalf("lockstep_auth_failures_total starts with reasons %v; docs/security.md lists %v", got, documented)
	}
	if got := slices.Sorted(slices.Values(series["lockstep_acl_denials_total"])); !slices.Equal(got, []string{"admin", "read", "use"}) {
		t.Fatalf("lockstep_acl_denials_total starts with actions %v, want admin, read and use", got)
	}
}

// TestCertificateExpiryGauge: the certificate in force's expiry is a
// gauge, set at start and moved by a reload of renewed files, since an
// expired certificate fails every handshake (Raft's too) with nothing
// above DEBUG in the log.
func TestCertificateExpiryGauge(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	expiry := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "lockstep_tls_certificate_expiry_timestamp_seconds" {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("lockstep_tls_certificate_expiry_timestamp_seconds is not registered")
		return 0
	}
	if v := expiry(); v != 0 {
		t.Fatalf("before any certificate the gauge reads %v, want 0", v)
	}
	sec, _, _ := fixture(t, config.ClientAuthNone, nil)
	s, err := New(sec, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := s.Credentials()
	if v := expiry(); v != float64(cert.Leaf.NotAfter.Unix()) {
		t.Fatalf("the gauge reads %v, want the certificate's NotAfter %d", v, cert.Leaf.NotAfter.Unix())
	}
	next, _, _ := fixture(t, config.ClientAuthNone, nil)
	if err := s.Reload(next); err != nil {
		t.Fatal(err)
	}
	cert, _ = s.Credentials()
	if v := expiry(); v != float64(cert.Leaf.NotAfter.Unix()) {
		t.Fatalf("after a reload the gauge reads %v, want the new certificate's NotAfter %d", v, cert.Leaf.NotAfter.Unix())
	}
}
