package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
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
// it alive, read it, close it, release through it, nor reach a hold by its
// label: to it, the session does not exist. The Go client's ResumeSession
// reads the session and keeps it alive, and so cannot take over another
// principal's.
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
		"read":               {"POST", "/lockstep.v1.SessionService/Get", `{"session_id": "` + id + `"}`},
		"close":              {"DELETE", "/sessions/" + id, ""},
		"release by session": {"POST", "/locks/x/release", `{"session_id": "` + id + `", "fencing_token": "` + token + `"}`},
	} {
		// Answered as a session that does not exist, the same words as
		// for an unknown id (below): a 403 told bob which ids were live.
		st, body := s.callAs(t, "bob", req[0], req[1], req[2])
		expectError(t, st, body, 404, "not_found")
		if msg, _ := body["message"].(string); msg != "session "+id+" does not exist (it expired, was closed, or never was): create a new session" {
			t.Errorf("%s of alice's session by bob: %q", what, msg)
		}
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

// TestServerMadeSessionsBelongToTheirPrincipal: a session the server made
// for one request (owner auto:PRINCIPAL:label) is its principal's: the
// principal can keep it alive and close it, and a principal named "auto"
// cannot (a prefix test of the label let "auto" own them all, and denied
// their own principal).
func TestServerMadeSessionsBelongToTheirPrincipal(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	st, body := s.callAs(t, "bob", "POST", "/locks/b%2Fvictim/acquire", `{"owner": "deploy", "ttl_seconds": 30}`)
	expect(t, "acquire", st, 200)
	id := body["session_id"].(string)
	for _, req := range [][3]string{
		{"POST", "/sessions/" + id + "/keepalive", ""},
		{"POST", "/lockstep.v1.SessionService/Get", `{"session_id": "` + id + `"}`},
		{"DELETE", "/sessions/" + id, ""},
	} {
		st, body := s.callAs(t, "auto", req[0], req[1], req[2])
		expectError(t, st, body, 404, "not_found")
	}
	_, status := s.callAs(t, "bob", "GET", "/locks/b%2Fvictim/status", "")
	expect(t, "still held", status["held"], true)
	st, _ = s.callAs(t, "bob", "POST", "/sessions/"+id+"/keepalive", "")
	expect(t, "bob's keepalive of his server-made session", st, 200)
}

// TestServerMadeSessionsTakeNoOtherGrants: a session the server made for
// one acquire is closed when that grant ends, after a read that found it
// holding nothing else. An acquire in it by session_id between that read
// and the close would be granted, answered, and then ended by the close,
// so every acquire-like request refuses such a session, before anything
// is proposed; a session of the caller's own takes them.
func TestServerMadeSessionsTakeNoOtherGrants(t *testing.T) {
	s := startServer(t)
	st, held := s.call(t, "POST", "/locks/job/acquire", `{"owner": "w1", "ttl_seconds": 30}`)
	expect(t, "acquire", st, 200)
	id := held["session_id"].(string)
	for _, req := range [][2]string{
		{"/locks/other/acquire", `{"session_id": "` + id + `"}`},
		{"/semaphores/gpu/acquire", `{"session_id": "` + id + `", "limit": 2}`},
		{"/rwlocks/cfg/acquire", `{"session_id": "` + id + `", "mode": "read"}`},
		{"/barriers/stage/wait", `{"session_id": "` + id + `", "parties": 2, "participant": "p1"}`},
		{"/election/sched/campaign", `{"session_id": "` + id + `", "candidate": "c", "value": "YQ=="}`},
		{"/lockstep.v1.BarrierService/Set", `{"name": "gate", "session_id": "` + id + `"}`},
	} {
		st, body := s.call(t, "POST", req[0], req[1])
		expectError(t, st, body, 400, "failed_precondition")
		if msg, _ := body["message"].(string); !strings.Contains(msg, "create a session of your own") {
			t.Fatalf("%s: the refusal says %q, not what to do instead", req[0], msg)
		}
	}
	_, other := s.call(t, "GET", "/locks/other/status", "")
	expect(t, "nothing granted in the server's session", other["held"], false)
	_, info := s.call(t, "POST", "/lockstep.v1.SessionService/Get", `{"session_id": "`+id+`"}`)
	sess, _ := info["session"].(map[string]any)
	if h, _ := sess["holds"].([]any); len(h) != 1 || len(sess["waits"].([]any)) != 0 {
		t.Fatalf("the server's session is %v, want the one grant it was made for and no wait", info)
	}
	st, rel := s.call(t, "POST", "/locks/job/release", `{"owner": "w1", "fencing_token": "`+held["fencing_token"].(string)+`"}`)
	expect(t, "release", st, 200)
	expect(t, "the server's session closed with its grant", rel["session_closed"], true)

	_, own := s.call(t, "POST", "/sessions", `{"ttl_seconds": 30, "owner": "w1"}`)
	mine := own["session_id"].(string)
	st, got := s.call(t, "POST", "/locks/other/acquire", `{"session_id": "`+mine+`"}`)
	expect(t, "an acquire in a session of one's own", st, 200)
	expect(t, "granted", got["acquired"], true)
}

// gatedBackend holds the commands of the clients whose id starts with
// "guess" until gate closes, and counts them.
type gatedBackend struct {
	rpc.Backend
	gate     chan struct{}
	proposed atomic.Int32
}

func (g *gatedBackend) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if strings.HasPrefix(cmd.ClientID, "guess") {
		g.proposed.Add(1)
		<-g.gate
	}
	return g.Backend.DoBy(ctx, cmd, deadline)
}

// TestReleaseByLabelOfAGrantNotHeldProposesNothing: a release named by
// owner label whose token is not held is answered 409 and proposes
// nothing, even with a client_id. Proposed, it would carry only the token,
// and end whichever grant holds it by the time it applies: here a release
// for the token the next entry gives (tokens follow the log index, so the
// guess is cheap) is read before that entry and applied after it, when
// the holder's release has granted that token to a waiter. A retry of a
// release that succeeded is still answered from core's memory of it.
func TestReleaseByLabelOfAGrantNotHeldProposesNothing(t *testing.T) {
	g := &gatedBackend{gate: make(chan struct{})}
	s := startServer(t, func(o *rpc.Options) { g.Backend = o.Backend; o.Backend = g })
	_, held := s.call(t, "POST", "/locks/race/acquire", `{"owner": "first", "ttl_seconds": 30}`)
	first := held["fencing_token"].(string)
	waited := make(chan map[string]any, 1)
	go func() {
		_, b := s.call(t, "POST", "/locks/race/acquire", `{"owner": "second", "ttl_seconds": 30, "wait_timeout_ms": 10000}`)
		waited <- b
	}()
	waitUntil(t, "the second acquire queued", func() bool {
		_, st := s.call(t, "GET", "/locks/race/status", "")
		w, _ := st["waiters"].([]any)
		return len(w) == 1
	})
	_, st := s.call(t, "GET", "/locks/race/status", "")
	idx, _ := strconv.ParseUint(st["applied_index"].(string), 10, 64)
	// One guess for each of the next few entries' first token.
	const guesses = 4
	guessed := make(chan int, guesses)
	for k := uint64(1); k <= guesses; k++ {
		go func() {
			code, _ := s.call(t, "POST", "/lockstep.v1.LockService/Release",
				fmt.Sprintf(`{"name": "race", "owner": "attacker", "client_id": "guess-%d", "request_seq": 1, "fencing_token": "%d"}`, k, (idx+k)<<20))
			guessed <- code
		}()
	}
	var codes []int
	waitUntil(t, "every guessed release answered or proposed", func() bool {
		for {
			select {
			case c := <-guessed:
				codes = append(codes, c)
				continue
			default:
			}
			return len(codes)+int(g.proposed.Load()) >= guesses
		}
	})
	code2, rel := s.call(t, "POST", "/locks/race/release", `{"owner": "first", "fencing_token": "`+first+`", "client_id": "holder", "request_seq": 1}`)
	expect(t, "the holder's release", code2, 200)
	second := <-waited
	if second["acquired"] != true {
		t.Fatalf("the second acquire: %v", second)
	}
	close(g.gate)
	for len(codes) < guesses {
		codes = append(codes, <-guessed)
	}
	for _, c := range codes {
		if c != 409 {
			t.Errorf("a guessed release answered %d, want 409 (all: %v)", c, codes)
		}
	}
	if n := g.proposed.Load(); n != 0 {
		t.Errorf("%d guessed releases were proposed", n)
	}
	_, st = s.call(t, "GET", "/locks/race/status", "")
	expect(t, "the waiter still holds", st["held"], true)
	// The holder's retry is answered as its first attempt was.
	code2, again := s.call(t, "POST", "/locks/race/release", `{"owner": "first", "fencing_token": "`+first+`", "client_id": "holder", "request_seq": 1}`)
	if code2 != 200 || again["released"] != rel["released"] {
		t.Fatalf("the holder's retried release: %d %v, first %v", code2, again, rel)
	}
}

// TestClientIDsArePerPrincipal: under authentication each principal's
// client_ids are its own: another principal naming the same client_id and
// request_seq neither reads nor forges that request's answer.
func TestClientIDsArePerPrincipal(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	// alice answers seq 4 of client "c1" first, on her own name.
	st, body := s.callAs(t, "alice", "POST", "/locks/alice-x/acquire", `{"owner": "w", "ttl_seconds": 30, "client_id": "c1", "request_seq": 4}`)
	expect(t, "alice's acquire", st, 200)
	aliceToken := body["fencing_token"]
	// bob's seq 4 of "c1" is his own request, applied, not alice's answer.
	st, body = s.callAs(t, "bob", "POST", "/locks/bob-y/acquire", `{"owner": "w", "ttl_seconds": 30, "client_id": "c1", "request_seq": 4}`)
	expect(t, "bob's acquire", st, 200)
	if body["fencing_token"] == aliceToken {
		t.Fatalf("bob was answered alice's result: %v", body)
	}
	_, status := s.callAs(t, "bob", "GET", "/locks/bob-y/status", "")
	expect(t, "bob holds his lock", status["held"], true)
}

// waitUntil polls f until it holds, for at most 10 s.
func waitUntil(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLabelRoomCountsThePrincipal: a label's room is what is left after
// what the server puts before it, the principal's "ci:" and, in a session
// it creates, "auto:", and the refusal says so, where a 121-byte label was
// refused as "owner is 129 bytes: at most 128" (bytes the caller never
// sent), after an earlier check had let it through as "at most 123".
func TestLabelRoomCountsThePrincipal(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	label := func(n int) string { return strings.Repeat("w", n) }
	st, body := s.callAs(t, "ci", "POST", "/locks/a/acquire", `{"owner": "`+label(121)+`"}`)
	expectError(t, st, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, `owner is 121 bytes: at most 120 here (128, less 5 for the "auto:" mark`) ||
		!strings.Contains(msg, `less 3 for the "ci:" the server puts before your principal's labels`) {
		t.Errorf("a 121-byte label from ci in a session the server creates: %q", msg)
	}
	st, _ = s.callAs(t, "ci", "POST", "/locks/a/acquire", `{"owner": "`+label(120)+`"}`)
	expect(t, "a 120-byte label from ci", st, 200)

	st, body = s.callAs(t, "ci", "POST", "/sessions", `{"ttl_seconds": 30, "owner": "`+label(126)+`"}`)
	expectError(t, st, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, "owner is 126 bytes: at most 125 here") {
		t.Errorf("a 126-byte session label from ci: %q", msg)
	}
	st, body = s.callAs(t, "ci", "POST", "/sessions", `{"ttl_seconds": 30}`)
	expect(t, "create", st, 200)
	id := body["session_id"].(string)
	st, body = s.callAs(t, "ci", "POST", "/locks/b/acquire", `{"session_id": "`+id+`", "owner": "`+label(126)+`"}`)
	expectError(t, st, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, "owner is 126 bytes: at most 125 here") {
		t.Errorf("a 126-byte label from ci in its session: %q", msg)
	}
	st, _ = s.callAs(t, "ci", "POST", "/locks/b/acquire", `{"session_id": "`+id+`", "owner": "`+label(125)+`"}`)
	expect(t, "a 125-byte label from ci in its session", st, 200)
}

// TestParticipantsCarryTheirPrincipal: a barrier participant's name is a
// label shown in status, prefixed with its principal as owner labels are:
// one principal could arrive under a name another uses.
func TestParticipantsCarryTheirPrincipal(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.Authenticator = keyAuth{} })
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.callAs(t, "ci", "POST", "/barriers/stage/wait", `{"parties": 2, "participant": "worker-1", "wait_timeout_ms": 3000}`)
	}()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, st := s.callAs(t, "ci", "GET", "/barriers/stage/status", "")
		if ws, _ := st["waiters"].([]any); len(ws) == 1 {
			if p := ws[0].(map[string]any)["participant"]; p != "ci:worker-1" {
				t.Fatalf("ci's participant worker-1 shows as %v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no waiter at the barrier: %v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.callAs(t, "ops", "POST", "/barriers/stage/wait", `{"parties": 2, "participant": "worker-1", "wait_timeout_ms": 3000}`)
	<-done
}

// TestNameOfAWatch: a watch's name or prefix (a oneof) is what NameOf
// answers, the one set, so the audit log records what a prefix watch is
// about (it recorded "" for every one).
func TestNameOfAWatch(t *testing.T) {
	for _, tc := range []struct {
		msg   any
		name  string
		named bool
	}{
		{&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "jobs/"}}, "jobs/", true},
		{&pb.WatchRequest{Target: &pb.WatchRequest_Name{Name: "jobs/a"}}, "jobs/a", true},
		{&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: ""}}, "", true},
		{&pb.WatchRequest{}, "", true},
		{&pb.ListRequest{Prefix: "deploy/"}, "deploy/", true},
		{&pb.AcquireLockRequest{Name: "a"}, "a", true},
		{&pb.CreateSessionRequest{}, "", false},
	} {
		name, named := rpc.NameOf(tc.msg)
		if name != tc.name || named != tc.named {
			t.Errorf("NameOf(%v) = %q, %v; want %q, %v", tc.msg, name, named, tc.name, tc.named)
		}
	}
}
