package rpc_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/rpc"
)

// callAs is testServer.call with "Authorization: Bearer WHO" (keyAuth names
// the caller after the key).
func (s *testServer) callAs(t *testing.T, who, method, path, body string) (int, map[string]any) {
	t.Helper()
	return s.callWith(t, http.Header{"Authorization": {"Bearer " + who}}, method, path, body)
}

// prefixOnly lets each principal read only names under its own id + "/".
type prefixOnly struct{}

func (prefixOnly) Authorize(context.Context, rpc.Principal, string, any) error { return nil }
func (prefixOnly) CanRead(_ context.Context, who rpc.Principal, name string) bool {
	return strings.HasPrefix(name, who.ID+"/")
}

// TestSessionsBelongToTheirPrincipal: with authentication on, a session's
// owner label carries its principal, and another principal can neither keep
// it alive, close it, release through it, nor reach a hold by its label.
func TestSessionsBelongToTheirPrincipal(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	st, body := s.callAs(t, "alice", "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w"}`)
	expect(t, "create", st, 200)
	id := body["session_id"].(string)
	st, body = s.callAs(t, "alice", "POST", "/locks/x/acquire", `{"session_id": "`+id+`", "owner": "w"}`)
	expect(t, "acquire", st, 200)
	token := body["fencing_token"].(string)
	_, status := s.callAs(t, "alice", "GET", "/locks/x/status", "")
	expect(t, "holder label", status["holder"].(map[string]any)["owner"], "alice:w")

	for what, req := range map[string][3]string{
		"keepalive":          {"POST", "/sessions/" + id + "/keepalive", ""},
		"close":              {"DELETE", "/sessions/" + id, ""},
		"release by session": {"POST", "/locks/x/release", `{"session_id": "` + id + `", "fencing_token": "` + token + `"}`},
	} {
		st, body := s.callAs(t, "bob", req[0], req[1], req[2])
		expectError(t, st, body, 403, "permission_denied")
		_ = what
	}
	// bob's "w" is bob:w: it names no hold of alice's.
	if st, body := s.callAs(t, "bob", "POST", "/locks/x/release", `{"owner": "w", "fencing_token": "`+token+`"}`); st == 200 && body["released"] == true {
		t.Fatalf("bob released alice's hold by its label: %v", body)
	}
	_, status = s.callAs(t, "alice", "GET", "/locks/x/status", "")
	expect(t, "still held", status["held"], true)
	st, _ = s.callAs(t, "alice", "POST", "/sessions/"+id+"/keepalive", "")
	expect(t, "alice's keepalive", st, 200)
	st, body = s.callAs(t, "alice", "POST", "/sessions/424242/keepalive", "")
	expectError(t, st, body, 404, "not_found")
}

// TestListHidesUnreadableNames: List leaves out what the caller may not read.
func TestListHidesUnreadableNames(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator, o.Authorizer = keyAuth{}, prefixOnly{} })
	for _, n := range []string{"alice%2Fa", "bob%2Fb"} {
		st, _ := s.callAs(t, "alice", "POST", "/locks/"+n+"/acquire", `{"owner": "w"}`)
		expect(t, "acquire "+n, st, 200)
	}
	st, body := s.callAs(t, "alice", "POST", "/lockstep.v1.LockService/List", `{}`)
	expect(t, "list", st, 200)
	objs, _ := body["objects"].([]any)
	if len(objs) != 1 || objs[0].(map[string]any)["name"] != "alice/a" {
		t.Fatalf("alice's list: %v", body)
	}
}
