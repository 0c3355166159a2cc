package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/security"
)

// Every CA `lockstep certs ca` made was named "Lockstep CA", so two
// clusters' CAs could not be told apart in a trust store or in an error
// that names an authority. Now each has a distinguishing part: the date
// and 6 random hex digits, or the --name given. A CA made before, named
// "Lockstep CA" alone, still signs.
func TestCertsCANamesEachCA(t *testing.T) {
	dir := t.TempDir()
	ca := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(append([]string{"certs", "ca"}, args...), &out, &errb)
		return out.String(), errb.String(), code
	}
	subject := func(sub string) string {
		t.Helper()
		a, err := security.LoadAuthority(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		return a.Cert.Subject.CommonName
	}
	dated := regexp.MustCompile(`^Lockstep CA ` + time.Now().UTC().Format("2006-01-02") + ` [0-9a-f]{6}$`)
	for _, sub := range []string{"a", "b"} {
		out, errb, code := ca("--out", filepath.Join(dir, sub))
		if code != exitOK || !dated.MatchString(subject(sub)) || !strings.Contains(out, `: "`+subject(sub)+`"`) {
			t.Errorf("certs ca --out %s: exit %d, subject %q\nstdout: %s\nstderr: %s", sub, code, subject(sub), out, errb)
		}
	}
	if subject("a") == subject("b") {
		t.Errorf("two CAs have the same name %q", subject("a"))
	}
	if out, errb, code := ca("--out", filepath.Join(dir, "named"), "--name", "prod-eu 2"); code != exitOK || subject("named") != "Lockstep CA prod-eu 2" {
		t.Errorf("certs ca --name 'prod-eu 2': exit %d, subject %q\nstdout: %s\nstderr: %s", code, subject("named"), out, errb)
	}
	for _, bad := range []string{"eu/1", " eu", strings.Repeat("x", 53)} {
		out, errb, code := ca("--out", filepath.Join(dir, "bad"), "--name", bad)
		if code != exitUsage || !strings.Contains(errb, "lockstep certs: --name ") || !strings.Contains(errb, "like --name prod-eu") || out != "" {
			t.Errorf("certs ca --name %q: exit %d\nstdout: %s\nstderr: %s", bad, code, out, errb)
		}
	}

	// A CA made before, named "Lockstep CA" alone, signs as it did.
	now := time.Now()
	old, err := security.NewAuthority("Lockstep CA", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(filepath.Join(dir, "old")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"old", "named"} {
		var out, errb bytes.Buffer
		if code := run([]string{"certs", "node", "node-1", "--hosts", "127.0.0.1", "--ca", filepath.Join(dir, sub), "--out", filepath.Join(dir, sub)}, &out, &errb); code != exitOK {
			t.Errorf("certs node with the CA in %s: exit %d\nstderr: %s", sub, code, &errb)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"certs", "client", "ci", "--name", "x", "--ca", filepath.Join(dir, "old"), "--out", dir}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--name is for ca") {
		t.Errorf("certs client with --name: exit %d\nstderr: %s", code, &errb)
	}
}

// TestCertsValidForEndsThatLongFromNow: --valid-for D makes a certificate
// that expires D from now, and starts a minute back (clocks that lag). It
// ended D after that start, a minute early: --valid-for 75s gave 15 s,
// 61s about 1 s. Under a minute is refused; a minute is taken.
func TestCertsValidForEndsThatLongFromNow(t *testing.T) {
	dir := t.TempDir()
	certs := func(args ...string) (string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code := run(append([]string{"certs"}, args...), &out, &errb)
		return errb.String(), code
	}
	check := func(what string, c *x509.Certificate, before, after time.Time, d time.Duration) {
		t.Helper()
		// Certificates carry whole seconds.
		if c.NotAfter.Before(before.Add(d).Add(-time.Second)) || c.NotAfter.After(after.Add(d)) {
			t.Errorf("%s --valid-for %v made between %v and %v: not after %v, want %v from then", what, d, before, after, c.NotAfter, d)
		}
		if c.NotBefore.Before(before.Add(-time.Minute-time.Second)) || c.NotBefore.After(after.Add(-time.Minute)) {
			t.Errorf("%s --valid-for %v: not before %v, want a minute before %v", what, d, c.NotBefore, before)
		}
	}
	before := time.Now()
	if errb, code := certs("ca", "--out", dir, "--valid-for", "2h"); code != exitOK {
		t.Fatalf("certs ca --valid-for 2h: exit %d: %s", code, errb)
	}
	ca, err := security.LoadAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	check("ca", ca.Cert, before, time.Now(), 2*time.Hour)
	for _, d := range []string{"75s", "1m", "720h"} {
		name := "c" + d
		before := time.Now()
		if errb, code := certs("client", name, "--ca", dir, "--out", dir, "--valid-for", d); code != exitOK {
			t.Fatalf("certs client --valid-for %s: exit %d: %s", d, code, errb)
		}
		after := time.Now()
		raw, err := os.ReadFile(filepath.Join(dir, name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(raw)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := time.ParseDuration(d)
		check("client", c, before, after, want)
	}
	for _, short := range []string{"59s", "1s"} {
		if errb, code := certs("client", "short", "--ca", dir, "--out", dir, "--valid-for", short); code != exitUsage ||
			!strings.Contains(errb, "a minute or more") {
			t.Errorf("certs client --valid-for %s: exit %d: %s", short, code, errb)
		}
	}
}
