//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
	"github.com/lockstepd/lockstep/config"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/security"
)

// secureACL: admin does everything; ci uses jobs/; alice and bob share
// shared/, and each has a prefix of its own.
var secureACL = []config.ACLRule{
	{Principal: "admin", Prefix: "", Allow: []string{"read", "use", "admin"}},
	{Principal: "ci", Prefix: "jobs/", Allow: []string{"read", "use"}},
	{Principal: "alice", Prefix: "a/", Allow: []string{"read", "use"}},
	{Principal: "bob", Prefix: "b/", Allow: []string{"read", "use"}},
	{Principal: "*", Prefix: "shared/", Allow: []string{"read", "use"}},
}

// TestSecureCluster runs three members made with `lockstep certs`: Raft over
// mutual TLS, the API over TLS with client certificates or API keys, an
// ACL and an audit log. It runs a lock workload through the Go client and
// the CLI, then shows each refusal (401, 403, another principal's session,
// hidden names), a reload by SIGHUP, a member from another CA that cannot
// join, and what the audit log recorded.
func TestSecureCluster(t *testing.T) {
	s := newSecureCluster(t, 3, secureOptions{clientAuth: config.ClientAuthRequest, acl: secureACL,
		principals: []string{"admin", "ci", "alice", "bob"}})
	for _, nd := range s.nodes {
		s.start(nd)
	}
	s.waitHealthy(30*time.Second, s.nodes...)
	n1 := s.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	asAdmin := cred{h: s.httpClient("admin")}
	anon := cred{h: s.httpClient("")}
	asAlice := cred{h: anon.h, key: s.keys["alice"]}
	asBob := cred{h: anon.h, key: s.keys["bob"]}
	asCI := cred{h: s.httpClient("ci")}
	held := func(name string) bool {
		t.Helper()
		st, body := s.call(asAdmin, "GET", n1, "/locks/"+strings.ReplaceAll(name, "/", "%2F")+"/status", "")
		if st != 200 {
			t.Fatalf("status of %s as admin: %d %v", name, st, body)
		}
		return body["held"] == true
	}

	t.Run("go client workload over mutual TLS", func(t *testing.T) {
		c := s.goClient(client.WithClientCert(filepath.Join(s.pki, "ci.pem"), filepath.Join(s.pki, "ci-key.pem")))
		sess, err := c.NewSession(ctx, client.WithTTL(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close(ctx)
		var last uint64
		for i := range 20 {
			m := client.NewMutex(sess, fmt.Sprintf("jobs/go-%d", i%4))
			if err := m.Lock(ctx); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if m.Token() <= last && i%4 == 0 && i > 0 {
				t.Fatalf("cycle %d: fencing token %d did not rise above %d", i, m.Token(), last)
			}
			last = max(last, m.Token())
			if err := m.Unlock(ctx); err != nil {
				t.Fatalf("cycle %d unlock: %v", i, err)
			}
		}
		// The same workload by API key, on alice's prefix.
		ck := s.goClient(client.WithAPIKey(s.keys["alice"]))
		sk, err := ck.NewSession(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := client.NewMutex(sk, "a/go")
		if err := m.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		sk.Close(ctx)
	})

	t.Run("CLI with certificates and with an API key", func(t *testing.T) {
		out, err := exec.Command(binary, "lock", "jobs/cli", "--endpoints", s.endpoints(),
			"--cacert", filepath.Join(s.pki, "ca.pem"), "--cert", filepath.Join(s.pki, "ci.pem"),
			"--key", filepath.Join(s.pki, "ci-key.pem"), "--", "echo", "held-by-ci").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "held-by-ci") {
			t.Fatalf("lockstep lock over mTLS: %v\n%s", err, out)
		}
		cmd := exec.Command(binary, "lock", "a/cli", "--", "echo", "held-by-alice")
		cmd.Env = append(os.Environ(), "LOCKSTEP_ENDPOINTS="+s.endpoints(), "LOCKSTEP_CACERT="+filepath.Join(s.pki, "ca.pem"),
			"LOCKSTEP_API_KEY="+s.keys["alice"])
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "held-by-alice") {
			t.Fatalf("lockstep lock with LOCKSTEP_API_KEY: %v\n%s", err, out)
		}
		// Without credentials the CLI says what to give.
		out, err = exec.Command(binary, "status", "jobs/cli", "--endpoints", n1.url(),
			"--cacert", filepath.Join(s.pki, "ca.pem")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "unauthenticated") || !strings.Contains(string(out), "--api-key") {
			t.Fatalf("lockstep status without credentials: %v\n%s", err, out)
		}
	})

	t.Run("401 without credentials, with a wrong key, with an expired certificate", func(t *testing.T) {
		ca, err := security.LoadAuthority(s.pki)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		old, err := ca.IssueClient("ci", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := old.Write(s.pki, "ci-expired"); err != nil {
			t.Fatal(err)
		}
		for what, c := range map[string]cred{
			"no credentials":      anon,
			"a wrong key":         {h: anon.h, key: "lsk_not-a-key-anyone-was-given"},
			"an expired cert":     {h: s.httpClient("ci-expired")},
			"an expired cert+key": {h: s.httpClient("ci-expired"), key: s.keys["ci"]},
		} {
			st, body := s.call(c, "POST", n1, "/locks/jobs%2Fdenied/acquire", `{"owner":"x"}`)
			if st != 401 || body["code"] != "unauthenticated" {
				t.Errorf("%s: %d %v, want 401 unauthenticated", what, st, body)
			}
		}
		if held("jobs/denied") {
			t.Fatal("a refused acquire took effect")
		}
	})

	t.Run("403 outside the principal's prefix", func(t *testing.T) {
		st, body := s.call(asCI, "POST", n1, "/locks/other%2Fx/acquire", `{"owner":"x"}`)
		msg, _ := body["message"].(string)
		if st != 403 || body["code"] != "permission_denied" || !strings.Contains(msg, `"ci"`) ||
			!strings.Contains(msg, "use") || !strings.Contains(msg, `"other/x"`) {
			t.Fatalf("ci acquiring other/x: %d %v; want 403 naming principal, action and name", st, body)
		}
		if held("other/x") {
			t.Fatal("a denied acquire took effect")
		}
		if st, _ := s.call(asAlice, "GET", n1, "/locks/b%2Fsecret/status", ""); st != 403 {
			t.Fatalf("alice reading bob's name: %d, want 403", st)
		}
	})

	t.Run("another principal cannot use a session", func(t *testing.T) {
		st, body := s.call(asAlice, "POST", n1, "/sessions", `{"ttl_seconds": 30, "owner": "alice-worker"}`)
		if st != 200 {
			t.Fatalf("alice creates a session: %d %v", st, body)
		}
		id, _ := body["session_id"].(string)
		st, body = s.call(asAlice, "POST", n1, "/locks/shared%2Fs/acquire", `{"session_id": "`+id+`", "owner": "alice-worker"}`)
		if st != 200 || body["acquired"] != true {
			t.Fatalf("alice acquires shared/s: %d %v", st, body)
		}
		token, _ := body["fencing_token"].(string)
		// bob may use shared/ names, but not alice's session, on any
		// member: to him it does not exist (404, as an unknown id; a 403
		// told him which ids were live).
		for _, nd := range s.nodes {
			for what, req := range map[string][2]string{
				"keepalive": {"POST", "/sessions/" + id + "/keepalive"},
				"close":     {"DELETE", "/sessions/" + id},
			} {
				if st, body := s.call(asBob, req[0], nd, req[1], ""); st != 404 || body["code"] != "not_found" {
					t.Fatalf("bob's %s of alice's session on %s: %d %v", what, nd.ID, st, body)
				}
			}
			if st, body := s.call(asBob, "POST", nd, "/locks/shared%2Fs/release", `{"session_id": "`+id+`", "fencing_token": "`+token+`"}`); st != 404 {
				t.Fatalf("bob releasing with alice's session on %s: %d %v", nd.ID, st, body)
			}
			// Naming the holder by alice's label does not reach it either:
			// labels carry their principal.
			if st, body := s.call(asBob, "POST", nd, "/locks/shared%2Fs/release", `{"owner": "alice-worker", "fencing_token": "`+token+`"}`); st == 200 && body["released"] == true {
				t.Fatalf("bob released alice's hold by its label on %s: %v", nd.ID, body)
			}
		}
		if !held("shared/s") {
			t.Fatal("alice's lock is gone after bob's attempts")
		}
		if st, body := s.call(asAlice, "POST", n1, "/sessions/"+id+"/keepalive", ""); st != 200 {
			t.Fatalf("alice's own keepalive: %d %v", st, body)
		}
		if st, body := s.call(asAlice, "DELETE", n1, "/sessions/"+id, ""); st != 200 {
			t.Fatalf("alice's own close: %d %v", st, body)
		}
	})

	t.Run("List and Watch hide unreadable names", func(t *testing.T) {
		ca := s.goClient(client.WithAPIKey(s.keys["alice"]))
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		events := ca.Watch(wctx, "")
		// The stream may start after any of the acquires below, so they go
		// in rounds until alice has seen a/seen-* twice: the second one's
		// round came whole after the stream started, and its b/ and jobs/
		// names, acquired before it, would have been shown first.
		seen := 0
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for round := 0; seen < 2; {
			select {
			case r := <-events:
				if r.Err != nil {
					t.Fatal(r.Err)
				}
				for _, ev := range r.Events {
					if !strings.HasPrefix(ev.Name, "a/") && !strings.HasPrefix(ev.Name, "shared/") {
						t.Fatalf("alice's watch shows %q", ev.Name)
					}
					if strings.HasPrefix(ev.Name, "a/seen-") && ev.Type == pb.EventType_EVENT_TYPE_GRANTED {
						seen++
					}
				}
			case <-tick.C:
				round++
				for _, name := range []string{"b%2Fhidden-", "jobs%2Fhidden-", "a%2Fseen-"} {
					if st, body := s.call(asAdmin, "POST", n1, fmt.Sprintf("/locks/%s%d/acquire", name, round), `{"owner":"admin","ttl_seconds":60}`); st != 200 {
						t.Fatalf("admin acquires %s%d: %d %v", name, round, st, body)
					}
				}
			case <-ctx.Done():
				t.Fatal("alice's watch never showed a/seen-*")
			}
		}
		objs, err := ca.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, o := range objs {
			if !strings.HasPrefix(o.Name, "a/") && !strings.HasPrefix(o.Name, "shared/") {
				t.Fatalf("alice's list shows %q", o.Name)
			}
			listed = listed || o.Name == "a/seen-1"
		}
		if !listed {
			t.Fatalf("alice's list misses a/seen: %v", objs)
		}
		all, err := s.goClient(client.WithAPIKey(s.keys["admin"])).List(ctx, "")
		if err != nil || len(all) <= len(objs) {
			t.Fatalf("admin's list (%v) should show more than alice's (%d): %v", err, len(objs), all)
		}
	})

	t.Run("SIGHUP adds and removes keys without a restart", func(t *testing.T) {
		carolKey, carolEntry := s.newKey("carol")
		asCarol := cred{h: anon.h, key: carolKey}
		path := "/locks/shared%2Fcarol/status"
		if st, _ := s.call(asCarol, "GET", n1, path, ""); st != 401 {
			t.Fatalf("carol before the reload: %d, want 401", st)
		}
		entries := strings.Split(strings.TrimSpace(mustRead(t, s.keysFile)), "\n")
		s.writeKeys(append(entries, carolEntry)...)
		n1.hangup(t)
		s.untilStatus(10*time.Second, "carol's new key works", 200, func() (int, map[string]any) { return s.call(asCarol, "GET", n1, path, "") })
		var kept []string
		for _, e := range append(entries, carolEntry) {
			if !strings.Contains(e, "principal: alice") {
				kept = append(kept, e)
			}
		}
		s.writeKeys(kept...)
		n1.hangup(t)
		s.untilStatus(10*time.Second, "alice's removed key stops working", 401, func() (int, map[string]any) {
			return s.call(asAlice, "GET", n1, "/locks/a%2Fx/status", "")
		})
		// A reload that fails keeps what is in force.
		if err := os.WriteFile(s.keysFile, []byte("not: [a list\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		n1.hangup(t)
		eventually(t, 10*time.Second, "the failed reload is logged", func() error {
			if !strings.Contains(mustRead(t, n1.LogPath), "reload failed") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		if st, body := s.call(asCarol, "GET", n1, path, ""); st != 200 {
			t.Fatalf("carol after a failed reload: %d %v", st, body)
		}
		s.writeKeys(append(entries, carolEntry)...)
	})

	t.Run("a member from another CA cannot join", func(t *testing.T) {
		other := filepath.Join(s.dir, "pki-other")
		s.cli("certs", "ca", "--out", other)
		s.cli("certs", "node", "node-4", "--hosts", "127.0.0.1", "--ca", other, "--out", other)
		intruder := s.extraNode("node-4")
		intruder.https = true
		cfg := config.Defaults()
		cfg.Cluster = config.Cluster{NodeID: "node-4", RaftAddress: intruder.Raft, APIAddress: intruder.API,
			MetricsAddress: intruder.Metrics, DataDir: intruder.DataDir, Join: true}
		cfg.Security.TLS = &config.TLS{CertFile: "pki-other/node-4.pem", KeyFile: "pki-other/node-4-key.pem", CAFile: "pki-other/ca.pem"}
		b, _ := cfg.Marshal()
		if err := os.WriteFile(intruder.ConfigPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		leader := s.leader()
		before := members(t, s.cluster, leader)
		// Even added by an admin, it never gets in: the members refuse its
		// handshakes and it refuses theirs.
		if st, body := s.call(asAdmin, "POST", leader, "/lockstep.v1.ClusterService/AddNode",
			`{"node_id":"node-4","raft_address":"`+intruder.Raft+`"}`); st != 200 {
			t.Fatalf("add node-4: %d %v", st, body)
		}
		s.start(intruder, "--join")
		t.Cleanup(intruder.Kill)
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			if !intruder.Running() {
				t.Fatalf("node-4 exited: %s", intruder.Tail(5))
			}
			if st, body := s.call(asAdmin, "POST", s.nodes[1], "/locks/jobs%2Fstill/acquire", `{"owner":"admin","ttl_seconds":30}`); st != 200 {
				t.Fatalf("the cluster stopped serving while node-4 ran: %d %v", st, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// The members log why: its certificate is not one their CA signed.
		eventually(t, 10*time.Second, "a member logs the refused handshake", func() error {
			for _, nd := range s.nodes {
				l := mustRead(t, nd.LogPath)
				if strings.Contains(l, intruder.Raft) && strings.Contains(l, "certificate signed by unknown authority") {
					return nil
				}
			}
			return fmt.Errorf("no member's log names %s with a certificate error", intruder.Raft)
		})
		// node-4 never learnt anything: no leader, nothing applied.
		if strings.Contains(mustRead(t, intruder.LogPath), `msg="ready: every shard has a leader"`) {
			t.Fatalf("node-4 found a leader:\n%s", intruder.Tail(20))
		}
		if st, body := s.call(asAdmin, "POST", leader, "/lockstep.v1.ClusterService/RemoveNode", `{"node_id":"node-4"}`); st != 200 {
			t.Fatalf("remove node-4: %d %v", st, body)
		}
		if after := members(t, s.cluster, leader); len(after) != len(before) {
			t.Fatalf("members %v, before %v", after, before)
		}
	})

	t.Run("the audit log holds every request, and no key", func(t *testing.T) {
		for _, nd := range s.nodes {
			if err := nd.stop(t, 30*time.Second); err != nil {
				t.Fatalf("%s: %v", nd.ID, err)
			}
		}
		counts := map[string]int{}
		granted := 0
		for _, nd := range s.nodes {
			raw := mustRead(t, s.auditPath(nd))
			for p, k := range s.keys {
				if strings.Contains(raw, k) {
					t.Fatalf("%s's key appears in %s's audit log", p, nd.ID)
				}
			}
			if strings.Contains(raw, "lsk_") || strings.Contains(raw, "PRIVATE KEY") {
				t.Fatalf("key material in %s's audit log", nd.ID)
			}
			for _, l := range readAudit(t, s.auditPath(nd)) {
				counts[*l.Outcome]++
				if *l.Outcome == "granted" && l.FencingToken > 0 {
					granted++
				}
				if *l.NodeID != nd.ID {
					t.Fatalf("%s's audit log has a line of %s", nd.ID, *l.NodeID)
				}
			}
		}
		t.Logf("audit outcomes: %v", counts)
		if counts["unauthenticated"] < 5 || counts["permission_denied"]+counts["not_found"] < 8 || granted < 20 {
			t.Fatalf("audit outcomes %v, %d grants with tokens: want the refusals and grants of this test", counts, granted)
		}
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
