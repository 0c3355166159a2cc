package security

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Validity of what `lockstep certs` makes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 2 * 365 * 24 * time.Hour
)

// Authority is a certificate authority: its certificate and key.
type Authority struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// The files of an authority in its directory.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca-key.pem"
)

// CAPrefix begins the common name of every CA lockstep certs ca makes.
const CAPrefix = "Lockstep CA "

// maxCANameLen keeps the common name within X.509's 64 characters.
const maxCANameLen = 64 - len(CAPrefix)

// CAName is the common name of a new CA: "Lockstep CA NAME", or, without
// a name, "Lockstep CA" with the date and 6 random hex digits, so that two
// clusters' CAs can be told apart in a trust store and in the errors that
// name an authority.
func CAName(name string, now time.Time) (string, error) {
	if name == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s%s %x", CAPrefix, now.UTC().Format("2006-01-02"), b), nil
	}
	if strings.TrimSpace(name) != name || len(name) > maxCANameLen {
		return "", fmt.Errorf("give 1 to %d characters without spaces at either end, like --name prod-eu", maxCANameLen)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" -_.", r)) {
			return "", fmt.Errorf("may hold only letters, digits, spaces, '-', '_' and '.', like --name prod-eu")
		}
	}
	return CAPrefix + name, nil
}

// NewAuthority makes a self-signed CA (ECDSA P-256) valid from notBefore to
// notAfter.
func NewAuthority(name string, notBefore, notAfter time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl, err := template(name, notBefore, notAfter, &key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.MaxPathLenZero = true, true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// template is a certificate's common part; the serial is random and the
// subject key id is the public key's hash, as RFC 5280 suggests.
func template(cn string, notBefore, notAfter time.Time, pub *ecdsa.PublicKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	ski := sha256.Sum256(pubDER)
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Lockstep"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		SubjectKeyId: ski[:20],
	}, nil
}

// Issued is a certificate and its key, PEM encoded.
type Issued struct {
	CertPEM, KeyPEM []byte
}

// IssueNode makes a member's certificate: the node id as common name, the
// hosts (IP addresses or DNS names) as subject alternative names, good for
// serving (API, metrics, Raft) and for dialling the other members (Raft is
// mutual TLS).
func (a *Authority) IssueNode(nodeID string, hosts []string, notBefore, notAfter time.Time) (Issued, error) {
	if len(hosts) == 0 {
		return Issued{}, errors.New("give at least one host (--hosts 127.0.0.1,node1.example): the addresses clients and members dial")
	}
	return a.issue(nodeID, notBefore, notAfter, func(t *x509.Certificate) {
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				t.IPAddresses = append(t.IPAddresses, ip)
			} else {
				t.DNSNames = append(t.DNSNames, h)
			}
		}
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

// IssueClient makes a client's certificate: the principal as common name,
// good for client authentication only.
func (a *Authority) IssueClient(principal string, notBefore, notAfter time.Time) (Issued, error) {
	return a.issue(principal, notBefore, notAfter, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

func (a *Authority) issue(cn string, notBefore, notAfter time.Time, shape func(*x509.Certificate)) (Issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Issued{}, err
	}
	tmpl, err := template(cn, notBefore, notAfter, &key.PublicKey)
	if err != nil {
		return Issued{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.AuthorityKeyId = a.Cert.SubjectKeyId
	shape(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, &key.PublicKey, a.Key)
	if err != nil {
		return Issued{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Issued{}, err
	}
	return Issued{CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), KeyPEM: keyPEM}, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// CertPEM is the authority's certificate, PEM encoded (the ca_file).
func (a *Authority) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw})
}

// WriteAuthority writes ca.pem and ca-key.pem (0600) into dir; it refuses to
// overwrite an authority already there, whose certificates would stop
// verifying.
func (a *Authority) Write(dir string) error {
	keyPEM, err := encodeKey(a.Key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil {
		return fmt.Errorf("%s already exists: a new CA would not verify the certificates the old one signed; choose another --out",
			filepath.Join(dir, CAKeyFile))
	}
	return writePair(filepath.Join(dir, CACertFile), a.CertPEM(), filepath.Join(dir, CAKeyFile), keyPEM)
}

// LoadAuthority reads ca.pem and ca-key.pem from dir.
func LoadAuthority(dir string) (*Authority, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s: not a PEM certificate and key", dir)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACertFile), err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("%s: not a Lockstep CA (lockstep certs ca)", dir)
	}
	return &Authority{Cert: cert, Key: key}, nil
}

// Write writes NAME.pem and NAME-key.pem (0600) into dir and answers their
// paths.
func (i Issued) Write(dir, name string) (certPath, keyPath string, err error) {
	if strings.ContainsAny(name, `/\`) || name == "" || name == "." || name == ".." {
		return "", "", fmt.Errorf("%q cannot name a file", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	return certPath, keyPath, writePair(certPath, i.CertPEM, keyPath, i.KeyPEM)
}

func writePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(certPath, certPEM, 0o644)
}
