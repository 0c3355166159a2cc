package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestExampleFilesLoad(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"single.yaml", "node1.yaml", "node2.yaml", "node3.yaml"} {
		c, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "single.yaml" {
			if c.Cluster.APIAddress != "127.0.0.1:8080" || c.Cluster.MetricsAddress != "127.0.0.1:9090" ||
				c.Cluster.RaftAddress != "127.0.0.1:7001" || c.Cluster.DataDir != "data/single" {
				t.Errorf("single.yaml: %+v", c.Cluster)
			}
			continue
		}
		// The three members must not clash with each other.
		for _, addr := range []string{c.Cluster.RaftAddress, c.Cluster.APIAddress, c.Cluster.MetricsAddress, c.Cluster.DataDir} {
			if other, dup := seen[addr]; dup {
				t.Errorf("%s and %s both use %s", name, other, addr)
			}
			seen[addr] = name
		}
		if len(c.Cluster.Peers) != 3 {
			t.Errorf("%s: %d peers", name, len(c.Cluster.Peers))
		}
	}
}

func TestDevIsValid(t *testing.T) {
	c := Dev(t.TempDir())
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	rtt, hb, el := c.Consensus.RTT()
	if rtt != 10 || hb != 10 || el != 30 {
		t.Errorf("RTT() = %d, %d, %d; want 10 ms, 10, 30", rtt, hb, el)
	}
}

func TestDefaultsFillMissingKeys(t *testing.T) {
	c, err := Parse([]byte(`
cluster:
  node_id: a
  raft_address: 127.0.0.1:1
  api_address: 127.0.0.1:2
  data_dir: d
  peers: {a: 127.0.0.1:1}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Consensus.ElectionTimeoutMs != 300 || c.Consensus.Shards != 1 || c.Locks.DefaultTTLSeconds != 30 ||
		c.Consensus.TickIntervalMs != 100 || c.Cluster.MetricsAddress != "" {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// TestLoadErrorsNameTheKey: every refusal says which key to fix.
func TestLoadErrorsNameTheKey(t *testing.T) {
	base := `
cluster:
  node_id: node-1
  raft_address: 127.0.0.1:7001
  api_address: 127.0.0.1:8080
  metrics_address: 127.0.0.1:9090
  data_dir: data
  peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}
consensus:
  algorithm: raft
  election_timeout_ms: 300
  heartbeat_interval_ms: 100
  shards: 1
locks:
  default_ttl_seconds: 30
  max_wait_time_seconds: 60
  cleanup_interval_seconds: 10
`
	if _, err := Parse([]byte(base)); err != nil {
		t.Fatalf("base config: %v", err)
	}
	cases := []struct {
		old, new string
		want     string
	}{
		{"election_timeout_ms: 300", "election_timeout_ms: 5", "consensus.election_timeout_ms: must be at least 10"},
		{"election_timeout_ms: 300", "election_timeout_ms: 150", "consensus.election_timeout_ms: must be more than twice"},
		{"election_timeout_ms: 300", "election_timeout_ms: soon", "consensus.election_timeout_ms: must be a whole number"},
		{"heartbeat_interval_ms: 100", "heartbeat_interval_ms: 1", "consensus.heartbeat_interval_ms: must be at least 5"},
		{"shards: 1", "shards: 0", "consensus.shards: must be within 1..16, got 0"},
		{"shards: 1", "shards: 1\n  tick_interval_ms: 5000", "consensus.tick_interval_ms: must be within 10..1000"},
		{"shards: 1", "shards: 17", "consensus.shards: must be within 1..16, got 17"},
		{"shards: 1", "shards: 1\n  ride_along_ms: -1", "consensus.ride_along_ms: must be within 0..1000 (0: never hold an acquire back), got -1"},
		{"shards: 1", "shards: 1\n  ride_along_ms: 5000", "consensus.ride_along_ms: must be within 0..1000"},
		{"shards: 1", "shards: -2", "consensus.shards: must be within 1..16, got -2"},
		{"algorithm: raft", "algorithm: paxos", "consensus.algorithm: must be raft"},
		{"  shards: 1", "  shards: 1\n  shard: 2", "consensus.shard: unknown key"},
		{"locks:", "lock:", "lock: unknown key"},
		{"default_ttl_seconds: 30", "default_ttl_seconds: 0", "locks.default_ttl_seconds: must be within"},
		{"max_wait_time_seconds: 60", "max_wait_time_seconds: -1", "locks.max_wait_time_seconds: must be within"},
		{"cleanup_interval_seconds: 10", "cleanup_interval_seconds: 0", "locks.cleanup_interval_seconds: must be within"},
		{"node_id: node-1", "node_id: ''", "cluster.node_id: required"},
		{"node_id: node-1", "node_id: node 1", "cluster.node_id:"},
		{"raft_address: 127.0.0.1:7001", "raft_address: localhost", "cluster.raft_address:"},
		{"api_address: 127.0.0.1:8080", "api_address: 127.0.0.1:99999", "cluster.api_address:"},
		{"  data_dir: data", "  data_dir: data\n  raft_listen_address: 7101", "cluster.raft_listen_address: \"7101\" is not host:port"},
		{"  data_dir: data", "  data_dir: data\n  raft_listen_address: 127.0.0.1:8080", "cluster.raft_listen_address: must differ"},
		{"metrics_address: 127.0.0.1:9090", "metrics_address: 127.0.0.1:8080", "cluster.metrics_address: must differ"},
		{"data_dir: data", "data_dir: ''", "cluster.data_dir: required"},
		{"node-1: 127.0.0.1:7001, node-2", "node-3: 127.0.0.1:7001, node-2", "cluster.peers: must include this node"},
		{"node-1: 127.0.0.1:7001, node-2", "node-1: 127.0.0.1:7009, node-2", "cluster.peers.node-1: is 127.0.0.1:7009"},
		{"node-2: 127.0.0.1:7002", "node-2: 127.0.0.1:7001", "127.0.0.1:7001 is also the address of"},
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}", "peers: [a, b]", "cluster.peers: must be a mapping"},
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}", `peers: ["node-2:9090", "node-3:9090", "192.0.2.4:9090"]`,
			"cluster.peers: must be a mapping of node id to Raft address, not a list (line 8): write peers: {node-2: node-2:9090, node-3: node-3:9090, node-1: 192.0.2.4:9090}"},
		// Lists that name the ids already, three ways: the mapping to write
		// keeps them.
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}", `peers: [node-1=127.0.0.1:7001, node-2=127.0.0.1:7002]`,
			"write peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}"},
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}", `peers: ["node-1: 127.0.0.1:7001", "b: 127.0.0.1:7002"]`,
			"write peers: {node-1: 127.0.0.1:7001, b: 127.0.0.1:7002}"},
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}", `peers: [{node-1: 127.0.0.1:7001}, {node-1: 127.0.0.1:7002}]`,
			"write peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}"},
		{"peers: {node-1: 127.0.0.1:7001, node-2: 127.0.0.1:7002}",
			"peers: {node-1: 127.0.0.1:7001, n2: 127.0.0.1:7002, n3: 127.0.0.1:7003, n4: 127.0.0.1:7004, n5: 127.0.0.1:7005, n6: 127.0.0.1:7006, n7: 127.0.0.1:7007, n8: 127.0.0.1:7008}",
			"cluster.peers: lists 8 members; at most 7"},
		{"  data_dir: data", "  data_dir: data\n  data_dir: again", "cluster.data_dir: given twice"},
		{"cleanup_interval_seconds: 10", "cleanup_interval_seconds: 10\nlog: {level: verbose}", `log.level: "verbose" is not a level: use debug, info, warn or error`},
		{"cleanup_interval_seconds: 10", "cleanup_interval_seconds: 10\nlog: {level: info+2}", `log.level: "info+2" is not a level`},
		{"cleanup_interval_seconds: 10", "cleanup_interval_seconds: 10\nlog: {format: xml}", `log.format: "xml" is not a format: use text or json`},
		{"cleanup_interval_seconds: 10", "cleanup_interval_seconds: 10\nlog: {levels: info}", "log.levels: unknown key"},
	}
	for _, tc := range cases {
		if !strings.Contains(base, tc.old) {
			t.Fatalf("case %q: base has no %q", tc.want, tc.old)
		}
		_, err := Parse([]byte(strings.Replace(base, tc.old, tc.new, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("with %q: got %v, want an error containing %q", tc.new, err, tc.want)
		}
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("cluster: {node_id: x}\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "bogus: unknown key") {
		t.Errorf("Load: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
	if _, err := Parse([]byte("consensus: 3\n")); err == nil || !strings.Contains(err.Error(), "consensus: must be a mapping") {
		t.Errorf("consensus: 3: %v", err)
	}
	if _, err := Parse(nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Parse(nil): %v", err)
	}
}

// TestJoinNeedsNoPeers: neither a member that joins nor one restarted on
// its data directory needs peers, so a file without them validates; the
// start refuses a first start without either (runtime.CheckPeers). A
// member added with --join could not be restarted as the docs say, its
// file having no peers.
func TestJoinNeedsNoPeers(t *testing.T) {
	c := Dev("d")
	c.Cluster.Peers = nil
	if err := c.Validate(); err != nil {
		t.Errorf("no peers: %v", err)
	}
	c.Cluster.Join = true
	if err := c.Validate(); err != nil {
		t.Errorf("join: %v", err)
	}
	c.Cluster.Join = false
	c.Cluster.Peers = map[string]string{"node-2": "127.0.0.1:7002"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cluster.peers: must include this node") {
		t.Errorf("peers without this node: %v", err)
	}
}

func TestReplicaID(t *testing.T) {
	a, b := ReplicaID("node-1", 0), ReplicaID("node-2", 0)
	if a == b || a == 0 || b == 0 || a>>63 != 0 {
		t.Errorf("ReplicaID: %d, %d", a, b)
	}
	if ReplicaID("node-1", 0) != a {
		t.Error("ReplicaID is not deterministic")
	}
	if r := ReplicaID("node-1", 1); r == a || r>>8 != a>>8 || r&0xff != 1 {
		t.Errorf("incarnation 1 of node-1: %x (incarnation 0: %x)", r, a)
	}
}

// TestMarshalRoundTrips: what Marshal writes, Parse reads back unchanged.
func TestDeprecations(t *testing.T) {
	c := Dev("/tmp/x")
	if d := c.Deprecations(); len(d) != 0 {
		t.Fatalf("the defaults are deprecated: %q", d)
	}
	c.Locks.CleanupIntervalSeconds = 30
	d := c.Deprecations()
	if len(d) != 1 || !strings.Contains(d[0], "locks.cleanup_interval_seconds is 30") || !strings.Contains(d[0], "remove the key") {
		t.Fatalf("deprecations %q, want one naming locks.cleanup_interval_seconds and what to do", d)
	}
}

func TestMarshalRoundTrips(t *testing.T) {
	c := Dev("/tmp/lockstep-x")
	c.Cluster.Peers["node-2"] = "127.0.0.1:7002"
	c.Cluster.Incarnation = 2
	c.Cluster.RaftListenAddress = "127.0.0.1:7101"
	c.Locks.MaxWaitTimeSeconds = 10
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, c, b)
	}
}

func TestShardsWithinLimitAccepted(t *testing.T) {
	for _, n := range []int{1, 4, MaxShards} {
		c := Dev(t.TempDir())
		c.Consensus.Shards = n
		if err := c.Validate(); err != nil {
			t.Errorf("shards %d: %v", n, err)
		}
	}
}

// config/cluster.yaml shows every key with its default: it loads, and the
// values it gives for the keys that have defaults are those defaults, so
// the file cannot drift from the code.
func TestClusterExampleShowsTheDefaults(t *testing.T) {
	c, err := Load("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if c.Consensus != d.Consensus {
		t.Errorf("consensus: the file says %+v, the defaults are %+v", c.Consensus, d.Consensus)
	}
	if c.Locks != d.Locks {
		t.Errorf("locks: the file says %+v, the defaults are %+v", c.Locks, d.Locks)
	}
	if c.Cluster.Join || c.Cluster.Incarnation != 0 || c.Cluster.RaftListenAddress != "" || c.Security.Insecure {
		t.Errorf("cluster or security keys differ from their defaults: %+v %+v", c.Cluster, c.Security)
	}
	if len(c.Cluster.Peers) != 3 {
		t.Errorf("%d peers", len(c.Cluster.Peers))
	}
	// A key the file leaves out loads as its default too: every key must be
	// written there, or a new one goes unshown.
	text, err := os.ReadFile("cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Consensus](), reflect.TypeFor[Locks]()} {
		for f := range typ.Fields() {
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(key) + `:`).Match(text) {
				t.Errorf("cluster.yaml does not show the key %s (%s.%s)", key, typ.Name(), f.Name)
			}
		}
	}
}

// TestValidateNamesEveryWrongKeyAtOnce: --check shows all that is wrong
// in one run (it took four runs to find five mistakes), and an address
// that is not host:port gets its own error, not also "not a loopback
// address".
func TestValidateNamesEveryWrongKeyAtOnce(t *testing.T) {
	c := Dev("")
	c.Cluster.RaftAddress = "nohost"
	c.Cluster.APIAddress = "127.0.0.1:99999"
	c.Cluster.DataDir = ""
	c.Cluster.Peers = map[string]string{"other": "127.0.0.1:7009"}
	c.Consensus.MaxBatch = 0
	c.Consensus.HeartbeatIntervalMs, c.Consensus.ElectionTimeoutMs = 100, 150
	c.Consensus.Shards = 17
	err := c.Validate()
	if err == nil {
		t.Fatal("a configuration wrong in seven keys passed")
	}
	for _, key := range []string{"cluster.raft_address:", "cluster.api_address:", "cluster.data_dir:",
		"consensus.max_batch:", "consensus.election_timeout_ms:", "consensus.shards:"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("the error does not name %s:\n%v", key, err)
		}
	}
	if strings.Contains(err.Error(), "loopback") || strings.Contains(err.Error(), "cluster.peers") {
		t.Errorf("a malformed address is also called not a loopback address, or the peers that name it wrong:\n%v", err)
	}
	c = Dev("")
	c.Cluster.Peers = map[string]string{"other": "127.0.0.1:7009"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "cluster.peers:") || !strings.Contains(err.Error(), "cluster.data_dir:") {
		t.Errorf("peers without this node and no data_dir: %v, want both named", err)
	}
	c = Dev("")
	c.Consensus.Shards = 0
	if err := c.Validate(); err == nil || strings.Contains(err.Error(), "slower on one disk") {
		t.Errorf("shards: 0 answered %v: the hint about more shards does not fit it", err)
	}
}
