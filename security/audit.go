package security

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
)

// auditRetryEvery is how often a log that cannot be written tries again
// while no request comes to try it (a member that refuses everything, as
// such a member does, may be sent nothing).
const auditRetryEvery = 100 * time.Millisecond

// auditTime is how a line's time is written: RFC 3339 with milliseconds.
const auditTime = "2006-01-02T15:04:05.000Z07:00"

// auditStallAfter is how long a write of lines may take before the log
// counts as failing: a disk that hangs (frozen, a hung mount) held every
// request waiting for its line, while the member still answered /health
// 200 and took more.
const auditStallAfter = 5 * time.Second

// AuditLog writes one JSON line per request (docs/security.md, Audit).
// A request's line is written before its answer goes out: Audit returns
// once the line is in the file (written, not synced), or with why it could
// not be, and the API then withholds the answer (503). One writer
// goroutine writes the lines of requests that end together in one write.
// While the log cannot be written, Healthy answers why, so the API refuses
// every request with 503 until a write goes through again; the first line
// written then is a record of the outage (resumed).
//
// Lines were buffered and flushed every 100 ms: a request was answered
// before its line was written, and a flush that failed dropped the lines
// buffered, so requests served as the disk filled left no trace; and a
// file that could be opened again counted as writable, though every write
// to it failed (a full disk, /dev/full).
type AuditLog struct {
	nodeID   string
	path     string // "-": standard output
	maxBytes int64
	maxFiles int
	metrics  *Metrics
	log      *slog.Logger

	mu      sync.Mutex
	pending []byte      // lines not yet handed to the writer
	batch   *auditBatch // what pending's lines wait on
	spare   []byte      // pending's last buffer, for reuse
	closed  bool
	err     error // the last failure, nil when healthy
	down    time.Time
	// lost counts the lines not written since the log failed, and
	// withheld the answers of those among them that were served: they may
	// have taken effect, and their callers were told unavailable.
	lost, withheld int

	fileMu  sync.Mutex // the file: the writer's and Reopen's
	out     io.Writer  // the file, or stdout; nil while it cannot be opened
	file    *os.File
	size    int64
	partial bool // the last write failed part way through a line
	// rotateAt is the size past which a rotation is tried again after
	// one failed (0: max_size_mb).
	rotateAt int64

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
	// stall fails the log when a write runs past stallAfter.
	stall      *time.Timer
	stallAfter time.Duration
}

// auditBatch is the lines one write carries; done closes once it is
// written or failed (err).
type auditBatch struct {
	done chan struct{}
	err  error
	// lines and served count its lines, and those of requests served,
	// whose answers are withheld when the write fails: the writer adds
	// them to the outage's counts before the next write can record them.
	lines, served int
}

func newAuditBatch() *auditBatch { return &auditBatch{done: make(chan struct{})} }

// errAuditClosed answers a line that comes after Close.
var errAuditClosed = errors.New("the audit log is closed (the member is stopping)")

var (
	_ rpc.Auditor     = (*AuditLog)(nil)
	_ rpc.AuditHealth = (*AuditLog)(nil)
)

// OpenAudit starts the audit log of cfg. A file that cannot be opened is
// not an error here: the node starts, logs why, and refuses requests (503)
// until it can write (the same as a disk that fills up later).
func OpenAudit(cfg config.Audit, nodeID string, m *Metrics, log *slog.Logger) *AuditLog {
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &AuditLog{nodeID: nodeID, path: cfg.Path, maxBytes: int64(cfg.MaxSizeMB) << 20, maxFiles: cfg.MaxFiles,
		metrics: m, log: log, batch: newAuditBatch(), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		stallAfter: auditStallAfter}
	a.stall = time.AfterFunc(time.Hour, func() {
		a.fail(fmt.Errorf("writing %s: a write has not finished in %s: its disk is frozen, hung or failing", a.path, a.stallAfter))
	})
	a.stall.Stop()
	a.fileMu.Lock()
	a.open()
	a.fileMu.Unlock()
	go a.writer()
	return a
}

// SetMaxBytes changes the rotation size (tests rotate without writing
// megabytes).
func (a *AuditLog) SetMaxBytes(n int64) {
	a.fileMu.Lock()
	a.maxBytes = n
	a.fileMu.Unlock()
}

// open opens the file for appending; a.fileMu is held. Whether it can be
// written only a write tells.
func (a *AuditLog) open() {
	if a.path == "-" {
		a.out = os.Stdout
		return
	}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		a.fail(fmt.Errorf("opening %s: %w", a.path, err))
		return
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		a.fail(fmt.Errorf("opening %s: %w", a.path, err))
		return
	}
	a.file, a.out, a.size = f, f, st.Size()
}

// Reopen closes the file and opens path again, creating it: after an
// outside rotation (logrotate without copytruncate: the file moved, then
// SIGHUP) the lines go to a new file at path rather than on into the moved
// one, as Vault's file audit device does on SIGHUP. Every line answered
// before was written into the moved file. A file that cannot be opened is
// answered and recorded as any failure of the log: requests are refused
// (503) until a write goes through. Standard output is left as it is.
func (a *AuditLog) Reopen() error {
	a.fileMu.Lock()
	defer a.fileMu.Unlock()
	a.mu.Lock()
	closed := a.closed
	a.mu.Unlock()
	if a.path == "-" || closed {
		return nil // a SIGHUP as the member stops opens nothing again
	}
	a.reset()
	a.open()
	if a.out == nil {
		return a.Healthy()
	}
	return nil
}

// fail records a failure.
func (a *AuditLog) fail(err error) {
	a.metrics.auditErrors.Inc()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.log.Error("the audit log cannot be written: every request is refused (503) until it can", "err", err)
		a.down = time.Now()
	}
	a.err = err
}

// Healthy answers why the log cannot be written, or nil.
func (a *AuditLog) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// maxAuditName bounds the name an audit line records: a refused request
// may carry a name of megabytes, which must not make each line that long.
// Names the API takes are at most 256 bytes (core.Limits.MaxNameBytes'
// default), so theirs are recorded whole.
const maxAuditName = 256

// line is one audit record as written. It holds no credentials: a
// principal's name and how it was proven, never a key or a certificate.
type line struct {
	Time         string  `json:"time"`
	NodeID       string  `json:"node_id"`
	Principal    string  `json:"principal"`
	Auth         string  `json:"auth"`
	Remote       string  `json:"remote"`
	Procedure    string  `json:"procedure"`
	Kind         string  `json:"kind"`
	Name         string  `json:"name"`
	NameBytes    int     `json:"name_bytes,omitempty"`   // a name longer than maxAuditName: its length
	RaftAddress  string  `json:"raft_address,omitempty"` // AddNode's: where the member is added
	SessionID    uint64  `json:"session_id"`
	ClientID     string  `json:"client_id"`
	Seq          uint64  `json:"seq"`
	Outcome      string  `json:"outcome"`
	FencingToken uint64  `json:"fencing_token,omitempty"`
	DurationMs   float64 `json:"duration_ms"`
	// An outage's record (kind audit, outcome resumed): the lines not
	// written, the answers of served requests withheld among them, and
	// the last failure.
	LinesLost       *int   `json:"lines_lost,omitempty"`
	AnswersWithheld *int   `json:"answers_withheld,omitempty"`
	Error           string `json:"error,omitempty"`
	// A reload's record (kind security): what it changed.
	Detail string `json:"detail,omitempty"`
}

// Reloaded records a reload of the security settings (SIGHUP) from file:
// what it changed, or why it failed (err), as a line of the member's own
// (no principal, no procedure but SIGHUP), of kind security. A change of
// who may do what belongs in the record of who did what; it was only in
// the member's log. A line that cannot be written is answered, as any.
func (a *AuditLog) Reloaded(ctx context.Context, file, changes string, err error) error {
	l := line{Time: time.Now().UTC().Format(auditTime), NodeID: a.nodeID, Auth: "none",
		Procedure: "SIGHUP", Kind: "security", Name: file, Outcome: "reloaded", Detail: changes}
	if err != nil {
		l.Outcome, l.Error = "failed", err.Error()
	}
	return a.writeLine(ctx, l, false)
}

// Audit writes rec's line, and returns once it is written (nil), or with
// why it could not be.
func (a *AuditLog) Audit(ctx context.Context, rec rpc.AuditRecord) error {
	l := line{
		Time:       time.Now().UTC().Format(auditTime),
		NodeID:     a.nodeID,
		Principal:  rec.Principal.ID,
		Auth:       rec.Principal.Auth,
		Remote:     rec.Peer,
		Procedure:  rec.Procedure,
		Kind:       kindOf(rec.Procedure),
		DurationMs: float64(rec.Duration.Microseconds()) / 1000,
	}
	if l.Auth == "" {
		l.Auth = "none"
	}
	l.Name, _ = rpc.NameOf(rec.Request)
	if l.Name == "" {
		// Membership calls name no object, but a member: AddNode's and
		// RemoveNode's node, the target of TransferLeadership.
		l.Name = stringField(rec.Request, "node_id")
		if l.Name == "" {
			l.Name = stringField(rec.Request, "target_node_id")
		}
		if l.RaftAddress = stringField(rec.Request, "raft_address"); len(l.RaftAddress) > maxAuditName {
			l.RaftAddress = strings.ToValidUTF8(l.RaftAddress[:maxAuditName], "")
		}
	}
	if len(l.Name) > maxAuditName {
		l.Name, l.NameBytes = strings.ToValidUTF8(l.Name[:maxAuditName], ""), len(l.Name)
	}
	l.SessionID = rpc.SessionIDOf(rec.Request)
	l.ClientID = stringField(rec.Request, "client_id")
	l.Seq = uintField(rec.Request, "request_seq")
	l.Outcome = "ok"
	switch {
	case rec.Opened:
		l.Outcome = "opened"
	case rec.Err != nil:
		l.Outcome = rec.Code.String()
	default:
		if o := enumName(rec.Response, "outcome"); o != "" {
			l.Outcome = strings.ToLower(strings.TrimPrefix(o, "OUTCOME_"))
		}
	}
	if l.SessionID == 0 {
		l.SessionID = uintField(rec.Response, "session_id")
	}
	if l.SessionID == 0 {
		l.SessionID = rec.Session // a release by owner label: the grant's
	}
	if rec.Err == nil && (l.Outcome == "granted" || l.Outcome == "ok") {
		l.FencingToken = uintField(rec.Response, "fencing_token")
		if l.FencingToken == 0 {
			l.FencingToken = rec.FencingToken // a release: the grant it ended
		}
	}
	return a.writeLine(ctx, l, rec.Err == nil)
}

// writeLine writes l, and returns once it is written, or with why it
// could not be; served says l is a request's that was served (its answer
// is withheld when the line cannot be written).
func (a *AuditLog) writeLine(ctx context.Context, l line, served bool) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err // cannot happen: the struct holds strings and numbers
	}
	b = append(b, '\n')
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errAuditClosed
	}
	a.pending = append(a.pending, b...)
	batch := a.batch
	batch.lines++
	if served {
		batch.served++
	}
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	select {
	case <-batch.done:
	case <-ctx.Done():
		// The caller is gone and hears no answer; the line is written
		// (or counted lost) all the same.
		return ctx.Err()
	}
	return batch.err
}

// writer writes what Audit hands it until Close, and tries a log that
// cannot be written again every auditRetryEvery.
func (a *AuditLog) writer() {
	defer close(a.done)
	t := time.NewTicker(auditRetryEvery)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			a.writePending()
			return
		case <-a.wake:
			a.writePending()
		case <-t.C:
			if a.Healthy() != nil {
				a.writePending()
			}
		}
	}
}

// writePending writes the lines pending, after the record of an outage
// when the log was failing, and tells their requests how it went.
func (a *AuditLog) writePending() {
	a.mu.Lock()
	buf, batch := a.pending, a.batch
	a.pending, a.batch, a.spare = a.spare[:0], newAuditBatch(), nil
	var outage []byte
	if a.err != nil {
		// The record of the outage, the first line written after it: a
		// line of the member's own (no principal, no procedure), of kind
		// audit, over the outage's duration.
		lost, withheld := a.lost, a.withheld
		outage, _ = json.Marshal(line{Time: time.Now().UTC().Format(auditTime), NodeID: a.nodeID,
			Auth: "none", Kind: "audit", Name: a.path, Outcome: "resumed", DurationMs: float64(time.Since(a.down).Microseconds()) / 1000,
			LinesLost: &lost, AnswersWithheld: &withheld, Error: a.err.Error()})
		outage = append(outage, '\n')
	}
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.spare = buf // for the next batch's lines
		a.mu.Unlock()
	}()
	if len(buf) == 0 && outage == nil {
		close(batch.done)
		return
	}
	a.fileMu.Lock()
	if outage != nil && a.partial {
		// The write that failed left part of a line: end it, so that
		// the record of the outage is a line of its own.
		outage = append([]byte{'\n'}, outage...)
	}
	a.stall.Reset(a.stallAfter)
	err := a.write(outage)
	if err == nil {
		err = a.write(buf)
	}
	a.stall.Stop()
	if err == nil && outage != nil {
		a.mu.Lock()
		a.log.Info("the audit log is writable again", "path", a.path, "lines_lost", a.lost, "answers_withheld", a.withheld)
		a.err, a.lost, a.withheld = nil, 0, 0
		a.mu.Unlock()
	}
	a.fileMu.Unlock()
	if err != nil {
		a.mu.Lock()
		a.lost += batch.lines
		a.withheld += batch.served
		a.mu.Unlock()
	}
	batch.err = err
	close(batch.done)
}

// write writes b whole (nothing: nothing), opening the file first when a
// failure closed it, and rotates a file grown past maxBytes; a.fileMu is
// held.
func (a *AuditLog) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if a.out == nil {
		a.open()
		if a.out == nil {
			return a.Healthy()
		}
	}
	n, err := a.out.Write(b)
	if err != nil && n > 0 && a.file != nil && a.cutLast(int64(n)) {
		// Part of a line went in before the disk filled: cut it off,
		// or it would read as the start of the next line ("outcome":
		// "gra{"time":...), and as a line that never was.
		n = 0
	}
	a.size += int64(n)
	a.partial = err != nil && n > 0
	if err != nil {
		err = fmt.Errorf("writing %s: %w", a.path, err)
		a.fail(err)
		a.reset()
		return err
	}
	if a.file != nil && a.maxBytes > 0 && a.size >= max(a.maxBytes, a.rotateAt) {
		a.rotate()
	}
	return nil
}

// cutLast cuts the last n bytes off the file (appended: they are at its
// end), by its size now rather than the size kept, which a file cut short
// from outside makes wrong and would grow it with zeros; a.fileMu is held.
func (a *AuditLog) cutLast(n int64) bool {
	st, err := a.file.Stat()
	if err != nil || st.Size() < n {
		return false
	}
	return a.file.Truncate(st.Size()-n) == nil
}

// reset drops the file after a failure, so that the next write reopens
// it; a.fileMu is held.
func (a *AuditLog) reset() {
	if a.file != nil {
		a.file.Close()
	}
	a.file, a.out = nil, nil
}

// rotate renames path to path.1, path.1 to path.2 and so on, dropping what
// would be path.(maxFiles+1), and starts a new file; a.fileMu is held.
//
// A rename that fails (a directory this user may not change) is said at
// WARN, and the file grows on, tried again one max_size_mb later: it
// failed the log, which answered 503 until the next write went through,
// then failed again at the next batch, the member flapping.
func (a *AuditLog) rotate() {
	a.file.Close()
	a.file, a.out = nil, nil
	os.Remove(fmt.Sprintf("%s.%d", a.path, a.maxFiles))
	var failed error
	for i := a.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", a.path, i), fmt.Sprintf("%s.%d", a.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			failed = err
		}
	}
	if err := os.Rename(a.path, a.path+".1"); err != nil {
		failed = err
	}
	if failed != nil {
		a.log.Warn("the audit log could not be rotated: it grows on, and rotation is tried again one max_size_mb later",
			"path", a.path, "err", failed)
		a.rotateAt = a.size + a.maxBytes
	} else {
		a.rotateAt = 0
	}
	a.open()
}

// Close writes the lines pending and closes the file; a line after it is
// answered errAuditClosed.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	close(a.stop)
	<-a.done
	a.fileMu.Lock()
	defer a.fileMu.Unlock()
	var err error
	if a.file != nil {
		err = a.file.Close()
	}
	a.file, a.out = nil, nil
	return err
}

// kindOf names what a procedure works on, from its service.
func kindOf(procedure string) string {
	svc, _, _ := strings.Cut(strings.TrimPrefix(procedure, "/lockstep.v1."), "/")
	switch svc {
	case "LockService":
		return "mutex"
	case "SemaphoreService":
		return "semaphore"
	case "RWLockService":
		return "rwlock"
	case "BarrierService":
		return "barrier"
	case "ElectionService":
		return "election"
	case "SessionService":
		return "session"
	case "WatchService":
		return "watch"
	case "ClusterService":
		return "cluster"
	}
	return ""
}

func field(msg any, name protoreflect.Name) (protoreflect.Message, protoreflect.FieldDescriptor) {
	m, ok := msg.(proto.Message)
	if !ok || m == nil {
		return nil, nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil, nil
	}
	return r, r.Descriptor().Fields().ByName(name)
}

func stringField(msg any, name protoreflect.Name) string {
	r, fd := field(msg, name)
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return ""
	}
	return r.Get(fd).String()
}

func uintField(msg any, name protoreflect.Name) uint64 {
	r, fd := field(msg, name)
	if fd == nil || fd.Kind() != protoreflect.Uint64Kind {
		return 0
	}
	return r.Get(fd).Uint()
}

func enumName(msg any, name protoreflect.Name) string {
	r, fd := field(msg, name)
	if fd == nil || fd.Kind() != protoreflect.EnumKind {
		return ""
	}
	if v := fd.Enum().Values().ByNumber(r.Get(fd).Enum()); v != nil {
		return string(v.Name())
	}
	return ""
}
