package security

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/internal/quote"
	"github.com/lockstepd/lockstep/rpc"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// State is a node's security settings in force: the mode fixed at start
// (TLS or not, how clients authenticate) and the material a reload may
// replace (certificate, CA, API keys, ACL). It is the API's Authenticator
// and Authorizer, and the source of its TLS configurations.
type State struct {
	tlsOn      bool
	clientAuth string // config.ClientAuth*
	keysOn     bool   // there is an API keys file
	authOn     bool   // every request but health must name a principal
	cur        atomic.Pointer[material]
	metrics    *Metrics
	log        *slog.Logger
	now        func() time.Time

	hooksMu sync.Mutex
	hooks   []func() // OnReload's: run after each reload
}

// material is what a reload swaps, whole.
type material struct {
	cert    *tls.Certificate
	ca      *x509.CertPool
	caCerts []*x509.Certificate // what ca holds
	keys    map[string]string   // SHA-256 hex → principal
	acl     []config.ACLRule    // nil: everything is allowed to every principal
}

// Changes is what a reload changed, for the line that logs it: the
// certificate and CA by serial, fingerprint and expiry, the API keys by
// their principals (never a key or its digest), the ACL by its count of
// rules.
type Changes struct {
	// Cert is the new certificate, nil when it did not change.
	Cert *x509.Certificate
	// CA are the new CA certificates, nil when they did not change.
	CA []*x509.Certificate
	// KeysAdded and KeysRemoved are the principals that gained or lost
	// a key, sorted (a key replaced is in both).
	KeysAdded, KeysRemoved []string
	// ACLChanged says the rules changed; ACLBefore and ACLAfter count
	// them, -1 for no security.acl (everything allowed).
	ACLChanged          bool
	ACLBefore, ACLAfter int
	// AuditReopened is the audit log's path, when a SIGHUP reopened it
	// (the caller sets it: the audit log is not the state's).
	AuditReopened string
	// LogLevel is "old -> new" when a reload changed the member's log
	// level (the caller sets it: the level is not the state's).
	LogLevel string
}

// String is one line that says what changed, or "nothing changed".
func (c Changes) String() string {
	var parts []string
	if c.Cert != nil {
		parts = append(parts, fmt.Sprintf("certificate changed to %s", describeCert(c.Cert, false)))
	}
	if c.CA != nil {
		cas := make([]string, len(c.CA))
		for i, ca := range c.CA {
			cas[i] = describeCert(ca, true)
		}
		parts = append(parts, "CA changed to "+strings.Join(cas, ", "))
	}
	if len(c.KeysAdded) > 0 {
		parts = append(parts, "API keys added for "+strings.Join(c.KeysAdded, ", "))
	}
	if len(c.KeysRemoved) > 0 {
		parts = append(parts, "API keys removed for "+strings.Join(c.KeysRemoved, ", "))
	}
	if c.ACLChanged {
		if c.ACLBefore == c.ACLAfter {
			parts = append(parts, fmt.Sprintf("ACL rules changed (%s)", aclCount(c.ACLAfter)))
		} else {
			parts = append(parts, fmt.Sprintf("ACL %s -> %s", aclCount(c.ACLBefore), aclCount(c.ACLAfter)))
		}
	}
	if c.AuditReopened != "" {
		parts = append(parts, "audit log reopened at "+c.AuditReopened)
	}
	if c.LogLevel != "" {
		parts = append(parts, "log level "+c.LogLevel)
	}
	if len(parts) == 0 {
		return "nothing changed"
	}
	if len(parts) == 1 && c.AuditReopened != "" {
		return parts[0] + "; nothing else changed"
	}
	return strings.Join(parts, "; ")
}

func aclCount(n int) string {
	switch n {
	case -1:
		return "absent (every principal may do everything)"
	case 0:
		return "0 rules (no principal may do anything)"
	case 1:
		return "1 rule"
	}
	return fmt.Sprintf("%d rules", n)
}

// describeCert names c as an operator can find it: a member's certificate
// by serial (openssl x509 -serial), a CA by its subject and fingerprint
// (openssl x509 -fingerprint -sha256, its first 8 bytes), and when each
// expires.
func describeCert(c *x509.Certificate, ca bool) string {
	until := c.NotAfter.UTC().Format(time.RFC3339)
	if ca {
		sum := sha256.Sum256(c.Raw)
		return fmt.Sprintf("%q (sha256 %X, not after %s)", c.Subject.CommonName, sum[:8], until)
	}
	return fmt.Sprintf("serial %X (not after %s)", c.SerialNumber, until)
}

// changes says what putting next in force in place of prev changes.
func changes(prev, next *material) Changes {
	c := Changes{ACLBefore: -1, ACLAfter: -1}
	if next.acl != nil {
		c.ACLAfter = len(next.acl)
	}
	if prev == nil {
		return c
	}
	if prev.acl != nil {
		c.ACLBefore = len(prev.acl)
	}
	c.ACLChanged = (prev.acl == nil) != (next.acl == nil) || !slices.EqualFunc(prev.acl, next.acl, func(a, b config.ACLRule) bool {
		return a.Principal == b.Principal && a.Prefix == b.Prefix && slices.Equal(a.Allow, b.Allow)
	})
	if leaf := next.leaf(); leaf != nil && (prev.leaf() == nil || !leaf.Equal(prev.leaf())) {
		c.Cert = leaf
	}
	if !slices.EqualFunc(prev.caCerts, next.caCerts, (*x509.Certificate).Equal) {
		c.CA = next.caCerts
	}
	c.KeysAdded = keyPrincipals(next.keys, prev.keys)
	c.KeysRemoved = keyPrincipals(prev.keys, next.keys)
	return c
}

func (m *material) leaf() *x509.Certificate {
	if m.cert == nil {
		return nil
	}
	return m.cert.Leaf
}

// keyPrincipals are the principals of the keys in a but not in b, sorted
// and each once.
func keyPrincipals(a, b map[string]string) []string {
	var ps []string
	for d, p := range a {
		if _, ok := b[d]; !ok && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

var (
	_ rpc.Reloadable    = (*State)(nil)
	_ rpc.Authenticator = (*State)(nil)
	_ rpc.Authorizer    = (*State)(nil)
	_ rpc.ReadFilter    = (*State)(nil)
)

// New loads sec's files and makes the state. m may be nil (no metrics).
func New(sec config.Security, m *Metrics, log *slog.Logger) (*State, error) {
	mat, err := sec.LoadMaterial(time.Now())
	if err != nil {
		return nil, err
	}
	return NewChecked(sec, mat, m, log)
}

// NewChecked makes the state with mat, loaded from sec's files and checked
// by the caller (a member checks its own certificate against its
// addresses: config.Config.LoadMaterial), so that what is put in force is
// what was checked, not a second read of the files.
func NewChecked(sec config.Security, mat *config.Material, m *Metrics, log *slog.Logger) (*State, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	s := &State{tlsOn: sec.TLS != nil, clientAuth: config.ClientAuthNone, metrics: m, log: log, now: time.Now}
	if sec.TLS != nil {
		s.clientAuth = sec.TLS.ClientAuth
	}
	s.keysOn = sec.APIKeysFile != ""
	s.authOn = s.clientAuth != config.ClientAuthNone || s.keysOn
	if _, err := s.ReloadMaterial(sec, mat); err != nil {
		return nil, err
	}
	return s, nil
}

// AuthOn says whether callers must authenticate.
func (s *State) AuthOn() bool { return s.authOn }

// Reload loads sec's files and ACL and puts them in force, or, when
// anything is wrong, keeps what is in force and says why. The mode (TLS on
// or off, client_auth, whether there is a keys file) needs a restart.
func (s *State) Reload(sec config.Security) error {
	if err := s.sameMode(sec); err != nil {
		return err
	}
	m, err := sec.LoadMaterial(s.now())
	if err != nil {
		return err
	}
	_, err = s.ReloadMaterial(sec, m)
	return err
}

// ReloadMaterial puts in force m, loaded from sec's files and checked by
// the caller (a member checks its own certificate against its addresses:
// config.Config.LoadMaterial), with sec's ACL; Reload's rules apply. It
// answers what changed.
func (s *State) ReloadMaterial(sec config.Security, m *config.Material) (Changes, error) {
	if err := s.sameMode(sec); err != nil {
		return Changes{}, err
	}
	next := &material{cert: m.Cert, ca: m.CA, caCerts: m.CACerts, keys: m.APIKeys, acl: sec.ACL}
	c := changes(s.cur.Swap(next), next)
	if m.Cert != nil && m.Cert.Leaf != nil {
		// An expired certificate fails every handshake, on the Raft port
		// too, with nothing above DEBUG in the log: alert on this.
		s.metrics.certExpiry.Set(float64(m.Cert.Leaf.NotAfter.Unix()))
	}
	s.hooksMu.Lock()
	hooks := slices.Clone(s.hooks)
	s.hooksMu.Unlock()
	for _, f := range hooks {
		f()
	}
	return c, nil
}

// OnReload registers f to run after each reload, once what was reloaded
// is in force: the API authenticates its open streams again with it, so
// that a key removed from the keys file stops working on the streams it
// had opened too (rpc.Reloadable).
func (s *State) OnReload(f func()) {
	s.hooksMu.Lock()
	s.hooks = append(s.hooks, f)
	s.hooksMu.Unlock()
}

// sameMode refuses a change that the member cannot run with until a
// restart: TLS on or off (the API would serve without a certificate, or
// not ask for one) and API keys on or off. A change of client_auth alone
// is not refused: the member keeps the one it started with, the caller
// warns of it, and the rest is put in force, so that a key or ACL
// revocation in the same edit is not held back by it.
func (s *State) sameMode(sec config.Security) error {
	if (sec.TLS != nil) != s.tlsOn || (sec.APIKeysFile != "") != s.keysOn {
		return errors.New("whether security.tls and security.api_keys_file are set changes only at a restart")
	}
	return nil
}

// ACLOpen says whether there is no ACL (every principal may do everything).
func (s *State) ACLOpen() bool { return s.cur.Load().acl == nil }

// APITLS is the API port's TLS configuration: the certificate in force at
// each handshake (a reload changes it for new connections), TLS 1.2 at
// least, and client certificates asked for when client_auth is request or
// require. They are checked by Authenticate rather than in the handshake,
// so that a missing, expired or foreign certificate is answered with a 401
// that says why, and is audited, rather than with a failed handshake.
func (s *State) APITLS() *tls.Config {
	c := s.baseTLS()
	if s.clientAuth != config.ClientAuthNone {
		c.ClientAuth = tls.RequestClientCert
	}
	return c
}

// MetricsTLS is the metrics port's TLS configuration: server
// authentication only (see docs/security.md, what is not protected).
func (s *State) MetricsTLS() *tls.Config { return s.baseTLS() }

// Credentials is the member's certificate (its key included) and the
// cluster's CA in force, for Raft's mutual TLS
// (runtime.Options.RaftCredentials): a reload replaces them only after
// checking them, as it does the API's certificate. Both are nil without
// TLS. The caller must not change them: every handshake shares them.
func (s *State) Credentials() (cert *tls.Certificate, ca *x509.CertPool) {
	m := s.cur.Load()
	return m.cert, m.ca
}

func (s *State) baseTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().cert, nil
		},
	}
}

// Authenticate names the caller: by API key (Authorization: Bearer KEY) or
// by a client certificate the CA signed, valid now; its common name is the
// principal. A certificate that is presented must be good even when a key
// is sent too, and with client_auth require a certificate is needed. The
// principal's Expires is when the certificate presented stops verifying
// (zero without one: an API key does not expire), at which the API ends
// what was opened with it.
func (s *State) Authenticate(ctx context.Context, procedure string, h http.Header) (rpc.Principal, error) {
	if !s.authOn || rpc.ActionOf(procedure) == "" {
		return rpc.Principal{Auth: "none"}, nil
	}
	m := s.cur.Load()
	var certPrincipal string
	var expires time.Time
	if cs := rpc.TLSFrom(ctx); cs != nil && len(cs.PeerCertificates) > 0 && s.clientAuth != config.ClientAuthNone {
		p, until, reason, err := s.verifyClient(m, cs.PeerCertificates)
		if err != nil {
			return rpc.Principal{Auth: "mtls"}, s.refuse(reason, err)
		}
		certPrincipal, expires = p, until
	}
	if s.clientAuth == config.ClientAuthRequire && certPrincipal == "" {
		return rpc.Principal{Auth: "mtls"}, s.refuse("no_certificate", errors.New("a client certificate signed by the cluster's CA is required"))
	}
	if auth := h.Get("Authorization"); auth != "" {
		scheme, key, _ := strings.Cut(auth, " ")
		if strings.EqualFold(scheme, "Basic") {
			// A user and password (curl -u, a proxy's credentials) is not
			// a key sent wrongly: the audit says which was tried.
			return rpc.Principal{Auth: "basic"}, s.refuse("bad_scheme",
				errors.New("an Authorization: Basic header is not accepted: send an API key as Authorization: Bearer KEY"))
		}
		if !strings.EqualFold(scheme, "Bearer") || key == "" {
			return rpc.Principal{Auth: "api_key"}, s.refuse("bad_scheme", errors.New("the Authorization header must be Bearer KEY"))
		}
		p, ok := m.keys[Digest(strings.TrimSpace(key))]
		if !ok {
			return rpc.Principal{Auth: "api_key"}, s.refuse("unknown_api_key", errors.New("the API key is not known (revoked, or never added)"))
		}
		return rpc.Principal{ID: p, Auth: "api_key", Expires: expires}, nil
	}
	if certPrincipal != "" {
		return rpc.Principal{ID: certPrincipal, Auth: "mtls", Expires: expires}, nil
	}
	return rpc.Principal{Auth: "none"}, s.refuse("no_credentials",
		errors.New("no credentials: send an API key (Authorization: Bearer KEY) or a client certificate"))
}

// verifyClient checks a client certificate chain and answers its
// principal and until when it verifies: the latest, among the chains to
// the CA in force, of the earliest expiry along the chain.
func (s *State) verifyClient(m *material, chain []*x509.Certificate) (principal string, until time.Time, reason string, err error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	now := s.now()
	if now.After(leaf.NotAfter) {
		return "", time.Time{}, "expired_certificate", fmt.Errorf("the client certificate expired at %s; renew it", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: m.ca, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return "", time.Time{}, "untrusted_certificate", fmt.Errorf("the client certificate is not one the cluster's CA signed for clients: %v", err)
	}
	for _, c := range chains {
		end := c[0].NotAfter
		for _, up := range c[1:] {
			if up.NotAfter.Before(end) {
				end = up.NotAfter
			}
		}
		if end.After(until) {
			until = end
		}
	}
	if cns := commonNames(leaf.Subject); len(cns) > 1 {
		// Go takes the last; a PKI, a proxy or a log that reads the first
		// would take the caller for another principal.
		shown := cns[:min(len(cns), 3)]
		if len(cns) > len(shown) {
			shown = append(shown, fmt.Sprintf("and %d more", len(cns)-len(shown)))
		}
		return "", time.Time{}, "bad_principal", fmt.Errorf("the client certificate's subject has %d common names (%s): a principal is named by "+
			"exactly one; issue the certificate again with a single CN (lockstep certs client NAME)", len(cns), strings.Join(shown, ", "))
	}
	if err := config.ValidPrincipal(leaf.Subject.CommonName); err != nil {
		return "", time.Time{}, "bad_principal", fmt.Errorf("the client certificate's common name %v", err)
	}
	return leaf.Subject.CommonName, until, "", nil
}

// oidCommonName is the X.509 attribute type of a common name (CN).
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// commonNames are the CN attributes of a subject, in order, quoted: a
// subject may hold several, of which pkix.Name.CommonName keeps the last.
func commonNames(n pkix.Name) []string {
	var cns []string
	for _, a := range n.Names {
		if a.Type.Equal(oidCommonName) {
			cns = append(cns, quote.Bounded(fmt.Sprint(a.Value)))
		}
	}
	return cns
}

func (s *State) refuse(reason string, err error) error {
	if !slices.Contains(authFailureReasons, reason) {
		panic(fmt.Sprintf("security: refuse(%q): a reason missing from authFailureReasons", reason))
	}
	s.metrics.authFailures.WithLabelValues(reason).Inc()
	return connect.NewError(connect.CodeUnauthenticated, err)
}

// Authorize applies the ACL. List and Watch are never refused by name:
// they leave out what the caller may not read (CanRead).
func (s *State) Authorize(ctx context.Context, who rpc.Principal, procedure string, msg any) error {
	action := rpc.ActionOf(procedure)
	m := s.cur.Load()
	if action == "" || m.acl == nil || rpc.Filtered(procedure) {
		return nil
	}
	if rpc.Whole(procedure) {
		if allowed(m.acl, who.ID, action, "", false) {
			return nil
		}
		s.metrics.aclDenials.WithLabelValues(action).Inc()
		why := "it changes the service of every name"
		if procedure == lockstepv1connect.ClusterServiceBackupProcedure {
			why = "it reads every name"
		}
		return connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("principal %q may not %s (%s): %s, so it needs a rule of security.acl with prefix \"\" that allows %s",
				who.ID, action, procedure, why, action))
	}
	name, named := rpc.NameOf(msg)
	if named && action != rpc.ActionAdmin {
		if allowed(m.acl, who.ID, action, name, false) {
			return nil
		}
		s.metrics.aclDenials.WithLabelValues(action).Inc()
		return connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("principal %q may not %s %s: no rule of security.acl allows it", who.ID, action, quote.Bounded(name)))
	}
	if allowed(m.acl, who.ID, action, "", true) {
		return nil
	}
	if procedure == lockstepv1connect.ClusterServiceStatusProcedure {
		// Which member leads each shard: the Go client and the CLI ask it
		// to send each request to its shard's leader, so a principal that
		// may only use names must not be refused it (every command of
		// such a principal was counted as a denial, which an alert on
		// denials fires on). It names no object, owner or value.
		for _, a := range []string{rpc.ActionUse, rpc.ActionAdmin} {
			if allowed(m.acl, who.ID, a, "", true) {
				return nil
			}
		}
	}
	s.metrics.aclDenials.WithLabelValues(action).Inc()
	return connect.NewError(connect.CodePermissionDenied,
		fmt.Errorf("principal %q may not %s (%s): no rule of security.acl allows it", who.ID, action, procedure))
}

// CanRead says whether who may read name: what List and Watch show.
func (s *State) CanRead(_ context.Context, who rpc.Principal, name string) bool {
	m := s.cur.Load()
	return m.acl == nil || allowed(m.acl, who.ID, rpc.ActionRead, name, false)
}

// AdministersSessions says whether who may show, list and close every
// principal's sessions: a principal allowed admin on every name (a rule of
// prefix ""), as membership changes and backups need; without an acl key
// every authenticated principal, who may do everything.
func (s *State) AdministersSessions(_ context.Context, who rpc.Principal) bool {
	m := s.cur.Load()
	return who.ID != "" && (m.acl == nil || allowed(m.acl, who.ID, rpc.ActionAdmin, "", false))
}

// allowed says whether a rule gives principal the action on name, or, with
// anyName, on some name (requests that name none: sessions, cluster).
func allowed(acl []config.ACLRule, principal, action, name string, anyName bool) bool {
	if principal == "" {
		return false
	}
	for _, r := range acl {
		if r.Principal != "*" && r.Principal != principal {
			continue
		}
		if !anyName && !strings.HasPrefix(name, r.Prefix) {
			continue
		}
		for _, a := range r.Allow {
			if a == action {
				return true
			}
		}
	}
	return false
}

// Metrics are the security counters.
type Metrics struct {
	authFailures *prometheus.CounterVec
	aclDenials   *prometheus.CounterVec
	auditErrors  prometheus.Counter
	certExpiry   prometheus.Gauge // of the certificate in force; 0 without TLS
}

// authFailureReasons are the reasons of lockstep_auth_failures_total, as
// docs/security.md lists them; refuse takes no other.
var authFailureReasons = []string{"no_credentials", "no_certificate", "bad_scheme", "unknown_api_key",
	"expired_certificate", "untrusted_certificate", "bad_principal"}

// NewMetrics makes the counters and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_auth_failures_total",
			Help: "Requests refused with 401, by reason (no_credentials, unknown_api_key, expired_certificate, untrusted_certificate, ...).",
		}, []string{"reason"}),
		aclDenials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_acl_denials_total",
			Help: "Requests refused with 403 by the ACL, by action (read, use, admin).",
		}, []string{"action"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lockstep_audit_write_errors_total",
			Help: "Failed writes, flushes or rotations of the audit log; while it fails, requests are refused with 503.",
		}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockstep_tls_certificate_expiry_timestamp_seconds",
			Help: "When the member's certificate in force (API, metrics and Raft) expires, in Unix seconds; 0 without TLS. A reload (SIGHUP) of renewed files moves it.",
		}),
	}
	// Every series at 0 from the start, so that a rate over a restart or
	// an alert on an increase sees the first refusal (a counter that
	// appears at 1 shows no increase).
	for _, r := range authFailureReasons {
		m.authFailures.WithLabelValues(r)
	}
	for _, a := range []string{rpc.ActionRead, rpc.ActionUse, rpc.ActionAdmin} {
		m.aclDenials.WithLabelValues(a)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.authFailures, m.aclDenials, m.auditErrors, m.certExpiry} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
