package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// sessionIDs is a REST List answer's session ids and owners, "id=owner",
// in order.
func sessionIDs(t *testing.T, body map[string]any) []string {
	t.Helper()
	list, _ := body["sessions"].([]any)
	var out []string
	for _, e := range list {
		m := e.(map[string]any)
		out = append(out, fmt.Sprintf("%v=%v", m["session_id"], m["owner"]))
	}
	return out
}

// TestRESTListSessions: GET /sessions answers every live session in id
// order, with its lease and the counts of its holds and waits; page_size
// and page_token walk it page by page, owner_prefix filters by label, a
// server-made session is listed too, and a closed one is gone.
func TestRESTListSessions(t *testing.T) {
	s := startServer(t)
	var ids []string
	for _, owner := range []string{"web-1", "batch-1", "web-2"} {
		st, body := s.call(t, "POST", "/sessions", `{"ttl_seconds": 30, "owner": "`+owner+`"}`)
		expect(t, "create "+owner, st, 200)
		ids = append(ids, body["session_id"].(string)+"="+owner)
	}
	web1 := strings.Split(ids[0], "=")[0]
	st, _ := s.call(t, "POST", "/locks/a/acquire", `{"session_id": "`+web1+`"}`)
	expect(t, "acquire a", st, 200)
	st, _ = s.call(t, "POST", "/semaphores/b/acquire", `{"session_id": "`+web1+`", "limit": 2, "permits": 1}`)
	expect(t, "acquire b", st, 200)
	// A server-made session, holding "c".
	st, body := s.call(t, "POST", "/locks/c/acquire", `{"owner": "cron", "ttl_seconds": 30}`)
	expect(t, "acquire c", st, 200)
	ids = append(ids, body["session_id"].(string)+"=auto:cron")

	st, body = s.call(t, "GET", "/sessions", "")
	expect(t, "list", st, 200)
	if got := sessionIDs(t, body); strings.Join(got, " ") != strings.Join(ids, " ") {
		t.Fatalf("GET /sessions: %v, want %v", got, ids)
	}
	first := body["sessions"].([]any)[0].(map[string]any)
	if first["ttl_ms"] != "30000" || first["hold_count"] != "2" || first["wait_count"] != "0" ||
		first["created_at_ms"] == nil || first["expires_at_ms"] == nil {
		t.Fatalf("web-1's entry: %v, want ttl 30000, 2 holds, no waits, its times", first)
	}
	if _, ok := first["holds"]; ok {
		t.Fatalf("an entry lists holds: %v (counts only; Get lists them)", first)
	}
	if body["next_page_token"] != "" || body["stale"] != false {
		t.Fatalf("one page: next_page_token %v, stale %v", body["next_page_token"], body["stale"])
	}

	// Pages of one, through every session.
	var walked []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > len(ids) {
			t.Fatalf("more than %d pages of one for %d sessions", len(ids)+1, len(ids))
		}
		st, body := s.call(t, "GET", "/sessions?page_size=1&page_token="+tok, "")
		expect(t, "page", st, 200)
		walked = append(walked, sessionIDs(t, body)...)
		tok, _ = body["next_page_token"].(string)
		if tok == "" {
			break
		}
	}
	if strings.Join(walked, " ") != strings.Join(ids, " ") {
		t.Fatalf("pages of one: %v, want %v", walked, ids)
	}

	st, body = s.call(t, "GET", "/sessions?owner_prefix=web-&stale=true", "")
	expect(t, "filtered", st, 200)
	if got := sessionIDs(t, body); strings.Join(got, " ") != ids[0]+" "+ids[2] || body["stale"] != true {
		t.Fatalf("owner_prefix=web-: %v (stale %v), want %v and %v", got, body["stale"], ids[0], ids[2])
	}
	st, body = s.call(t, "GET", "/sessions?owner_prefix=auto:", "")
	if got := sessionIDs(t, body); st != 200 || strings.Join(got, " ") != ids[3] {
		t.Fatalf("owner_prefix=auto:: %d %v, want the server-made %v", st, got, ids[3])
	}

	st, _ = s.call(t, "DELETE", "/sessions/"+web1, "")
	expect(t, "close", st, 200)
	_, body = s.call(t, "GET", "/sessions", "")
	if got := sessionIDs(t, body); strings.Join(got, " ") != strings.Join(ids[1:], " ") {
		t.Fatalf("after closing web-1: %v, want %v", got, ids[1:])
	}
}

// TestListSessionsRefusesBadInput: a negative page size, a page token this
// server did not give (a LockService.List one included), an owner prefix
// longer than any label, and over REST a query that is not a number or a
// field List does not take, are refused, saying what to fix.
func TestListSessionsRefusesBadInput(t *testing.T) {
	s := startServer(t)
	st, _ := s.call(t, "POST", "/sessions", `{"ttl_seconds": 30}`)
	expect(t, "create", st, 200)
	lockToken := "" // a LockService.List page token
	for i := range 2 {
		st, _ := s.call(t, "POST", fmt.Sprintf("/locks/l%d/acquire", i), `{"owner": "x"}`)
		expect(t, "acquire", st, 200)
	}
	_, lb := s.call(t, "POST", "/lockstep.v1.LockService/List", `{"page_size": 1}`)
	lockToken, _ = lb["next_page_token"].(string)
	if lockToken == "" {
		t.Fatalf("LockService.List gave no token: %v", lb)
	}
	for _, c := range []struct{ query, want string }{
		{"page_size=-1", "page_size -1 is negative: use 0 (the server's maximum, 1000) or more"},
		{"page_size=ten", `page_size="ten" is not a whole number`},
		{"page_size=99999999999", `page_size="99999999999" is too large: a page holds at most 1000 sessions`},
		{"page_token=nope", `page_token "nope" is not one SessionService.List gave: pass its next_page_token unchanged`},
		{"page_token=" + lockToken, "is not one SessionService.List gave"},
		{"owner_prefix=" + strings.Repeat("w", 129), "owner_prefix is 129 bytes: at most 128"},
		{"prefix=web", "query parameter \"prefix\" is not accepted on GET: the query takes only stale, owner_prefix, page_size, page_token"},
	} {
		st, body := s.call(t, "GET", "/sessions?"+c.query, "")
		expectError(t, st, body, 400, "invalid_argument")
		if msg, _ := body["message"].(string); !strings.Contains(msg, c.want) {
			t.Errorf("?%s: %q, want it to say %q", c.query, msg, c.want)
		}
	}
	// The list's query is GET /sessions's own, not every GET's.
	st, body := s.call(t, "GET", "/locks/a/status?page_size=1", "")
	expectError(t, st, body, 400, "invalid_argument")

	// Connect: the same checks.
	sessions := lockstepv1connect.NewSessionServiceClient(http.DefaultClient, s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, req := range []*pb.ListSessionsRequest{{PageSize: -5}, {PageToken: "%%"}, {PageToken: lockToken}} {
		_, err := sessions.List(ctx, connect.NewRequest(req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%v: %v, want invalid_argument", req, err)
		}
	}
}

// TestConnectListSessions: over Connect a page size above the maximum is
// served as the maximum, and the pages of a walk add up to every session,
// each once.
func TestConnectListSessions(t *testing.T) {
	s := startServer(t)
	sessions := lockstepv1connect.NewSessionServiceClient(http.DefaultClient, s.url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 7
	want := map[uint64]bool{}
	for i := range n {
		r, err := sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 30, Owner: fmt.Sprintf("w-%d", i)}))
		if err != nil {
			t.Fatal(err)
		}
		want[r.Msg.SessionId] = true
	}
	r, err := sessions.List(ctx, connect.NewRequest(&pb.ListSessionsRequest{PageSize: 1 << 30}))
	if err != nil || len(r.Msg.Sessions) != n || r.Msg.NextPageToken != "" || r.Msg.AppliedIndex == 0 {
		t.Fatalf("page_size 2^30: %v %v, want all %d sessions in one page with its applied_index", r, err, n)
	}
	seen := map[uint64]bool{}
	req := &pb.ListSessionsRequest{PageSize: 3}
	for pages := 1; ; pages++ {
		if pages > n {
			t.Fatalf("more than %d pages", n)
		}
		r, err := sessions.List(ctx, connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Msg.Sessions) > 3 {
			t.Fatalf("a page of %d for page_size 3", len(r.Msg.Sessions))
		}
		for _, e := range r.Msg.Sessions {
			if seen[e.SessionId] || !want[e.SessionId] {
				t.Fatalf("session %d listed twice or never made", e.SessionId)
			}
			seen[e.SessionId] = true
		}
		if req.PageToken = r.Msg.NextPageToken; req.PageToken == "" {
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("walked %d sessions, want %d", len(seen), n)
	}
}

// TestListSessionsShowsOnlyTheCallersOwn: with authentication on, a
// principal lists its own sessions (those the server made for it
// included), never another's: Get answers another's not_found, and the
// list must not show what Get hides. Another's sessions cost a page no
// place, and an owner_prefix cannot reach them.
func TestListSessionsShowsOnlyTheCallersOwn(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	var alice []string
	for _, who := range []string{"bob", "alice", "bob", "alice"} {
		st, body := s.callAs(t, who, "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w"}`)
		expect(t, "create", st, 200)
		if who == "alice" {
			alice = append(alice, body["session_id"].(string)+"=alice:w")
		}
	}
	st, body := s.callAs(t, "alice", "POST", "/locks/x/acquire", `{"owner": "cron", "ttl_seconds": 30}`)
	expect(t, "alice's server-made session", st, 200)
	alice = append(alice, body["session_id"].(string)+"=auto:alice:cron")
	st, _ = s.callAs(t, "bob", "POST", "/locks/y/acquire", `{"owner": "cron", "ttl_seconds": 30}`)
	expect(t, "bob's server-made session", st, 200)

	st, body = s.callAs(t, "alice", "GET", "/sessions", "")
	expect(t, "alice's list", st, 200)
	if got := sessionIDs(t, body); strings.Join(got, " ") != strings.Join(alice, " ") {
		t.Fatalf("alice lists %v, want her own %v", got, alice)
	}
	// Pages of one: bob's sessions between alice's take no page.
	var walked []string
	tok := ""
	for pages := 0; ; pages++ {
		if pages > len(alice) {
			t.Fatalf("more than %d pages", len(alice)+1)
		}
		st, body := s.callAs(t, "alice", "GET", "/sessions?page_size=1&page_token="+tok, "")
		expect(t, "page", st, 200)
		if len(sessionIDs(t, body)) != 1 && body["next_page_token"] != "" {
			t.Fatalf("a page short of one with another after it: %v", body)
		}
		walked = append(walked, sessionIDs(t, body)...)
		if tok, _ = body["next_page_token"].(string); tok == "" {
			break
		}
	}
	if strings.Join(walked, " ") != strings.Join(alice, " ") {
		t.Fatalf("alice's pages: %v, want %v", walked, alice)
	}
	st, body = s.callAs(t, "alice", "GET", "/sessions?owner_prefix=bob:", "")
	if got := sessionIDs(t, body); st != 200 || len(got) != 0 {
		t.Fatalf("alice asking for bob's labels: %d %v, want nothing", st, got)
	}
	st, body = s.callAs(t, "alice", "POST", "/lockstep.v1.SessionService/List", `{}`)
	if got := sessionIDs(t, body); st != 200 || len(got) != len(alice) {
		t.Fatalf("alice's Connect list: %d %v, want her %d", st, got, len(alice))
	}
	st, body = s.call(t, "GET", "/sessions", "")
	expectError(t, st, body, 401, "unauthenticated")
}

// TestRESTGetSession: GET /sessions/{id} answers one session with what it
// holds and waits for, as SessionService.Get does (curl users had List
// over REST but had to speak Connect to see a session's holds). An unknown
// id is not_found, a malformed one says what to give, the query cannot
// name another session, and with authentication another principal's
// session is not_found, as over Connect.
func TestRESTGetSession(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	st, body := s.callAs(t, "alice", "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w"}`)
	expect(t, "create", st, 200)
	sid := body["session_id"].(string)
	st, _ = s.callAs(t, "alice", "POST", "/locks/a/acquire", `{"session_id": "`+sid+`"}`)
	expect(t, "acquire a", st, 200)
	st, body = s.callAs(t, "bob", "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w"}`)
	expect(t, "bob's create", st, 200)
	bobs := body["session_id"].(string)

	for _, path := range []string{"/sessions/" + sid, "/sessions/" + sid + "?stale=true"} {
		st, body = s.callAs(t, "alice", "GET", path, "")
		expect(t, "GET "+path, st, 200)
		sess, _ := body["session"].(map[string]any)
		holds, _ := sess["holds"].([]any)
		if sess["session_id"] != sid || sess["owner"] != "alice:w" || len(holds) != 1 ||
			holds[0].(map[string]any)["name"] != "a" {
			t.Fatalf("GET %s: %v, want session %s of alice:w holding a", path, body, sid)
		}
	}
	st, body = s.callAs(t, "alice", "GET", "/sessions/"+bobs, "")
	expectError(t, st, body, 404, "not_found")
	st, body = s.callAs(t, "alice", "GET", "/sessions/99999", "")
	expectError(t, st, body, 404, "not_found")
	st, body = s.callAs(t, "alice", "GET", "/sessions/abc", "")
	expectError(t, st, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, "whole number") {
		t.Fatalf("GET /sessions/abc: %q, want it to say the id is not a whole number", msg)
	}
	st, body = s.callAs(t, "alice", "GET", "/sessions/"+sid+"?session_id="+bobs, "")
	expectError(t, st, body, 400, "invalid_argument")
	// List's own parameters belong to the list, not to one session.
	st, body = s.callAs(t, "alice", "GET", "/sessions/"+sid+"?page_size=1", "")
	expectError(t, st, body, 400, "invalid_argument")
}

// sessionAdmin lets every caller do everything, and lets "ops" administer
// every principal's sessions.
type sessionAdmin struct{}

func (sessionAdmin) Authorize(context.Context, rpc.Principal, string, any) error { return nil }
func (sessionAdmin) AdministersSessions(_ context.Context, who rpc.Principal) bool {
	return who.ID == "ops"
}

// TestSessionAdministratorSeesAndClosesEverySession: a principal the
// Authorizer names a session administrator (admin on every name, in the
// security package) lists, shows and closes another principal's session,
// the operator's force-release of a stuck holder, which released its hold
// at once; it still cannot keep that session alive or release through it,
// and every other principal still sees only its own.
func TestSessionAdministratorSeesAndClosesEverySession(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer = keyAuth{}, sessionAdmin{} })
	st, body := s.callAs(t, "ci", "POST", "/sessions", `{"ttl_seconds": 30, "owner": "job"}`)
	expect(t, "ci's create", st, 200)
	sid := body["session_id"].(string)
	st, body = s.callAs(t, "ci", "POST", "/locks/stuck/acquire", `{"session_id": "`+sid+`"}`)
	expect(t, "ci's acquire", st, 200)
	tok := body["fencing_token"].(string)

	st, body = s.callAs(t, "bob", "GET", "/sessions", "")
	if got := sessionIDs(t, body); st != 200 || len(got) != 0 {
		t.Fatalf("bob lists %d %v, want nothing of ci's", st, got)
	}
	st, body = s.callAs(t, "bob", "GET", "/sessions/"+sid, "")
	expectError(t, st, body, 404, "not_found")

	st, body = s.callAs(t, "ops", "GET", "/sessions", "")
	if got := sessionIDs(t, body); st != 200 || strings.Join(got, " ") != sid+"=ci:job" {
		t.Fatalf("ops lists %d %v, want ci's %s", st, got, sid)
	}
	st, body = s.callAs(t, "ops", "GET", "/sessions/"+sid, "")
	expect(t, "ops shows ci's session", st, 200)
	if sess, _ := body["session"].(map[string]any); sess["owner"] != "ci:job" {
		t.Fatalf("ops's GET: %v", body)
	}
	// Not another's to keep alive, nor to release through.
	st, body = s.callAs(t, "ops", "POST", "/sessions/"+sid+"/keepalive", `{}`)
	expectError(t, st, body, 404, "not_found")
	st, body = s.callAs(t, "ops", "POST", "/locks/stuck/release", `{"session_id": "`+sid+`", "fencing_token": "`+tok+`"}`)
	expectError(t, st, body, 404, "not_found")

	st, body = s.callAs(t, "ops", "DELETE", "/sessions/"+sid, "")
	expect(t, "ops closes ci's session", st, 200)
	st, body = s.callAs(t, "ci", "GET", "/locks/stuck/status", "")
	expect(t, "status", st, 200)
	if h, _ := body["holders"].([]any); len(h) != 0 {
		t.Fatalf("after ops closed ci's session, stuck is held: %v", body)
	}
	st, body = s.callAs(t, "ci", "GET", "/sessions/"+sid, "")
	expectError(t, st, body, 404, "not_found")
}
