package runtime

import "fmt"

// incarnationFile records, in the data directory, the incarnation the
// node runs as. A member removed and added back gets a new replica id
// (config.ReplicaID of its node id and incarnation); started again under
// another incarnation than the one it was added with, it finds no Raft
// state of its own in the directory and bootstraps anew from its peers
// list, with an empty log: alone it cannot catch up, and a majority
// restarted that way make a new, empty cluster whose fencing tokens start
// again below the old ones. Start refuses it.
const incarnationFile = "lockstep-incarnation"

// CheckIncarnationRecord reads the incarnation dir's member ran as, when it
// recorded one, and refuses another: what Start refuses, told before
// anything starts (lockstep serve, and --check). found says a record was
// there.
func CheckIncarnationRecord(dir string, incarnation int) (found bool, err error) {
	had, found, err := readRecord(dir, incarnationFile, "an incarnation")
	if err != nil || !found {
		return found, err
	}
	if had != incarnation {
		return true, fmt.Errorf("cluster.incarnation: %s belongs to incarnation %d of this node, got %d: a member added back "+
			"runs as the incarnation AddNode gave it at every later start too; start with --incarnation %d (cluster.incarnation: %d)",
			dir, had, incarnation, had, had)
	}
	return true, nil
}

// recordIncarnation writes the record once the member started: a new
// directory, or one from before the record, which is taken to hold the
// incarnation it started with now.
func (n *Node) recordIncarnation(dir string) error {
	if found, err := CheckIncarnationRecord(dir, n.cfg.Cluster.Incarnation); found || err != nil {
		return err
	}
	return writeRecord(dir, incarnationFile, n.cfg.Cluster.Incarnation)
}
