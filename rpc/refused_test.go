package rpc_test

import "testing"

// A try-once acquire that loses says to whom, and that the session made for
// it is gone again.
func TestRESTRefusalNamesTheHolder(t *testing.T) {
	s := startServer(t)
	if _, first := s.call(t, "POST", "/locks/busy/acquire", `{"owner":"worker-3"}`); first["acquired"] != true {
		t.Fatalf("setup: %v", first)
	}
	status, second := s.call(t, "POST", "/locks/busy/acquire", `{"owner":"worker-4"}`)
	if status != 200 || second["acquired"] != false {
		t.Fatalf("second acquire: %d %v", status, second)
	}
	holder, _ := second["holder"].(map[string]any)
	if holder == nil || holder["owner"] != "worker-3" {
		t.Fatalf("the refusal does not name the holder: %v", second)
	}
	if second["session_created"] != true || second["session_closed"] != true {
		t.Fatalf("the made session is not said to be closed: %v", second)
	}
	if _, granted := s.call(t, "POST", "/locks/free/acquire", `{"owner":"w"}`); granted["session_closed"] != false || granted["holder"] != nil {
		t.Fatalf("a grant: %v", granted)
	}
}
