package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/runtime/transport"
)

// bootPeersFile records the initial members a member bootstrapped its
// cluster with (transport.CanonicalPeers of cluster.peers at its first
// start), which its Raft hello carries: the members that bootstrap a
// cluster must agree on them, or one holds a peer at another address in
// the first entries of its log, and Dragonboat panics the moment that
// peer's own address reaches it (runtime/transport, the peers). Dragonboat
// keeps its own copy, which Lockstep cannot read before it listens.
const bootPeersFile = "lockstep-bootstrap-peers"

// dirFresh says whether Dragonboat never ran in dir: a start on it with
// peers bootstraps its member. (Not whether dir is empty: a disk's mount
// point holds lost+found.)
func dirFresh(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, dragonboatFlagFile))
	return errors.Is(err, fs.ErrNotExist)
}

// bootPeers returns the peers dir's member bootstrapped with, for its
// hello: the record, or, on a first start that bootstraps (fresh, with
// peers, not joining), the configuration's, recorded durably before
// Dragonboat runs, since a peer may dial as soon as it listens. "" for a
// member that joined, or whose directory predates the record.
func bootPeers(dir string, fresh bool, c config.Cluster) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, bootPeersFile))
	switch {
	case err == nil:
		return strings.TrimSpace(string(b)), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("cluster.data_dir: %w", err)
	case !fresh || c.Join || len(c.Peers) == 0:
		return "", nil
	}
	peers := transport.CanonicalPeers(c.Peers)
	if err := writeDurably(dir, bootPeersFile, peers+"\n"); err != nil {
		return "", err
	}
	return peers, nil
}

// checkBootPeers is called as a shard bootstraps with the configuration's
// peers: they must be those the hello carries. They differ only when an
// earlier first start on this directory stopped before its member was made
// (a port taken, say), and the peers were changed since.
func (n *Node) checkBootPeers() error {
	peers := transport.CanonicalPeers(n.cfg.Cluster.Peers)
	if n.bootPeers == "" || n.bootPeers == peers {
		return nil
	}
	return fmt.Errorf("runtime: cluster.data_dir %s holds no member yet, but an earlier first start on it recorded cluster.peers %s, "+
		"and this one has %s: empty cluster.data_dir (it holds nothing of the cluster's yet) and start again",
		n.cfg.Cluster.DataDir, n.bootPeers, peers)
}
