package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

// PKI is a secured cluster's credentials (Options.Secure), made fresh in
// Dir/pki by New with the same code as `lockstep certs`: a CA, one
// certificate per node (127.0.0.1 as its host), a client certificate whose
// common name is ClientPrincipal, and one API key whose principal is
// KeyPrincipal. Every member serves TLS on the API, metrics and Raft
// (Raft is mutual TLS), and the API asks for a client certificate or an
// API key (client_auth: request): docs/security.md.
type PKI struct {
	Dir                  string
	CAFile               string
	ClientCert           string
	ClientKey            string
	ClientPrincipal      string
	APIKey, KeyPrincipal string

	ca       *security.Authority
	keysFile string
	tls      *tls.Config // trusts the CA, presents the client certificate
}

// The principals of a secured cluster's client credentials.
const (
	ClientPrincipal = "chaos-cert"
	KeyPrincipal    = "chaos-key"
)

func newPKI(dir string) (*PKI, error) {
	p := &PKI{Dir: filepath.Join(dir, "pki"), ClientPrincipal: ClientPrincipal, KeyPrincipal: KeyPrincipal}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	ca, err := security.NewAuthority("lockstep chaos CA", now, now.Add(security.CertValidity))
	if err != nil {
		return nil, err
	}
	if err := ca.Write(p.Dir); err != nil {
		return nil, err
	}
	p.ca, p.CAFile = ca, filepath.Join(p.Dir, security.CACertFile)
	cl, err := ca.IssueClient(ClientPrincipal, now, now.Add(security.CertValidity))
	if err != nil {
		return nil, err
	}
	p.ClientCert, p.ClientKey = filepath.Join(p.Dir, "client.pem"), filepath.Join(p.Dir, "client-key.pem")
	if err := writePair(p.ClientCert, p.ClientKey, cl); err != nil {
		return nil, err
	}
	key, digest, err := security.NewAPIKey()
	if err != nil {
		return nil, err
	}
	p.APIKey, p.keysFile = key, filepath.Join(p.Dir, "keys.yaml")
	if err := os.WriteFile(p.keysFile, fmt.Appendf(nil, "- {principal: %s, sha256: %s}\n", KeyPrincipal, digest), 0o600); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	pair, err := tls.X509KeyPair(cl.CertPEM, cl.KeyPEM)
	if err != nil {
		return nil, err
	}
	p.tls = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{pair}}
	return p, nil
}

func writePair(certFile, keyFile string, is security.Issued) error {
	if err := os.WriteFile(certFile, is.CertPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, is.KeyPEM, 0o600)
}

// TLSConfig is a client TLS configuration that trusts the cluster's CA and
// presents the client certificate (a copy: the caller may change it).
func (p *PKI) TLSConfig() *tls.Config { return p.tls.Clone() }

// issueNode writes nd's certificate and key into the PKI directory.
func (p *PKI) issueNode(nd *Node) error {
	now := time.Now().Add(-time.Hour)
	is, err := p.ca.IssueNode(nd.ID, []string{"127.0.0.1"}, now, now.Add(security.CertValidity))
	if err != nil {
		return err
	}
	nd.certFile, nd.keyFile = filepath.Join(p.Dir, nd.ID+".pem"), filepath.Join(p.Dir, nd.ID+"-key.pem")
	return writePair(nd.certFile, nd.keyFile, is)
}

// Secure fills cfg.Security for nd: TLS everywhere with its certificate,
// clients by certificate or API key. A joining node's configuration
// (written by the caller) needs it too.
func (c *Cluster) Secure(nd *Node, cfg *config.Config) {
	if c.PKI == nil {
		return
	}
	cfg.Security.TLS = &config.TLS{CertFile: nd.certFile, KeyFile: nd.keyFile, CAFile: c.PKI.CAFile,
		ClientAuth: config.ClientAuthRequest}
	cfg.Security.APIKeysFile = c.PKI.keysFile
}

func (nd *Node) scheme() string {
	if nd.tls != nil {
		return "https"
	}
	return "http"
}

// http is the client the harness asks the node with; every request is
// bounded by requestTimeout so a stopped node costs at most that.
func (nd *Node) http() *http.Client {
	if nd.tls == nil {
		return plainClient
	}
	return nd.tlsClient
}

var plainClient = &http.Client{Timeout: requestTimeout}
