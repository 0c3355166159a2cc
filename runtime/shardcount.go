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

// CheckShardRecord reads the shard count dir was first started with, when
// it recorded one, and refuses another count: what Start refuses, told
// before anything starts (lockstep serve --check). found says a record
// was there.
func CheckShardRecord(dir string, shards int) (found bool, err error) {
	had, found, err := readRecord(dir, shardCountFile, "a shard count")
	if err != nil || !found {
		return found, err
	}
	if had != shards {
		return true, shardCountChanged(dir, had, shards)
	}
	return true, nil
}

// shardCountChanged is the refusal of a start with want shards on a data
// directory made with had: both counts, the key, and the two ways out.
func shardCountChanged(dir string, had, want int) error {
	return fmt.Errorf("consensus.shards: the data directory %s was made with %s, and this start asks for %d: "+
		"a cluster's shard count cannot change (a name's shard is a hash of the name modulo the count); "+
		"set consensus.shards: %d (--shards %d), or, to run %s, start a new cluster with every member on an empty data directory",
		dir, countOf(had, "shard"), want, had, had, countOf(want, "shard"))
}

// countOf is n and noun, plural unless n is 1.
func countOf(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// readOptional reads a data directory's record at path: found is false
// when there is none, and another failure to read it is the error.
func readOptional(path string) (b []byte, found bool, err error) {
	b, err = os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("cluster.data_dir: %w", err)
	}
	return b, true, nil
}

// readRecord reads a number a data directory records about its member
// (the shard count, the incarnation): found is false when there is no
// record; one that is not a number is an error saying what to do.
func readRecord(dir, file, what string) (v int, found bool, err error) {
	path := filepath.Join(dir, file)
	b, found, err := readOptional(path)
	if !found || err != nil {
		return 0, found, err
	}
	v, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if perr != nil {
		return 0, true, fmt.Errorf("runtime: %s does not hold %s (%q): restore it, or wipe cluster.data_dir and add the member back", path, what, b)
	}
	return v, true, nil
}

// writeRecord writes a data directory's record of v, whole or not at all.
func writeRecord(dir, file string, v int) error {
	return writeDurably(dir, file, strconv.Itoa(v)+"\n")
}

// readHexRecord reads a record of one identifier in hex, never 0 (a log
// id, a deployment id); found says there was one. One that holds anything
// else is an error naming the file, what it should hold and, advice, what
// to do.
func readHexRecord(dir, file, what, advice string) (v uint64, found bool, err error) {
	path := filepath.Join(dir, file)
	b, found, err := readOptional(path)
	if !found || err != nil {
		return 0, found, err
	}
	v, err = strconv.ParseUint(strings.TrimSpace(string(b)), 16, 64)
	if err != nil || v == 0 {
		return 0, true, fmt.Errorf("runtime: %s does not hold %s (%q): %s", path, what, b, advice)
	}
	return v, true, nil
}

// writeHexRecord writes what readHexRecord reads.
func writeHexRecord(dir, file string, v uint64) error {
	return writeDurably(dir, file, fmt.Sprintf("%016x\n", v))
}

func (n *Node) checkShardCount(dir string) error {
	want := len(n.shards)
	if found, err := CheckShardRecord(dir, want); found || err != nil {
		return err
	}
	// No record: a new directory, or one written before the record existed,
	// which had one shard (Dragonboat's shard 1 is our shard 0).
	if n.nh.HasNodeInfo(1, n.replicaID) && want != 1 {
		return shardCountChanged(dir, 1, want)
	}
	return writeRecord(dir, shardCountFile, want)
}
