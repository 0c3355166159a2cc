package security

import (
	"bufio"
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

// AuditFlushInterval bounds how long a line waits in the buffer.
const AuditFlushInterval = 100 * time.Millisecond

// auditBufferBytes is the write buffer: lines are small (~300 bytes), and a
// burst of requests between flushes fits.
const auditBufferBytes = 64 << 10

// AuditLog writes one JSON line per request (docs/security.md, Audit). It
// buffers and flushes every AuditFlushInterval and at Close. While a write,
// flush or rotation fails, Healthy answers the error, so the API refuses
// requests with 503 until the file can be written again (each flush tries
// to reopen it).
type AuditLog struct {
	nodeID   string
	path     string // "-": standard output
	maxBytes int64
	maxFiles int
	metrics  *Metrics
	log      *slog.Logger

	mu   sync.Mutex
	out  io.Writer // the file, or stdout; nil while it cannot be opened
	file *os.File
	buf  *bufio.Writer
	size int64
	err  error // the last failure, nil when healthy

	stop chan struct{}
	done chan struct{}
}

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
		metrics: m, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	a.mu.Lock()
	a.open()
	a.mu.Unlock()
	go a.flusher()
	return a
}

// SetMaxBytes changes the rotation size (tests rotate without writing
// megabytes).
func (a *AuditLog) SetMaxBytes(n int64) {
	a.mu.Lock()
	a.maxBytes = n
	a.mu.Unlock()
}

// open opens the file for appending; a.mu is held.
func (a *AuditLog) open() {
	if a.path == "-" {
		a.out, a.buf = os.Stdout, bufio.NewWriterSize(os.Stdout, auditBufferBytes)
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
	if a.err != nil {
		a.log.Info("the audit log is writable again", "path", a.path)
	}
	a.file, a.out, a.size, a.err = f, f, st.Size(), nil
	a.buf = bufio.NewWriterSize(f, auditBufferBytes)
}

// Reopen flushes what is buffered to the file open now and closes it, then
// opens path again, creating it: after an outside rotation (logrotate
// without copytruncate: the file moved, then SIGHUP) the lines go to a new
// file at path rather than on into the moved one, as Vault's file audit
// device does on SIGHUP. A file that cannot be opened is answered and
// recorded as any failure of the log: requests are refused (503) until a
// flush can open it. Standard output is left as it is.
func (a *AuditLog) Reopen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.path == "-" {
		return nil
	}
	if a.file != nil {
		if err := a.buf.Flush(); err != nil {
			a.fail(fmt.Errorf("flushing before reopening: %w", err))
		}
	}
	a.reset()
	a.open()
	if a.out == nil {
		return a.err
	}
	return nil
}

// fail records a failure; a.mu is held.
func (a *AuditLog) fail(err error) {
	a.metrics.auditErrors.Inc()
	if a.err == nil {
		a.log.Error("the audit log cannot be written: every request is refused (503) until it can", "err", err)
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
}

// Audit writes rec's line into the buffer.
func (a *AuditLog) Audit(_ context.Context, rec rpc.AuditRecord) {
	l := line{
		Time:       time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
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
	if rec.Err != nil {
		l.Outcome = rec.Code.String()
	} else if o := enumName(rec.Response, "outcome"); o != "" {
		l.Outcome = strings.ToLower(strings.TrimPrefix(o, "OUTCOME_"))
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
	b, err := json.Marshal(l)
	if err != nil {
		return // cannot happen: the struct holds strings and numbers
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.out == nil {
		a.open()
		if a.out == nil {
			return
		}
	}
	n, err := a.buf.Write(b)
	a.size += int64(n)
	if err != nil {
		a.fail(err)
		a.reset()
		return
	}
	if a.file != nil && a.maxBytes > 0 && a.size >= a.maxBytes {
		a.rotate()
	}
}

// reset drops the file after a failure, so that the next flush reopens it;
// a.mu is held.
func (a *AuditLog) reset() {
	if a.file != nil {
		a.file.Close()
	}
	a.file, a.out, a.buf = nil, nil, nil
}

// rotate renames path to path.1, path.1 to path.2 and so on, dropping what
// would be path.(maxFiles+1), and starts a new file; a.mu is held.
func (a *AuditLog) rotate() {
	if err := a.buf.Flush(); err != nil {
		a.fail(err)
		a.reset()
		return
	}
	a.file.Close()
	a.file, a.out, a.buf = nil, nil, nil
	os.Remove(fmt.Sprintf("%s.%d", a.path, a.maxFiles))
	for i := a.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", a.path, i), fmt.Sprintf("%s.%d", a.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.fail(fmt.Errorf("rotating: %w", err))
		}
	}
	if err := os.Rename(a.path, a.path+".1"); err != nil {
		a.fail(fmt.Errorf("rotating: %w", err))
	}
	a.open()
}

func (a *AuditLog) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.out == nil {
		a.open()
		return
	}
	if err := a.buf.Flush(); err != nil {
		a.fail(err)
		a.reset()
		return
	}
	if a.file != nil && a.err != nil {
		// Writes work again (the disk has room): serve again.
		a.log.Info("the audit log is writable again", "path", a.path)
		a.err = nil
	}
}

func (a *AuditLog) flusher() {
	defer close(a.done)
	t := time.NewTicker(AuditFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			a.flush()
		}
	}
}

// Close flushes what is buffered and closes the file.
func (a *AuditLog) Close() error {
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	var err error
	if a.buf != nil {
		err = a.buf.Flush()
	}
	if a.file != nil {
		err = errors.Join(err, a.file.Close())
	}
	a.file, a.out, a.buf = nil, nil, nil
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
