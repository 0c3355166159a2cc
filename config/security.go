package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Security is the security key: TLS on every connection, who may call the
// API (client certificates, API keys), what each caller may do (ACL), and
// the audit log. See docs/security.md.
type Security struct {
	// TLS is this node's certificate, for the API, metrics and Raft. Absent:
	// everything is plaintext, which only loopback addresses may serve
	// unless Insecure is set.
	TLS *TLS `yaml:"tls,omitempty"`
	// APIKeysFile lists the API keys' principals and SHA-256 digests.
	// Defaults to none: no API keys.
	APIKeysFile string `yaml:"api_keys_file,omitempty"`
	// ACL are the rules of who may do what on which names. nil (the key
	// absent): every authenticated principal may do everything.
	ACL []ACLRule `yaml:"acl,omitempty"`
	// Audit is where each operation is recorded. Absent: no audit log.
	Audit *Audit `yaml:"audit,omitempty"`
	// Insecure allows plaintext on addresses that are not loopback.
	Insecure bool `yaml:"insecure,omitempty"`
	// MaxStreamsPerPrincipal bounds the streams (Watch, Observe, session
	// streams) one authenticated principal may hold open on a member at
	// once. 0: DefaultMaxStreamsPerPrincipal.
	MaxStreamsPerPrincipal int `yaml:"max_streams_per_principal,omitempty"`
}

// DefaultMaxStreamsPerPrincipal is security.max_streams_per_principal's
// default: a Go client holds one session stream per member it talks to,
// plus its watches and observes, so a thousand is a large fleet under one
// principal; a reviewer's principal that could read nothing held 2,000
// watches and took a member from 60 to 361 MB.
const DefaultMaxStreamsPerPrincipal = 1000

// StreamsPerPrincipal is the bound in force.
func (s Security) StreamsPerPrincipal() int {
	if s.MaxStreamsPerPrincipal == 0 {
		return DefaultMaxStreamsPerPrincipal
	}
	return s.MaxStreamsPerPrincipal
}

// TLS is a node's certificate and the CA that signs members and clients.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// CAFile signs the members (Raft is mutual TLS) and, for client_auth
	// request or require, the clients' certificates.
	CAFile string `yaml:"ca_file"`
	// ClientAuth is none, request or require. Defaults to none.
	ClientAuth string `yaml:"client_auth,omitempty"`
}

// Client authentication modes on the API port.
const (
	ClientAuthNone    = "none"    // no client certificates; API keys if a keys file is given
	ClientAuthRequest = "request" // a client certificate or an API key
	ClientAuthRequire = "require" // a client certificate, always
)

// ACLRule allows a principal some actions on the names under a prefix.
type ACLRule struct {
	// Principal is a certificate's common name or an API key's principal;
	// "*" is any authenticated principal.
	Principal string `yaml:"principal"`
	// Prefix selects the names the rule covers; "" is every name.
	Prefix string `yaml:"prefix"`
	// Allow holds actions: read, use, admin.
	Allow []string `yaml:"allow"`
}

// The ACL's actions.
const (
	ActionRead  = "read"  // status, list, watch, leader, check fence
	ActionUse   = "use"   // acquire, release, renew, campaign, resign, wait, sessions
	ActionAdmin = "admin" // cluster membership and leadership
)

// Audit is the audit log's file and rotation.
type Audit struct {
	// Path is the file ("-": standard output).
	Path string `yaml:"path"`
	// MaxSizeMB rotates the file at this size. Defaults to 100.
	MaxSizeMB int `yaml:"max_size_mb,omitempty"`
	// MaxFiles is how many rotated files are kept. Defaults to 5.
	MaxFiles int `yaml:"max_files,omitempty"`
}

// Defaults of the audit log.
const (
	DefaultAuditMaxSizeMB = 100
	DefaultAuditMaxFiles  = 5
)

// reservedPrincipals are names a principal may not take: the mark of the
// sessions the server makes for one request (owner auto:PRINCIPAL:label)
// and of the runtime's own request ids (rt/...), which a principal of that
// name could otherwise be mistaken for.
var reservedPrincipals = map[string]bool{"auto": true, "rt": true}

// MaxPrincipalBytes bounds a principal's name.
const MaxPrincipalBytes = 64

// ValidPrincipal says what is wrong with a principal's name, if anything.
// The set of characters is small because the API records a session's
// principal in front of its owner label ("PRINCIPAL:label").
func ValidPrincipal(p string) error {
	if p == "" {
		return errors.New("required: a name such as ci")
	}
	if reservedPrincipals[p] {
		return fmt.Errorf("%q is reserved: the server's own owner labels (auto:) and request ids (rt/) begin with it; choose another name", p)
	}
	if len(p) > MaxPrincipalBytes {
		return fmt.Errorf("is %d bytes: at most %d", len(p), MaxPrincipalBytes)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r)) {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_', '.' and '@'", p)
		}
	}
	return nil
}

func (s Security) validate(c Cluster) error {
	if t := s.TLS; t != nil {
		for _, f := range []struct{ key, v string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
			if f.v == "" {
				return fmt.Errorf("security.tls.%s: required with security.tls (Raft is mutual TLS: see docs/security.md)", f.key)
			}
		}
		switch t.ClientAuth {
		case "", ClientAuthNone, ClientAuthRequest, ClientAuthRequire:
		default:
			return fmt.Errorf("security.tls.client_auth: must be none, request or require, got %q", t.ClientAuth)
		}
	}
	if s.ACL != nil && s.APIKeysFile == "" && (s.TLS == nil || s.TLS.ClientAuth == "" || s.TLS.ClientAuth == ClientAuthNone) {
		return errors.New("security.acl: needs authenticated callers: set security.api_keys_file or security.tls.client_auth (request or require)")
	}
	for i, r := range s.ACL {
		if err := r.validate(); err != nil {
			return fmt.Errorf("security.acl[%d] (principal %q, prefix %q): %w", i, r.Principal, r.Prefix, err)
		}
	}
	if s.MaxStreamsPerPrincipal < 0 || s.MaxStreamsPerPrincipal > 1_000_000 {
		return fmt.Errorf("security.max_streams_per_principal: must be within 1..1000000 (0 or absent: %d), got %d",
			DefaultMaxStreamsPerPrincipal, s.MaxStreamsPerPrincipal)
	}
	if a := s.Audit; a != nil {
		if a.Path == "" {
			return errors.New("security.audit.path: required with security.audit: a file, or - for standard output")
		}
		if a.MaxSizeMB < 0 || a.MaxSizeMB > 100_000 {
			return fmt.Errorf("security.audit.max_size_mb: must be within 1..100000, got %d", a.MaxSizeMB)
		}
		if a.MaxFiles < 0 || a.MaxFiles > 1000 {
			return fmt.Errorf("security.audit.max_files: must be within 1..1000, got %d", a.MaxFiles)
		}
	}
	if s.TLS == nil && !s.Insecure {
		for _, a := range []struct{ key, addr string }{{"cluster.api_address", c.APIAddress},
			{"cluster.metrics_address", c.MetricsAddress}, {"cluster.raft_address", c.RaftAddress},
			{"cluster.raft_listen_address", c.RaftListenAddress}} {
			// An address that is not host:port has its own error.
			if a.addr != "" && ValidHostPort(a.addr) == nil && !IsLoopback(a.addr) {
				return fmt.Errorf("%s: %s is not a loopback address, and plaintext is served only on loopback: "+
					"set security.tls (see docs/security.md), or security.insecure: true (--insecure) to serve it unprotected",
					a.key, a.addr)
			}
		}
	}
	return nil
}

func (r ACLRule) validate() error {
	if r.Principal != "*" {
		if err := ValidPrincipal(r.Principal); err != nil {
			return fmt.Errorf("principal: %w", err)
		}
	}
	if len(r.Allow) == 0 {
		return errors.New("allow: required: one or more of read, use, admin")
	}
	for _, a := range r.Allow {
		switch a {
		case ActionRead, ActionUse, ActionAdmin:
		default:
			return fmt.Errorf("allow: unknown action %q: the actions are read, use and admin", a)
		}
	}
	return nil
}

// IsLoopback says whether a host:port names this host only: a loopback IP
// or "localhost". Other names are not resolved: a name could point anywhere.
func IsLoopback(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Plaintext says which of this node's addresses are served without TLS
// though they are not loopback (allowed only by security.insecure); the
// server warns about them at every start.
func (c Config) Plaintext() []string {
	if c.Security.TLS != nil {
		return nil
	}
	var out []string
	for _, a := range []string{c.Cluster.APIAddress, c.Cluster.MetricsAddress, c.Cluster.RaftAddress, c.Cluster.RaftListenAddress} {
		if a != "" && !IsLoopback(a) {
			out = append(out, a)
		}
	}
	return out
}

// ACLEmptyWarning says what an acl key with no rules means: nothing is
// allowed, which an operator who wrote "acl: []" for "no ACL" would not
// expect (without the key everything is).
const ACLEmptyWarning = "security.acl has no rules: no principal may do anything, every request but health checks and gRPC reflection is refused (403), " +
	"and List and Watch show nothing; to let every authenticated principal do everything remove the acl key, else add rules (docs/security.md, ACL)"

// Warnings are what a start, serve --check and a reload warn of in s
// without refusing it:
//   - a private key file its group or others may read (mode 0644, as a
//     copy or an editor may leave it), named with its mode and the chmod
//     that fixes it, as ssh does of a key; refusing it would stop
//     deployments that run so at their next restart. The API keys file
//     is not checked: it holds SHA-256 digests, not keys. Not on Windows,
//     where modes do not say who may read;
//   - an acl key with no rules (ACLEmptyWarning);
//   - a rule that allows admin on a prefix other than "", which grants
//     nothing (every admin call concerns every name: rpc.Whole).
func (s Security) Warnings() []string {
	var ws []string
	if s.TLS != nil && s.TLS.KeyFile != "" && goruntime.GOOS != "windows" {
		ws = append(ws, keyFileWarning("security.tls.key_file", s.TLS.KeyFile)...)
	}
	if s.ACL != nil && len(s.ACL) == 0 {
		ws = append(ws, ACLEmptyWarning)
	}
	for i, r := range s.ACL {
		if r.Prefix != "" && slices.Contains(r.Allow, ActionAdmin) {
			ws = append(ws, fmt.Sprintf("security.acl[%d] (principal %q, prefix %q) allows admin, which grants nothing on a prefix: "+
				"backup, membership and leadership concern every name and need a rule with prefix \"\" (docs/security.md, ACL)", i, r.Principal, r.Prefix))
		}
	}
	return ws
}

func keyFileWarning(key, path string) []string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return nil // a missing file is LoadMaterial's to say
	}
	return []string{fmt.Sprintf("%s %s: mode %04o lets its group or others read the private key: chmod 600 %s",
		key, path, fi.Mode().Perm(), path)}
}

// CheckAuditPath checks that the audit log can be created where
// security.audit.path says (serve --check): its directory exists, and the
// path is not a directory. A start does not check it: a member whose audit
// log cannot be written starts, and refuses every request (503) until it
// can (docs/security.md, Audit log). An error wrapping fs.ErrPermission
// says that the directory could not be looked at (--check often runs as
// another user than the service). Nil without an audit log, or for "-".
func (s Security) CheckAuditPath() error {
	if s.Audit == nil || s.Audit.Path == "-" {
		return nil
	}
	path := s.Audit.Path
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("security.audit.path %s: the directory %s does not exist: a member started so refuses every request (503) "+
			"until it can write the audit log; make the directory (writable by the service's user), or fix the path", path, dir)
	case err != nil:
		return fmt.Errorf("security.audit.path %s: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("security.audit.path %s: %s is not a directory", path, dir)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("security.audit.path %s: is a directory: name a file in it (audit.jsonl)", path)
	}
	return nil
}

// resolvePaths makes the security files' paths relative to dir (the
// configuration file's folder) absolute.
func (s *Security) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	if s.TLS != nil {
		abs(&s.TLS.CertFile)
		abs(&s.TLS.KeyFile)
		abs(&s.TLS.CAFile)
	}
	abs(&s.APIKeysFile)
	if s.Audit != nil {
		abs(&s.Audit.Path)
	}
}

func (s *Security) setDefaults() {
	if s.TLS != nil && s.TLS.ClientAuth == "" {
		s.TLS.ClientAuth = ClientAuthNone
	}
	if s.Audit != nil {
		if s.Audit.MaxSizeMB == 0 {
			s.Audit.MaxSizeMB = DefaultAuditMaxSizeMB
		}
		if s.Audit.MaxFiles == 0 {
			s.Audit.MaxFiles = DefaultAuditMaxFiles
		}
	}
}

// Material is what the security files hold, loaded and checked.
type Material struct {
	// Cert is the node's certificate and key (nil without TLS), Leaf parsed.
	Cert *tls.Certificate
	// CA verifies members and clients (nil without TLS).
	CA *x509.CertPool
	// CACerts are the certificates of ca_file, in the file's order (nil
	// without TLS): what CA holds, for a reload to say what changed.
	CACerts []*x509.Certificate
	// APIKeys maps a key's SHA-256 (hex) to its principal.
	APIKeys map[string]string
}

// LoadMaterial reads and checks the files s names, as of now: the
// certificate must match its key, be valid now and be signed by the CA; the
// keys file must parse. The error is one line naming the file and the
// problem. The server calls it at start and on every reload (SIGHUP).
func (s Security) LoadMaterial(now time.Time) (*Material, error) {
	m := &Material{APIKeys: map[string]string{}}
	if t := s.TLS; t != nil {
		for _, f := range []struct{ key, path string }{{"cert_file", t.CertFile}, {"key_file", t.KeyFile}, {"ca_file", t.CAFile}} {
			if _, err := os.Stat(f.path); err != nil {
				return nil, fmt.Errorf("security.tls.%s %s: %w", f.key, f.path, errors.Unwrap(err))
			}
		}
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			if strings.Contains(err.Error(), "does not match") {
				return nil, fmt.Errorf("security.tls.key_file %s: is not the key of the certificate in %s", t.KeyFile, t.CertFile)
			}
			return nil, fmt.Errorf("security.tls.cert_file %s / key_file %s: %v", t.CertFile, t.KeyFile, err)
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, fmt.Errorf("security.tls.cert_file %s: %v", t.CertFile, err)
			}
			cert.Leaf = leaf
		}
		if now.After(leaf.NotAfter) {
			return nil, fmt.Errorf("security.tls.cert_file %s: expired at %s", t.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		if now.Before(leaf.NotBefore) {
			return nil, fmt.Errorf("security.tls.cert_file %s: not valid before %s", t.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		pool, caCerts, err := loadCAPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		inter := x509.NewCertPool()
		for _, der := range cert.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				inter.AddCert(c)
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("security.tls.ca_file %s: did not sign the certificate in %s (%v)", t.CAFile, t.CertFile, err)
		}
		m.Cert, m.CA, m.CACerts = &cert, pool, caCerts
	}
	if s.APIKeysFile != "" {
		keys, err := LoadAPIKeys(s.APIKeysFile)
		if err != nil {
			return nil, err
		}
		m.APIKeys = keys
	}
	return m, nil
}

// LoadMaterial loads the security files (Security.LoadMaterial) and checks
// that the member's certificate is one it can use: for server use, since
// clients check it; and, in a cluster of more than this member (peers, or
// join), for client use too (it dials its peers, whose Raft port takes only
// a member's certificate), naming the host of its raft_address, which its
// peers check when they dial it. Either mistake would otherwise show only
// as a member its peers cannot reach. A lone member is not held to the
// last two: it dials nobody, and its certificate may be a server's only.
func (c Config) LoadMaterial(now time.Time) (*Material, error) {
	m, err := c.Security.LoadMaterial(now)
	if err != nil || m.Cert == nil {
		return m, err
	}
	return m, c.checkMemberCertificate(m.Cert.Leaf)
}

func (c Config) checkMemberCertificate(leaf *x509.Certificate) error {
	path := c.Security.TLS.CertFile
	if !usableFor(leaf, x509.ExtKeyUsageServerAuth) {
		return fmt.Errorf("security.tls.cert_file %s: is not for server use (a client's certificate?), which clients check: make one with lockstep certs node", path)
	}
	if len(c.Cluster.Peers) == 1 && !c.Cluster.Join {
		return nil // AddNode checks it when the lone member gets a peer (CheckPeerCertificate)
	}
	// No peers and no join: a restart of a member that joined, which has
	// peers (a first start without either is refused).
	return c.CheckPeerCertificate(leaf)
}

// CheckCertificateForPeers reads the member's certificate file as it is
// now (Raft reads it at every dial when the runtime is not given the
// certificate in force) and checks it as CheckPeerCertificate does. Nil
// without TLS.
func (c Config) CheckCertificateForPeers() error {
	t := c.Security.TLS
	if t == nil {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return fmt.Errorf("security.tls.cert_file %s: %v", t.CertFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return fmt.Errorf("security.tls.cert_file %s: %v", t.CertFile, err)
	}
	return c.CheckPeerCertificate(leaf)
}

// CheckPeerCertificate checks that the member's certificate leaf can serve
// a cluster of several: for client use, naming the host of raft_address.
// AddNode calls it (or CheckCertificateForPeers), so that a member started
// alone, whose file says no peers and so was not held to it, is not grown
// into a cluster its peers cannot reach.
func (c Config) CheckPeerCertificate(leaf *x509.Certificate) error {
	path := c.Security.TLS.CertFile
	if !usableFor(leaf, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("security.tls.cert_file %s: is not for client use, which a member needs to dial its peers: make one with lockstep certs node", path)
	}
	host, _, err := net.SplitHostPort(c.Cluster.RaftAddress)
	if err != nil {
		return nil // Validate names it
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return fmt.Errorf("security.tls.cert_file %s: does not name %s, the host of cluster.raft_address, which the other members check when they dial it: make it with --hosts including %s (%v)",
			path, host, host, err)
	}
	return nil
}

// usableFor says whether cert may be used for u: it names u or any use,
// or no extended use at all (then it may be used for anything).
func usableFor(cert *x509.Certificate, u x509.ExtKeyUsage) bool {
	if len(cert.ExtKeyUsage) == 0 && len(cert.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, have := range cert.ExtKeyUsage {
		if have == u || have == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func loadCAPool(path string) (*x509.CertPool, []*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("security.tls.ca_file %s: %w", path, errors.Unwrap(err))
	}
	pool := x509.NewCertPool()
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("security.tls.ca_file %s: %v", path, err)
		}
		pool.AddCert(c)
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("security.tls.ca_file %s: holds no PEM certificate", path)
	}
	return pool, certs, nil
}

// APIKeyEntry is one line of the API keys file.
type APIKeyEntry struct {
	Principal string `yaml:"principal"`
	// SHA256 is the hex SHA-256 of the key; the key itself is never stored.
	SHA256 string `yaml:"sha256"`
}

// LoadAPIKeys reads an API keys file (a YAML list of APIKeyEntry) into a
// map from digest to principal.
func LoadAPIKeys(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("security.api_keys_file %s: %w", path, errors.Unwrap(err))
	}
	var entries []APIKeyEntry
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil && err.Error() != "EOF" {
		return nil, fmt.Errorf("security.api_keys_file %s: must be a list of {principal: NAME, sha256: HEX} (%s)",
			path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n"), "\n", " "))
	}
	keys := make(map[string]string, len(entries))
	for i, e := range entries {
		if err := ValidPrincipal(e.Principal); err != nil {
			return nil, fmt.Errorf("security.api_keys_file %s: entry %d: principal %w", path, i+1, err)
		}
		d := strings.ToLower(e.SHA256)
		if raw, err := hex.DecodeString(d); err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("security.api_keys_file %s: entry %d (%s): sha256 must be 64 hex digits", path, i+1, e.Principal)
		}
		if other, dup := keys[d]; dup {
			return nil, fmt.Errorf("security.api_keys_file %s: entry %d (%s): the same key as %s's", path, i+1, e.Principal, other)
		}
		keys[d] = e.Principal
	}
	return keys, nil
}
