package rpc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
)

type testServer struct {
	url string
	b   *fakeBackend
	reg *prometheus.Registry
}

func startServer(t *testing.T, opts ...func(*rpc.Options)) *testServer {
	t.Helper()
	b := newFakeBackend()
	reg := prometheus.NewRegistry()
	o := rpc.Options{Backend: b, NodeID: "node-1", Registerer: reg, MaxWait: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	h, err := rpc.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewHTTPServer(ln.Addr().String(), h, nil)
	go func() { _ = srv.Serve(rpc.BufferedListener(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		b.Close()
	})
	return &testServer{url: "http://" + ln.Addr().String(), b: b, reg: reg}
}

// call sends a REST request and decodes the JSON answer.
func (s *testServer) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	return s.callWith(t, nil, method, path, body)
}

// callWith is call with extra request headers.
func (s *testServer) callWith(t *testing.T, header http.Header, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON (%v): %q", method, path, err, raw)
	}
	return resp.StatusCode, out
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v (%T), want %v (%T)", what, got, got, want, want)
	}
}

func expectError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["code"] != wantCode {
		t.Fatalf("got %d %v, want %d with code %q", status, body, wantStatus, wantCode)
	}
	if msg, _ := body["message"].(string); msg == "" {
		t.Fatalf("error without a message: %v", body)
	}
	if len(body) != 2 {
		t.Fatalf("error body has more than code and message: %v", body)
	}
}

func TestRESTMutexLifecycle(t *testing.T) {
	s := startServer(t)
	st, a := s.call(t, "POST", "/locks/db-migrate/acquire", `{"owner":"worker-3","ttl_seconds":30}`)
	expect(t, "status", st, 200)
	expect(t, "acquired", a["acquired"], true)
	expect(t, "session_created", a["session_created"], true)
	expect(t, "outcome", a["outcome"], "OUTCOME_GRANTED")
	tok, _ := a["fencing_token"].(string)
	if tok == "" || tok == "0" {
		t.Fatalf("fencing_token should be a non-zero string: %v", a)
	}
	if a["expires_at_ms"] == "0" || a["acquired_at_ms"] == "0" {
		t.Fatalf("grant times missing: %v", a)
	}

	// Someone else, try once: refused, and its session is closed again.
	st, b := s.call(t, "POST", "/locks/db-migrate/acquire", `{"owner":"worker-4"}`)
	expect(t, "status", st, 200)
	expect(t, "acquired", b["acquired"], false)
	expect(t, "fencing_token", b["fencing_token"], "0")
	expect(t, "outcome", b["outcome"], "OUTCOME_REFUSED")

	// Status shows the holder.
	st, status := s.call(t, "GET", "/locks/db-migrate/status", "")
	expect(t, "status", st, 200)
	expect(t, "held", status["held"], true)
	holder := status["holder"].(map[string]any)
	expect(t, "holder.owner", holder["owner"], "worker-3")
	expect(t, "holder.fencing_token", holder["fencing_token"], tok)

	// Renew by owner and token.
	st, r := s.call(t, "POST", "/locks/db-migrate/renew", `{"owner":"worker-3","fencing_token":"`+tok+`"}`)
	expect(t, "renew status", st, 200)
	expect(t, "renew token", r["fencing_token"], tok)

	// The wrong owner, or a wrong token: 409, nothing changes.
	st, e := s.call(t, "POST", "/locks/db-migrate/release", `{"owner":"worker-4","fencing_token":"`+tok+`"}`)
	expectError(t, st, e, 409, "conflict")
	st, e = s.call(t, "POST", "/locks/db-migrate/release", `{"owner":"worker-3","fencing_token":"12345"}`)
	expectError(t, st, e, 409, "conflict")

	st, rel := s.call(t, "POST", "/locks/db-migrate/release", `{"owner":"worker-3","fencing_token":"`+tok+`"}`)
	expect(t, "release status", st, 200)
	expect(t, "released", rel["released"], true)
	expect(t, "session_closed", rel["session_closed"], true)

	// The session the acquire made is gone.
	sid := a["session_id"].(string)
	st, e = s.call(t, "POST", "/sessions/"+sid+"/keepalive", `{}`)
	expectError(t, st, e, 404, "not_found")

	// A stale token after release: 409.
	st, e = s.call(t, "POST", "/locks/db-migrate/release", `{"owner":"worker-3","fencing_token":"`+tok+`"}`)
	expectError(t, st, e, 409, "conflict")
}

func TestRESTNamesWithSlash(t *testing.T) {
	s := startServer(t)
	st, a := s.call(t, "POST", "/locks/jobs%2Fnightly/acquire", `{"owner":"cron"}`)
	expect(t, "status", st, 200)
	expect(t, "acquired", a["acquired"], true)
	st, status := s.call(t, "GET", "/locks/jobs%2Fnightly/status", "")
	expect(t, "status", st, 200)
	expect(t, "name", status["name"], "jobs/nightly")
	expect(t, "held", status["held"], true)
	// Other escapes still decode once.
	st, status = s.call(t, "GET", "/locks/a%20b%25c/status", "")
	expect(t, "status", st, 200)
	expect(t, "name", status["name"], "a b%c")
	// An unescaped slash is another path.
	st, e := s.call(t, "GET", "/locks/jobs/nightly/status", "")
	expectError(t, st, e, 404, "not_found")
}

// TestRESTBodyWithoutJSONContentType: curl -d sends form-urlencoded, or a
// client sends no content type at all; the REST API reads JSON either way,
// and JSON's type in any spelling of UTF-8 (Java's and Spring's
// "application/json;charset=UTF-8" was refused 415 "sub-format not
// supported"). Another charset is refused, saying what to send.
func TestRESTBodyWithoutJSONContentType(t *testing.T) {
	s := startServer(t)
	for i, ct := range []string{"application/x-www-form-urlencoded", "", "application/json;charset=UTF-8", "Application/JSON; charset=utf-8",
		"application/json ; charset=\"utf-8\"", "application/json;charset=utf8"} {
		body := `{"owner":"me"}`
		if i == 2 {
			body = "\ufeff" + body // .NET's UTF-8 writer puts a byte order mark first
		}
		req, err := http.NewRequest("POST", s.url+"/locks/curl-"+strconv.Itoa(i)+"/acquire", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out struct{ Acquired bool }
		if err := json.Unmarshal(raw, &out); resp.StatusCode != 200 || err != nil || !out.Acquired {
			t.Fatalf("content type %q: %d %s", ct, resp.StatusCode, raw)
		}
	}
	req, err := http.NewRequest("POST", s.url+"/locks/latin/acquire", strings.NewReader(`{"owner":"me"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json; charset=iso-8859-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(raw), "JSON in UTF-8") {
		t.Fatalf("charset iso-8859-1: %d %s, want 415 saying to send UTF-8", resp.StatusCode, raw)
	}
	if st, status := s.call(t, "GET", "/locks/latin/status", ""); st != 200 || status["holder"] != nil {
		t.Fatalf("the refused acquire changed something: %d %v", st, status)
	}
}

// TestRESTHolderShowsMaxHoldAndLockDelay: status shows the limits an
// acquire set on its grant.
func TestRESTHolderShowsMaxHoldAndLockDelay(t *testing.T) {
	s := startServer(t)
	st, a := s.call(t, "POST", "/locks/limited/acquire", `{"owner":"me","max_hold_ms":60000,"lock_delay_ms":5000}`)
	expect(t, "status", st, 200)
	expect(t, "acquired", a["acquired"], true)
	st, status := s.call(t, "GET", "/locks/limited/status", "")
	expect(t, "status", st, 200)
	holder, _ := status["holder"].(map[string]any)
	expect(t, "lock_delay_ms", holder["lock_delay_ms"], "5000")
	untilS, _ := holder["max_hold_until_ms"].(string)
	acquiredS, _ := holder["acquired_at_ms"].(string)
	until, _ := strconv.ParseInt(untilS, 10, 64)
	acquired, _ := strconv.ParseInt(acquiredS, 10, 64)
	if acquired == 0 || until != acquired+60_000 {
		t.Fatalf("max_hold_until_ms %q is not acquired_at_ms %q + 60000: %v", untilS, acquiredS, holder)
	}
}

// TestRESTCloseAppliesLockDelay: DELETE /sessions/{id}?apply_lock_delay=true
// ends the session's holds as a failure: a mutex acquired with a lock-delay
// stays blocked for it; a plain DELETE hands it on at once; a value that is
// not a bool is refused and closes nothing.
func TestRESTCloseAppliesLockDelay(t *testing.T) {
	s := startServer(t)
	session := func() string {
		_, cs := s.call(t, "POST", "/sessions", `{"ttl_ms": 30000, "owner": "stuck"}`)
		return cs["session_id"].(string)
	}
	for _, tc := range []struct {
		query   string
		blocked bool
	}{{"?apply_lock_delay=true", true}, {"", false}, {"?apply_lock_delay=false", false}} {
		sid := session()
		name := "forced" + strings.NewReplacer("?", "-", "=", "-").Replace(tc.query)
		_, a := s.call(t, "POST", "/locks/"+name+"/acquire", `{"session_id":"`+sid+`","lock_delay_ms":60000}`)
		expect(t, "acquired", a["acquired"], true)
		st, _ := s.call(t, "DELETE", "/sessions/"+sid+tc.query, "")
		expect(t, "close"+tc.query, st, 200)
		_, ls := s.call(t, "GET", "/locks/"+name+"/status", "")
		expect(t, "held after the close"+tc.query, ls["held"], false)
		if v := ls["blocked_until_ms"]; (v != nil && v != "0") != tc.blocked {
			t.Fatalf("DELETE /sessions/{id}%s: status %v, want blocked by a lock-delay %v", tc.query, ls, tc.blocked)
		}
		_, b := s.call(t, "POST", "/locks/"+name+"/acquire", `{"owner":"next"}`)
		expect(t, "the next acquire after the close"+tc.query, b["acquired"], !tc.blocked)
	}
	// Only what the transcoder decodes (JSON's true and false) passes the
	// query check: strconv.ParseBool's other spellings passed it, then
	// failed in the transcoder with a raw JSON error.
	sid := session()
	for _, v := range []string{"maybe", "1", "t", "TRUE", "True", "0", "F", "False", "null", "%20true"} {
		before := s.b.proposed()
		st, e := s.call(t, "DELETE", "/sessions/"+sid+"?apply_lock_delay="+v, "")
		expectError(t, st, e, 400, "invalid_argument")
		if msg := e["message"].(string); !strings.Contains(msg, "apply_lock_delay=") || !strings.Contains(msg, "use true or false") {
			t.Fatalf("apply_lock_delay=%s: message %q does not say what to fix", v, msg)
		}
		if s.b.proposed() != before {
			t.Fatalf("a refused DELETE (apply_lock_delay=%s) reached the backend", v)
		}
	}
	for _, v := range []string{"1", "TRUE", "False"} {
		st, e := s.call(t, "GET", "/locks/a/status?stale="+v, "")
		expectError(t, st, e, 400, "invalid_argument")
		if msg := e["message"].(string); !strings.Contains(msg, "stale=") || !strings.Contains(msg, "use true or false") {
			t.Fatalf("stale=%s: message %q does not say what to fix", v, msg)
		}
	}
}

// TestAcquireAnswersMaxHoldUntil: an acquire's answer says when its
// grant's max hold ends (max_hold_until_ms), for a mutex, an RW lock and a
// semaphore, and a re-acquire by the session that holds the grant answers
// that grant's bound, not its own max_hold_ms: a client that took the
// session over learns when the grant it was answered ends. Before, only
// status said it, and the Go client counted a re-acquired grant from the
// re-acquire's start.
func TestAcquireAnswersMaxHoldUntil(t *testing.T) {
	s := startServer(t)
	num := func(m map[string]any, k string) int64 {
		v, _ := m[k].(string)
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	for _, kind := range []struct{ path, extra string }{
		{"/locks/mh/acquire", ``},
		{"/rwlocks/mh/acquire", `,"mode":"write"`},
		{"/semaphores/mh/acquire", `,"limit":2,"permits":1`},
	} {
		st, cs := s.call(t, "POST", "/sessions", `{"ttl_ms": 30000, "owner": "me"}`)
		expect(t, "create session", st, 200)
		sid := cs["session_id"].(string)
		st, a := s.call(t, "POST", kind.path, `{"session_id":"`+sid+`","max_hold_ms":60000`+kind.extra+`}`)
		expect(t, kind.path+" status", st, 200)
		expect(t, kind.path+" acquired", a["acquired"], true)
		if at, until := num(a, "acquired_at_ms"), num(a, "max_hold_until_ms"); at == 0 || until != at+60_000 {
			t.Fatalf("%s: max_hold_until_ms %d is not acquired_at_ms %d + 60000: %v", kind.path, until, at, a)
		}
		// Again in the same session, asking for another bound and for
		// none: the grant it holds, with its own bound.
		for _, mh := range []string{`,"max_hold_ms":120000`, ``} {
			st, again := s.call(t, "POST", kind.path, `{"session_id":"`+sid+`"`+mh+kind.extra+`}`)
			if st != 200 {
				t.Fatalf("%s re-acquire: %d %v", kind.path, st, again)
			}
			expect(t, kind.path+" re-acquire token", again["fencing_token"], a["fencing_token"])
			if num(again, "acquired_at_ms") != num(a, "acquired_at_ms") || num(again, "max_hold_until_ms") != num(a, "max_hold_until_ms") {
				t.Fatalf("%s: re-acquire (%s) answered acquired_at_ms %v, max_hold_until_ms %v; want the held grant's %v, %v",
					kind.path, mh, again["acquired_at_ms"], again["max_hold_until_ms"], a["acquired_at_ms"], a["max_hold_until_ms"])
			}
		}
	}
	st, a := s.call(t, "POST", "/locks/unbounded/acquire", `{"owner":"me"}`)
	expect(t, "status", st, 200)
	expect(t, "max_hold_until_ms without max_hold_ms", a["max_hold_until_ms"], "0")
}

func TestRESTWaits(t *testing.T) {
	s := startServer(t)
	_, a := s.call(t, "POST", "/locks/w/acquire", `{"owner":"a"}`)
	tok := a["fencing_token"].(string)

	start := time.Now()
	st, b := s.call(t, "POST", "/locks/w/acquire", `{"owner":"b","wait_timeout_ms":200}`)
	expect(t, "status", st, 200)
	expect(t, "acquired", b["acquired"], false)
	expect(t, "reason", b["reason"], "REASON_TIMEOUT")
	if d := time.Since(start); d < 190*time.Millisecond || d > 2*time.Second {
		t.Fatalf("a 200 ms wait took %v", d)
	}

	// A waiter is granted when the holder releases.
	done := make(chan map[string]any, 1)
	go func() {
		_, c := s.call(t, "POST", "/locks/w/acquire", `{"owner":"c","wait_timeout_ms":5000}`)
		done <- c
	}()
	time.Sleep(100 * time.Millisecond)
	s.call(t, "POST", "/locks/w/release", `{"owner":"a","fencing_token":"`+tok+`"}`)
	c := <-done
	expect(t, "acquired after release", c["acquired"], true)
	if c["fencing_token"].(string) <= tok && len(c["fencing_token"].(string)) <= len(tok) {
		t.Fatalf("the next token %v does not exceed %v", c["fencing_token"], tok)
	}

	// REST caps waits at MaxWait (2 s here): -1 waits 2 s, not forever.
	start = time.Now()
	_, d := s.call(t, "POST", "/locks/w/acquire", `{"owner":"d","wait_timeout_ms":-1}`)
	expect(t, "acquired", d["acquired"], false)
	if el := time.Since(start); el < 1900*time.Millisecond || el > 4*time.Second {
		t.Fatalf("a capped REST wait took %v, want about 2 s", el)
	}
}

func TestRESTBadInputs(t *testing.T) {
	s := startServer(t)
	long := strings.Repeat("x", 257)
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/locks/a/acquire", `{"owner":`, 400, "invalid_argument"},
		{"POST", "/locks/a/acquire", `{"wait_timout_ms": 10}`, 400, "invalid_argument"},
		{"POST", "/locks/a/acquire", `{"ttl_seconds": 5, "ttl_ms": 5000}`, 400, "invalid_argument"},
		{"POST", "/locks/a/acquire", `{"ttl_ms": 1}`, 400, "invalid_argument"},
		{"POST", "/locks/a/acquire", `{"wait_timeout_ms": -5}`, 400, "invalid_argument"},
		{"POST", "/locks/" + long + "/acquire", `{}`, 400, "invalid_argument"},
		{"POST", "/locks/a%07b/acquire", `{}`, 400, "invalid_argument"},
		{"POST", "/locks/a/acquire", `{"session_id": "1", "ttl_seconds": 5}`, 400, "invalid_argument"},
		{"POST", "/locks/a/release", `{"owner": "x"}`, 400, "invalid_argument"},
		{"POST", "/locks/a/release", `{"fencing_token": "5"}`, 400, "invalid_argument"},
		{"POST", "/rwlocks/a/acquire", `{"mode": "exclusive"}`, 400, "invalid_argument"},
		{"POST", "/semaphores/a/acquire", `{"permits": 2}`, 400, "invalid_argument"},
		{"POST", "/semaphores/a/acquire", `{"limit": 2, "permits": 3}`, 400, "invalid_argument"},
		{"POST", "/barriers/a/wait", `{"parties": 1}`, 400, "invalid_argument"},
		{"POST", "/sessions", `{"owner": "auto:me"}`, 400, "invalid_argument"},
		{"POST", "/sessions", `{"client_id": "c"}`, 400, "invalid_argument"},
		{"POST", "/sessions/0/keepalive", `{}`, 400, "invalid_argument"},
		{"POST", "/sessions/99/keepalive", `{}`, 404, "not_found"},
		{"DELETE", "/sessions/99", ``, 404, "not_found"},
		{"GET", "/nowhere", ``, 404, "not_found"},
		{"GET", "/locks/a/acquire", ``, 405, "method_not_allowed"},
		{"POST", "/locks/a/acquire", `{"value": "` + strings.Repeat("QUFB", 400) + `"}`, 400, "invalid_argument"},
	}
	for _, c := range cases {
		st, body := s.call(t, c.method, c.path, c.body)
		if st != c.status || body["code"] != c.code || body["message"] == "" {
			t.Errorf("%s %s %s: got %d %v, want %d %s", c.method, c.path, c.body, st, body, c.status, c.code)
		}
	}
}

func TestRESTSemaphoreRWLockBarrierElection(t *testing.T) {
	s := startServer(t)
	// Semaphore: limit 3, two holders of 2 don't fit.
	_, a := s.call(t, "POST", "/semaphores/gpu/acquire", `{"owner":"j1","limit":3,"permits":2}`)
	expect(t, "sem a", a["acquired"], true)
	expect(t, "sem limit", a["limit"], "3")
	_, b := s.call(t, "POST", "/semaphores/gpu/acquire", `{"owner":"j2","permits":2}`)
	expect(t, "sem b", b["acquired"], false)
	_, c := s.call(t, "POST", "/semaphores/gpu/acquire", `{"owner":"j3","limit":3}`)
	expect(t, "sem c", c["acquired"], true)
	st, e := s.call(t, "POST", "/semaphores/gpu/acquire", `{"owner":"j4","limit":4}`)
	expectError(t, st, e, 400, "failed_precondition")
	_, ss := s.call(t, "GET", "/semaphores/gpu/status", "")
	expect(t, "available", ss["available"], "0")
	expect(t, "holders", len(ss["holders"].([]any)), 2)

	// RW lock: two readers share, a writer is refused.
	_, r1 := s.call(t, "POST", "/rwlocks/cfg/acquire", `{"owner":"r1","mode":"read"}`)
	_, r2 := s.call(t, "POST", "/rwlocks/cfg/acquire", `{"owner":"r2","mode":"read"}`)
	_, w := s.call(t, "POST", "/rwlocks/cfg/acquire", `{"owner":"w","mode":"write"}`)
	expect(t, "r1", r1["acquired"], true)
	expect(t, "r2", r2["acquired"], true)
	expect(t, "w", w["acquired"], false)
	_, rs := s.call(t, "GET", "/rwlocks/cfg/status", "")
	expect(t, "rw mode", rs["mode"], "read")

	// Barrier of 2: the first waits, the second releases both.
	first := make(chan map[string]any, 1)
	go func() {
		_, x := s.call(t, "POST", "/barriers/stage/wait", `{"parties":2,"participant":"p1","wait_timeout_ms":5000}`)
		first <- x
	}()
	time.Sleep(100 * time.Millisecond)
	_, bs := s.call(t, "GET", "/barriers/stage/status", "")
	expect(t, "barrier waiters", len(bs["waiters"].([]any)), 1)
	gen, _ := bs["generation"].(string)
	if gen == "" || gen == "0" {
		t.Fatalf("barrier status with a party waiting: generation %v, want the current one", bs["generation"])
	}
	_, p2 := s.call(t, "POST", "/barriers/stage/wait", `{"parties":2,"participant":"p2"}`)
	expect(t, "p2 released", p2["released"], true)
	p1 := <-first
	expect(t, "p1 released", p1["released"], true)
	expect(t, "same generation", p1["generation"], p2["generation"])
	expect(t, "released in the generation status showed", p2["generation"], gen)
	_, bs = s.call(t, "GET", "/barriers/stage/status", "")
	expect(t, "generation after the release", bs["generation"], "0")

	// Election: the first candidate leads, resigns, the leader is gone.
	_, l := s.call(t, "POST", "/election/sched/campaign", `{"candidate":"node-a","value":"YQ=="}`)
	expect(t, "elected", l["elected"], true)
	_, ld := s.call(t, "GET", "/election/sched/leader", "")
	expect(t, "has_leader", ld["has_leader"], true)
	expect(t, "leader", ld["leader"].(map[string]any)["candidate"], "node-a")
	_, rg := s.call(t, "POST", "/election/sched/resign", `{"candidate":"node-a","fencing_token":"`+l["fencing_token"].(string)+`"}`)
	expect(t, "resigned", rg["resigned"], true)
	expect(t, "session closed", rg["session_closed"], true)
	_, ld = s.call(t, "GET", "/election/sched/leader", "")
	expect(t, "has_leader after resign", ld["has_leader"], false)
}

func TestSessionsHealthClusterStatus(t *testing.T) {
	s := startServer(t)
	st, cs := s.call(t, "POST", "/sessions", `{"ttl_ms": 500, "owner": "me"}`)
	expect(t, "status", st, 200)
	expect(t, "ttl_ms", cs["ttl_ms"], "500")
	sid := cs["session_id"].(string)
	st, ka := s.call(t, "POST", "/sessions/"+sid+"/keepalive", `{}`)
	expect(t, "keepalive", st, 200)
	expect(t, "keepalive ttl", ka["ttl_ms"], "500")
	// Held with the session; it expires without keepalives and the lock goes.
	_, a := s.call(t, "POST", "/locks/lease/acquire", `{"session_id":"`+sid+`"}`)
	expect(t, "acquired", a["acquired"], true)
	time.Sleep(700 * time.Millisecond)
	_, ls := s.call(t, "GET", "/locks/lease/status", "")
	expect(t, "held after expiry", ls["held"], false)
	st, _ = s.call(t, "DELETE", "/sessions/"+sid, "")
	expect(t, "close expired", st, 404)

	st, h := s.call(t, "GET", "/health", "")
	expect(t, "health", st, 200)
	expect(t, "health status", h["status"], "serving")
	s.b.mu.Lock()
	s.b.unhealthy = errNoQuorum
	s.b.down = errNoQuorum
	s.b.mu.Unlock()
	st, h = s.call(t, "GET", "/health", "")
	expectError(t, st, h, 503, "unavailable")
	st, e := s.call(t, "POST", "/locks/x/acquire", `{}`)
	expectError(t, st, e, 503, "unavailable")

	st, c := s.call(t, "GET", "/cluster/status", "")
	expect(t, "cluster status", st, 200)
	expect(t, "node_id", c["node_id"], "node-1")
	shard := c["shards"].([]any)[0].(map[string]any)
	expect(t, "role", shard["role"], "leader")
	expect(t, "leader_id", shard["leader_id"], "node-1")
	if _, ok := shard["applied_index"]; !ok {
		t.Fatalf("no applied_index: %v", shard)
	}
}

// TestHealthSaysWhyAMemberIsCutOff: a member its peers refuse (it lost its
// log, or was removed) fails /health and gRPC health with why and what to
// do, where a member without a leader says it has none, and a member that
// drains says it is shutting down (it said it had no leader).
func TestHealthSaysWhyAMemberIsCutOff(t *testing.T) {
	s := startServer(t)
	check := func() string {
		t.Helper()
		resp, err := http.Post(s.url+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Status string }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("grpc health: %d, %v", resp.StatusCode, err)
		}
		return out.Status
	}
	if got := check(); got != "SERVING_STATUS_SERVING" {
		t.Fatalf("grpc health of a serving member: %q", got)
	}
	for _, c := range []struct {
		health error
		say    string
	}{
		{errNoQuorum, "has no leader"},
		{fmt.Errorf("%w: shard 0 has no leader known to this member, which cannot reach node-2 at 127.0.0.1:7002", runtime.ErrUnavailable),
			"this node cannot serve: shard 0 has no leader known to this member, which cannot reach node-2 at 127.0.0.1:7002; try another node"},
		{fmt.Errorf("%w: it was removed from the cluster (lockstep cluster remove)", runtime.ErrCutOff), "cut off from the cluster: it was removed"},
		{fmt.Errorf("%w: /var/lib/lockstep has not finished a synced write of a few bytes in 5s", runtime.ErrDataDir), "data directory: /var/lib/lockstep has not finished"},
		{runtime.ErrShuttingDown, "this node is shutting down: it drains (SIGTERM or SIGINT) and takes no new requests; try another node"},
	} {
		s.b.mu.Lock()
		s.b.unhealthy = c.health
		s.b.mu.Unlock()
		st, h := s.call(t, "GET", "/health", "")
		expectError(t, st, h, 503, "unavailable")
		if msg, _ := h["message"].(string); !strings.Contains(msg, c.say) || !errors.Is(c.health, runtime.ErrUnavailable) && strings.Contains(msg, "no leader") {
			t.Errorf("/health of a member whose Health is %q: %q, want it to say %q", c.health, msg, c.say)
		}
		if got := check(); got != "SERVING_STATUS_NOT_SERVING" {
			t.Errorf("grpc health of a member whose Health is %q: %q", c.health, got)
		}
	}
}

// TestHealthSaysADegradedMemberServes: a member whose data directory's
// file system is nearly full (runtime.ErrDataDirFull) answered /health
// 200 "serving", and panicked minutes later in a snapshot's write. It
// still serves (the others may need its vote), so /health answers 200,
// now "degraded" with the reason and what to do, and gRPC health SERVING;
// a member that cannot serve answers 503 as before, the degraded word
// aside.
func TestHealthSaysADegradedMemberServes(t *testing.T) {
	s := startServer(t)
	const why = "the file system of /var/lib/lockstep has 0.0 MiB left: free space on it, or move cluster.data_dir"
	s.b.mu.Lock()
	s.b.degraded = fmt.Errorf("%w: %s", runtime.ErrDataDirFull, why)
	s.b.mu.Unlock()
	st, h := s.call(t, "GET", "/health", "")
	expect(t, "health of a degraded member", st, 200)
	expect(t, "health status", h["status"], "degraded")
	expect(t, "node_id", h["node_id"], "node-1")
	if reason, _ := h["reason"].(string); !strings.Contains(reason, "data directory nearly full") || !strings.Contains(reason, why) {
		t.Errorf("/health reason %q, want the error with %q", reason, why)
	}
	resp, err := http.Post(s.url+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Status string }
	err = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if err != nil || out.Status != "SERVING_STATUS_SERVING" {
		t.Errorf("grpc health of a degraded member that serves: %q, %v", out.Status, err)
	}

	s.b.mu.Lock()
	s.b.unhealthy = errNoQuorum
	s.b.mu.Unlock()
	st, h = s.call(t, "GET", "/health", "")
	expectError(t, st, h, 503, "unavailable")

	s.b.mu.Lock()
	s.b.unhealthy, s.b.degraded = nil, nil
	s.b.mu.Unlock()
	st, h = s.call(t, "GET", "/health", "")
	expect(t, "health", st, 200)
	expect(t, "health status", h["status"], "serving")
	if reason, _ := h["reason"].(string); reason != "" {
		t.Errorf("a serving member's /health has a reason: %v", h)
	}
}

func TestConnectJSONAndGRPC(t *testing.T) {
	s := startServer(t)
	// Connect JSON by hand: snake_case out, Connect's error JSON.
	resp, err := http.Post(s.url+lockstepv1connect.SessionServiceCreateProcedure, "application/json", strings.NewReader(`{"ttlSeconds": 10}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(raw, []byte(`"session_id"`)) || !bytes.Contains(raw, []byte(`"ttl_ms":"10000"`)) {
		t.Fatalf("Connect JSON create: %d %s", resp.StatusCode, raw)
	}
	resp, err = http.Post(s.url+lockstepv1connect.LockServiceReleaseProcedure, "application/json", strings.NewReader(`{"name":"n","owner":"o","fencing_token":"7"}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !bytes.Contains(raw, []byte(`"code":"aborted"`)) {
		t.Fatalf("Connect JSON conflict: %d %s", resp.StatusCode, raw)
	}

	// gRPC over h2c.
	h2c := &http.Client{Transport: &http.Transport{
		Protocols:       func() *http.Protocols { var p http.Protocols; p.SetUnencryptedHTTP2(true); return &p }(),
		TLSClientConfig: &tls.Config{},
	}}
	ctx := context.Background()
	sessions := lockstepv1connect.NewSessionServiceClient(h2c, s.url, connect.WithGRPC())
	locks := lockstepv1connect.NewLockServiceClient(h2c, s.url, connect.WithGRPC())
	cr, err := sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 10, ClientId: "c1", RequestSeq: 1}))
	if err != nil {
		t.Fatal(err)
	}
	// A retry with the same client_id and request_seq gets the same session.
	again, err := sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 10, ClientId: "c1", RequestSeq: 1}))
	if err != nil || again.Msg.SessionId != cr.Msg.SessionId {
		t.Fatalf("retried create: %v %v, want session %d", again, err, cr.Msg.SessionId)
	}
	ar, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "g", SessionId: cr.Msg.SessionId, ClientId: "c1", RequestSeq: 2}))
	if err != nil || !ar.Msg.Acquired {
		t.Fatalf("gRPC acquire: %v %v", ar, err)
	}
	// The same pair on another name is not a retry: it is refused, and
	// nothing is granted (it was answered "acquired" with g's token).
	other, err := locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "g2", SessionId: cr.Msg.SessionId, ClientId: "c1", RequestSeq: 2}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "already used for another request") {
		t.Fatalf("the pair of g's acquire, on g2: %v %v, want failed_precondition", other, err)
	}
	if st, err := locks.Status(ctx, connect.NewRequest(&pb.LockStatusRequest{Name: "g2"})); err != nil || st.Msg.Held {
		t.Fatalf("g2 after the refused reuse: %v %v, want free", st, err)
	}
	fence, err := locks.CheckFence(ctx, connect.NewRequest(&pb.CheckFenceRequest{Name: "g", FencingToken: ar.Msg.FencingToken}))
	if err != nil || !fence.Msg.Valid {
		t.Fatalf("check fence: %v %v", fence, err)
	}
	_, err = locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "g", SessionId: cr.Msg.SessionId, FencingToken: ar.Msg.FencingToken + 1}))
	if connect.CodeOf(err) != connect.CodeAborted {
		t.Fatalf("release with a wrong token: %v, want aborted", err)
	}
	_, err = locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: ""}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("empty name: %v, want invalid_argument", err)
	}
	// Watch sees the release.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	watch := lockstepv1connect.NewWatchServiceClient(h2c, s.url, connect.WithGRPC())
	stream, err := watch.Watch(wctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Name{Name: "g"}}))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, _ = locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "g", SessionId: cr.Msg.SessionId, FencingToken: ar.Msg.FencingToken}))
	}()
	for stream.Receive() && len(stream.Msg().Events) == 0 {
	}
	if stream.Err() != nil {
		t.Fatalf("watch: %v", stream.Err())
	}
	ev := stream.Msg().Events[0]
	if ev.Type != pb.EventType_EVENT_TYPE_RELEASED || ev.FencingToken != ar.Msg.FencingToken || ev.Name != "g" {
		t.Fatalf("watch event: %v", ev)
	}
	cancel()

	// Metrics counted the acquire.
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "lock_acquisitions_total" {
			found = true
		}
	}
	if !found {
		t.Fatal("lock_acquisitions_total not exported")
	}
}

type keyAuth struct{}

func (keyAuth) Authenticate(_ context.Context, _ string, h http.Header) (rpc.Principal, error) {
	if h.Get("Authorization") == "" {
		return rpc.Principal{}, errors.New("no credentials: send Authorization")
	}
	return rpc.Principal{ID: strings.TrimPrefix(h.Get("Authorization"), "Bearer ")}, nil
}

type readOnly struct{}

func (readOnly) Authorize(_ context.Context, who rpc.Principal, procedure string, _ any) error {
	if who.ID == "reader" && !strings.HasSuffix(procedure, "/Status") {
		return errors.New(who.ID + " may only read")
	}
	return nil
}

type auditLog struct {
	mu   sync.Mutex
	recs []rpc.AuditRecord
	fail error // what Audit answers: a record that could not be written
}

func (a *auditLog) Audit(_ context.Context, r rpc.AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return a.fail
}

// TestSecuritySlots shows that the interceptor chain's slots answer
// docs/api.md's 401 and 403 over REST and see REST requests, and that audit
// records the caller and the outcome, failed authentications included.
func TestSecuritySlots(t *testing.T) {
	audit := &auditLog{}
	s := startServer(t, func(o *rpc.Options) {
		o.Authenticator, o.Authorizer, o.Auditor = keyAuth{}, readOnly{}, audit
	})
	st, e := s.call(t, "POST", "/locks/a/acquire", `{}`)
	expectError(t, st, e, 401, "unauthenticated")

	req, _ := http.NewRequest("POST", s.url+"/locks/a/acquire", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer reader")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), `"code":"permission_denied"`) {
		t.Fatalf("a reader acquiring: %d %s", resp.StatusCode, body)
	}

	req, _ = http.NewRequest("GET", s.url+"/locks/a/status", nil)
	req.Header.Set("Authorization", "Bearer reader")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(t, "a reader reading", resp.StatusCode, 200)

	audit.mu.Lock()
	defer audit.mu.Unlock()
	if len(audit.recs) != 3 {
		t.Fatalf("audit records: %+v (want the unauthenticated, the denied and the read request)", audit.recs)
	}
	unauth, denied, read := audit.recs[0], audit.recs[1], audit.recs[2]
	if unauth.Principal.ID != "" || unauth.Code != connect.CodeUnauthenticated {
		t.Fatalf("audit of the unauthenticated acquire: %+v", unauth)
	}
	if denied.Principal.ID != "reader" || denied.Code != connect.CodePermissionDenied || denied.Procedure != lockstepv1connect.LockServiceAcquireProcedure {
		t.Fatalf("audit of the denied acquire: %+v", denied)
	}
	if read.Code != 0 || read.Procedure != lockstepv1connect.LockServiceStatusProcedure {
		t.Fatalf("audit of the read: %+v", read)
	}
}

// TestBodyDeadline shows that a slow body is cut off while a long wait,
// whose body arrived at once, is not: over HTTP/1.1 a read deadline left
// armed would cancel the waiting request.
func TestBodyDeadline(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.BodyReadTimeout = 300 * time.Millisecond })
	s.call(t, "POST", "/locks/w/acquire", `{"owner":"a"}`)
	start := time.Now()
	st, b := s.call(t, "POST", "/locks/w/acquire", `{"owner":"b","wait_timeout_ms":1000}`)
	expect(t, "status", st, 200)
	expect(t, "reason", b["reason"], "REASON_TIMEOUT")
	if d := time.Since(start); d < 950*time.Millisecond {
		t.Fatalf("the wait ended after %v, before its 1 s", d)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /locks/x/acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"owner\"")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start = time.Now()
	reply, _ := io.ReadAll(conn)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a slow body held the connection for %v: %q", d, reply)
	}
	if bytes.HasPrefix(reply, []byte("HTTP/1.1 200")) {
		t.Fatalf("a slow body was answered 200: %s", reply)
	}
}

// TestBodyDecodeErrorsSayWhatToSend: a value that does not decode is named
// without protojson's "proto:" (which it writes with a no-break space at
// random), and a bytes field's error says it is base64, which a caller
// sending plain text could not guess from "invalid value for bytes field".
func TestBodyDecodeErrorsSayWhatToSend(t *testing.T) {
	s := startServer(t)
	for body, want := range map[string]string{
		`{"value": "not base64!"}`:  "a bytes field is base64 in JSON",
		`{"ttl_seconds": "twelve"}`: "ttl_seconds",
	} {
		status, e := s.call(t, "POST", "/election/e/campaign", body)
		msg, _ := e["message"].(string)
		if status != 400 || !strings.Contains(msg, want) || strings.Contains(msg, "proto:") || strings.Contains(msg, "\u00a0") {
			t.Errorf("%s: %d %q, want 400 saying %q, without proto: or a no-break space", body, status, msg, want)
		}
	}
}

// TestAcquireInASessionIsItsOwners: an acquire that gives session_id and no
// owner is held by the session's owner label: the holder showed owner "",
// and a release by the session's label was refused as another holder's.
func TestAcquireInASessionIsItsOwners(t *testing.T) {
	s := startServer(t)
	_, cr := s.call(t, "POST", "/sessions", `{"owner": "worker-7", "ttl_seconds": 30}`)
	sid, _ := cr["session_id"].(string)
	status, ar := s.call(t, "POST", "/locks/jobs%2Fnightly/acquire", `{"session_id": "`+sid+`"}`)
	if status != 200 || ar["acquired"] != true {
		t.Fatalf("acquire in session %s: %d %v", sid, status, ar)
	}
	_, st := s.call(t, "GET", "/locks/jobs%2Fnightly/status", "")
	if h, _ := st["holder"].(map[string]any); h == nil || h["owner"] != "worker-7" {
		t.Fatalf("holder %v, want owner worker-7 (the session's)", st["holder"])
	}
	status, rr := s.call(t, "POST", "/locks/jobs%2Fnightly/release", `{"owner": "worker-7", "fencing_token": "`+ar["fencing_token"].(string)+`"}`)
	if status != 200 || rr["released"] != true {
		t.Fatalf("release by the session's label: %d %v", status, rr)
	}
}

// TestDecodeErrorsInTheAPIsWords: a body that does not decode is refused
// naming its field by the API's (snake_case) name over Connect JSON as
// over REST (Connect said "field sessionId"), and a misspelt enum value is
// refused with the names the field takes ("kind": "mutex" did not say
// KIND_MUTEX).
func TestDecodeErrorsInTheAPIsWords(t *testing.T) {
	s := startServer(t)
	for _, c := range []struct{ path, body, want string }{
		{"/lockstep.v1.SessionService/KeepAlive", `{"session_id":"abc"}`, "field session_id:"},
		{"/lockstep.v1.LockService/CheckFence", `{"name":"a","kind":"mutex","fencing_token":"1"}`, "KIND_MUTEX, KIND_SEMAPHORE"},
		{"/locks/a/acquire", `{"session_id":"abc"}`, "field session_id:"},
	} {
		st, body := s.call(t, "POST", c.path, c.body)
		msg, _ := body["message"].(string)
		if st != 400 || !strings.Contains(msg, c.want) {
			t.Errorf("POST %s %s: %d %q, want 400 saying %q", c.path, c.body, st, msg, c.want)
		}
	}
}
