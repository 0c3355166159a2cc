package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/runtime"
)

// TestUnavailableSaysWhatToDo: a member without a quorum answers 503 with
// the runtime's words (what it knows of the leader) and that the request
// may be retried, to reads and writes alike. It said "retry, on this node
// or another, with the same client_id and request_seq" to every request,
// reads that carry no client_id among them, and through the CLI to people
// who send neither; how a write is retried safely is docs/api.md's.
func TestUnavailableSaysWhatToDo(t *testing.T) {
	s := startServer(t)
	noQuorum := fmt.Errorf("%w: shard 0: no read could be confirmed within 15s: this member knows no leader", runtime.ErrUnavailable)
	for _, c := range []struct {
		down error
		say  []string
	}{
		{noQuorum, []string{"this member knows no leader", "retry later, on this member or another"}},
		{runtime.ErrShuttingDown, []string{"shutting down", "retry on another member"}},
	} {
		s.b.mu.Lock()
		s.b.down = c.down
		s.b.mu.Unlock()
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/locks/jobs%2Fa/status", ""},
			{"POST", "/locks/jobs%2Fa/acquire", `{}`},
			{"POST", "/locks/jobs%2Fa/acquire", `{"client_id": "c1", "request_seq": "1"}`},
		} {
			st, body := s.call(t, r.method, r.path, r.body)
			expectError(t, st, body, 503, "unavailable")
			msg, _ := body["message"].(string)
			for _, w := range c.say {
				if !strings.Contains(msg, w) {
					t.Errorf("%s %s %s when the backend says %q: %q, want it to say %q", r.method, r.path, r.body, c.down, msg, w)
				}
			}
			if strings.Contains(msg, "client_id") || strings.Contains(msg, "request_seq") {
				t.Errorf("%s %s %s when the backend says %q: %q names the API's fields", r.method, r.path, r.body, c.down, msg)
			}
			// The code says unavailable; the message does not again.
			if strings.Contains(msg, "unavailable") {
				t.Errorf("%s %s %s when the backend says %q: %q repeats the code", r.method, r.path, r.body, c.down, msg)
			}
		}
	}
}

// TestDeadlineSaysWhatHappened: a request that ran out of time answers
// 504 saying that the cluster did not answer in time and to retry, without
// Go's "context deadline exceeded".
func TestDeadlineSaysWhatHappened(t *testing.T) {
	s := startServer(t)
	s.b.mu.Lock()
	s.b.down = context.DeadlineExceeded
	s.b.mu.Unlock()
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/locks/jobs%2Fa/status", ""},
		{"POST", "/locks/jobs%2Fa/acquire", `{}`},
	} {
		st, body := s.call(t, r.method, r.path, r.body)
		expectError(t, st, body, 504, "deadline_exceeded")
		msg, _ := body["message"].(string)
		if !strings.Contains(msg, "ran out of time before the cluster answered") || !strings.Contains(msg, "retry") || strings.Contains(msg, "context deadline exceeded") {
			t.Errorf("%s %s when the backend ran out of time: %q, want what happened and to retry, in the API's words", r.method, r.path, msg)
		}
	}
}

// TestUnavailableSaysWhenToRetry: a member without a quorum answers its
// 503 with Retry-After, over REST and Connect alike, for HTTP clients
// that back off by it; one that shuts down (retry elsewhere, now) does
// not.
func TestUnavailableSaysWhenToRetry(t *testing.T) {
	s := startServer(t)
	for _, c := range []struct {
		down error
		want string
	}{
		{fmt.Errorf("%w: shard 0: this member knows no leader", runtime.ErrUnavailable), "1"},
		{runtime.ErrShuttingDown, ""},
	} {
		s.b.mu.Lock()
		s.b.down = c.down
		s.b.mu.Unlock()
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/locks/jobs%2Fa/status", ""},
			{"POST", "/lockstep.v1.LockService/Status", `{"name":"jobs/a"}`},
		} {
			req, err := http.NewRequest(r.method, s.url+r.path, strings.NewReader(r.body))
			if err != nil {
				t.Fatal(err)
			}
			if r.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != c.want {
				t.Errorf("%s %s when the backend says %q: %d, Retry-After %q; want 503 with %q",
					r.method, r.path, c.down, resp.StatusCode, resp.Header.Get("Retry-After"), c.want)
			}
		}
	}
	// /health of a member without a leader says when to ask again too.
	s.b.mu.Lock()
	s.b.down, s.b.unhealthy = nil, fmt.Errorf("%w: shard 0 has no leader known to this member", runtime.ErrUnavailable)
	s.b.mu.Unlock()
	resp, err := http.Get(s.url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("/health without a leader: %d, Retry-After %q; want 503 with 1", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}
