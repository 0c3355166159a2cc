package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// serveFlags are the command line of `lockstep serve`.
type serveFlags struct {
	configFile string
	dev        bool
	// level is the log level in force, which a reload sets from the
	// configuration (log.level); nil in tests that give no logger.
	level        *slog.LevelVar
	drainTimeout time.Duration
	pprof        bool
	check        bool
	madeDir      string // the data directory --dev made, removed if the node cannot start
	// readAtStart is the configuration as read at start, the flags
	// applied: a reload compares the file with it to say what it leaves
	// for a restart.
	readAtStart config.Config
	dataKept    bool // the data directory held data before this start (the banner says so)
	// material is the security files loadConfig read and checked, which
	// the node puts in force as they are (startSecurity); unread are the
	// data directory's records loadConfig could not read (--check warns).
	material *config.Material
	unread   []error
	// overrides are the flags named after configuration keys; only those
	// given on the command line are applied, over the file's values.
	overrides []override
	// only, when set, names the key flags this command takes (the others
	// are not registered); nil: all of them.
	only map[string]bool
	fs   *flag.FlagSet
}

// override is one flag that sets one configuration key.
type override struct {
	flag, key string
	apply     func(c *config.Config, v string) error
}

func newServeFlags(stderr io.Writer) *serveFlags {
	f := newConfigFlags("lockstep serve", stderr, nil)
	fs := f.fs
	fs.BoolVar(&f.dev, "dev", false, "run one node on 127.0.0.1 with the defaults (API :8080, metrics :9090, Raft :7001)\nin a fresh temporary data directory unless --data-dir names one")
	f.add("log-format", "log.format", "log format: text (the default) or json", false,
		func(c *config.Config, v string) error {
			if v != "text" && v != "json" {
				return fmt.Errorf("--log-format (log.format): %q is not a format: use text or json", v)
			}
			c.Log.Format = v
			return nil
		})
	f.add("log-level", "log.level", "log level: debug, info (the default), warn or error; a reload (SIGHUP) puts the file's in force unless this flag gave it", false,
		func(c *config.Config, v string) error {
			// Checked here so that the error names the flag, not only the key it sets.
			if _, err := (config.Log{Level: v}).SlogLevel(); err != nil || v == "" {
				return fmt.Errorf("--log-level (log.level): %q is not a level: use debug, info, warn or error", v)
			}
			c.Log.Level = v
			return nil
		})
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 15*time.Second,
		"after SIGTERM, how long in-flight requests may take before connections are closed")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on the metrics address (for profiling); like /metrics it asks for no credentials, "+
		"even with authentication on, and shows every goroutine's stack and the command line: keep that address on a network only operators reach")
	fs.BoolVar(&f.check, "check", false, "check the configuration (the file, the flags, the security files, the data directory as this user may read it) and exit: 0 when it would start, 2 with every error")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveHelp)
		fs.PrintDefaults()
	}
	return f
}

const serveHelp = `Usage: lockstep serve --config FILE [flags]
       lockstep serve --dev [--data-dir DIR] [flags]

Runs a member of a cluster, as its configuration file names it (config/*.yaml;
each flag below that names a key overrides it), or one node on 127.0.0.1 with
the defaults (--dev). SIGHUP reloads the security files and the log level;
SIGTERM drains and stops. docs/operations.md is the operator's guide.

Examples:
  lockstep serve --dev
  lockstep serve --dev --data-dir ./data --api-address 127.0.0.1:18080
  lockstep serve --config /etc/lockstep/node1.yaml
  lockstep serve --config node1.yaml --check

Flags:
`

// newConfigFlags is the flag set of a command that reads a member's
// configuration as serve does (serve, snapshot restore): --config and the
// flags named after configuration keys, all of them (only nil) or those
// only names.
func newConfigFlags(name string, stderr io.Writer, only []string) *serveFlags {
	f := &serveFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	if only != nil {
		f.only = map[string]bool{}
		for _, n := range only {
			f.only[n] = true
		}
	}
	fs := f.fs
	fs.SetOutput(stderr)
	fs.StringVar(&f.configFile, "config", "", "the YAML configuration `file` (see config/*.yaml)")

	str := func(name, key, usage string, set func(c *config.Config, v string)) {
		f.add(name, key, usage, false, func(c *config.Config, v string) error { set(c, v); return nil })
	}
	num := func(name, key, usage string, set func(c *config.Config, v int)) {
		f.add(name, key, usage, false, func(c *config.Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("--%s (%s): %q is not a whole number", name, key, v)
			}
			set(c, n)
			return nil
		})
	}
	str("node-id", "cluster.node_id", "this node's id", func(c *config.Config, v string) { c.Cluster.NodeID = v })
	str("raft-address", "cluster.raft_address", "host:port for Raft", func(c *config.Config, v string) { c.Cluster.RaftAddress = v })
	str("api-address", "cluster.api_address", "host:port for Connect, gRPC, REST, health and status",
		func(c *config.Config, v string) { c.Cluster.APIAddress = v })
	str("metrics-address", "cluster.metrics_address", "host:port for /metrics; \"\" serves none",
		func(c *config.Config, v string) { c.Cluster.MetricsAddress = v })
	str("data-dir", "cluster.data_dir", "the data directory", func(c *config.Config, v string) { c.Cluster.DataDir = v })
	f.add("peers", "cluster.peers", "the initial members as id=host:port,id=host:port", false, func(c *config.Config, v string) error {
		peers, err := parsePeers(v)
		if err != nil {
			return fmt.Errorf("--peers (cluster.peers): %w", err)
		}
		c.Cluster.Peers = peers
		return nil
	})
	f.add("join", "cluster.join", "join a running cluster that has added this node", true, func(c *config.Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("--join (cluster.join): %q is not true or false", v)
		}
		c.Cluster.Join = b
		return nil
	})
	num("incarnation", "cluster.incarnation", "the incarnation AddNode reported for a node added again",
		func(c *config.Config, v int) { c.Cluster.Incarnation = v })
	str("deployment", "cluster.deployment", "with --join, the deployment of a restored cluster that 'lockstep cluster add' printed",
		func(c *config.Config, v string) { c.Cluster.Deployment = v })
	num("election-timeout-ms", "consensus.election_timeout_ms", "Raft election timeout",
		func(c *config.Config, v int) { c.Consensus.ElectionTimeoutMs = v })
	num("heartbeat-interval-ms", "consensus.heartbeat_interval_ms", "Raft heartbeat interval",
		func(c *config.Config, v int) { c.Consensus.HeartbeatIntervalMs = v })
	num("shards", "consensus.shards", "Raft groups", func(c *config.Config, v int) { c.Consensus.Shards = v })
	num("tick-interval-ms", "consensus.tick_interval_ms", "how late an expiry (session, wait) may fire past its deadline when the leader is idle, 10..1000; an idle cluster with nothing timed writes nothing",
		func(c *config.Config, v int) { c.Consensus.TickIntervalMs = v })
	num("snapshot-entries", "consensus.snapshot_entries", "entries between snapshots",
		func(c *config.Config, v int) { c.Consensus.SnapshotEntries = v })
	num("compaction-overhead", "consensus.compaction_overhead", "entries kept behind a snapshot",
		func(c *config.Config, v int) { c.Consensus.CompactionOverhead = v })
	num("max-batch", "consensus.max_batch", "client commands per Raft entry",
		func(c *config.Config, v int) { c.Consensus.MaxBatch = v })
	num("ride-along-ms", "consensus.ride_along_ms", "longest a blocking acquire waits to share an entry (0: never)",
		func(c *config.Config, v int) { c.Consensus.RideAlongMs = v })
	num("default-ttl-seconds", "locks.default_ttl_seconds", "lease of a session made for a request that names none",
		func(c *config.Config, v int) { c.Locks.DefaultTTLSeconds = v })
	num("max-wait-time-seconds", "locks.max_wait_time_seconds", "the longest finite wait, on every API (a longer one is clamped); 0: every request tries once",
		func(c *config.Config, v int) { c.Locks.MaxWaitTimeSeconds = v })
	f.add("insecure", "security.insecure", "serve plaintext on addresses that are not loopback (warned about at every start)", true,
		func(c *config.Config, v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("--insecure (security.insecure): %q is not true or false", v)
			}
			c.Security.Insecure = b
			return nil
		})
	num("cleanup-interval-seconds", "locks.cleanup_interval_seconds", "deprecated, no effect",
		func(c *config.Config, v int) { c.Locks.CleanupIntervalSeconds = v })
	return f
}

// add registers a flag that overrides one configuration key, unless the
// command takes only others.
func (f *serveFlags) add(name, key, usage string, isBool bool, apply func(c *config.Config, v string) error) {
	if f.only != nil && !f.only[name] {
		return
	}
	f.overrides = append(f.overrides, override{name, key, apply})
	f.fs.Var(&overrideValue{isBool: isBool}, name, usage+" ("+key+")")
}

// overrideValue keeps a flag's text until the configuration is loaded.
type overrideValue struct {
	v      string
	isBool bool
}

func (o *overrideValue) String() string     { return o.v }
func (o *overrideValue) Set(v string) error { o.v = v; return nil }
func (o *overrideValue) IsBoolFlag() bool   { return o.isBool }

// parsePeers reads id=host:port,id=host:port.
func parsePeers(v string) (map[string]string, error) {
	peers := map[string]string{}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%q is not id=host:port", p)
		}
		if _, dup := peers[id]; dup {
			return nil, fmt.Errorf("%s is listed twice", id)
		}
		peers[id] = addr
	}
	return peers, nil
}

// applyOverrides sets the keys whose flags were given, in command-line
// order.
func (f *serveFlags) applyOverrides(c *config.Config) error {
	byName := map[string]override{}
	for _, o := range f.overrides {
		byName[o.flag] = o
	}
	var err error
	f.fs.Visit(func(fl *flag.Flag) {
		o, ok := byName[fl.Name]
		if !ok || err != nil {
			return
		}
		err = o.apply(c, fl.Value.String())
	})
	return err
}

// given says whether a flag was on the command line.
func (f *serveFlags) given(name string) bool { return flagGiven(f.fs, name) }

// flagGiven says whether the flag name was on fs's command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}
