package rpc_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// rawCall sends a request with exact headers and body and returns the
// status and raw answer.
func (s *testServer) rawCall(t *testing.T, method, path string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
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
	return resp.StatusCode, string(raw)
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRESTQueryNeverOverrides checks that a query parameter cannot name
// another object or session than the path does, and that what the query
// may carry is said.
func TestRESTQueryNeverOverrides(t *testing.T) {
	s := startServer(t)
	_, a := s.call(t, "POST", "/locks/held-a/acquire", `{"owner":"oa"}`)
	_, b := s.call(t, "POST", "/locks/held-b/acquire", `{"owner":"ob"}`)
	if a["acquired"] != true || b["acquired"] != true {
		t.Fatalf("setup: %v %v", a, b)
	}
	sa, _ := a["session_id"].(string)
	sb, _ := b["session_id"].(string)
	tok, _ := b["fencing_token"].(string)
	for _, tc := range []struct {
		method, path, body string
		phrase             string
	}{
		{"DELETE", "/sessions/" + sa + "?session_id=" + sb, "", `query parameter "session_id" is not accepted on DELETE`},
		{"POST", "/locks/other/release?name=held-b", `{"owner":"ob","fencing_token":"` + tok + `"}`, `query parameter "name" is not accepted on POST`},
		{"POST", "/locks/free-a/acquire?name=free-b", `{"owner":"x"}`, `query parameter "name"`},
		{"POST", "/locks/free-a/acquire?owner=zz", `{"owner":"x"}`, `query parameter "owner"`},
		{"GET", "/locks/free-a/status?name=held-b", "", `query parameter "name" is not accepted on GET: the query takes only stale`},
		{"GET", "/locks/free-a/status?bogus=1", "", `query parameter "bogus"`},
		{"GET", "/locks/free-a/status?stale=true&stale=false", "", `query parameter "stale" is given 2 times`},
		{"GET", "/locks/%ff/status", "", `is not valid UTF-8`},
	} {
		status, body := s.call(t, tc.method, tc.path, tc.body)
		expectError(t, status, body, 400, "invalid_argument")
		if msg, _ := body["message"].(string); !strings.Contains(msg, tc.phrase) {
			t.Errorf("%s %s: message %q does not say %q", tc.method, tc.path, msg, tc.phrase)
		}
	}
	for _, name := range []string{"held-a", "held-b"} {
		if _, st := s.call(t, "GET", "/locks/"+name+"/status", ""); st["held"] != true {
			t.Fatalf("%s is no longer held after the refused requests: %v", name, st)
		}
	}
	for _, name := range []string{"free-a", "free-b", "other"} {
		if _, st := s.call(t, "GET", "/locks/"+name+"/status", ""); st["held"] == true {
			t.Fatalf("%s was acquired by a refused request: %v", name, st)
		}
	}
	if status, st := s.call(t, "GET", "/locks/held-a/status?stale=true", ""); status != 200 || st["held"] != true {
		t.Fatalf("a documented query parameter: %d %v", status, st)
	}
}

// TestRESTBodies checks compressed and malformed bodies: the bound is on
// the inflated bytes, and each failure is the client's, with a 4xx.
func TestRESTBodies(t *testing.T) {
	s := startServer(t)
	gz := http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}
	bomb := gzipped(t, append([]byte(`{"owner":"`), bytes.Repeat([]byte("x"), 64<<20)...))
	status, body := s.rawCall(t, "POST", "/locks/bomb/acquire", gz, bomb)
	if status != 413 || !strings.Contains(body, `"code":"resource_exhausted"`) || !strings.Contains(body, "inflates to more than") {
		t.Fatalf("a gzip bomb (%d bytes holding 64 MiB): %d %s", len(bomb), status, body)
	}
	status, body = s.rawCall(t, "POST", "/locks/small/acquire", gz, gzipped(t, []byte(`{"owner":"z"}`)))
	if status != 200 || !strings.Contains(body, `"acquired":true`) {
		t.Fatalf("a small gzip body: %d %s", status, body)
	}
	status, body = s.rawCall(t, "POST", "/locks/corrupt/acquire", gz, []byte("\x1f\x8b\x08\x00garbage"))
	if status != 400 || !strings.Contains(body, "the gzip body is corrupt") {
		t.Fatalf("a corrupt gzip body: %d %s", status, body)
	}
	status, body = s.rawCall(t, "POST", "/locks/br/acquire", http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"br"}}, []byte(`{}`))
	if status != 415 || !strings.Contains(body, `Content-Encoding \"br\" is not supported`) {
		t.Fatalf("an unknown encoding: %d %s", status, body)
	}
	if _, st := s.call(t, "GET", "/locks/bomb/status", ""); st["held"] == true {
		t.Fatal("the bomb's acquire was applied")
	}
}

// TestRESTBodyNeverContradictsPath checks that a body field that repeats
// a path variable with another value is refused, as a query parameter
// that would override the path is: the path used to win in silence, so
// /locks/jobs%2Fok/acquire with {"name":"other/evil"} acquired jobs/ok
// while anything that read the body saw other/evil.
func TestRESTBodyNeverContradictsPath(t *testing.T) {
	s := startServer(t)
	sess := func() string {
		t.Helper()
		st, cs := s.call(t, "POST", "/sessions", `{"ttl_ms": 60000}`)
		id, _ := cs["session_id"].(string)
		if st != 200 || id == "" || id == "0" {
			t.Fatalf("create session: %d %v", st, cs)
		}
		return id
	}
	sa, sb := sess(), sess()
	js := http.Header{"Content-Type": {"application/json"}}
	gz := http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}
	for _, tc := range []struct {
		what, path, body string
		gzip             bool
		phrase           string
	}{
		{"a name", "/locks/jobs%2Fok/acquire", `{"owner":"o","name":"other/evil"}`, false,
			`field name is given in the path ("jobs/ok") and differs in the body ("other/evil"): give it in the path only (or the same value)`},
		{"a name in a gzip body", "/locks/jobs%2Fok/acquire", `{"name":"other/evil","owner":"o"}`, true, `differs in the body ("other/evil")`},
		{"an escaped key", "/locks/jobs%2Fok/acquire", `{"n\u0061me":"other/evil"}`, false, `differs in the body ("other/evil")`},
		{"the second of two", "/locks/jobs%2Fok/acquire", `{"name":"jobs/ok","name":"other/evil"}`, false, `differs in the body ("other/evil")`},
		{"a release", "/locks/jobs%2Fok/release", `{"name":"jobs/ok2","owner":"o","fencing_token":"1"}`, false, `differs in the body ("jobs/ok2")`},
		{"a semaphore", "/semaphores/gpu/acquire", `{"name":"cpu","permits":1,"limit":2}`, false, `field name is given in the path ("gpu") and differs in the body ("cpu")`},
		{"a barrier", "/barriers/b1/wait", `{"name":"b2","parties":2}`, false, `differs in the body ("b2")`},
		{"an election", "/election/e1/campaign", `{"name":"e2","value":"eA=="}`, false, `differs in the body ("e2")`},
		{"an rwlock", "/rwlocks/r1/acquire", `{"name":"r2","mode":"read"}`, false, `differs in the body ("r2")`},
		{"session_id as a string", "/sessions/" + sa + "/keepalive", `{"session_id":"` + sb + `"}`, false,
			`field session_id is given in the path ("` + sa + `") and differs in the body ("` + sb + `")`},
		{"sessionId as a number", "/sessions/" + sa + "/keepalive", `{"sessionId":` + sb + `}`, false,
			`field session_id is given in the path ("` + sa + `") and differs in the body ("` + sb + `")`},
		{"session_id on abandon", "/sessions/" + sa + "/abandon", `{"client_id":"c","abandon_seq":"1","session_id":"` + sb + `"}`, false,
			`field session_id is given in the path ("` + sa + `")`},
	} {
		h, b := js, []byte(tc.body)
		if tc.gzip {
			h, b = gz, gzipped(t, b)
		}
		status, raw := s.rawCall(t, "POST", tc.path, h, b)
		var body map[string]any
		if err := json.Unmarshal([]byte(raw), &body); err != nil {
			t.Fatalf("%s: %d %q is not JSON", tc.what, status, raw)
		}
		if status != 400 || body["code"] != "invalid_argument" {
			t.Errorf("%s: POST %s %s: %d %s, want 400 invalid_argument", tc.what, tc.path, tc.body, status, raw)
			continue
		}
		if msg, _ := body["message"].(string); !strings.Contains(msg, tc.phrase) {
			t.Errorf("%s: message %q does not say %q", tc.what, msg, tc.phrase)
		}
	}
	for _, name := range []string{"jobs%2Fok", "other%2Fevil"} {
		if _, st := s.call(t, "GET", "/locks/"+name+"/status", ""); st["held"] == true {
			t.Errorf("%s was acquired by a refused request: %v", name, st)
		}
	}

	// The same value in the body as in the path is taken, in either
	// spelling and as a string or a number; so are a body without the
	// field, and one that gives it as null or its zero value (proto3 JSON
	// reads those as not set).
	for _, tc := range []struct{ path, body, field, want string }{
		{"/locks/jobs%2Fsame/acquire", `{"owner":"o","name":"jobs/same"}`, "acquired", "true"},
		{"/locks/plain/acquire", `{"owner":"o"}`, "acquired", "true"},
		{"/locks/nul/acquire", `{"owner":"o","name":null}`, "acquired", "true"},
		{"/locks/zero/acquire", `{"owner":"o","name":""}`, "acquired", "true"},
		{"/sessions/" + sa + "/keepalive", `{"session_id":"` + sa + `"}`, "session_id", sa},
		{"/sessions/" + sa + "/keepalive", `{"sessionId":` + sa + `}`, "session_id", sa},
		{"/sessions/" + sa + "/keepalive", `{"session_id":0}`, "session_id", sa},
		{"/sessions/" + sa + "/keepalive", `{"session_id":` + sa + `.0}`, "session_id", sa},
		{"/sessions/" + sa + "/keepalive", `{"session_id":"` + sa + `e0"}`, "session_id", sa},
		{"/sessions/" + sb + "/keepalive", `{}`, "session_id", sb},
	} {
		status, body := s.call(t, "POST", tc.path, tc.body)
		if status != 200 || fmt.Sprint(body[tc.field]) != tc.want {
			t.Errorf("POST %s %s: %d %v, want 200 with %s %s", tc.path, tc.body, status, body, tc.field, tc.want)
		}
	}
	// A body field that is not a path variable of its route is the
	// body's: Abandon's name names the object of the request it withdraws.
	if status, body := s.call(t, "POST", "/sessions/"+sa+"/abandon", `{"client_id":"c","request_seq":"2","abandon_seq":"1","kind":"KIND_MUTEX","name":"other"}`); status != 200 {
		t.Errorf("abandon with a name in the body: %d %v", status, body)
	}
	// A body that does not parse keeps the decoder's own message.
	status, body := s.call(t, "POST", "/locks/jobs%2Fok/acquire", `{"name":"other/evil",`)
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); strings.Contains(msg, "differs in the body") {
		t.Errorf("a malformed body: %q", msg)
	}
}

func TestRESTHeadAndUnknownProcedure(t *testing.T) {
	s := startServer(t)
	if status, body := s.rawCall(t, "HEAD", "/health", nil, nil); status != 200 || body != "" {
		t.Fatalf("HEAD /health: %d %q", status, body)
	}
	// HEAD takes GET's query: curl -I of a stale read is served, and what
	// GET refuses HEAD refuses too.
	if status, body := s.rawCall(t, "HEAD", "/locks/x/status?stale=true", nil, nil); status != 200 || body != "" {
		t.Fatalf("HEAD /locks/x/status?stale=true: %d %q, want 200 and no body", status, body)
	}
	if status, _ := s.rawCall(t, "HEAD", "/sessions?page_size=1", nil, nil); status != 200 {
		t.Fatalf("HEAD /sessions?page_size=1: %d, want 200", status)
	}
	if status, _ := s.rawCall(t, "HEAD", "/locks/x/status?name=y", nil, nil); status != 400 {
		t.Fatalf("HEAD /locks/x/status?name=y: %d, want 400 as GET answers", status)
	}
	// An unknown service, and an unknown method of a known one (whose
	// generated handler answers Go's plain-text 404).
	for _, path := range []string{"/lockstep.v1.NoSuchService/Do", "/lockstep.v1.LockService/Nope"} {
		status, body := s.rawCall(t, "POST", path, http.Header{"Content-Type": {"application/json"}}, []byte(`{}`))
		if status != 404 || !strings.Contains(body, `"code":"unimplemented"`) || !strings.Contains(body, "no such procedure") {
			t.Fatalf("an unknown procedure %s: %d %s", path, status, body)
		}
	}
	if status, body := s.rawCall(t, "POST", "/lockstep.v1.LockService/Acquire", http.Header{"Content-Type": {"application/json"}}, []byte(`{"name":"p","owner":"o"}`)); status == 404 {
		t.Fatalf("a known procedure answered 404: %s", body)
	}
	// A Connect client (a newer build calling a procedure this member
	// lacks) reads unimplemented, not not_found, which the Go client takes
	// for the loss of its session.
	nope := connect.NewClient[pb.KeepAliveRequest, pb.KeepAliveResponse](h2c(), s.url+"/lockstep.v1.SessionService/KeepAliveV2")
	if _, err := nope.CallUnary(context.Background(), connect.NewRequest(&pb.KeepAliveRequest{SessionId: 1})); connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("a Connect call of a procedure the server lacks: %v, want unimplemented", err)
	}
}

// A REST wait outlives the TTL of the session the server made for it: the
// wait itself shows the client is there.
func TestRESTWaitOutlivesItsSessionTTL(t *testing.T) {
	s := startServer(t)
	_, held := s.call(t, "POST", "/locks/w/acquire", `{"owner":"first","ttl_seconds":30}`)
	tok, _ := held["fencing_token"].(string)
	go func() {
		time.Sleep(900 * time.Millisecond) // three TTLs of the waiter's session
		s.call(t, "POST", "/locks/w/release", `{"owner":"first","fencing_token":"`+tok+`"}`)
	}()
	status, body := s.call(t, "POST", "/locks/w/acquire", `{"owner":"second","ttl_ms":300,"wait_timeout_ms":1900}`)
	if status != 200 || body["acquired"] != true {
		t.Fatalf("a wait longer than its session's TTL: %d %v", status, body)
	}
}

func TestRESTLabelsArePrintable(t *testing.T) {
	s := startServer(t)
	status, body := s.call(t, "POST", "/locks/l/acquire", `{"owner":"x\u0000\u001b[31mred"}`)
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, "unprintable character U+0000") {
		t.Fatalf("message %q", msg)
	}
	status, body = s.call(t, "POST", "/locks/l/acquire", `{"owner":"`+strings.Repeat("o", 124)+`"}`)
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, `less 5 for the "auto:" mark`) {
		t.Fatalf("message %q does not explain the reserved bytes", msg)
	}
	if _, st := s.call(t, "GET", "/locks/l/status", ""); st["held"] == true {
		t.Fatal("held after refused acquires")
	}
}

// An enum value that names nothing is refused over Connect JSON, while an
// unknown field (a newer client's) is still dropped.
func TestConnectJSONEnums(t *testing.T) {
	s := startServer(t)
	post := func(body string) (int, string) {
		return s.rawCall(t, "POST", "/lockstep.v1.LockService/CheckFence", http.Header{"Content-Type": {"application/json"}}, []byte(body))
	}
	for _, body := range []string{`{"name":"n","kind":"KIND_BOGUS","fencing_token":"1"}`, `{"name":"n","kind":"kind_mutex","fencing_token":"1"}`,
		`{"name":"n","kind":"KIND_BOGUS","fencing_token":"1","newer_field":1}`} {
		if status, raw := post(body); status != 400 || !strings.Contains(raw, "invalid_argument") || !strings.Contains(raw, "enum") {
			t.Errorf("%s: %d %s, want 400 naming the enum", body, status, raw)
		}
	}
	if status, raw := post(`{"name":"n","kind":"KIND_MUTEX","fencing_token":"1","newer_field":{"a":1}}`); status != 200 {
		t.Errorf("an unknown field: %d %s, want it dropped", status, raw)
	}
}

func TestRESTPathValuesAndContentTypes(t *testing.T) {
	s := startServer(t)
	status, body := s.call(t, "DELETE", "/sessions/abc", "")
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, `session_id "abc" in the path is not a whole number`) {
		t.Fatalf("a path id that is not a number: %q", msg)
	}
	// A whole number too large for an id, and query numbers, say what is
	// wrong with them (vanguard's own JSON error said neither what nor
	// where).
	for _, tc := range []struct{ path, want string }{
		{"/sessions/18446744073709551616", `session_id "18446744073709551616" in the path is too large (at most 18446744073709551615)`},
		{"/sessions/1?request_seq=abc", `request_seq="abc" is not a whole number`},
		{"/sessions/1?lowest_pending_seq=-1", `lowest_pending_seq="-1" is not a whole number`},
		{"/sessions/1?request_seq=99999999999999999999", `request_seq="99999999999999999999" is too large`},
	} {
		status, body := s.call(t, "DELETE", tc.path, "")
		expectError(t, status, body, 400, "invalid_argument")
		if msg, _ := body["message"].(string); !strings.Contains(msg, tc.want) {
			t.Errorf("DELETE %s: %q, want %q", tc.path, msg, tc.want)
		}
	}
	st, raw := s.rawCall(t, "POST", "/locks/t/acquire", http.Header{"Content-Type": {"text/plain"}}, []byte(`{"owner":"o"}`))
	if st != 415 || !strings.Contains(raw, `Content-Type \"text/plain\" is not accepted`) {
		t.Fatalf("text/plain: %d %s", st, raw)
	}
	st, raw = s.rawCall(t, "POST", "/locks/t/acquire", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, []byte(`{"owner":"o"}`))
	if st != 200 {
		t.Fatalf("JSON with a charset: %d %s", st, raw)
	}
}

func TestRESTDecodeMessagesNameTheAPIFields(t *testing.T) {
	s := startServer(t)
	status, body := s.call(t, "POST", "/locks/a/acquire", `{"wait_timeout_ms":"soon"}`)
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); !strings.Contains(msg, "int64 field wait_timeout_ms:") || strings.Contains(msg, "waitTimeoutMs") {
		t.Fatalf("message %q names the field in camelCase", msg)
	}
	status, body = s.call(t, "GET", "/locks/a/status?stale=maybe", "")
	expectError(t, status, body, 400, "invalid_argument")
	if msg, _ := body["message"].(string); msg != `stale="maybe" is not true or false: use true or false, in lower case` {
		t.Fatalf("message %q", msg)
	}
}

// Frames that lie about their length are the client's fault in every
// enveloped protocol.
func TestEnvelopesThatLie(t *testing.T) {
	s := startServer(t)
	lying := []byte("\x00\x00\x00\x00\x32{}")
	st, body := s.rawCall(t, "POST", "/lockstep.v1.WatchService/Watch", http.Header{"Content-Type": {"application/connect+json"}}, lying)
	if st != 200 || !strings.Contains(body, `"code":"invalid_argument"`) || !strings.Contains(body, "promises 50 bytes") {
		t.Fatalf("Connect streaming: %d %q", st, body)
	}
	req, _ := http.NewRequest("POST", s.url+"/lockstep.v1.LockService/Status", bytes.NewReader(lying))
	req.Header.Set("Content-Type", "application/grpc-web+proto")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Grpc-Status"); got != "3" {
		t.Fatalf("gRPC-Web: grpc-status %q (%s), want 3", got, resp.Header.Get("Grpc-Message"))
	}
}

// A Connect wait longer than MaxWait (locks.max_wait_time_seconds) ends at
// the cap, as a REST one does.
func TestConnectWaitIsCapped(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.MaxWait = 300 * time.Millisecond })
	if _, held := s.call(t, "POST", "/locks/capped/acquire", `{"owner":"first"}`); held["acquired"] != true {
		t.Fatalf("setup: %v", held)
	}
	locks := lockstepv1connect.NewLockServiceClient(http.DefaultClient, s.url, connect.WithProtoJSON())
	start := time.Now()
	res, err := locks.Acquire(context.Background(), connect.NewRequest(&pb.AcquireLockRequest{Name: "capped", Owner: "second", WaitTimeoutMs: 20_000}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Acquired || res.Msg.Reason != pb.Reason_REASON_TIMEOUT {
		t.Fatalf("a capped wait answered %v", res.Msg)
	}
	if d := time.Since(start); d >= 20*time.Second {
		t.Fatalf("the wait took %v: the cap did not apply", d)
	}
}

// An error quotes at most 64 bytes of the input it refuses, and says how
// long the input was: the message goes back to the caller and into the
// logs, and a field of megabytes must not make them megabytes.
func TestErrorsQuoteLongInputBounded(t *testing.T) {
	s := startServer(t)
	const n = 5000
	long := strings.Repeat("a", n)
	json := http.Header{"Content-Type": {"application/json"}}
	for _, c := range []struct {
		what, method, path string
		header             http.Header
		body               string
		quoted             string // the input's first 64 bytes, which the answer quotes
		phrase             string // what the answer says after them
	}{
		{"the reserved mark", "POST", "/sessions", json, `{"owner":"auto:` + long + `"}`, "auto:" + long[:59], `(5005 bytes) starts with "auto:"`},
		{"a mode", "POST", "/rwlocks/a/acquire", json, `{"mode":"` + long + `"}`, long[:64], `(5000 bytes) is not a mode`},
		{"a raft address", "POST", "/lockstep.v1.ClusterService/AddNode", json, `{"node_id":"n","raft_address":"` + long + `"}`, long[:64],
			`(5000 bytes) is not host:port`},
		{"a page token", "POST", "/lockstep.v1.LockService/List", json, `{"page_token":"` + long + `"}`, long[:64], `(5000 bytes) is not one this server gave`},
		{"a query parameter", "GET", "/locks/a/status?" + long + "=1", nil, "", long[:64], `(5000 bytes) is not accepted on GET`},
		{"stale", "GET", "/locks/a/status?stale=" + long, nil, "", long[:64], `(5000 bytes) is not true or false`},
		{"a session id in the path", "DELETE", "/sessions/" + long, nil, "", long[:64], `(5000 bytes) in the path is not a whole number`},
		{"a path segment", "GET", "/locks/" + long + "%FF/status", nil, "", long[:64], `(5003 bytes) is not valid UTF-8`},
		{"a Content-Type", "POST", "/locks/a/acquire", http.Header{"Content-Type": {"text/" + long}}, `{}`, "text/" + long[:59], `(5005 bytes) is not accepted`},
		{"a Content-Encoding", "POST", "/locks/a/acquire", http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {long}}, `{}`, long[:64],
			`(5000 bytes) is not supported`},
		{"a REST body's value", "POST", "/locks/a/acquire", json, `{"wait_timeout_ms":"` + long + `"}`, long[:64], `(5000 bytes) (fields are the snake_case names`},
		{"a REST body's unknown field", "POST", "/locks/a/acquire", json, `{"` + long + `":1}`, long[:64], `(5000 bytes) (fields are the snake_case names`},
		{"a Connect body's value", "POST", "/lockstep.v1.SessionService/Create", json, `{"ttl_ms":"` + long + `"}`, long[:64], `(5000 bytes)`},
	} {
		t.Run(c.what, func(t *testing.T) {
			var body []byte
			if c.body != "" {
				body = []byte(c.body)
			}
			status, raw := s.rawCall(t, c.method, c.path, c.header, body)
			if status < 400 || status >= 500 {
				t.Fatalf("%d %.300s, want a 4xx", status, raw)
			}
			if len(raw) > 600 || strings.Contains(raw, long[:65]) {
				t.Fatalf("the answer (%d bytes) repeats more than 64 bytes of the input: %.300s…", len(raw), raw)
			}
			if want := `\"` + c.quoted + `\"… ` + strings.ReplaceAll(c.phrase, `"`, `\"`); !strings.Contains(raw, want) {
				t.Fatalf("the answer %s does not say %s", raw, want)
			}
		})
	}
}

// TestConnectGzipBombStopsAtTheLimit: a gzip-compressed Connect or gRPC
// request message is inflated one byte past the size limit, not to its
// end: connect-go inflated a 1 MB bomb to its gigabyte to report the size
// ("message size 1060000000 is larger than configured max"), a quarter of
// a CPU second per request, before any credential was looked at. A small
// compressed message is still served.
func TestConnectGzipBombStopsAtTheLimit(t *testing.T) {
	s := startServer(t)
	const inflated = 64 << 20
	bomb := gzipped(t, append([]byte(`{"name":"`), bytes.Repeat([]byte("x"), inflated)...))
	connectJSON := http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}
	status, body := s.rawCall(t, "POST", lockstepv1connect.LockServiceStatusProcedure, connectJSON, bomb)
	if status != 429 || !strings.Contains(body, "resource_exhausted") || !strings.Contains(body, "inflation stopped there") ||
		strings.Contains(body, fmt.Sprint(inflated)) {
		t.Fatalf("a Connect gzip bomb (%d bytes holding %d): %d %s", len(bomb), inflated, status, body)
	}
	status, body = s.rawCall(t, "POST", lockstepv1connect.LockServiceStatusProcedure, connectJSON, gzipped(t, []byte(`{"name":"small"}`)))
	if status != 200 || !strings.Contains(body, `"name":"small"`) {
		t.Fatalf("a small gzip Connect message: %d %s", status, body)
	}
}

// TestBrowsersCrossOriginWritesAreRefused: a page of another site cannot
// make a browser post to the API (REST takes a form-encoded body, a
// "simple" request no preflight guards, and a browser presents its client
// certificate with it): refused 403 before anything acts, while programs
// (no Origin, no Sec-Fetch-Site), same-origin pages and reads are served.
func TestBrowsersCrossOriginWritesAreRefused(t *testing.T) {
	s := startServer(t)
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	with := func(kv ...string) http.Header {
		h := form.Clone()
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, h := range []http.Header{with("Sec-Fetch-Site", "cross-site"), with("Origin", "https://evil.example")} {
		status, body := s.rawCall(t, "POST", "/locks/csrf/acquire", h, []byte(`{"ttl_seconds": 5}`))
		if status != 403 || !strings.Contains(body, `"code":"permission_denied"`) || !strings.Contains(body, "cross-origin") {
			t.Fatalf("a cross-origin post (%v): %d %s", h, status, body)
		}
	}
	if st, body := s.call(t, "GET", "/locks/csrf/status", ""); st != 200 || body["holders"] != nil && len(body["holders"].([]any)) != 0 {
		t.Fatalf("after refused cross-origin posts, csrf: %d %v", st, body)
	}
	// A same-origin page, and a program.
	if status, body := s.rawCall(t, "POST", "/locks/csrf/acquire", with("Sec-Fetch-Site", "same-origin"), []byte(`{"ttl_seconds": 5}`)); status != 200 {
		t.Fatalf("a same-origin post: %d %s", status, body)
	}
	if status, body := s.rawCall(t, "POST", "/locks/csrf2/acquire", form, []byte(`{"ttl_seconds": 5}`)); status != 200 {
		t.Fatalf("a program's post: %d %s", status, body)
	}
	// Reads are not refused.
	if status, body := s.rawCall(t, "GET", "/locks/csrf/status", http.Header{"Sec-Fetch-Site": {"cross-site"}}, nil); status != 200 {
		t.Fatalf("a cross-origin read: %d %s", status, body)
	}
	// A bodiless request's Content-Type describes nothing, and is not
	// refused for its type (it was, with the transcoder's raw message).
	if status, body := s.rawCall(t, "GET", "/locks/csrf/status", form, nil); status != 200 {
		t.Fatalf("a GET with a form Content-Type: %d %s", status, body)
	}
	if status, body := s.rawCall(t, "DELETE", "/sessions/12345", form, nil); status != 404 || !strings.Contains(body, "does not exist") {
		t.Fatalf("a DELETE with a form Content-Type: %d %s, want the session's 404", status, body)
	}
}
