package runtime

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lockstepd/lockstep/config"
)

// nodeIDFile records, in the data directory, the node id of the member
// that runs on it. A member started with another member's data
// directory under its own raft_address was refused as the owner of that
// directory "with a changed address", with the advice to remove and add
// back the member starting, a healthy one; under the same address it
// would have found no Raft state of its own replica id there and made a
// new one beside the other's. Start and CheckDataDir refuse it, naming
// whose the directory is.
const nodeIDFile = "lockstep-node-id"

// dirOwner is the node id of the member whose data directory dir is: its
// record, or, for a directory made before the record, what the other
// records say (the peers it bootstrapped with, at the address Dragonboat
// recorded; its own replica id in the book of peers' logs, named by
// peers). known is false when nothing says.
func dirOwner(dir, addr string, peers map[string]string) (nodeID string, known bool, err error) {
	b, found, err := readOptional(filepath.Join(dir, nodeIDFile))
	if err != nil {
		return "", false, err
	}
	if found {
		id := strings.TrimSpace(string(b))
		if config.ValidNodeID(id) != nil {
			return "", false, fmt.Errorf("runtime: %s does not hold a node id (%q): restore it (it names the member of this "+
				"data directory), or replace the member (docs/operations.md, Membership changes)", filepath.Join(dir, nodeIDFile), b)
		}
		return id, true, nil
	}
	if b, found, _ := readOptional(filepath.Join(dir, bootPeersFile)); found && addr != "" {
		for _, p := range strings.Split(strings.TrimSpace(string(b)), ",") {
			if id, a, ok := strings.Cut(p, "="); ok && strings.EqualFold(a, addr) {
				return id, true, nil
			}
		}
	}
	self, found, err := readLogID(dir)
	if err != nil || !found {
		return "", false, err
	}
	f, err := os.Open(filepath.Join(dir, peerLogsFile))
	if err != nil {
		return "", false, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if replica, log, ok := parsePeerLog(sc.Text()); ok && log == self {
			if id, ok := peerName(peers, replica); ok {
				return id, true, nil
			}
		}
	}
	return "", false, nil
}

// checkNodeID refuses cfg's start on a data directory of another node id.
func checkNodeID(dir string, cfg config.Config) error {
	rec, _, err := readDragonboatRecord(dir)
	if err != nil {
		return err
	}
	peers := map[string]string{cfg.Cluster.NodeID: cfg.Cluster.RaftAddress}
	for id, a := range cfg.Cluster.Peers {
		peers[id] = a
	}
	owner, known, err := dirOwner(dir, rec.Address, peers)
	if err != nil || !known || owner == cfg.Cluster.NodeID {
		return err
	}
	ran := ""
	if rec.Address != "" {
		ran = fmt.Sprintf(" (it ran with cluster.raft_address %s)", rec.Address)
	}
	return fmt.Errorf("cluster.data_dir: %s is %s's data directory%s, not %s's: give %s its own cluster.data_dir (--data-dir), "+
		"the one it ran on, or an empty one for a new member; nothing about %s or %s needs removing or adding",
		dir, owner, ran, cfg.Cluster.NodeID, cfg.Cluster.NodeID, owner, cfg.Cluster.NodeID)
}

// recordNodeID writes the record once the member started, when there is
// none (a new directory, or one from before the record).
func (n *Node) recordNodeID(dir string) error {
	if _, found, err := readOptional(filepath.Join(dir, nodeIDFile)); found || err != nil {
		return err
	}
	return writeDurably(dir, nodeIDFile, n.cfg.Cluster.NodeID+"\n")
}
