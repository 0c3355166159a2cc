package runtime

import (
	"fmt"
	"path/filepath"

	"github.com/lockstepd/lockstep/config"
)

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

// WithRecordedIncarnation is cfg running as the incarnation its data
// directory records, when cfg gives none (0) and the record says another:
// a member added back runs as its new incarnation at every start, and a
// restart that did not repeat --incarnation was refused, which in a
// rolling restart of a grown cluster cost a reviewer the quorum. Adopting
// the record is safe where another incarnation would not be: the record
// names the Raft state the directory holds. An incarnation given (not 0)
// is kept, and CheckIncarnationRecord refuses it when it differs. adopted
// says the record was taken.
func WithRecordedIncarnation(cfg config.Config) (out config.Config, adopted bool, err error) {
	if cfg.Cluster.Incarnation != 0 || cfg.Cluster.DataDir == "" {
		return cfg, false, nil
	}
	dir, err := filepath.Abs(cfg.Cluster.DataDir)
	if err != nil {
		return cfg, false, fmt.Errorf("cluster.data_dir: %w", err)
	}
	had, found, err := readRecord(dir, incarnationFile, "an incarnation")
	if err != nil || !found || had == 0 {
		return cfg, false, err
	}
	cfg.Cluster.Incarnation = had
	return cfg, true, nil
}

// HasRun says whether a member ran on dir: it recorded its incarnation
// there. A start on it is a restart, which reads neither cluster.peers nor
// cluster.join (its members are in its log).
func HasRun(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	_, found, err := readRecord(abs, incarnationFile, "an incarnation")
	return err == nil && found
}
