package main

import (
	"io"
	"strings"
	"testing"
)

func load(t *testing.T, args ...string) (cfgErr error, f *serveFlags) {
	t.Helper()
	f = newServeFlags(io.Discard)
	if err := f.fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	_, err := loadConfig(f)
	return err, f
}

func TestFlagsOverrideKeys(t *testing.T) {
	f := newServeFlags(io.Discard)
	args := []string{"--config", "../../config/node2.yaml", "--api-address", "127.0.0.1:18082", "--max-wait-time-seconds", "5",
		"--peers", "node-1=127.0.0.1:7001,node-2=127.0.0.1:7002,node-3=127.0.0.1:7003", "--join", "--incarnation", "2"}
	if err := f.fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Cluster
	if c.NodeID != "node-2" || c.APIAddress != "127.0.0.1:18082" || !c.Join || c.Incarnation != 2 || len(c.Peers) != 3 ||
		cfg.Locks.MaxWaitTimeSeconds != 5 {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
}

func TestDevConfig(t *testing.T) {
	f := newServeFlags(io.Discard)
	if err := f.fs.Parse([]string{"--dev", "--node-id", "solo", "--raft-address", "127.0.0.1:17001", "--data-dir", t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Peers["solo"] != "127.0.0.1:17001" || len(cfg.Cluster.Peers) != 1 {
		t.Fatalf("dev peers follow the flags: %v", cfg.Cluster.Peers)
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "give --config FILE"},
		{[]string{"--dev", "--config", "x.yaml"}, "exclude each other"},
		{[]string{"--dev", "--shards", "two"}, "--shards (consensus.shards)"},
		{[]string{"--dev", "--join=maybe"}, "--join (cluster.join)"},
		{[]string{"--dev", "--log-level", "bogus"}, `--log-level (log.level): "bogus" is not a level`},
		{[]string{"--dev", "--log-level", ""}, `--log-level (log.level): "" is not a level`},
		{[]string{"--dev", "--log-format", "xml"}, `--log-format (log.format): "xml" is not a format`},
		{[]string{"--dev", "--data-dir", "/tmp/x", "--election-timeout-ms", "100"}, "consensus.election_timeout_ms"},
		{[]string{"--config", "../../config/node1.yaml", "--raft-address", "127.0.0.1:9999"}, "cluster.peers.node-1"},
	} {
		err, _ := load(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}
