package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lockstepd/lockstep/core/replica"
)

// Config is one node's configuration. The yaml tags are the keys of the file.
type Config struct {
	Cluster   Cluster   `yaml:"cluster"`
	Consensus Consensus `yaml:"consensus"`
	Locks     Locks     `yaml:"locks"`
	// Security is TLS, authentication, the ACL and the audit log
	// (security.go, docs/security.md). Absent: plaintext, anonymous, which
	// only loopback addresses may serve.
	Security Security `yaml:"security,omitempty"`
	// Log is how the member logs (to stderr). Its level is the one
	// setting outside security that a reload (SIGHUP) puts in force.
	Log Log `yaml:"log,omitempty"`
}

// Log is the member's logging: --log-level and --log-format override it.
type Log struct {
	// Level is debug, info, warn or error. Defaults to info. A reload
	// (SIGHUP) puts a new one in force: turn on debug while something is
	// wrong, without a restart.
	Level string `yaml:"level,omitempty"`
	// Format is text or json. Defaults to text; it changes at a restart.
	Format string `yaml:"format,omitempty"`
}

// SlogLevel is the level as log/slog counts it (info when empty).
func (l Log) SlogLevel() (slog.Level, error) {
	if l.Level == "" {
		return slog.LevelInfo, nil
	}
	switch strings.ToLower(l.Level) {
	case "debug", "info", "warn", "error":
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(l.Level)); err == nil {
			return lv, nil
		}
	}
	return 0, fmt.Errorf("log.level: %q is not a level: use debug, info, warn or error", l.Level)
}

func (l Log) validate() error {
	var errs []error
	if _, err := l.SlogLevel(); err != nil {
		errs = append(errs, err)
	}
	if l.Format != "" && l.Format != "text" && l.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q is not a format: use text or json", l.Format))
	}
	return errors.Join(errs...)
}

// Cluster is this node's identity, addresses and peers.
type Cluster struct {
	// NodeID names this node, e.g. "node-1". It is mapped to a Raft replica
	// id by hashing (see ReplicaID), so every member computes the same id.
	NodeID string `yaml:"node_id"`
	// RaftAddress is host:port for Raft traffic between members: the
	// address the other members dial, and this node's name in the membership.
	RaftAddress string `yaml:"raft_address"`
	// RaftListenAddress is the host:port this node listens on for Raft, when
	// the address peers dial (RaftAddress) is not one of this host's own: a
	// proxy, a NAT or a port forward in between. Defaults to empty: listen
	// on RaftAddress.
	RaftListenAddress string `yaml:"raft_listen_address,omitempty"`
	// APIAddress is host:port for Connect, gRPC, REST, health and cluster status.
	APIAddress string `yaml:"api_address"`
	// MetricsAddress is host:port for /metrics; empty serves no metrics.
	MetricsAddress string `yaml:"metrics_address"`
	// DataDir holds the Raft log, snapshots and the node's identity. Relative
	// paths are relative to the working directory.
	DataDir string `yaml:"data_dir"`
	// Peers are the initial members (node id → raft address), this node
	// included. Every initial member lists the same peers. Ignored when the
	// data directory already holds a member (a restart), and when Join is
	// set; so needed, unless Join is, only at a member's first start (the
	// start checks it: runtime.CheckPeers).
	Peers map[string]string `yaml:"peers"`
	// Join starts this node as a new member of a running cluster, which must
	// have added it first (AddNode). Defaults to false: bootstrap from Peers.
	Join bool `yaml:"join"`
	// Incarnation counts how often this node id was removed and added back:
	// Raft never reuses a removed replica id, so a node added again starts
	// with the incarnation AddNode reported. Defaults to 0.
	Incarnation int `yaml:"incarnation"`
	// Deployment is the Raft deployment of a cluster restored from a
	// backup, 16 hex digits, for a node that joins it: what AddNode
	// answered (Lockstep-Deployment). Its members refuse a member of
	// another deployment. Read at the first start only, on an empty data
	// directory, which records it; empty: Lockstep's own, or the one the
	// data directory records.
	Deployment string `yaml:"deployment,omitempty"`
}

// ParseDeployment reads cluster.deployment: 0 for none.
func ParseDeployment(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || v == 0 || len(s) != 16 {
		return 0, fmt.Errorf("cluster.deployment: %q is not a deployment: give the 16 hex digits lockstep cluster add printed (--deployment)", s)
	}
	return v, nil
}

// Consensus holds the Raft settings, the same on every member.
type Consensus struct {
	// Algorithm must be "raft".
	Algorithm string `yaml:"algorithm"`
	// ElectionTimeoutMs is how long a follower waits without hearing from a
	// leader before it campaigns. Defaults to 300.
	ElectionTimeoutMs int `yaml:"election_timeout_ms"`
	// HeartbeatIntervalMs is how often a leader sends heartbeats. Defaults to 100.
	HeartbeatIntervalMs int `yaml:"heartbeat_interval_ms"`
	// Shards is the number of Raft groups, 1..MaxShards. Names are spread
	// over them by hash and sessions are mirrored into every one (see
	// docs/runtime.md). It cannot change after a cluster's first start: the
	// hash would move names away from their state. Defaults to 1.
	Shards int `yaml:"shards"`
	// TickIntervalMs is how late past its deadline an expiry may be applied
	// (a leader that has been quiet this long proposes a tick when a
	// deadline of the machine comes due), and how long a follower forwards
	// after the tick it asked for before it asks again (docs/runtime.md,
	// Time). An idle leader with nothing timed proposes nothing. Defaults
	// to 100.
	TickIntervalMs int `yaml:"tick_interval_ms"`
	// SnapshotEntries is how many applied entries trigger a snapshot, after
	// which the log before it is compacted. Defaults to 10000.
	SnapshotEntries int `yaml:"snapshot_entries"`
	// CompactionOverhead is how many entries are kept behind a snapshot, so
	// that a slightly lagging follower catches up from the log rather than a
	// snapshot. Defaults to 5000.
	CompactionOverhead int `yaml:"compaction_overhead"`
	// MaxBatch is how many client commands one Raft entry may pack (group
	// commit). Defaults to 256.
	MaxBatch int `yaml:"max_batch"`
	// RideAlongMs is the longest a blocking acquire may be held back for
	// another proposal to share an entry with, when this member already
	// holds a request queued on the same object (docs/runtime.md, "Acquires
	// ride with releases"); 0 never holds one back. Defaults to 20. It may
	// differ between members: each leader applies its own.
	RideAlongMs int `yaml:"ride_along_ms"`
}

// Locks holds the defaults the API applies to requests.
type Locks struct {
	// DefaultTTLSeconds is the lease of a session created for a REST acquire
	// that named none. Defaults to 30.
	DefaultTTLSeconds int `yaml:"default_ttl_seconds"`
	// MaxWaitTimeSeconds caps how long an acquire may wait. Defaults to 60.
	MaxWaitTimeSeconds int `yaml:"max_wait_time_seconds"`
	// CleanupIntervalSeconds is deprecated and has no effect. It is still
	// read and validated so that baseline files load, and Deprecations names
	// it when set to anything but the default. Nothing needs sweeping: leases,
	// waits and lock-delays end exactly when log time reaches them (moved by
	// the leader's ticks, consensus.tick_interval_ms), an object is forgotten
	// when its last holder or waiter goes, and remembered request results
	// age out by log time too. Defaults to 10.
	CleanupIntervalSeconds int `yaml:"cleanup_interval_seconds"`
}

// MaxMembers bounds the voting members of a cluster, initial (cluster.peers)
// and added (AddNode) alike: every commit waits for a majority of them, so
// each voter past 7 makes writes slower, and 7 already survive 3 failures.
const MaxMembers = 7

// Defaults for the keys a file may leave out.
const (
	DefaultElectionTimeoutMs   = 300
	DefaultHeartbeatIntervalMs = 100
	DefaultShards              = 1
	// MaxShards bounds consensus.shards: every shard has its own Raft log,
	// ticks and driver, and each session is mirrored into every shard, so
	// a session operation costs one proposal per shard.
	MaxShards                     = 16
	DefaultTickIntervalMs         = 100
	DefaultSnapshotEntries        = 10000
	DefaultCompactionOverhead     = 5000
	DefaultMaxBatch               = 256
	DefaultRideAlongMs            = 20
	MaxRideAlongMs                = replica.MaxRideAlongMs // the driver enforces it too
	DefaultTTLSeconds             = 30
	DefaultMaxWaitTimeSeconds     = 60
	DefaultCleanupIntervalSeconds = 10
)

// Defaults returns a configuration with every defaultable key set and the
// node-specific keys (cluster.*) empty.
func Defaults() Config {
	return Config{
		Consensus: Consensus{
			Algorithm:           "raft",
			ElectionTimeoutMs:   DefaultElectionTimeoutMs,
			HeartbeatIntervalMs: DefaultHeartbeatIntervalMs,
			Shards:              DefaultShards,
			TickIntervalMs:      DefaultTickIntervalMs,
			SnapshotEntries:     DefaultSnapshotEntries,
			CompactionOverhead:  DefaultCompactionOverhead,
			MaxBatch:            DefaultMaxBatch,
			RideAlongMs:         DefaultRideAlongMs,
		},
		Locks: Locks{
			DefaultTTLSeconds:      DefaultTTLSeconds,
			MaxWaitTimeSeconds:     DefaultMaxWaitTimeSeconds,
			CleanupIntervalSeconds: DefaultCleanupIntervalSeconds,
		},
	}
}

// Dev returns the configuration of a single node on loopback that keeps its
// data in dataDir: `lockstep serve --dev`.
func Dev(dataDir string) Config {
	c := Defaults()
	c.Cluster = Cluster{
		NodeID:         "node-1",
		RaftAddress:    "127.0.0.1:7001",
		APIAddress:     "127.0.0.1:8080",
		MetricsAddress: "127.0.0.1:9090",
		DataDir:        dataDir,
		Peers:          map[string]string{"node-1": "127.0.0.1:7001"},
	}
	return c
}

// Load reads a YAML file. Keys left out take their defaults; unknown keys
// and invalid values are refused with an error that names the key, and the
// security files it names must load (Config.LoadMaterial).
func Load(path string) (Config, error) {
	c, err := Read(path)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := c.LoadMaterial(time.Now()); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Read reads a YAML file like Load, without validating the values, so that
// command-line flags can override them first (--insecure among them). Paths
// under security are made relative to the file's folder.
func Read(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	c.Security.resolvePaths(dir)
	return c, nil
}

// Marshal writes c as the YAML that Load reads back, so tools and tests that
// start members write their configuration through the same keys.
func (c Config) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// Parse reads YAML like Load does, without touching the security files
// (relative paths stay relative to the working directory).
func Parse(b []byte) (Config, error) {
	c, err := parse(b)
	if err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func parse(b []byte) (Config, error) {
	c := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return Config{}, errors.New("the file is empty: it needs at least the cluster keys")
		}
		return Config{}, fmt.Errorf("not valid YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Config{}, errors.New("the file holds more than one YAML document: keep one")
	}
	if err := decodeStrict(&root, reflect.ValueOf(&c).Elem(), ""); err != nil {
		return Config{}, err
	}
	c.Security.setDefaults()
	return c, nil
}

// decodeStrict decodes node into v, refusing keys v has no field for and
// naming the key (a dotted path) of any value that does not decode.
func decodeStrict(node *yaml.Node, v reflect.Value, path string) error {
	if node.Kind == yaml.DocumentNode {
		if len(node.Content) == 0 {
			return nil
		}
		return decodeStrict(node.Content[0], v, path)
	}
	if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
		if node.Tag == "!!null" {
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := decodeStrict(node, p.Elem(), path); err != nil {
			return err
		}
		v.Set(p)
		return nil
	}
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct {
		if node.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: must be a list (line %d)", path, node.Line)
		}
		s := reflect.MakeSlice(v.Type(), len(node.Content), len(node.Content))
		for i, item := range node.Content {
			if err := decodeStrict(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if v.Kind() == reflect.Map && node.Kind == yaml.SequenceNode {
		return fmt.Errorf("%s: must be a mapping of node id to Raft address, not a list (line %d): write %s", path, node.Line, peersMapping(node))
	}
	if v.Kind() != reflect.Struct {
		if err := node.Decode(v.Addr().Interface()); err != nil {
			return fmt.Errorf("%s: %s", path, describeDecodeError(err, v))
		}
		return nil
	}
	if node.Kind != yaml.MappingNode {
		if path == "" {
			return errors.New("the file must be a mapping with the keys cluster, consensus and locks")
		}
		return fmt.Errorf("%s: must be a mapping of keys (line %d)", path, node.Line)
	}
	fields := map[string]int{}
	var known []string
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		fields[tag] = i
		known = append(known, tag)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, val := node.Content[i], node.Content[i+1]
		key := join(path, k.Value)
		idx, ok := fields[k.Value]
		if !ok {
			return fmt.Errorf("%s: unknown key (line %d); the keys here are %s", key, k.Line, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return fmt.Errorf("%s: given twice (line %d)", key, k.Line)
		}
		seen[k.Value] = true
		if err := decodeStrict(val, v.Field(idx), key); err != nil {
			return err
		}
	}
	return nil
}

// peersMapping shows the mapping form of peers given as a list of
// addresses ("node-2:9090"), naming each member by its host where that is a
// node id and node-N otherwise, this node to be added by the reader.
func peersMapping(list *yaml.Node) string {
	ids := make([]string, len(list.Content))
	addrs := make([]string, len(list.Content))
	used := map[string]bool{}
	claim := func(i int, id string) {
		if ValidNodeID(id) == nil && !used[id] {
			ids[i], used[id] = id, true
		}
	}
	for i, item := range list.Content {
		addrs[i] = item.Value
		switch {
		case item.Kind == yaml.MappingNode && len(item.Content) == 2: // - node-1: host:port
			addrs[i] = item.Content[1].Value
			claim(i, item.Content[0].Value)
		case strings.Contains(item.Value, "="): // - node-1=host:port, as etcd's --initial-cluster
			id, addr, _ := strings.Cut(item.Value, "=")
			addrs[i] = addr
			claim(i, id)
		case strings.Contains(item.Value, ": "): // - "node-1: host:port"
			id, addr, _ := strings.Cut(item.Value, ": ")
			addrs[i] = addr
			claim(i, id)
		default: // - host:port, a host name that can be the id
			if host, _, err := net.SplitHostPort(item.Value); err == nil && net.ParseIP(host) == nil {
				claim(i, host)
			}
		}
	}
	next := 1
	var parts []string
	for i := range list.Content {
		for ids[i] == "" {
			if id := fmt.Sprintf("node-%d", next); !used[id] {
				ids[i], used[id] = id, true
			}
			next++
		}
		parts = append(parts, ids[i]+": "+addrs[i])
	}
	return "peers: {" + strings.Join(parts, ", ") + "}, this node included (cluster.node_id: cluster.raft_address)"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describeDecodeError(err error, v reflect.Value) string {
	want := "a value"
	switch v.Kind() {
	case reflect.Int:
		want = "a whole number"
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Map:
		want = "a mapping of node id to host:port"
	case reflect.Slice:
		want = "a list"
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	return fmt.Sprintf("must be %s (%s)", want, strings.TrimSpace(msg))
}

// Validate checks every key and the relations between them. The error names
// every offending key of the cluster and consensus parts, and the first of
// the locks and security parts, all joined, so that one check shows what
// to fix.
func (c Config) Validate() error {
	security := func() error { return c.Security.validate(c.Cluster) }
	var errs []error
	for _, check := range []func() error{c.Cluster.validate, c.Consensus.validate, c.Locks.validate, security, c.Log.validate} {
		errs = append(errs, check())
	}
	return errors.Join(errs...)
}

func (c Cluster) validate() error {
	// Every key's own error at once, so that --check shows all that is
	// wrong in one run; checks that compare keys run only on keys that
	// are well formed, and the peers are checked in order.
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	idErr, raftErr, apiErr := ValidNodeID(c.NodeID), ValidHostPort(c.RaftAddress), ValidHostPort(c.APIAddress)
	if idErr != nil {
		add("cluster.node_id: %w", idErr)
	}
	if raftErr != nil {
		add("cluster.raft_address: %w", raftErr)
	}
	if apiErr != nil {
		add("cluster.api_address: %w", apiErr)
	}
	if c.RaftListenAddress != "" {
		if err := ValidHostPort(c.RaftListenAddress); err != nil {
			add("cluster.raft_listen_address: %w (or leave it out to listen on cluster.raft_address)", err)
		} else if c.RaftListenAddress == c.APIAddress || c.RaftListenAddress == c.MetricsAddress {
			add("cluster.raft_listen_address: must differ from cluster.api_address and cluster.metrics_address")
		}
	}
	if c.MetricsAddress != "" {
		if err := ValidHostPort(c.MetricsAddress); err != nil {
			add("cluster.metrics_address: %w (or leave it out to serve no metrics)", err)
		} else if c.MetricsAddress == c.APIAddress {
			add("cluster.metrics_address: must differ from cluster.api_address")
		}
	}
	if raftErr == nil && apiErr == nil && c.APIAddress == c.RaftAddress {
		add("cluster.api_address: must differ from cluster.raft_address")
	}
	if c.DataDir == "" {
		add("cluster.data_dir: required: the directory for the Raft log and snapshots")
	}
	if c.Incarnation < 0 || c.Incarnation > MaxIncarnation {
		add("cluster.incarnation: must be within 0..%d, got %d", MaxIncarnation, c.Incarnation)
	}
	if _, err := ParseDeployment(c.Deployment); err != nil {
		errs = append(errs, err)
	}
	// A joiner learns the members from the cluster; the peers name this
	// node by its id and address, whose own errors come first. None at
	// all is for the start to judge, which knows whether the data
	// directory holds a member already (a restart needs none):
	// runtime.CheckPeers, PeersRequired.
	if !c.Join && len(c.Peers) > 0 && idErr == nil && raftErr == nil {
		if err := c.validatePeers(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PeersRequired is the refusal of a first start (a data directory that
// holds no member yet) with neither peers nor join. A restart needs
// neither: the members are in the data directory, as etcd ignores
// initial-cluster once its data directory holds a member.
func (c Cluster) PeersRequired() error {
	return fmt.Errorf("cluster.peers: required at a member's first start (the data directory %s holds no member yet), unless cluster.join is true: "+
		"list every initial member, this node included (%s: %s); or, for a member added with AddNode, start it with --join (cluster.join: true). "+
		"A restart on the data directory needs neither",
		c.DataDir, c.NodeID, c.RaftAddress)
}

// validatePeers checks the initial members, in order: the first thing
// wrong with them.
func (c Cluster) validatePeers() error {
	if len(c.Peers) > MaxMembers {
		return fmt.Errorf("cluster.peers: lists %d members; at most %d: every write waits for a majority, so more voters make each commit slower while 7 already survive 3 failures",
			len(c.Peers), MaxMembers)
	}
	if addr, ok := c.Peers[c.NodeID]; !ok {
		return fmt.Errorf("cluster.peers: must include this node (%s: %s)", c.NodeID, c.RaftAddress)
	} else if addr != c.RaftAddress {
		return fmt.Errorf("cluster.peers.%s: is %s but cluster.raft_address is %s: they must match", c.NodeID, addr, c.RaftAddress)
	}
	ids := map[uint64]string{}
	addrs := map[string]string{}
	for _, id := range sortedKeys(c.Peers) {
		addr := c.Peers[id]
		if err := ValidNodeID(id); err != nil {
			return fmt.Errorf("cluster.peers.%s: the node id %w", id, err)
		}
		if err := ValidHostPort(addr); err != nil {
			return fmt.Errorf("cluster.peers.%s: %w", id, err)
		}
		if other, dup := addrs[addr]; dup {
			return fmt.Errorf("cluster.peers.%s: %s is also the address of %s", id, addr, other)
		}
		addrs[addr] = id
		r := ReplicaID(id, 0)
		if other, dup := ids[r]; dup {
			return fmt.Errorf("cluster.peers.%s: its replica id collides with %s's: rename one of them", id, other)
		}
		ids[r] = id
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// MaxNodeIDBytes bounds a node id.
const MaxNodeIDBytes = 64

// ValidNodeID says what is wrong with a node id, if anything.
func ValidNodeID(id string) error {
	if id == "" {
		return errors.New("required: a name such as node-1")
	}
	if len(id) > MaxNodeIDBytes {
		return fmt.Errorf("is %d bytes: at most %d", len(id), MaxNodeIDBytes)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// ValidHostPort says what is wrong with a host:port address, if anything.
func ValidHostPort(s string) error {
	if s == "" {
		return errors.New("required: host:port, e.g. 127.0.0.1:7001")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v)", s, err)
	}
	if host == "" {
		return fmt.Errorf("%q has no host: write 127.0.0.1 or 0.0.0.0 explicitly", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: the port must be a number within 1..65535", s)
	}
	return nil
}

// MinRTTMs is the smallest Raft round trip the runtime configures: below it,
// leaders churn under load on this kind of disk (measured: docs/performance.md).
const MinRTTMs = 5

func (c Consensus) validate() error {
	// Every key's own error at once (see Cluster.validate).
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Algorithm != "raft" {
		add("consensus.algorithm: must be raft, got %q", c.Algorithm)
	}
	timeoutsOK := true
	if c.HeartbeatIntervalMs < MinRTTMs {
		add("consensus.heartbeat_interval_ms: must be at least %d, got %d", MinRTTMs, c.HeartbeatIntervalMs)
		timeoutsOK = false
	}
	if c.ElectionTimeoutMs < 10 {
		add("consensus.election_timeout_ms: must be at least 10, got %d", c.ElectionTimeoutMs)
		timeoutsOK = false
	}
	if c.ElectionTimeoutMs > 60_000 {
		add("consensus.election_timeout_ms: must be at most 60000, got %d", c.ElectionTimeoutMs)
		timeoutsOK = false
	}
	if _, hb, el := c.RTT(); timeoutsOK && el <= 2*hb {
		add("consensus.election_timeout_ms: must be more than twice consensus.heartbeat_interval_ms (%d), got %d",
			c.HeartbeatIntervalMs, c.ElectionTimeoutMs)
	}
	if c.Shards < 1 || c.Shards > MaxShards {
		hint := ""
		if c.Shards > MaxShards {
			hint = " (more shards are slower on one disk: see docs/runtime.md)"
		}
		add("consensus.shards: must be within 1..%d, got %d%s", MaxShards, c.Shards, hint)
	}
	if c.TickIntervalMs < 10 || c.TickIntervalMs > 1_000 {
		add("consensus.tick_interval_ms: must be within 10..1000 (log time may trail the leader's clock by at most 2 s), got %d", c.TickIntervalMs)
	}
	if c.SnapshotEntries < 10 {
		add("consensus.snapshot_entries: must be at least 10, got %d", c.SnapshotEntries)
	}
	if c.CompactionOverhead < 0 {
		add("consensus.compaction_overhead: must not be negative, got %d", c.CompactionOverhead)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 4096 {
		add("consensus.max_batch: must be within 1..4096, got %d", c.MaxBatch)
	}
	if c.RideAlongMs < 0 || c.RideAlongMs > MaxRideAlongMs {
		add("consensus.ride_along_ms: must be within 0..%d (0: never hold an acquire back), got %d", MaxRideAlongMs, c.RideAlongMs)
	}
	return errors.Join(errs...)
}

// RTT maps the timeouts to Dragonboat's settings: the round-trip unit in
// milliseconds (a tenth of the heartbeat, at least MinRTTMs, so that the
// election timeout is randomised finely) and the heartbeat and election
// timeouts in that unit.
func (c Consensus) RTT() (rttMs, heartbeatRTT, electionRTT uint64) {
	rtt := max(c.HeartbeatIntervalMs/10, MinRTTMs)
	hb := max((c.HeartbeatIntervalMs+rtt/2)/rtt, 1)
	el := max((c.ElectionTimeoutMs+rtt/2)/rtt, 1)
	return uint64(rtt), uint64(hb), uint64(el)
}

func (l Locks) validate() error {
	if l.DefaultTTLSeconds < 1 || l.DefaultTTLSeconds > 86400 {
		return fmt.Errorf("locks.default_ttl_seconds: must be within 1..86400, got %d", l.DefaultTTLSeconds)
	}
	if l.MaxWaitTimeSeconds < 0 || l.MaxWaitTimeSeconds > 3600 {
		return fmt.Errorf("locks.max_wait_time_seconds: must be within 0..3600, got %d", l.MaxWaitTimeSeconds)
	}
	if l.CleanupIntervalSeconds < 1 || l.CleanupIntervalSeconds > 3600 {
		return fmt.Errorf("locks.cleanup_interval_seconds: must be within 1..3600, got %d", l.CleanupIntervalSeconds)
	}
	return nil
}

// Deprecations names the keys c sets that no longer do anything, each with
// what to do instead; the server logs them as warnings when it starts.
func (c Config) Deprecations() []string {
	var out []string
	if c.Locks.CleanupIntervalSeconds != DefaultCleanupIntervalSeconds {
		out = append(out, fmt.Sprintf("locks.cleanup_interval_seconds is %d, but the key is deprecated and has no effect: "+
			"leases, waits and lock-delays end exactly when log time reaches them, at the leader's ticks "+
			"(consensus.tick_interval_ms, %d ms); remove the key", c.Locks.CleanupIntervalSeconds, c.Consensus.TickIntervalMs))
	}
	return out
}

// MaxIncarnation bounds cluster.incarnation: it takes the low byte of the
// replica id.
const MaxIncarnation = 255

// ReplicaID maps a node id to its Raft replica id: the 64-bit FNV-1a hash of
// the id, with the low byte replaced by the incarnation (how often the id was
// removed and added back, since Raft never reuses a removed replica id), kept
// within 1..2^63-1. Every member computes the same id from the same name.
func ReplicaID(nodeID string, incarnation int) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(nodeID); i++ {
		h ^= uint64(nodeID[i])
		h *= prime
	}
	h &= 1<<63 - 1
	h = h&^0xff | uint64(incarnation&0xff)
	if h>>8 == 0 {
		h |= 1 << 8 // never 0 and never a small id another scheme might use
	}
	return h
}
