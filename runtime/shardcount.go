package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// shardCountFile records, in the data directory, the shard count the node
// was first started with. Names are spread over shards by a hash modulo
// the count, so a different count would look for every name in another
// shard than the one holding its state: Start refuses it.
const shardCountFile = "lockstep-shards"

func (n *Node) checkShardCount(dir string) error {
	want := len(n.shards)
	path := filepath.Join(dir, shardCountFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		had, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr != nil {
			return fmt.Errorf("runtime: %s does not hold a shard count (%q): restore it, or wipe cluster.data_dir and rejoin", path, b)
		}
		if had != want {
			return fmt.Errorf("consensus.shards: %s was created with %d shards, got %d: a cluster's shard count cannot change "+
				"(names are spread by hash); start with shards: %d", dir, had, want, had)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	// No record: a new directory, or one written before the record existed,
	// which had one shard (Dragonboat's shard 1 is our shard 0).
	if n.nh.HasNodeInfo(1, n.replicaID) && want != 1 {
		return fmt.Errorf("consensus.shards: %s holds a cluster made with 1 shard, got %d: a cluster's shard count cannot change "+
			"(names are spread by hash); start with shards: 1", dir, want)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(want)+"\n"), 0o640); err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	return nil
}
