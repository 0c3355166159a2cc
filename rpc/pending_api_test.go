package rpc_test

import (
	"fmt"
	"testing"
)

// More requests of one client_id in flight than the 32-result window, each
// answered again on retry, when lowest_pending_seq says which are pending.
func TestRESTManyPendingRequests(t *testing.T) {
	s := startServer(t)
	ids := map[int]string{}
	for seq := 60; seq >= 1; seq-- { // out of order, none answered to the client yet
		status, body := s.call(t, "POST", "/sessions", fmt.Sprintf(`{"client_id":"c","request_seq":%d,"lowest_pending_seq":1,"ttl_seconds":30}`, seq))
		if status != 200 {
			t.Fatalf("create seq %d: %d %v", seq, status, body)
		}
		ids[seq], _ = body["session_id"].(string)
	}
	for seq := 1; seq <= 60; seq++ {
		_, body := s.call(t, "POST", "/sessions", fmt.Sprintf(`{"client_id":"c","request_seq":%d,"lowest_pending_seq":1,"ttl_seconds":30}`, seq))
		if got, _ := body["session_id"].(string); got != ids[seq] || got == "" {
			t.Fatalf("retry of seq %d answered session %q, first %q", seq, got, ids[seq])
		}
	}
	status, body := s.call(t, "POST", "/sessions", `{"client_id":"c","request_seq":3,"lowest_pending_seq":4,"ttl_seconds":30}`)
	expectError(t, status, body, 400, "invalid_argument")
}

// Abandon over REST: an acquire abandoned before it arrives is never applied,
// and one that was granted is released.
func TestRESTAbandon(t *testing.T) {
	s := startServer(t)
	_, body := s.call(t, "POST", "/sessions", `{"client_id":"c","request_seq":1,"ttl_seconds":30}`)
	sid, _ := body["session_id"].(string)

	status, body := s.call(t, "POST", "/sessions/"+sid+"/abandon",
		`{"client_id":"c","request_seq":3,"lowest_pending_seq":2,"kind":"KIND_MUTEX","name":"m","abandon_seq":2}`)
	if status != 200 {
		t.Fatalf("abandon: %d %v", status, body)
	}
	_, body = s.call(t, "POST", "/locks/m/acquire", `{"client_id":"c","request_seq":2,"lowest_pending_seq":2,"session_id":"`+sid+`"}`)
	if body["acquired"] == true {
		t.Fatalf("an abandoned acquire that arrived late was granted: %v", body)
	}
	if _, body = s.call(t, "GET", "/locks/m/status", ""); body["held"] == true {
		t.Fatalf("held after a late abandoned acquire: %v", body)
	}

	_, body = s.call(t, "POST", "/locks/m/acquire", `{"client_id":"c","request_seq":4,"lowest_pending_seq":4,"session_id":"`+sid+`"}`)
	if body["acquired"] != true {
		t.Fatalf("acquire: %v", body)
	}
	if _, body = s.call(t, "GET", "/locks/m/status", ""); body["held"] != true {
		t.Fatalf("not held after a grant: %v", body)
	}
	status, body = s.call(t, "POST", "/sessions/"+sid+"/abandon",
		`{"client_id":"c","request_seq":5,"lowest_pending_seq":4,"kind":"KIND_MUTEX","name":"m","abandon_seq":4}`)
	if status != 200 || body["released_fencing_token"] == nil {
		t.Fatalf("abandon of a grant: %d %v", status, body)
	}
	if _, body = s.call(t, "GET", "/locks/m/status", ""); body["held"] == true {
		t.Fatalf("held after abandoning the grant: %v", body)
	}

	status, body = s.call(t, "POST", "/sessions/"+sid+"/abandon", `{"client_id":"c","request_seq":6,"kind":"KIND_MUTEX","name":"m"}`)
	expectError(t, status, body, 400, "invalid_argument")
}
