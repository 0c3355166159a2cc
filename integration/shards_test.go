//go:build integration

package integration

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/runtime"
)

const itShards = 4

// shardConfigs sets consensus.shards in every member's configuration file.
func (c *cluster) shardConfigs(shards int) {
	c.t.Helper()
	for _, nd := range c.nodes {
		cfg, err := config.Load(nd.ConfigPath)
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.Consensus.Shards = shards
		b, err := cfg.Marshal()
		if err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(nd.ConfigPath, b, 0o600); err != nil {
			c.t.Fatal(err)
		}
	}
}

// shardLeaders answers each shard's leader as nd reports it.
func (c *cluster) shardLeaders(nd *node) ([]string, error) {
	st, body, err := c.do("GET", nd, "/cluster/status", "")
	if err != nil || st != 200 {
		return nil, fmt.Errorf("status %d %v %v", st, body, err)
	}
	shards, _ := body["shards"].([]any)
	leaders := make([]string, len(shards))
	for i, s := range shards {
		m := s.(map[string]any)
		id, _ := strconv.ParseUint(fmt.Sprint(m["shard_id"]), 10, 64)
		if id != uint64(i) {
			return nil, fmt.Errorf("shard %d listed at position %d: %v", id, i, shards)
		}
		leaders[i], _ = m["leader_id"].(string)
	}
	return leaders, nil
}

// startShardedCluster starts three nodes with itShards shards and waits
// until every node serves.
func startShardedCluster(t *testing.T) *cluster {
	t.Helper()
	c := newCluster(t, 3)
	c.shardConfigs(itShards)
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitHealthy(30*time.Second, c.nodes...)
	return c
}

// TestShardedCluster runs three processes with four shards: status lists
// every shard, primitives on many names (spread over every shard) through
// REST JSON, a session whose holds span shards (its info, List across
// shards, close releasing everything), leaders spread over the nodes, and a
// kill -9 of one shard's leader after which that shard grants again with a
// larger token.
func TestShardedCluster(t *testing.T) {
	c := startShardedCluster(t)
	n0 := c.nodes[0]
	leaders, err := c.shardLeaders(n0)
	if err != nil || len(leaders) != itShards {
		t.Fatalf("/cluster/status: %v, %v; want %d shards", leaders, err, itShards)
	}

	// Many names, every shard, every node, REST JSON.
	names := make([]string, 24)
	perShard := map[uint64]int{}
	tokens := map[string]uint64{}
	for i := range names {
		names[i] = fmt.Sprintf("itsh-%02d", i)
		perShard[runtime.ShardOf(names[i], itShards)]++
		nd := c.nodes[i%3]
		a := c.ok("POST", nd, "/locks/"+names[i]+"/acquire", `{"owner":"o`+strconv.Itoa(i)+`","ttl_seconds":60}`)
		want(t, names[i]+" acquired", a["acquired"], true)
		tokens[names[i]] = u64(t, a, "fencing_token")
	}
	if len(perShard) != itShards {
		t.Fatalf("24 names landed in %d shards: %v", len(perShard), perShard)
	}
	for i, name := range names {
		s := c.ok("GET", c.nodes[(i+1)%3], "/locks/"+name+"/status", "")
		want(t, name+" held", s["held"], true)
		c.ok("POST", c.nodes[(i+2)%3], "/locks/"+name+"/release", fmt.Sprintf(`{"owner":"o%d","fencing_token":"%d"}`, i, tokens[name]))
	}
	sem := c.ok("POST", n0, "/semaphores/itsh-sem/acquire", `{"owner":"s","limit":2,"permits":2,"ttl_seconds":60}`)
	want(t, "semaphore", sem["acquired"], true)
	rw := c.ok("POST", c.nodes[1], "/rwlocks/itsh-rw/acquire", `{"owner":"r","mode":"read","ttl_seconds":60}`)
	want(t, "rwlock", rw["acquired"], true)

	// One session, holds in every shard.
	sess := c.ok("POST", c.nodes[1], "/sessions", `{"ttl_seconds":60,"owner":"spanner"}`)
	sid := u64(t, sess, "session_id")
	for _, name := range names {
		a := c.ok("POST", c.nodes[2], "/locks/"+name+"/acquire", fmt.Sprintf(`{"session_id":"%d"}`, sid))
		want(t, name+" acquired in the session", a["acquired"], true)
		if tok := u64(t, a, "fencing_token"); tok <= tokens[name] {
			t.Fatalf("%s: token %d after %d", name, tok, tokens[name])
		}
	}
	info := c.ok("POST", n0, "/lockstep.v1.SessionService/Get", fmt.Sprintf(`{"session_id":"%d"}`, sid))
	holds, _ := info["session"].(map[string]any)["holds"].([]any)
	var held []string
	for _, h := range holds {
		held = append(held, h.(map[string]any)["name"].(string))
	}
	if !slices.Equal(held, names) {
		t.Fatalf("session info holds %q, want %q (sorted, every shard)", held, names)
	}
	c.ok("POST", c.nodes[2], fmt.Sprintf("/sessions/%d/keepalive", sid), `{}`)

	// The session list: the session lives in every shard and is listed
	// once, its holds of every shard counted, its lease as Get merges it;
	// the server-made sessions of the semaphore and the RW lock are
	// listed too. Pages of one walk them all, each once.
	sl := c.ok("GET", n0, "/sessions?owner_prefix=spanner", "")
	entries, _ := sl["sessions"].([]any)
	info = c.ok("POST", n0, "/lockstep.v1.SessionService/Get", fmt.Sprintf(`{"session_id":"%d"}`, sid))
	got := info["session"].(map[string]any)
	if len(entries) != 1 {
		t.Fatalf("GET /sessions?owner_prefix=spanner: %v, want the one session", sl)
	}
	e := entries[0].(map[string]any)
	if u64(t, e, "session_id") != sid || e["owner"] != "spanner" || e["hold_count"] != strconv.Itoa(len(names)) || e["wait_count"] != "0" ||
		e["ttl_ms"] != got["ttl_ms"] || e["created_at_ms"] != got["created_at_ms"] || e["expires_at_ms"] != got["expires_at_ms"] {
		t.Fatalf("listed %v, want session %d with %d holds and Get's lease %v", e, sid, len(names), got)
	}
	listedOwners := map[string]int{}
	pageToken := ""
	for page := 0; ; page++ {
		if page == 10 {
			t.Fatalf("GET /sessions?page_size=1: more than 10 pages: %v", listedOwners)
		}
		l := c.ok("GET", c.nodes[page%3], "/sessions?page_size=1&page_token="+pageToken, "")
		for _, x := range l["sessions"].([]any) {
			listedOwners[x.(map[string]any)["owner"].(string)]++
		}
		if pageToken, _ = l["next_page_token"].(string); pageToken == "" {
			break
		}
	}
	if listedOwners["spanner"] != 1 || listedOwners["auto:s"] != 1 || listedOwners["auto:r"] != 1 || len(listedOwners) != 3 {
		t.Fatalf("pages of one listed %v, want spanner, auto:s and auto:r once each", listedOwners)
	}

	// List across shards, paged, in name order.
	var listed []string
	token := ""
	for page := 0; page < 10; page++ {
		l := c.ok("POST", c.nodes[1], "/lockstep.v1.LockService/List", fmt.Sprintf(`{"prefix":"itsh-","page_size":10,"page_token":%q}`, token))
		objs, _ := l["objects"].([]any)
		for _, o := range objs {
			listed = append(listed, o.(map[string]any)["name"].(string))
		}
		token, _ = l["next_page_token"].(string)
		if token == "" {
			break
		}
	}
	wantListed := append(slices.Clone(names), "itsh-rw", "itsh-sem")
	if !slices.Equal(listed, wantListed) {
		t.Fatalf("List across shards: %q, want %q", listed, wantListed)
	}

	// A request_seq reused for a name in another shard: that shard's
	// dedupe never saw it, so it is served, but in a session of its own.
	// (It joined the first request's server-made session, which then
	// served two requests: releasing the first grant kept the session.)
	first, other := names[0], ""
	for _, n := range names {
		if runtime.ShardOf(n, itShards) != runtime.ShardOf(first, itShards) {
			other = n
			break
		}
	}
	c.ok("DELETE", n0, fmt.Sprintf("/sessions/%d", sid), "") // frees the names for it
	reuse := `{"owner":"i1","ttl_seconds":60,"client_id":"itsh-reuse","request_seq":"1"}`
	ra := c.ok("POST", n0, "/locks/"+first+"/acquire", reuse)
	retry := c.ok("POST", c.nodes[1], "/locks/"+first+"/acquire", reuse)
	rb := c.ok("POST", n0, "/locks/"+other+"/acquire", reuse)
	want(t, first+" acquired", ra["acquired"], true)
	want(t, other+" acquired", rb["acquired"], true)
	if u64(t, retry, "session_id") != u64(t, ra, "session_id") || u64(t, retry, "fencing_token") != u64(t, ra, "fencing_token") {
		t.Fatalf("a retry of %s: %v, want the first answer %v", first, retry, ra)
	}
	if u64(t, rb, "session_id") == u64(t, ra, "session_id") {
		t.Fatalf("%s and %s under one reused request_seq share session %d: a server-made session serves one request", first, other, u64(t, ra, "session_id"))
	}
	for _, r := range []struct {
		name string
		ans  map[string]any
	}{{first, ra}, {other, rb}} {
		rel := c.ok("POST", c.nodes[2], "/locks/"+r.name+"/release", fmt.Sprintf(`{"owner":"i1","fencing_token":"%d"}`, u64(t, r.ans, "fencing_token")))
		want(t, r.name+"'s release closes its session", rel["session_closed"], true)
	}

	// Closing the session released everywhere.
	for _, name := range names {
		s := c.ok("GET", c.nodes[1], "/locks/"+name+"/status", "")
		want(t, name+" released by the close", s["held"], false)
	}

	// Leaders spread: with 3 nodes and 4 shards, every node leads one.
	eventually(t, 40*time.Second, "leaders spread over the nodes", func() error {
		l, err := c.shardLeaders(n0)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, id := range l {
			seen[id] = true
		}
		if len(seen) != 3 || seen[""] {
			return fmt.Errorf("leaders %v", l)
		}
		leaders = l
		return nil
	})

	// kill -9 the leader of one name's shard; that shard grants again soon,
	// with a larger token, through a survivor.
	name := names[0]
	sh := runtime.ShardOf(name, itShards)
	var victim *node
	for _, nd := range c.nodes {
		if nd.ID == leaders[sh] {
			victim = nd
		}
	}
	a := c.ok("POST", victim, "/locks/"+name+"/acquire", `{"owner":"before","ttl_seconds":60}`)
	before := u64(t, a, "fencing_token")
	victim.Kill()
	start := time.Now()
	var after uint64
	eventually(t, 2*failoverBound, "the shard grants after its leader's kill -9", func() error {
		for _, nd := range c.nodes {
			if nd == victim {
				continue
			}
			st, s, err := c.do("GET", nd, "/locks/"+name+"/status", "")
			if err != nil || st != 200 {
				continue
			}
			// The grant survived; release it, then take it again.
			if s["held"] == true {
				c.do("POST", nd, "/locks/"+name+"/release", fmt.Sprintf(`{"owner":"before","fencing_token":"%d"}`, before))
			}
			st, b, err := c.do("POST", nd, "/locks/"+name+"/acquire", `{"owner":"after","ttl_seconds":60}`)
			if err == nil && st == 200 && b["acquired"] == true {
				after = u64(t, b, "fencing_token")
				return nil
			}
		}
		return fmt.Errorf("no grant yet")
	})
	served := time.Since(start)
	t.Logf("kill -9 of shard %d's leader to the next grant of %s: %v", sh, name, served)
	// A REST acquire makes a session, which needs every shard: the ones the
	// victim led elect first. Twice the one-shard bound.
	if served > 2*failoverBound {
		t.Errorf("the next grant came %v after the kill -9, want under %v", served, 2*failoverBound)
	}
	if after <= before {
		t.Fatalf("token after the failover %d does not exceed %d", after, before)
	}
	// Every shard still serves through the survivors.
	var survivor *node
	for _, nd := range c.nodes {
		if nd != victim {
			survivor = nd
		}
	}
	for _, n := range names[1:] {
		st, b := c.rest("POST", survivor, "/locks/"+n+"/acquire", `{"owner":"z","ttl_seconds":60}`)
		if st != 200 || b["acquired"] != true {
			t.Fatalf("%s (shard %d) after the kill: %d %v", n, runtime.ShardOf(n, itShards), st, b)
		}
	}
	c.waitHealthy(30*time.Second, survivor)
}
