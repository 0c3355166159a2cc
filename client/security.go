package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS helpers for https:// endpoints of a cluster secured as in
// docs/security.md. They compose with each other and with WithTLS (given
// before them): each works on a copy of the TLS configuration so far.

// WithCAFile trusts the CA certificates in the PEM file at path (the
// cluster's ca.pem) for https:// endpoints, instead of the system roots.
// A file that cannot be read makes every connection fail with that error.
func WithCAFile(path string) Option {
	return func(o *options) {
		c := tlsConfigOf(o)
		pool, err := readCAFile(path)
		if err != nil {
			// Fail closed, and say why at the first call: no connection
			// is made, since VerifyConnection refuses every one.
			c.InsecureSkipVerify = true
			c.VerifyConnection = func(tls.ConnectionState) error { return err }
			return
		}
		c.RootCAs = pool
	}
}

// WithClientCert presents the certificate and key in the PEM files for
// mutual TLS; its common name is the principal the cluster knows the client
// by. The files are read at every new connection, so a renewed certificate
// is used without a new Client.
func WithClientCert(certFile, keyFile string) Option {
	return func(o *options) {
		c := tlsConfigOf(o)
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("lockstep: client certificate %s, key %s: %w", certFile, keyFile, err)
			}
			return &cert, nil
		}
	}
}

// tlsConfigOf is a copy of the TLS configuration so far (a new one, TLS 1.2
// at least, when there is none), installed in o.
func tlsConfigOf(o *options) *tls.Config {
	if o.tls == nil {
		o.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		o.tls = o.tls.Clone()
	}
	return o.tls
}

func readCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lockstep: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("lockstep: CA file " + path + " holds no PEM certificate")
	}
	return pool, nil
}
