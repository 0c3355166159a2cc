package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

// secureSetup is what -tls and -api-key turn on for a started cluster: a CA
// and node certificates (TLS on the API, metrics and Raft, which is mutual
// TLS), client authentication by certificate (-tls) or by API key
// (-api-key), and an audit log per node, so that the cycle points measure
// what a secured cluster costs next to the plaintext one.
type secureSetup struct {
	dir    string
	tls    bool
	apiKey string // sent by every client when set
	client *tls.Config
}

func newSecureSetup(withTLS, withKey bool) (*secureSetup, error) {
	dir, err := os.MkdirTemp("", "lockbench-pki-")
	if err != nil {
		return nil, err
	}
	s := &secureSetup{dir: dir, tls: withTLS}
	now := time.Now().Add(-time.Minute)
	ca, err := security.NewAuthority("lockbench CA", now, now.Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	if err := ca.Write(dir); err != nil {
		return nil, err
	}
	for i := 1; i <= 3; i++ {
		is, err := ca.IssueNode(fmt.Sprintf("node-%d", i), []string{"127.0.0.1"}, now, now.Add(24*time.Hour))
		if err != nil {
			return nil, err
		}
		if _, _, err := is.Write(dir, fmt.Sprintf("node-%d", i)); err != nil {
			return nil, err
		}
	}
	if withKey {
		key, digest, err := security.NewAPIKey()
		if err != nil {
			return nil, err
		}
		s.apiKey = key
		if err := os.WriteFile(filepath.Join(dir, "keys.yaml"), []byte("- {principal: bench, sha256: "+digest+"}\n"), 0o600); err != nil {
			return nil, err
		}
	}
	if withTLS {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		s.client = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if !withKey {
			is, err := ca.IssueClient("bench", now, now.Add(24*time.Hour))
			if err != nil {
				return nil, err
			}
			cert, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
			if err != nil {
				return nil, err
			}
			s.client.Certificates = []tls.Certificate{cert}
		}
	}
	return s, nil
}

// describe names the setup in the output.
func (s *secureSetup) describe() string {
	if s == nil {
		return "plaintext, no authentication, no audit"
	}
	d := "plaintext"
	if s.tls {
		d = "TLS (Raft mutual TLS)"
	}
	if s.apiKey != "" {
		return d + " + API key + audit log"
	}
	return d + " + client certificates + audit log"
}

// configure adds the security key to a node's configuration.
func (s *secureSetup) configure(id string, cfg *config.Config) {
	if s == nil {
		return
	}
	if s.tls {
		cfg.Security.TLS = &config.TLS{CertFile: filepath.Join(s.dir, id+".pem"), KeyFile: filepath.Join(s.dir, id+"-key.pem"),
			CAFile: filepath.Join(s.dir, security.CACertFile), ClientAuth: config.ClientAuthNone}
		if s.apiKey == "" {
			cfg.Security.TLS.ClientAuth = config.ClientAuthRequire
		}
	}
	if s.apiKey != "" {
		cfg.Security.APIKeysFile = filepath.Join(s.dir, "keys.yaml")
	}
	cfg.Security.Audit = &config.Audit{Path: filepath.Join(s.dir, id+"-audit.jsonl"), MaxSizeMB: 100, MaxFiles: 2}
}

func (s *secureSetup) scheme() string {
	if s != nil && s.tls {
		return "https"
	}
	return "http"
}

// httpClient is one reused connection: HTTP/2 over TLS by ALPN, or h2c.
func (s *secureSetup) httpClient() *http.Client {
	var rt http.RoundTripper
	if s != nil && s.tls {
		rt = &http.Transport{TLSClientConfig: s.client.Clone(), ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute}
	} else {
		rt = h2c().Transport
	}
	if s != nil && s.apiKey != "" {
		rt = bearer{key: s.apiKey, next: rt}
	}
	return &http.Client{Transport: rt}
}

// bearer sends the API key with every request.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(r)
}

func (s *secureSetup) remove() {
	if s != nil && os.Getenv("LOCKBENCH_KEEP") == "" {
		os.RemoveAll(s.dir)
	}
}

// cpuPerOp is the CPU every process (nodes and lockbench) spent per
// operation between two snapshots, in µs.
func (b *bench) cpuPerOp(a, z snap, ops int64) float64 {
	if ops == 0 {
		return 0
	}
	total := 0.0
	for k, v := range z.cpu {
		total += v - a.cpu[k]
	}
	return 1e6 * total / float64(ops)
}

// compareSecure runs the cycle points on a secured cluster and prints them
// next to the plaintext ones.
func compareSecure(o options, plain map[int]result) error {
	sec, err := newSecureSetup(o.tls, o.apiKey)
	if err != nil {
		return err
	}
	defer sec.remove()
	var extra []string
	if o.serveExtra != "" {
		extra = strings.Fields(o.serveExtra)
	}
	c, err := startCluster(o.bin, 3, extra, o.conns, false, sec)
	if err != nil {
		return err
	}
	defer c.stop()
	b := &bench{c: c, o: o}
	if err := b.prepare(); err != nil {
		return err
	}
	fmt.Printf("# secured: %s\n", sec.describe())
	secured := map[int]result{}
	for _, n := range o.clients {
		r, err := b.cycles(n)
		if err != nil {
			return err
		}
		r.print(fmt.Sprintf("secured cycles, %d clients", n))
		secured[n] = r
	}
	fmt.Printf("\n# plaintext vs %s (CPU µs per cycle: all processes, this machine)\n", sec.describe())
	fmt.Printf("%-10s %14s %14s %12s %12s\n", "clients", "plain cyc/s", "secure cyc/s", "plain µs", "secure µs")
	for _, n := range o.clients {
		s := secured[n]
		p, ok := plain[n]
		if !ok {
			// The secured points go through raw Connect; a plain point
			// through the Go client is no match for them, and a missing
			// one printed as 0 cycles/s.
			fmt.Printf("%-10d %14s %14.0f %12s %12.0f\n", n, "-", s.rate(), "-", s.cpuUs)
			continue
		}
		fmt.Printf("%-10d %14.0f %14.0f %12.0f %12.0f\n", n, p.rate(), s.rate(), p.cpuUs, s.cpuUs)
	}
	if len(plain) == 0 {
		fmt.Println("# the secured points run through raw Connect: give -via connect (too) for the plain column")
	}
	return nil
}

func (r result) rate() float64 {
	if r.secs <= 0 {
		return 0
	}
	return float64(r.ops) / r.secs
}
