package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/security"
)

const certsHelp = `
Usage:
  lockstep certs ca --out DIR [--name NAME]
  lockstep certs node NODE_ID --hosts HOST,HOST --ca DIR --out DIR
  lockstep certs client PRINCIPAL --ca DIR --out DIR

Make what a secured cluster needs (ECDSA P-256; see docs/security.md):
  ca      a certificate authority, valid 10 years: DIR/ca.pem (the ca_file
          of every member) and DIR/ca-key.pem (keep it offline); its name,
          "Lockstep CA NAME", tells it from other clusters' CAs in a trust
          store and in errors (default NAME: today's date and 6 random hex
          digits, like "Lockstep CA 2026-12-06 3f9a1c")
  node    a member's certificate for the API, metrics and Raft, valid
          2 years: DIR/NODE_ID.pem and DIR/NODE_ID-key.pem; --hosts are the
          addresses clients and members dial (IP addresses or DNS names)
  client  a client's certificate, whose common name is its principal in
          the ACL and the audit log, valid 2 years: DIR/PRINCIPAL.pem,
          DIR/PRINCIPAL-key.pem; prefer a short --valid-for: there is no
          revocation list, and what it opened ends when it expires

--valid-for D makes one valid until D from now (at least 1m), and from a
minute back, for clocks that lag.

Examples:
  lockstep certs ca --out pki --name prod-eu
  lockstep certs node node-1 --hosts 127.0.0.1,node1.example --ca pki --out pki
  lockstep certs client ci --ca pki --out pki --valid-for 720h
`

// minValidity is the shortest --valid-for.
const minValidity = time.Minute

// certsCmd runs `lockstep certs ca|node|client`.
func certsCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockstep certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "the `directory` to write into")
	caDir := fs.String("ca", "", "the `directory` of the CA (lockstep certs ca) that signs")
	hosts := fs.String("hosts", "", "for node: comma-separated `hosts` (IPs or DNS names) the certificate is good for")
	validity := fs.Duration("valid-for", 0, "how long from now the certificate is valid, at least 1m (default 10 years for ca, 2 years otherwise); it is valid from a minute back too, for clocks that lag")
	name := fs.String("name", "", "for ca: the `name` that tells this CA from others, after \"Lockstep CA \" (default: today's date and 6 random hex digits)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), strings.TrimLeft(certsHelp, "\n"))
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	pos, ok := parseInterleaved(fs, args)
	if !ok {
		if pos == nil {
			return exitOK
		}
		return exitUsage
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "lockstep certs: %s\nRun 'lockstep certs -h' for usage and examples.\n", fmt.Sprintf(format, a...))
		return exitUsage
	}
	if len(pos) == 0 {
		return usageErr("say what to make: ca, node or client")
	}
	if *out == "" {
		return usageErr("--out DIR is required")
	}
	if *validity < 0 || *validity > 0 && *validity < minValidity {
		// Shorter would be all but expired by the time it is copied
		// where it is used.
		return usageErr("--valid-for %v: give a duration of a minute or more, like 8760h, or leave it out for the default", *validity)
	}
	// Valid from a minute back, a little slack for clocks that lag, until
	// --valid-for from now: it ended at NotBefore + --valid-for, a minute
	// early (--valid-for 75s gave 15 s).
	now := time.Now()
	from := now.Add(-time.Minute)
	fail := func(err error) int {
		fmt.Fprintf(stderr, "lockstep certs %s: %v\n", pos[0], err)
		return exitError
	}
	switch pos[0] {
	case "ca":
		if len(pos) != 1 {
			return usageErr("ca takes no arguments, got %q", pos[1:])
		}
		d := security.CAValidity
		if *validity > 0 {
			d = *validity
		}
		cn, err := security.CAName(*name, time.Now())
		if err != nil {
			return usageErr("--name %q: %v", *name, err)
		}
		ca, err := security.NewAuthority(cn, from, now.Add(d))
		if err != nil {
			return fail(err)
		}
		if err := ca.Write(*out); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s/%s (ca_file of every member and client) and %s/%s (keep it secret; only signing needs it): %q\n",
			*out, security.CACertFile, *out, security.CAKeyFile, cn)
		return exitOK
	case "node", "client":
		if *name != "" {
			return usageErr("--name is for ca: a %s's name is its argument (lockstep certs %s NAME)", pos[0], pos[0])
		}
		if len(pos) != 2 {
			return usageErr("%s takes one name: lockstep certs %s NAME --ca DIR --out DIR", pos[0], pos[0])
		}
		name := pos[1]
		if *caDir == "" {
			return usageErr("--ca DIR is required: the directory of 'lockstep certs ca'")
		}
		var hs []string
		for _, h := range strings.Split(*hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hs = append(hs, h)
			}
		}
		if pos[0] == "node" && len(hs) == 0 {
			return usageErr("node needs --hosts: the addresses clients and members dial for it (its raft_address host among them), like --hosts 127.0.0.1,node1.example")
		}
		ca, err := security.LoadAuthority(*caDir)
		if err != nil {
			return fail(err)
		}
		d := security.CertValidity
		if *validity > 0 {
			d = *validity
		}
		var is security.Issued
		if pos[0] == "node" {
			if err := config.ValidNodeID(name); err != nil {
				return usageErr("node id %v", err)
			}
			is, err = ca.IssueNode(name, hs, from, now.Add(d))
		} else {
			if err := config.ValidPrincipal(name); err != nil {
				return usageErr("principal %v", err)
			}
			is, err = ca.IssueClient(name, from, now.Add(d))
		}
		if err != nil {
			return fail(err)
		}
		certPath, keyPath, err := is.Write(*out, name)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s and %s\n", certPath, keyPath)
		return exitOK
	}
	return usageErr("unknown %q: make ca, node or client", pos[0])
}

const keysHelp = `
Usage:
  lockstep keys create PRINCIPAL

Make an API key for PRINCIPAL: 32 random bytes, printed once. Add the
printed entry to the file security.api_keys_file names (it holds only the
key's SHA-256) and send SIGHUP to the members to load it; clients send the
key as "Authorization: Bearer KEY" (--api-key, LOCKSTEP_API_KEY).

Examples:
  lockstep keys create ci
`

// keysCmd runs `lockstep keys create PRINCIPAL`.
func keysCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lockstep keys", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), strings.TrimLeft(keysHelp, "\n")) }
	pos, ok := parseInterleaved(fs, args)
	if !ok {
		if pos == nil {
			return exitOK
		}
		return exitUsage
	}
	if len(pos) != 2 || pos[0] != "create" {
		fmt.Fprintf(stderr, "lockstep keys: use 'lockstep keys create PRINCIPAL'\nRun 'lockstep keys -h' for usage.\n")
		return exitUsage
	}
	if err := config.ValidPrincipal(pos[1]); err != nil {
		fmt.Fprintf(stderr, "lockstep keys create: principal %v\n", err)
		return exitUsage
	}
	key, digest, err := security.NewAPIKey()
	if err != nil {
		fmt.Fprintf(stderr, "lockstep keys create: %v\n", err)
		return exitError
	}
	fmt.Fprintf(stdout, "key (shown once; give it to %s): %s\nentry for security.api_keys_file:\n- {principal: %s, sha256: %s}\n",
		pos[1], key, pos[1], digest)
	return exitOK
}

// parseInterleaved parses flags given before, between or after positional
// arguments. ok is false on -h (pos nil) or a bad flag (pos non-nil).
func parseInterleaved(fs *flag.FlagSet, args []string) (pos []string, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, false
			}
			return []string{}, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
