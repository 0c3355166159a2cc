package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
)

// refusing is a server that answers every call with code, as a member
// answers a request without the credentials it wants.
func refusing(t *testing.T, code connect.Code, msg string) *httptest.Server {
	t.Helper()
	w := connect.NewErrorWriter()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		_ = w.Write(rw, r, connect.NewError(code, errors.New(msg)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestClusterStatusSaysWhatTheServersSaid: servers that answer but refuse
// (401, 403, a certificate this client does not trust) are not shown as
// unreachable, and the failure says what they said and what to give (it
// said "none of the endpoint(s) answered ... Is 'lockstep serve' running
// there?"); that hint stays for endpoints where nothing answered.
func TestClusterStatusSaysWhatTheServersSaid(t *testing.T) {
	u1, u2 := refusing(t, connect.CodeUnauthenticated, "unknown API key"), refusing(t, connect.CodeUnauthenticated, "unknown API key")
	denied := refusing(t, connect.CodePermissionDenied, "no rule allows cluster status")
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshakes it refuses
	untrusted.StartTLS()
	defer untrusted.Close()
	const notRunning = "Is 'lockstep serve' running there?"
	for _, tc := range []struct {
		endpoints  string
		rows, want []string
	}{
		{u1.URL + "," + u2.URL, []string{"refused:unauthenticated"}, []string{"unknown API key", "--api-key (LOCKSTEP_API_KEY)"}},
		{denied.URL, []string{"refused:permission_denied"}, []string{"no rule allows cluster status", "security.acl"}},
		{untrusted.URL, []string{"tls-failed"}, []string{"x509: certificate signed by unknown authority", "--cacert (LOCKSTEP_CACERT)"}},
		{u1.URL + ",http://127.0.0.1:1", []string{"refused:unauthenticated", "unreachable"}, []string{"1 refused the request", "1 did not answer", "--api-key"}},
	} {
		var out, errb bytes.Buffer
		code := run([]string{"cluster", "status", "--endpoints", tc.endpoints}, &out, &errb)
		if code != exitError {
			t.Errorf("%s: exit %d, want %d", tc.endpoints, code, exitError)
		}
		for _, r := range tc.rows {
			if !strings.Contains(out.String(), r) {
				t.Errorf("%s: the table lacks %q:\n%s", tc.endpoints, r, &out)
			}
		}
		if len(tc.rows) == 1 && strings.Contains(out.String(), "unreachable") {
			t.Errorf("%s: an endpoint that answered shows as unreachable:\n%s", tc.endpoints, &out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%s: stderr lacks %q:\n%s", tc.endpoints, w, &errb)
			}
		}
		if strings.Contains(errb.String(), notRunning) || strings.Contains(errb.String(), "none of the") {
			t.Errorf("%s: says nothing answered:\n%s", tc.endpoints, &errb)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"cluster", "status", "--endpoints", "http://127.0.0.1:1"}, &out, &errb); code != exitError ||
		!strings.Contains(errb.String(), notRunning) || !strings.Contains(out.String(), "unreachable") {
		t.Errorf("nothing answered: exit %d\nstdout:\n%s\nstderr:\n%s", code, &out, &errb)
	}
}

// TestRefusalNamesWhatWasAsked: a refused command names what was asked,
// not the internal call it starts with ("lockstep status: list:
// unauthenticated: ...", "lockstep watch: cluster status: ...", "lockstep
// list: list: ...").
func TestRefusalNamesWhatWasAsked(t *testing.T) {
	srv := refusing(t, connect.CodeUnauthenticated, "unknown API key")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "jobs/a"}, `lockstep status: status of "jobs/a": unauthenticated: unknown API key`},
		{[]string{"list", "jobs/"}, `lockstep list: unauthenticated: unknown API key`},
		{[]string{"watch", "jobs/"}, `lockstep watch: watch "jobs/": unauthenticated: unknown API key`},
		{[]string{"elect", "sched", "--observe"}, `lockstep elect: observe "sched": unauthenticated: unknown API key`},
	} {
		var out, errb bytes.Buffer
		code := run(append(tc.args, "--endpoints", srv.URL), &out, &errb)
		if first, _, _ := strings.Cut(errb.String(), "\n"); code != exitError || first != tc.want || !strings.Contains(errb.String(), "--api-key") {
			t.Errorf("%q: exit %d, want %d with %q and the credentials hint:\n%s", tc.args, code, exitError, tc.want, &errb)
		}
	}
}

// TestUnavailableHintTellsAnswersFromSilence: when the client gives up
// (ErrUnavailable, with the last attempt's error in its words), the hint
// asks whether serve is running only when nothing answered; servers that
// answered 503 (no leader, no quorum, draining) get a hint about the
// cluster's state instead.
func TestUnavailableHintTellsAnswersFromSilence(t *testing.T) {
	gaveUp := func(last error) error {
		return fmt.Errorf("%w (tried 3 endpoint(s) for 10s; last from http://127.0.0.1:7080: %v)", client.ErrUnavailable, last)
	}
	for _, tc := range []struct {
		last error
		want string
	}{
		{connect.NewError(connect.CodeUnavailable, errors.New(`dial tcp 127.0.0.1:7080: connect: connection refused`)), "No server answered"},
		{connect.NewError(connect.CodeUnavailable, errors.New("shard 0 has no leader")), "answered but cannot serve"},
		{connect.NewError(connect.CodeUnavailable, errors.New("this member is shutting down: reconnect to another member")), "answered but cannot serve"},
	} {
		if got := hintFor(gaveUp(tc.last), "http://127.0.0.1:7080", false); !strings.Contains(got, tc.want) {
			t.Errorf("after %v the hint is %q, want it to say %q", tc.last, got, tc.want)
		}
	}
	// A transfer to a member that is down: the servers' words say why,
	// and "no leader or no quorum" would be wrong.
	moved := connect.NewError(connect.CodeUnavailable, errors.New("shard 0: leadership did not move to node-3 within 10s: it is down, cut off from the leader, or not caught up"))
	if got := hintFor(gaveUp(moved), "http://127.0.0.1:7080", false); got != "" {
		t.Errorf("after a transfer that did not happen the hint is %q, want none", got)
	}
}

// TestRefusedCertificateIsNotATLSFailure: a member that answers 401 for a
// client certificate of another CA quotes x509's words in its message;
// the handshake went through, so the row is refused:unauthenticated (as
// docs/operations.md defines it) with the server's message and a hint
// about the client certificate, not tls-failed with advice about --cacert.
func TestRefusedCertificateIsNotATLSFailure(t *testing.T) {
	const said = "the client certificate is not one the cluster's CA signed for clients: x509: certificate signed by unknown authority"
	srv := refusing(t, connect.CodeUnauthenticated, said)
	// The certificate the server refused (over http:// it is never loaded).
	cert := []string{"--cert", "client.pem", "--key", "client-key.pem"}
	var out, errb bytes.Buffer
	if code := run(append([]string{"cluster", "status", "--endpoints", srv.URL}, cert...), &out, &errb); code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if !strings.Contains(out.String(), "refused:unauthenticated") || strings.Contains(out.String(), "tls-failed") {
		t.Errorf("the table:\n%s\nwant the row refused:unauthenticated", &out)
	}
	for _, w := range []string{said, "1 refused the request", "refused the client certificate (--cert"} {
		if !strings.Contains(errb.String(), w) {
			t.Errorf("stderr lacks %q:\n%s", w, &errb)
		}
	}
	for _, bad := range []string{"TLS handshake failed", "TLS failed"} {
		if strings.Contains(errb.String(), bad) {
			t.Errorf("stderr says %q:\n%s", bad, &errb)
		}
	}
	out.Reset()
	errb.Reset()
	run(append([]string{"cluster", "status", "--endpoints", srv.URL, "-o", "json"}, cert...), &out, &errb)
	if !strings.Contains(out.String(), `"state": "refused:unauthenticated"`) {
		t.Errorf("-o json:\n%s\nwant state refused:unauthenticated", &out)
	}
	// Another command's failure gets the same hint.
	out.Reset()
	errb.Reset()
	run(append([]string{"status", "jobs/a", "--endpoints", srv.URL}, cert...), &out, &errb)
	if !strings.Contains(errb.String(), "refused the client certificate (--cert") || strings.Contains(errb.String(), "TLS failed") {
		t.Errorf("lockstep status refused for its certificate:\n%s", &errb)
	}
}

// TestCredentialsHintWithoutACertificate: a member that answers 401 to a
// command given no client certificate names the credentials it wants, and
// the hint says to give them, the ones its message asks for; it said "The
// cluster refused the client certificate (--cert, LOCKSTEP_CERT)", to
// people who had given none. Given one (flag or environment), the hint
// still says the certificate was refused, and, when it expired (a user
// trial's watch ended so), to renew it rather than to find one the CA
// signed.
func TestCredentialsHintWithoutACertificate(t *testing.T) {
	const (
		refused  = "The cluster refused the client certificate"
		wants    = "The cluster wants credentials: a client certificate"
		certArgs = "--cert and --key"
		keyArgs  = "--api-key"
	)
	for _, c := range []struct {
		said      string   // security's words (security/state.go)
		env, args []string // the certificate given, if any
		want, not []string
	}{
		{said: "no credentials: send an API key (Authorization: Bearer KEY) or a client certificate",
			want: []string{wants, certArgs, keyArgs}, not: []string{refused}},
		{said: "a client certificate signed by the cluster's CA is required",
			want: []string{wants, certArgs}, not: []string{refused, keyArgs}},
		{said: "the client certificate expired at 2026-01-02T03:04:05Z; renew it", args: []string{"--cert", "c.pem", "--key", "k.pem"},
			want: []string{refused, "it expired. Renew it"}, not: []string{wants}},
		{said: "the client certificate expired at 2026-01-02T03:04:05Z; renew it", env: []string{"c.pem", "k.pem"},
			want: []string{refused, "it expired. Renew it"}, not: []string{wants}},
		// An expiry that ended a stream (a watch) says so too.
		{said: "the credentials this stream or request was made with expired: the client certificate expired at 2026-01-02T03:04:05Z; renew it",
			args: []string{"--cert", "c.pem", "--key", "k.pem"}, want: []string{refused, "it expired. Renew it"}, not: []string{wants}},
		{said: "the client certificate is not one the cluster's CA signed for clients: x509: unknown authority", args: []string{"--cert", "c.pem", "--key", "k.pem"},
			want: []string{refused, "give one the cluster's CA signed"}, not: []string{wants, "expired"}},
	} {
		cert, key := "", ""
		if c.env != nil {
			cert, key = c.env[0], c.env[1]
		}
		t.Setenv("LOCKSTEP_CERT", cert)
		t.Setenv("LOCKSTEP_KEY", key)
		t.Setenv("LOCKSTEP_API_KEY", "")
		srv := refusing(t, connect.CodeUnauthenticated, c.said)
		var out, errb bytes.Buffer
		if code := run(append([]string{"status", "jobs/a", "--endpoints", srv.URL}, c.args...), &out, &errb); code != exitError {
			t.Errorf("%q: exit %d, want %d", c.said, code, exitError)
		}
		for _, w := range c.want {
			if !strings.Contains(errb.String(), w) {
				t.Errorf("%q, certificate given %q%q: stderr lacks %q:\n%s", c.said, c.args, c.env, w, &errb)
			}
		}
		for _, bad := range c.not {
			if strings.Contains(errb.String(), bad) {
				t.Errorf("%q, certificate given %q%q: stderr says %q:\n%s", c.said, c.args, c.env, bad, &errb)
			}
		}
	}
}

// TestArgumentsTheServersRefuseAreBadUsage: arguments the servers refuse
// exit 2, bad usage, as those the command refuses itself do, with every
// command alike: as malformed (invalid_argument: a lock-delay over its
// bound, an empty or over-long name or owner), or as at odds with the
// object they name (failed_precondition: a barrier of 3 parties waited on
// with --parties 2, a semaphore of another limit), which exited 1 while
// its hint said to fix the arguments. A failed_precondition that no
// argument mends (a request id the servers forgot) stays an error, exit 1.
func TestArgumentsTheServersRefuseAreBadUsage(t *testing.T) {
	commands := [][]string{
		{"lock", "job", "--", "true"},
		{"sem", "crawl", "--limit", "2", "--", "true"},
		{"rwlock", "cfg", "--read", "--", "true"},
		{"barrier", "b5", "--parties", "2"},
		{"elect", "scheduler", "10.0.0.7"},
		{"status", "job", "--kind", "mutex"},
		{"session", "close", "12"},
	}
	for _, tc := range []struct {
		code connect.Code
		msg  string
		want int
	}{
		{connect.CodeInvalidArgument, "lock_delay_ms: at most 60000", exitUsage},
		{connect.CodeFailedPrecondition, `barrier "b5" counts 3 parties, not 2: wait with parties=3`, exitUsage},
		{connect.CodeFailedPrecondition, `request_seq 4 of client "go-1" was forgotten (results at or below 9 are no longer kept)`, exitError},
	} {
		srv := refusing(t, tc.code, tc.msg)
		for _, args := range commands {
			var out, errb bytes.Buffer
			argv := append([]string{args[0], "--endpoints", srv.URL}, args[1:]...) // before a "--"
			if code := run(argv, &out, &errb); code != tc.want || !strings.Contains(errb.String(), tc.msg) {
				t.Errorf("%v refused with %v %q: exit %d, %q; want exit %d and the servers' message", args, tc.code, tc.msg, code, errb.String(), tc.want)
			}
		}
	}
}
