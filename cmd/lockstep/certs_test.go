package main

import (
	"bytes"
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
