package runtime

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/lni/dragonboat/v4/raftpb"

	"github.com/lockstepd/lockstep/config"
)

// dragonboatFlagFile is where Dragonboat records, in the data directory,
// the Raft address, host name and deployment the directory was made under
// (its internal/server.Env.check refuses a start under others); it writes
// it the first time it runs there (or a restore imports into it).
const dragonboatFlagFile = "dragonboat.ds"

// CheckDataDir makes, without writing anything, every check Start makes of
// cfg's data directory before Dragonboat runs, and those Dragonboat makes
// of its own record, so that lockstep serve --check refuses what a start
// would refuse, with the same error: that this user may read and write the
// directory (or make it), that it belongs to a member that ran with this
// cluster.raft_address on this host, its incarnation and shard count
// records, and that its log id, deployment and book of peers' logs are
// whole. A directory that does not exist passes (a start makes it). An
// error wrapping fs.ErrPermission says that this user may not read or
// write the directory (--check often runs as another user than the
// service: then it was not checked).
func CheckDataDir(cfg config.Config) error {
	dir, err := filepath.Abs(cfg.Cluster.DataDir)
	if err != nil {
		return fmt.Errorf("cluster.data_dir: %w", err)
	}
	if err := checkDataDirAccess(dir); err != nil {
		return err
	}
	if err := checkRestoreFinished(dir); err != nil {
		return err
	}
	// The member's identity first: in another member's directory, the
	// other records' complaints would mislead; and whose directory it is
	// before at which address it ran, whose advice is for the owner.
	if err := checkNodeID(dir, cfg); err != nil {
		return err
	}
	if err := checkDragonboatRecord(dir, cfg); err != nil {
		return err
	}
	if _, err := CheckIncarnationRecord(dir, cfg.Cluster.Incarnation); err != nil {
		return err
	}
	if _, err := CheckShardRecord(dir, cfg.Consensus.Shards); err != nil {
		return err
	}
	if _, _, err := readLogID(dir); err != nil {
		return err
	}
	if _, err := openPeerLogs(dir); err != nil {
		return err
	}
	deployment, err := readDeployment(dir)
	if err != nil {
		return err
	}
	return checkDragonboatDeployment(dir, deployment)
}

// readLogID reads the log id dir's member records (logID draws one when
// there is none).
func readLogID(dir string) (id uint64, found bool, err error) {
	return readHexRecord(dir, logIDFile, "a log id", "a member's data directory was damaged; replace the member "+
		"(remove it, wipe cluster.data_dir, add it back: docs/operations.md, Membership changes)")
}

// checkDataDirAccess says whether this user may read and write dir and
// everything in it, as a start must, or make dir when it does not exist:
// a start as another user than the directory's owner failed half-way,
// inside Dragonboat or at the first record written.
func checkDataDirAccess(dir string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Start makes it, and its parents: the nearest that exists must
		// let this user make a directory in it.
		for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
			st, err := os.Stat(p)
			switch {
			case errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p):
				continue
			case err != nil:
				return accessDenied(dir, p, "look into", err)
			case !st.IsDir():
				return fmt.Errorf("cluster.data_dir %s: %s is not a directory", dir, p)
			}
			if err := mayWrite(p); err != nil {
				return accessDenied(dir, p, "make a directory in", err)
			}
			return nil
		}
	case err != nil:
		if errors.Is(err, fs.ErrPermission) {
			if p := barredOn(dir); p != "" {
				return accessDenied(dir, p, "pass through", err)
			}
		}
		return accessDenied(dir, dir, "look at", err)
	case !st.IsDir():
		return fmt.Errorf("cluster.data_dir %s: is not a directory", dir)
	}
	return walkAccess(dir)
}

// barredOn is the directory above dir, nearest the root, that this user
// may not pass through, "" when none is: a data directory the user owns is
// still out of its reach under a parent of mode 0700 (a home directory, a
// volume mounted for root), and the refusal must name that parent, not
// advise a chown of the data directory.
func barredOn(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	var up []string
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		up = append(up, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(up) - 1; i >= 0; i-- {
		if mayEnter(up[i]) != nil {
			return up[i]
		}
	}
	return ""
}

// walkAccess checks that this user may read and write the data directory
// and what Lockstep and Dragonboat keep in it: their records at its top,
// and Dragonboat's tree under this host's name (its log and snapshots).
// Other entries are left alone, as a start leaves them: a lost+found of
// the file system the directory is the root of, root's and 0700, must not
// refuse a member that runs as its own user.
func walkAccess(dir string) error {
	if err := mayReadWrite(dir, true); err != nil {
		return accessDenied(dir, dir, "read and write", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return accessDenied(dir, dir, "read", err)
	}
	host, _ := os.Hostname()
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch name := e.Name(); {
		case e.IsDir() && name == host:
			if err := walkTree(dir, p); err != nil {
				return err
			}
		case !e.IsDir() && (strings.HasPrefix(name, "lockstep-") || name == dragonboatFlagFile || name == "LOCK" || name == "NODEHOST.ID"):
			if err := mayReadWrite(p, false); err != nil {
				return accessDenied(dir, p, "read and write", err)
			}
		}
	}
	return nil
}

// walkTree checks that this user may read and write every file and
// directory under path (path included).
func walkTree(dir, path string) error {
	if err := mayReadWrite(path, true); err != nil {
		return accessDenied(dir, path, "read and write", err)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return accessDenied(dir, path, "read", err)
	}
	for _, e := range entries {
		p := filepath.Join(path, e.Name())
		if e.IsDir() {
			if err := walkTree(dir, p); err != nil {
				return err
			}
			continue
		}
		if err := mayReadWrite(p, false); err != nil {
			return accessDenied(dir, p, "read and write", err)
		}
	}
	return nil
}

// accessDenied is the refusal of a data directory this user may not use:
// who this user is, whose the path is, and the ways out. It wraps err, so
// that a permission error is one (fs.ErrPermission).
func accessDenied(dir, path, what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is named already
	}
	where := path
	if path != dir {
		where = path + " (in cluster.data_dir)"
		if !strings.HasPrefix(path, dir+string(filepath.Separator)) {
			where = path
		}
	}
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("cluster.data_dir %s: %s: %w", dir, where, err)
	}
	owner := ""
	if o := ownerOf(path); o != "" {
		owner = ", which belongs to " + o
	}
	switch what {
	case "make a directory in":
		return fmt.Errorf("cluster.data_dir %s: this user (%s) may not %s %s%s: %w; the service's user must own the data directory: "+
			"make it (mkdir -p %s) and chown it to that user", dir, currentUser(), what, where, owner, err, dir)
	case "pass through":
		return fmt.Errorf("cluster.data_dir %s: this user (%s) may not %s %s, on the way to it%s: %w; "+
			"let that user pass through it (its execute bit: chmod o+x %s, or a group the user is in), "+
			"or put the data directory where that user may reach it", dir, currentUser(), what, where, owner, err, where)
	}
	return fmt.Errorf("cluster.data_dir %s: this user (%s) may not %s %s%s: %w; the service's user must own the data directory: "+
		"chown -R it to that user, or run the service as the directory's owner", dir, currentUser(), what, where, owner, err)
}

// checkDragonboatRecord refuses, as Dragonboat would, a data directory
// made under another cluster.raft_address or on another host, saying
// which, and what to do. A directory without the record passes.
func checkDragonboatRecord(dir string, cfg config.Config) error {
	s, found, err := readDragonboatRecord(dir)
	if err != nil || !found {
		return err
	}
	same := func(a, b string) bool { return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b)) }
	if addr := cfg.Cluster.RaftAddress; !same(s.Address, addr) {
		return notTheOwner(dir, cfg.Cluster.NodeID, s.Address, addr)
	}
	if host, err := os.Hostname(); err == nil && s.Hostname != "" && !same(s.Hostname, host) {
		return fmt.Errorf("cluster.data_dir %s was made on the host %q, and this host is %q: a member's data directory is bound to its host name "+
			"(Dragonboat refuses it on another): start it on a host named %s (in a container, docker run --hostname %s), "+
			"or replace the member (remove it, add it back, start it on an empty data directory: docs/operations.md, Membership changes)",
			dir, s.Hostname, host, s.Hostname, s.Hostname)
	}
	return nil
}

// notTheOwner is the refusal of a start at addr on a data directory made
// by a member that ran at had.
func notTheOwner(dir, nodeID, had, addr string) error {
	return fmt.Errorf("cluster.raft_address: not the owner of the data directory: %s belongs to the member that ran with cluster.raft_address %s, "+
		"and this start has %s. If %s is a mistake, start with cluster.raft_address: %s (--raft-address %s); "+
		"if only where this member listens changed (a proxy, a NAT), keep raft_address %s and set cluster.raft_listen_address. "+
		"A member does not move to another address with its data directory: remove it (lockstep cluster remove %s), "+
		"add it back at the new address (lockstep cluster add %s %s, which answers the incarnation N to start with), "+
		"and start it on an empty data directory with --join --incarnation N (docs/operations.md, Membership changes, "+
		"\"Move a member to another Raft address\"); a member started on an empty data directory without being removed and added back "+
		"is refused by its peers as one that lost its log",
		dir, had, addr, addr, had, had, had, nodeID, nodeID, addr)
}

// checkDragonboatDeployment refuses a data directory whose Dragonboat
// record names another deployment than the member's (readDeployment):
// Dragonboat would refuse it, saying only "deployment ID changed".
func checkDragonboatDeployment(dir string, deployment uint64) error {
	s, found, err := readDragonboatRecord(dir)
	if err != nil || !found || s.DeploymentId == 0 || s.DeploymentId == deployment {
		return err
	}
	return fmt.Errorf("runtime: the data directory %s was made under the Raft deployment %016x, and its member runs under %016x "+
		"(its %s, or Lockstep's own without one): the data directory was damaged, or mixes two members' files; "+
		"restore the member again (docs/operations.md, Backup and restore), or replace it (docs/operations.md, Membership changes)",
		dir, s.DeploymentId, deployment, deploymentFile)
}

// readDragonboatRecord reads Dragonboat's record of dir (its flag file:
// an MD5-derived checksum, then the status), found false when there is
// none. One that does not check out is an error: Dragonboat panics on it.
func readDragonboatRecord(dir string) (s raftpb.RaftDataStatus, found bool, err error) {
	path := filepath.Join(dir, dragonboatFlagFile)
	b, found, err := readOptional(path)
	if !found || err != nil {
		return s, found, err
	}
	damaged := fmt.Errorf("runtime: %s is not Dragonboat's record of the data directory (damaged): restore it, "+
		"or replace the member (remove it, wipe cluster.data_dir, add it back: docs/operations.md, Membership changes)", path)
	body, err := flagBody(b)
	if err != nil {
		return s, true, damaged
	}
	if err := s.Unmarshal(body); err != nil {
		return s, true, damaged
	}
	return s, true, nil
}
