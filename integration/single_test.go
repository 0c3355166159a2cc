//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// u64 reads a 64-bit JSON field (a string in proto3 JSON).
func u64(t *testing.T, body map[string]any, field string) uint64 {
	t.Helper()
	s, ok := body[field].(string)
	if !ok {
		t.Fatalf("%s is not a string: %v", field, body)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, s, err)
	}
	return n
}

func want(t *testing.T, what string, got, exp any) {
	t.Helper()
	if got != exp {
		t.Fatalf("%s: got %v, want %v", what, got, exp)
	}
}

// wantError checks a REST error: its status, and a {"code","message"} body.
func wantError(t *testing.T, what string, st int, body map[string]any, status int, code string) {
	t.Helper()
	msg, _ := body["message"].(string)
	if st != status || body["code"] != code || msg == "" || len(body) != 2 {
		t.Fatalf("%s: got %d %v, want %d {code: %s, message: ...}", what, st, body, status, code)
	}
}

// TestSingleNode runs one node and checks every primitive through REST
// JSON, Connect JSON and gRPC, waits that time out, session expiry, the bad
// inputs of docs/design.md, metrics, and a restart from disk.
func TestSingleNode(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)

	t.Run("RESTMutex", func(t *testing.T) {
		a := c.ok("POST", n, "/locks/db-migrate/acquire", `{"owner":"worker-3","ttl_seconds":30}`)
		want(t, "acquired", a["acquired"], true)
		want(t, "session_created", a["session_created"], true)
		tok := u64(t, a, "fencing_token")
		b := c.ok("POST", n, "/locks/db-migrate/acquire", `{"owner":"worker-4"}`)
		want(t, "second acquired", b["acquired"], false)
		want(t, "second token", b["fencing_token"], "0")
		s := c.ok("GET", n, "/locks/db-migrate/status", "")
		want(t, "held", s["held"], true)
		want(t, "holder", s["holder"].(map[string]any)["owner"], "worker-3")
		r := c.ok("POST", n, "/locks/db-migrate/renew", fmt.Sprintf(`{"owner":"worker-3","fencing_token":"%d"}`, tok))
		want(t, "renewed token", u64(t, r, "fencing_token"), tok)
		st, e := c.rest("POST", n, "/locks/db-migrate/release", fmt.Sprintf(`{"owner":"worker-4","fencing_token":"%d"}`, tok))
		wantError(t, "release by another owner", st, e, 409, "conflict")
		rel := c.ok("POST", n, "/locks/db-migrate/release", fmt.Sprintf(`{"owner":"worker-3","fencing_token":"%d"}`, tok))
		want(t, "released", rel["released"], true)
		want(t, "session_closed", rel["session_closed"], true)
		st, e = c.rest("POST", n, "/locks/db-migrate/release", fmt.Sprintf(`{"owner":"worker-3","fencing_token":"%d"}`, tok))
		wantError(t, "release with a stale token", st, e, 409, "conflict")
		a2 := c.ok("POST", n, "/locks/db-migrate/acquire", `{"owner":"worker-5"}`)
		if next := u64(t, a2, "fencing_token"); next <= tok {
			t.Fatalf("the next grant's token %d does not exceed %d", next, tok)
		}
	})

	t.Run("RESTNameWithSlash", func(t *testing.T) {
		a := c.ok("POST", n, "/locks/jobs%2Fnightly/acquire", `{"owner":"cron"}`)
		want(t, "acquired", a["acquired"], true)
		s := c.ok("GET", n, "/locks/jobs%2Fnightly/status", "")
		want(t, "name", s["name"], "jobs/nightly")
		want(t, "held", s["held"], true)
	})

	t.Run("RESTSessions", func(t *testing.T) {
		s := c.ok("POST", n, "/sessions", `{"ttl_seconds":10,"owner":"me","client_id":"it-1","request_seq":1}`)
		sid := s["session_id"].(string)
		again := c.ok("POST", n, "/sessions", `{"ttl_seconds":10,"owner":"me","client_id":"it-1","request_seq":1}`)
		want(t, "retried create: same session", again["session_id"], sid)
		k := c.ok("POST", n, "/sessions/"+sid+"/keepalive", `{}`)
		want(t, "keepalive ttl", k["ttl_ms"], "10000")
		a := c.ok("POST", n, "/locks/held-by-session/acquire", `{"session_id":"`+sid+`"}`)
		want(t, "acquired", a["acquired"], true)
		c.ok("DELETE", n, "/sessions/"+sid, "")
		st := c.ok("GET", n, "/locks/held-by-session/status", "")
		want(t, "released by close", st["held"], false)
	})

	t.Run("RESTSemaphore", func(t *testing.T) {
		a := c.ok("POST", n, "/semaphores/gpu/acquire", `{"owner":"j1","limit":3,"permits":2}`)
		want(t, "j1", a["acquired"], true)
		b := c.ok("POST", n, "/semaphores/gpu/acquire", `{"owner":"j2","limit":3,"permits":2}`)
		want(t, "j2 does not fit", b["acquired"], false)
		d := c.ok("POST", n, "/semaphores/gpu/acquire", `{"owner":"j3","permits":1}`)
		want(t, "j3 fits, with the existing limit", d["acquired"], true)
		s := c.ok("GET", n, "/semaphores/gpu/status", "")
		want(t, "available", s["available"], "0")
		c.ok("POST", n, "/semaphores/gpu/release", fmt.Sprintf(`{"owner":"j1","fencing_token":"%d"}`, u64(t, a, "fencing_token")))
		s = c.ok("GET", n, "/semaphores/gpu/status", "")
		want(t, "available after release", s["available"], "2")
	})

	t.Run("RESTRWLock", func(t *testing.T) {
		r1 := c.ok("POST", n, "/rwlocks/cfg/acquire", `{"owner":"r1","mode":"read"}`)
		r2 := c.ok("POST", n, "/rwlocks/cfg/acquire", `{"owner":"r2","mode":"read"}`)
		want(t, "readers share", r1["acquired"] == true && r2["acquired"] == true, true)
		// A writer waits; it is granted when both readers release.
		done := make(chan map[string]any, 1)
		go func() {
			_, w, _ := c.do("POST", n, "/rwlocks/cfg/acquire", `{"owner":"w","mode":"write","wait_timeout_ms":5000}`)
			done <- w
		}()
		eventually(t, 3*time.Second, "the writer queued", func() error {
			s := c.ok("GET", n, "/rwlocks/cfg/status", "")
			if ws, _ := s["waiters"].([]any); len(ws) != 1 {
				return fmt.Errorf("waiters %v", s["waiters"])
			}
			return nil
		})
		// A queued writer blocks later readers (no writer starvation).
		r3 := c.ok("POST", n, "/rwlocks/cfg/acquire", `{"owner":"r3","mode":"read"}`)
		want(t, "a reader behind a queued writer", r3["acquired"], false)
		c.ok("POST", n, "/rwlocks/cfg/release", fmt.Sprintf(`{"owner":"r1","fencing_token":"%d"}`, u64(t, r1, "fencing_token")))
		c.ok("POST", n, "/rwlocks/cfg/release", fmt.Sprintf(`{"owner":"r2","fencing_token":"%d"}`, u64(t, r2, "fencing_token")))
		w := <-done
		want(t, "writer granted", w["acquired"], true)
		want(t, "writer mode", w["mode"], "write")
		s := c.ok("GET", n, "/rwlocks/cfg/status", "")
		want(t, "mode", s["mode"], "write")
	})

	t.Run("RESTBarrier", func(t *testing.T) {
		done := make(chan map[string]any, 2)
		for _, p := range []string{"p1", "p2"} {
			go func() {
				_, b, _ := c.do("POST", n, "/barriers/stage-2/wait", `{"parties":3,"participant":"`+p+`","wait_timeout_ms":5000}`)
				done <- b
			}()
		}
		eventually(t, 3*time.Second, "two parties waiting", func() error {
			s := c.ok("GET", n, "/barriers/stage-2/status", "")
			if ws, _ := s["waiters"].([]any); len(ws) != 2 {
				return fmt.Errorf("waiters %v", s["waiters"])
			}
			return nil
		})
		third := c.ok("POST", n, "/barriers/stage-2/wait", `{"parties":3,"participant":"p3"}`)
		want(t, "the third releases", third["released"], true)
		for range 2 {
			b := <-done
			want(t, "released", b["released"], true)
			want(t, "same generation", b["generation"], third["generation"])
		}
	})

	t.Run("RESTElection", func(t *testing.T) {
		a := c.ok("POST", n, "/election/scheduler/campaign", `{"candidate":"node-a","value":"MTAuMC4wLjc6ODA4MA=="}`)
		want(t, "elected", a["elected"], true)
		b := c.ok("POST", n, "/election/scheduler/campaign", `{"candidate":"node-b"}`)
		want(t, "second not elected", b["elected"], false)
		l := c.ok("GET", n, "/election/scheduler/leader", "")
		want(t, "leader", l["leader"].(map[string]any)["candidate"], "node-a")
		want(t, "value", l["leader"].(map[string]any)["value"], "MTAuMC4wLjc6ODA4MA==")
		r := c.ok("POST", n, "/election/scheduler/resign", fmt.Sprintf(`{"candidate":"node-a","fencing_token":"%d"}`, u64(t, a, "fencing_token")))
		want(t, "resigned", r["resigned"], true)
		l = c.ok("GET", n, "/election/scheduler/leader", "")
		want(t, "no leader", l["has_leader"], false)
	})

	t.Run("WaitTimesOut", func(t *testing.T) {
		c.ok("POST", n, "/locks/busy/acquire", `{"owner":"holder"}`)
		start := time.Now()
		b := c.ok("POST", n, "/locks/busy/acquire", `{"owner":"waiter","wait_timeout_ms":400}`)
		want(t, "acquired", b["acquired"], false)
		want(t, "reason", b["reason"], "REASON_TIMEOUT")
		if d := time.Since(start); d < 350*time.Millisecond || d > 5*time.Second {
			t.Fatalf("a 400 ms wait answered after %v", d)
		}
		// The waiter left the queue.
		s := c.ok("GET", n, "/locks/busy/status", "")
		if ws, _ := s["waiters"].([]any); len(ws) != 0 {
			t.Fatalf("waiters after timeout: %v", ws)
		}
	})

	t.Run("SessionExpiryReleases", func(t *testing.T) {
		a := c.ok("POST", n, "/locks/lease/acquire", `{"owner":"mortal","ttl_ms":600}`)
		want(t, "acquired", a["acquired"], true)
		// A waiter that is granted when the holder's session expires.
		start := time.Now()
		b := c.ok("POST", n, "/locks/lease/acquire", `{"owner":"heir","wait_timeout_ms":5000}`)
		want(t, "heir granted", b["acquired"], true)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("the holder's 600 ms session took %v to expire", d)
		}
		if u64(t, b, "fencing_token") <= u64(t, a, "fencing_token") {
			t.Fatalf("token did not increase: %v then %v", a["fencing_token"], b["fencing_token"])
		}
	})

	t.Run("BadInputs", func(t *testing.T) { badInputs(t, c, n) })

	t.Run("ConnectJSON", func(t *testing.T) {
		resp, err := http.Post(n.url()+"/lockstep.v1.LockService/Acquire", "application/json",
			strings.NewReader(`{"name":"connect-json","owner":"cj"}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(raw), `"fencing_token"`) || !strings.Contains(string(raw), `"acquired":true`) {
			t.Fatalf("Connect JSON acquire: %d %s", resp.StatusCode, raw)
		}
		resp, err = http.Post(n.url()+"/lockstep.v1.LockService/Acquire", "application/json", strings.NewReader(`{"name":""}`))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(raw), `"code":"invalid_argument"`) {
			t.Fatalf("Connect JSON bad name: %d %s", resp.StatusCode, raw)
		}
		// Typed Connect JSON client.
		cl := n.clients(connect.WithProtoJSON())
		s, err := cl.sessions.Create(context.Background(), connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 5}))
		if err != nil || s.Msg.SessionId == 0 {
			t.Fatalf("Connect JSON create session: %v %v", s, err)
		}
	})

	t.Run("GRPC", func(t *testing.T) { grpcPrimitives(t, n) })

	t.Run("GRPCWebHealthReflection", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		web := n.clients(connect.WithGRPCWeb())
		a, err := web.locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "grpc-web", Owner: "browser", TtlSeconds: 10}))
		if err != nil || !a.Msg.Acquired || !a.Msg.SessionCreated {
			t.Fatalf("gRPC-Web acquire: %v %v", a, err)
		}
		// grpc.health.v1 over the Connect protocol with JSON.
		h := c.ok("POST", n, "/grpc.health.v1.Health/Check", `{"service":""}`)
		want(t, "grpc health", h["status"], "SERVING_STATUS_SERVING")
		h = c.ok("POST", n, "/grpc.health.v1.Health/Check", `{"service":"lockstep.v1.LockService"}`)
		want(t, "grpc health of a service", h["status"], "SERVING_STATUS_SERVING")
		// Reflection lists the services.
		stream := grpcreflect.NewClient(grpcHTTP(), n.url(), connect.WithGRPC()).NewStream(ctx)
		defer stream.Close()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatal(err)
		}
		listed := fmt.Sprint(names)
		for _, s := range []string{"lockstep.v1.LockService", "lockstep.v1.WatchService", "lockstep.v1.ClusterService"} {
			if !strings.Contains(listed, s) {
				t.Errorf("reflection does not list %s: %s", s, listed)
			}
		}
	})

	t.Run("HealthStatusMetrics", func(t *testing.T) {
		h := c.ok("GET", n, "/health", "")
		want(t, "health", h["status"], "serving")
		s := c.ok("GET", n, "/cluster/status", "")
		want(t, "node_id", s["node_id"], "node-1")
		shard := s["shards"].([]any)[0].(map[string]any)
		want(t, "role", shard["role"], "leader")
		want(t, "leader_id", shard["leader_id"], "node-1")
		if len(shard["members"].([]any)) != 1 {
			t.Fatalf("members: %v", shard["members"])
		}
		resp, err := http.Get("http://" + n.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{"lock_acquisitions_total", "lock_acquisition_duration_seconds", "lockstep_rpc_requests_total",
			"lockstep_rpc_request_duration_seconds", "active_locks_gauge", "leader_elections_total", "consensus_commit_latency_seconds"} {
			if !strings.Contains(string(raw), m) {
				t.Errorf("/metrics has no %s", m)
			}
		}
	})

	t.Run("RestartFromDisk", func(t *testing.T) {
		a := c.ok("POST", n, "/locks/durable/acquire", `{"owner":"before","ttl_seconds":60}`)
		before := u64(t, a, "fencing_token")
		c.ok("POST", n, "/locks/durable/release", fmt.Sprintf(`{"owner":"before","fencing_token":"%d"}`, before))
		// SIGTERM drains: a request waiting in a queue is answered 503 at
		// once (the client retries elsewhere; this one, without a
		// client_id, is withdrawn, as nobody can take it up again), and
		// the process exits 0.
		c.ok("POST", n, "/locks/drain/acquire", `{"owner":"holder"}`)
		kept := c.ok("POST", n, "/locks/kept%2Facross/acquire", `{"owner":"k","ttl_seconds":120}`)
		waiter := make(chan [2]any, 1)
		go func() {
			st, b, err := c.do("POST", n, "/locks/drain/acquire", `{"owner":"waiter","wait_timeout_ms":9000}`)
			if err != nil {
				b = map[string]any{"err": err.Error()}
			}
			waiter <- [2]any{st, b}
		}()
		eventually(t, 3*time.Second, "the waiter queued", func() error {
			s := c.ok("GET", n, "/locks/drain/status", "")
			if ws, _ := s["waiters"].([]any); len(ws) != 1 {
				return fmt.Errorf("waiters %v", s["waiters"])
			}
			return nil
		})
		stopped := time.Now()
		if err := n.stop(t, 20*time.Second); err != nil {
			t.Fatalf("SIGTERM: the process exited with %v, want 0", err)
		}
		if d := time.Since(stopped); d > 5*time.Second {
			t.Errorf("draining took %v", d)
		}
		select {
		case w := <-waiter:
			st, _ := w[0].(int)
			b, _ := w[1].(map[string]any)
			wantError(t, "a queued waiter at SIGTERM", st, b, 503, "unavailable")
		case <-time.After(5 * time.Second):
			t.Fatal("the queued waiter was not answered at SIGTERM")
		}
		c.start(n)
		c.waitHealthy(20*time.Second, n)
		b := c.ok("POST", n, "/locks/durable/acquire", `{"owner":"after"}`)
		if after := u64(t, b, "fencing_token"); after <= before {
			t.Fatalf("after a restart the token %d does not exceed %d", after, before)
		}
		// State from before the restart is still there.
		s := c.ok("GET", n, "/locks/kept%2Facross/status", "")
		want(t, "held across restart", s["holder"].(map[string]any)["fencing_token"], kept["fencing_token"])
	})
}

// badInputs sends the bad inputs of docs/design.md and checks each answer's
// status and code.
func badInputs(t *testing.T, c *cluster, n *node) {
	c.ok("POST", n, "/locks/taken/acquire", `{"owner":"first"}`)
	cases := []struct {
		what, method, path, body string
		status                   int
		code                     string
	}{
		{"JSON that does not parse", "POST", "/locks/a/acquire", `{"owner":`, 400, "invalid_argument"},
		{"a misspelt field", "POST", "/locks/a/acquire", `{"wait_timout_ms": 10}`, 400, "invalid_argument"},
		{"a wrong type", "POST", "/locks/a/acquire", `{"wait_timeout_ms": "soon"}`, 400, "invalid_argument"},
		{"an unprintable name", "POST", "/locks/a%07b/acquire", `{}`, 400, "invalid_argument"},
		{"a name over 256 bytes", "POST", "/locks/" + strings.Repeat("n", 257) + "/acquire", `{}`, 400, "invalid_argument"},
		{"both TTLs", "POST", "/locks/a/acquire", `{"ttl_seconds": 5, "ttl_ms": 5000}`, 400, "invalid_argument"},
		{"a TTL too short", "POST", "/locks/a/acquire", `{"ttl_ms": 1}`, 400, "invalid_argument"},
		{"a negative wait", "POST", "/locks/a/acquire", `{"wait_timeout_ms": -2}`, 400, "invalid_argument"},
		{"an owner too long", "POST", "/locks/a/acquire", `{"owner": "` + strings.Repeat("o", 200) + `"}`, 400, "invalid_argument"},
		{"a value too large", "POST", "/locks/a/acquire", `{"value": "` + strings.Repeat("QUFB", 400) + `"}`, 400, "invalid_argument"},
		{"a release without token", "POST", "/locks/taken/release", `{"owner": "first"}`, 400, "invalid_argument"},
		{"a release without holder", "POST", "/locks/taken/release", `{"fencing_token": "1"}`, 400, "invalid_argument"},
		{"a wrong token", "POST", "/locks/taken/release", `{"owner": "first", "fencing_token": "1"}`, 409, "conflict"},
		{"a bad mode", "POST", "/rwlocks/a/acquire", `{"mode": "exclusive"}`, 400, "invalid_argument"},
		{"permits over the limit", "POST", "/semaphores/s/acquire", `{"limit": 2, "permits": 3}`, 400, "invalid_argument"},
		{"a semaphore without limit", "POST", "/semaphores/nonesuch/acquire", `{}`, 400, "invalid_argument"},
		{"one party", "POST", "/barriers/b/wait", `{"parties": 1}`, 400, "invalid_argument"},
		{"a session that does not exist", "POST", "/sessions/12345/keepalive", `{}`, 404, "not_found"},
		{"acquire in a session that does not exist", "POST", "/locks/a/acquire", `{"session_id": "12345"}`, 404, "not_found"},
		{"a request_seq without client_id", "POST", "/sessions", `{"request_seq": 3}`, 400, "invalid_argument"},
		{"a path that does not exist", "GET", "/lock/a/status", ``, 404, "not_found"},
		{"the wrong method", "GET", "/locks/a/acquire", ``, 405, "method_not_allowed"},
		{"a body too large", "POST", "/locks/a/acquire", `{"owner": "` + strings.Repeat("x", 2<<20) + `"}`, 413, "resource_exhausted"},
	}
	for _, tc := range cases {
		st, body, err := c.do(tc.method, n, tc.path, tc.body)
		if err != nil {
			t.Errorf("%s: %v", tc.what, err)
			continue
		}
		msg, _ := body["message"].(string)
		if st != tc.status || body["code"] != tc.code || msg == "" {
			t.Errorf("%s (%s %s): got %d %v, want %d %s", tc.what, tc.method, tc.path, st, body, tc.status, tc.code)
		}
	}
}

// grpcPrimitives runs every primitive through a gRPC client.
func grpcPrimitives(t *testing.T, n *node) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := n.clients(connect.WithGRPC())
	sess, err := cl.sessions.Create(ctx, connect.NewRequest(&pb.CreateSessionRequest{TtlSeconds: 30, Owner: "grpc", ClientId: "grpc-it", RequestSeq: 1}))
	if err != nil {
		t.Fatal(err)
	}
	sid := sess.Msg.SessionId
	seq := uint64(1)
	next := func() uint64 { seq++; return seq }

	// Watch everything under "g/" from now on.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	stream, err := cl.watch.Watch(wctx, connect.NewRequest(&pb.WatchRequest{Target: &pb.WatchRequest_Prefix{Prefix: "g/"}}))
	if err != nil {
		t.Fatal(err)
	}
	if !stream.Receive() {
		t.Fatalf("watch: %v", stream.Err())
	}

	lock, err := cl.locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: "g/mutex", SessionId: sid, ClientId: "grpc-it", RequestSeq: next()}))
	if err != nil || !lock.Msg.Acquired {
		t.Fatalf("acquire: %v %v", lock, err)
	}
	fence, err := cl.locks.CheckFence(ctx, connect.NewRequest(&pb.CheckFenceRequest{Name: "g/mutex", FencingToken: lock.Msg.FencingToken}))
	if err != nil || !fence.Msg.Valid {
		t.Fatalf("check fence: %v %v", fence, err)
	}
	if _, err := cl.locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "g/mutex", SessionId: sid, FencingToken: lock.Msg.FencingToken + 1})); connect.CodeOf(err) != connect.CodeAborted {
		t.Fatalf("release with a wrong token: %v, want aborted (409)", err)
	}
	if _, err := cl.locks.Release(ctx, connect.NewRequest(&pb.ReleaseLockRequest{Name: "g/mutex", SessionId: sid, FencingToken: lock.Msg.FencingToken, ClientId: "grpc-it", RequestSeq: next()})); err != nil {
		t.Fatal(err)
	}
	fence, _ = cl.locks.CheckFence(ctx, connect.NewRequest(&pb.CheckFenceRequest{Name: "g/mutex", FencingToken: lock.Msg.FencingToken}))
	if fence.Msg.Valid {
		t.Fatal("a released token still checks valid")
	}
	// The watch saw the grant and the release.
	var kinds []pb.EventType
	for len(kinds) < 2 && stream.Receive() {
		for _, ev := range stream.Msg().Events {
			if ev.Name == "g/mutex" {
				kinds = append(kinds, ev.Type)
			}
		}
	}
	if len(kinds) < 2 || kinds[0] != pb.EventType_EVENT_TYPE_GRANTED || kinds[1] != pb.EventType_EVENT_TYPE_RELEASED {
		t.Fatalf("watch events %v (%v)", kinds, stream.Err())
	}
	wcancel()

	sem, err := cl.sems.Acquire(ctx, connect.NewRequest(&pb.AcquireSemaphoreRequest{Name: "g/sem", SessionId: sid, Limit: 2, Permits: 2}))
	if err != nil || !sem.Msg.Acquired {
		t.Fatalf("semaphore: %v %v", sem, err)
	}
	rw, err := cl.rw.Acquire(ctx, connect.NewRequest(&pb.AcquireRWLockRequest{Name: "g/rw", SessionId: sid, Mode: "write"}))
	if err != nil || !rw.Msg.Acquired {
		t.Fatalf("rwlock: %v %v", rw, err)
	}
	// A set barrier: a wait passes once it is removed.
	if _, err := cl.barriers.Set(ctx, connect.NewRequest(&pb.SetBarrierRequest{Name: "g/gate", SessionId: sid})); err != nil {
		t.Fatal(err)
	}
	passed := make(chan *pb.WaitBarrierResponse, 1)
	go func() {
		r, _ := cl.barriers.Wait(ctx, connect.NewRequest(&pb.WaitBarrierRequest{Name: "g/gate", WaitTimeoutMs: 10000}))
		if r != nil {
			passed <- r.Msg
		} else {
			passed <- nil
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := cl.barriers.Remove(ctx, connect.NewRequest(&pb.RemoveBarrierRequest{Name: "g/gate"})); err != nil {
		t.Fatal(err)
	}
	if r := <-passed; r == nil || !r.Released {
		t.Fatalf("set barrier wait: %v", r)
	}

	// Election with Observe.
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs, err := cl.elections.Observe(octx, connect.NewRequest(&pb.ObserveRequest{Name: "g/leader"}))
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Receive() || obs.Msg().HasLeader {
		t.Fatalf("first observe message: %v %v", obs.Msg(), obs.Err())
	}
	camp, err := cl.elections.Campaign(ctx, connect.NewRequest(&pb.CampaignRequest{Name: "g/leader", SessionId: sid, Candidate: "me", Value: []byte("v1")}))
	if err != nil || !camp.Msg.Elected {
		t.Fatalf("campaign: %v %v", camp, err)
	}
	if !obs.Receive() || !obs.Msg().HasLeader || obs.Msg().Leader.Candidate != "me" {
		t.Fatalf("observe after campaign: %v %v", obs.Msg(), obs.Err())
	}
	if _, err := cl.elections.Proclaim(ctx, connect.NewRequest(&pb.ProclaimRequest{Name: "g/leader", SessionId: sid, FencingToken: camp.Msg.FencingToken, Value: []byte("v2")})); err != nil {
		t.Fatal(err)
	}
	if !obs.Receive() || string(obs.Msg().Leader.GetValue()) != "v2" {
		t.Fatalf("observe after proclaim: %v %v", obs.Msg(), obs.Err())
	}
	ocancel()

	got, err := cl.sessions.Get(ctx, connect.NewRequest(&pb.GetSessionRequest{SessionId: sid}))
	if err != nil || len(got.Msg.Session.Holds) != 3 {
		t.Fatalf("session holds: %v %v", got, err)
	}
	if _, err := cl.sessions.Close(ctx, connect.NewRequest(&pb.CloseSessionRequest{SessionId: sid})); err != nil {
		t.Fatal(err)
	}
	ld, err := cl.elections.Leader(ctx, connect.NewRequest(&pb.LeaderRequest{Name: "g/leader"}))
	if err != nil || ld.Msg.HasLeader {
		t.Fatalf("closing the session resigns: %v %v", ld, err)
	}
	if _, err := cl.locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{Name: strings.Repeat("x", 300), SessionId: sid})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("long name over gRPC: %v", err)
	}
	h, err := cl.cluster.Health(ctx, connect.NewRequest(&pb.HealthRequest{}))
	if err != nil || h.Msg.Status != "serving" {
		t.Fatalf("health: %v %v", h, err)
	}
}
