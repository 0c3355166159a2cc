package rpc_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// Bad input is answered 400 before anything is proposed, in words that say
// what to fix: the API's own rules (ttl_seconds, the "auto:" mark, a holder
// named by owner, REST's waits) and core.CheckCommand's rules for the
// command a request becomes, both spelled with the API's field names.
func TestValidationNamesWhatToFix(t *testing.T) {
	s := startServer(t)
	long := strings.Repeat("c", core.MaxClientIDBytes)
	for _, c := range []struct {
		what, method, path, body, phrase string
	}{
		// The API's own rules.
		{"both TTLs", "POST", "/sessions", `{"ttl_seconds":5,"ttl_ms":5000}`, "ttl_seconds and ttl_ms are both set: give one"},
		{"ttl_seconds too long", "POST", "/sessions", `{"ttl_seconds":100000000}`, "ttl_seconds 100000000 is out of range: use 1..86400"},
		{"the reserved mark", "POST", "/sessions", `{"owner":"auto:me"}`, `owner "auto:me" starts with "auto:"`},
		{"a client_id without room for its session's", "POST", "/locks/a/acquire", `{"client_id":"` + long + `","request_seq":1}`,
			"client_id is 128 bytes: at most 120"},
		{"a TTL beside session_id", "POST", "/locks/a/acquire", `{"session_id":"1","ttl_ms":5000}`, "apply only without session_id"},
		// A 10 ms lease for the session made for a waiting acquire ran out
		// before the acquire applied: 404 of a session never named.
		{"a server-made session's lease too short to renew", "POST", "/locks/a/acquire", `{"owner":"z1","ttl_ms":10,"wait_timeout_ms":1000}`,
			"ttl_ms 10 is too short for the session the server makes for this request"},
		{"a label without room for the mark", "POST", "/locks/a/acquire", `{"owner":"` + strings.Repeat("o", 125) + `"}`,
			`at most 123 here (128, less 5 for the "auto:" mark`},
		{"a session id of 0", "GET", "/sessions/0", "", "session_id is missing or 0: give the session to read"},
		{"a release naming no holder", "POST", "/locks/a/release", `{"fencing_token":"5"}`, "the holder is missing: give session_id or owner"},
		{"a holder's label that cannot be one", "POST", "/locks/a/release", `{"owner":"a\u0007","fencing_token":"5"}`, "owner has an unprintable character U+0007"},
		{"a negative REST wait", "POST", "/locks/a/acquire", `{"wait_timeout_ms":-2}`, "wait_timeout_ms -2 is negative"},
		{"a mode that is not one", "POST", "/rwlocks/a/acquire", `{"mode":"exclusive"}`, `mode "exclusive" is not a mode`},
		{"a name with a control character", "POST", "/locks/a%07b/acquire", `{}`, "name: the name has an unprintable character U+0007 at byte 1 (a name with / goes in a REST path as %2F)"},

		// core.CheckCommand's rules, on the command the request becomes.
		{"a TTL below the minimum", "POST", "/sessions", `{"ttl_ms":1}`, "ttl_ms 1 is out of range: use 10..86400000"},
		{"client_id without request_seq", "POST", "/sessions", `{"client_id":"c"}`, `client_id "c" without a request_seq: number requests from 1`},
		{"lowest_pending_seq above request_seq", "POST", "/sessions", `{"client_id":"c","request_seq":2,"lowest_pending_seq":3}`,
			"lowest_pending_seq 3 is above request_seq 2"},
		{"a keepalive without a session", "POST", "/sessions/0/keepalive", `{}`, "session_keepalive needs session_id: give the session to keep alive"},
		{"a release without a token", "POST", "/locks/a/release", `{"owner":"x"}`, "release needs fencing_token: give the token the acquire answered"},
		{"a lock delay on a semaphore", "POST", "/semaphores/a/acquire", `{"limit":2,"lock_delay_ms":5}`, "lock_delay_ms applies to mutexes only: leave it out"},
		{"more permits than the limit", "POST", "/semaphores/a/acquire", `{"limit":2,"permits":3}`, "permits 3 is out of range: use 1..limit (2)"},
		{"too few parties", "POST", "/barriers/a/wait", `{"parties":1}`, "parties 1 is out of range: use 2..10000"},
		{"a control character in an acquire's owner", "POST", "/locks/a/acquire", `{"owner":"x\u0000"}`, "owner has an unprintable character U+0000 at byte 1"},
		{"a value too large", "POST", "/locks/a/acquire", `{"value":"` + strings.Repeat("QUFB", 400) + `"}`, "value is 1200 bytes: at most 1024"},
		{"a max hold too long", "POST", "/locks/a/acquire", `{"max_hold_ms":"90000000000"}`, "max_hold_ms 90000000000 is out of range"},
		{"a resign without a token", "POST", "/election/e/resign", `{"session_id":"1"}`, "resign needs fencing_token: give the leadership's token"},
	} {
		t.Run(c.what, func(t *testing.T) {
			status, body := s.call(t, c.method, c.path, c.body)
			expectError(t, status, body, http.StatusBadRequest, "invalid_argument")
			if msg, _ := body["message"].(string); !strings.Contains(msg, c.phrase) {
				t.Errorf("message %q does not say %q", msg, c.phrase)
			}
		})
	}
	if n := s.b.proposed(); n != 0 {
		t.Fatalf("%d commands were proposed for bad input", n)
	}

	// The defaults the server fills in (a TTL, the existing semaphore's
	// limit, a session made for the request) pass the same checks.
	for _, c := range []struct{ path, body string }{
		{"/sessions", `{}`},
		{"/locks/ok/acquire", `{"owner":"o"}`},
		{"/semaphores/ok/acquire", `{"limit":3}`},
		{"/semaphores/ok/acquire", `{"permits":2}`},
		{"/locks/long/acquire", `{"wait_timeout_ms":"90000000000"}`}, // REST caps it at MaxWait
	} {
		if status, body := s.call(t, "POST", c.path, c.body); status != http.StatusOK {
			t.Errorf("POST %s %s: %d %v", c.path, c.body, status, body)
		}
	}
}

// Connect and gRPC callers get the same checks with their code, and a wait
// beyond the limit, which REST would cap, is refused.
func TestValidationOverConnect(t *testing.T) {
	s := startServer(t)
	locks := lockstepv1connect.NewLockServiceClient(http.DefaultClient, s.url)
	_, err := locks.Acquire(context.Background(), connect.NewRequest(&pb.AcquireLockRequest{Name: "w", WaitTimeoutMs: 3600*1000 + 1}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "wait_timeout_ms 3600001 is out of range: use 0 (try once), 1..3600000 ms, or -1") {
		t.Fatalf("a wait beyond the limit: %v", err)
	}
	sessions := lockstepv1connect.NewSessionServiceClient(http.DefaultClient, s.url)
	_, err = sessions.Abandon(context.Background(), connect.NewRequest(&pb.AbandonRequest{ClientId: "c", RequestSeq: 4, SessionId: 1, AbandonSeq: 4,
		Kind: pb.Kind_KIND_MUTEX, Name: "w"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "abandon_seq 4 equals this request's own request_seq") {
		t.Fatalf("an abandon of itself: %v", err)
	}
	if n := s.b.proposed(); n != 0 {
		t.Fatalf("%d commands were proposed for bad input", n)
	}
}
