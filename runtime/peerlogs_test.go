package runtime

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/runtime/transport"
)

// TestLogIDIsDrawnOnce: a data directory's log id is drawn at its first
// start, kept after, and a damaged record is an error that says what to do.
func TestLogIDIsDrawnOnce(t *testing.T) {
	dir := t.TempDir()
	first, err := logID(dir)
	if err != nil || first == 0 {
		t.Fatalf("logID of a new directory: %x, %v", first, err)
	}
	if again, err := logID(dir); err != nil || again != first {
		t.Fatalf("logID again: %x, %v, want %x", again, err, first)
	}
	other, err := logID(t.TempDir())
	if err != nil || other == first {
		t.Fatalf("another directory's log id: %x, %v, want one of its own", other, err)
	}
	if err := os.WriteFile(filepath.Join(dir, logIDFile), []byte("zz\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := logID(dir); err == nil || !strings.Contains(err.Error(), "replace the member") {
		t.Fatalf("a damaged log id: %v, want an error saying to replace the member", err)
	}
}

// TestPeerLogsBook: what the book records survives a restart (what it
// learns from the log, once flushed); a replica is kept under the first
// log booked for it, whether seen or learnt from the log; what it lacks
// from the replicated state is what is proposed; it is bounded, forgetting
// the oldest; a damaged file is an error.
func TestPeerLogsBook(t *testing.T) {
	dir := t.TempDir()
	b, err := openPeerLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Record(transport.Identity{Replica: 1, Log: 10}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.woken:
	default:
		t.Error("a replica booked did not ask for it to be shared")
	}
	if err := b.Record(transport.Identity{Replica: 1, Log: 11}); err == nil {
		t.Error("booked replica 1 under a second log")
	}
	var logged bytes.Buffer
	b.learn(map[uint64]uint64{1: 12, 2: 20}, slog.New(slog.NewTextHandler(&logged, nil)))
	if !strings.Contains(logged.String(), "another log") {
		t.Errorf("a replicated log that differs from the one seen was not logged: %q", logged.String())
	}
	if got := b.missing(map[uint64]uint64{2: 20}); !maps.Equal(got, map[uint64]uint64{1: 10}) {
		t.Errorf("missing from the replicated state: %v, want replica 1 under 10", got)
	}
	// What is learnt is kept in memory at once, and on disk by flush,
	// off the apply path.
	if reopened, err := openPeerLogs(dir); err != nil {
		t.Fatal(err)
	} else if _, ok := reopened.Known(2); ok {
		t.Error("learn wrote the book on the apply path")
	}
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	b, err = openPeerLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for r, want := range map[uint64]uint64{1: 10, 2: 20} {
		if log, ok := b.Known(r); !ok || log != want {
			t.Errorf("after a reopen replica %d is under %d %v, want %d", r, log, ok, want)
		}
	}

	many := map[uint64]uint64{}
	for r := uint64(100); r < 100+maxPeerLogs; r++ {
		many[r] = r
	}
	b.learn(many, slog.New(slog.DiscardHandler))
	if err := b.flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Known(1); ok {
		t.Error("the oldest replica was kept past maxPeerLogs")
	}
	if log, ok := b.Known(100 + maxPeerLogs - 1); !ok || log != 100+maxPeerLogs-1 {
		t.Errorf("the newest replica: %d %v", log, ok)
	}
	text, err := os.ReadFile(filepath.Join(dir, peerLogsFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(text), "\n"); n != maxPeerLogs {
		t.Errorf("the book holds %d lines, want %d", n, maxPeerLogs)
	}

	if err := os.WriteFile(filepath.Join(dir, peerLogsFile), []byte("0000000000000001 000000000000000a\nnot a line\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := openPeerLogs(dir); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("a damaged book: %v, want an error naming line 2", err)
	}
}

// TestSnapshotCarriesLogs: the runtime's snapshot header carries the logs
// (runtime version 2), and a snapshot of version 1, without them, is read
// as holding none: a member restarting on a directory an earlier build
// wrote.
func TestSnapshotCarriesLogs(t *testing.T) {
	m, err := core.New(machineLimits)
	if err != nil {
		t.Fatal(err)
	}
	header := func(v byte, logs map[uint64]uint64) []byte {
		b := append([]byte(snapshotMagic), v)
		b = binary.AppendUvarint(b, 42)
		b = appendNames(b, map[uint64]string{7: "node-1"})
		if logs != nil {
			b = appendLogs(b, logs)
		}
		return m.AppendSnapshot(b)
	}
	want := map[uint64]uint64{7: 70, 8: 80}
	applied, names, logs, _, err := decodeSnapshot(header(runtimeVersion, want))
	if err != nil || applied != 42 || names[7] != "node-1" || !maps.Equal(logs, want) {
		t.Fatalf("version %d: %d %v %v %v, want 42, node-1, %v", runtimeVersion, applied, names, logs, err, want)
	}
	applied, names, logs, _, err = decodeSnapshot(header(runtimeVersion-1, nil))
	if err != nil || applied != 42 || names[7] != "node-1" || len(logs) != 0 {
		t.Fatalf("version %d: %d %v %v %v, want 42, node-1 and no logs", runtimeVersion-1, applied, names, logs, err)
	}
	if _, _, _, _, err := decodeSnapshot(header(runtimeVersion+1, want)); err == nil {
		t.Fatal("read a snapshot of a later version")
	}
}
