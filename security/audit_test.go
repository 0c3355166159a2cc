package security

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// readAuditLines parses every line of the audit file at path.
func readAuditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestAuditNamesTheMember: a membership call's audit line names the member
// it is about (AddNode's and RemoveNode's node_id, with AddNode's
// raft_address; TransferLeadership's target), refused ones included: the
// lines said "name":"" and an operator could not tell which member a
// denied AddNode tried to add.
func TestAuditNamesTheMember(t *testing.T) {
	sec, _, key := fixture(t, config.ClientAuthRequest, []config.ACLRule{{Principal: "ci", Prefix: "", Allow: []string{"read", "use"}}})
	st, err := New(sec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	audit := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	h, err := rpc.New(rpc.Options{Backend: struct{ rpc.Backend }{}, NodeID: "node-1", Authenticator: st, Authorizer: st, Auditor: audit})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(procedure, body string, auth bool) int {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/lockstep.v1.ClusterService/"+procedure, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if auth {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// ci may not administer: each is refused before the backend (which
	// this server lacks) is asked.
	if code := post("AddNode", `{"node_id":"evil","raft_address":"10.0.0.9:7001"}`, true); code != 403 {
		t.Fatalf("AddNode by ci: %d, want 403", code)
	}
	if code := post("RemoveNode", `{"node_id":"node-3"}`, false); code != 401 {
		t.Fatalf("RemoveNode without credentials: %d, want 401", code)
	}
	if code := post("TransferLeadership", `{"target_node_id":"node-2"}`, true); code != 403 {
		t.Fatalf("TransferLeadership by ci: %d, want 403", code)
	}
	if err := audit.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readAuditLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d audit lines, want 3: %v", len(lines), lines)
	}
	for i, want := range []map[string]any{
		{"kind": "cluster", "name": "evil", "raft_address": "10.0.0.9:7001", "outcome": "permission_denied", "principal": "ci"},
		{"kind": "cluster", "name": "node-3", "outcome": "unauthenticated"},
		{"kind": "cluster", "name": "node-2", "outcome": "permission_denied"},
	} {
		for k, v := range want {
			if lines[i][k] != v {
				t.Errorf("line %d: %s = %v, want %v (%v)", i, k, lines[i][k], v, lines[i])
			}
		}
	}
	if _, has := lines[1]["raft_address"]; has {
		t.Errorf("RemoveNode's line has a raft_address: %v", lines[1])
	}
}

// TestAuditLineOfARelease: a release's line names the session and the
// fencing token of the grant it ended (rpc.AuditRecord.Session and
// FencingToken), as a grant's line does: a release by owner label had
// session_id 0 and no fencing_token. A refused release has neither.
func TestAuditLineOfARelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	a.Audit(context.Background(), rpc.AuditRecord{Principal: rpc.Principal{ID: "ci", Auth: "api_key"},
		Procedure: lockstepv1connect.LockServiceReleaseProcedure,
		Request:   &pb.ReleaseLockRequest{Name: "jobs/a", Owner: "ci:w", FencingToken: 42},
		Response:  &pb.ReleaseLockResponse{Released: true, SessionClosed: true},
		Session:   9, FencingToken: 42})
	a.Audit(context.Background(), rpc.AuditRecord{Principal: rpc.Principal{ID: "ci", Auth: "api_key"},
		Procedure: lockstepv1connect.LockServiceReleaseProcedure,
		Request:   &pb.ReleaseLockRequest{Name: "jobs/a", Owner: "ci:w", FencingToken: 7},
		Code:      connect.CodeFailedPrecondition, Err: errors.New("stale")})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readAuditLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	if l := lines[0]; l["outcome"] != "ok" || l["session_id"] != 9.0 || l["fencing_token"] != 42.0 || l["name"] != "jobs/a" {
		t.Errorf("a release's line: %v, want session_id 9 and fencing_token 42", l)
	}
	if l := lines[1]; l["session_id"] != 0.0 || l["fencing_token"] != nil {
		t.Errorf("a refused release's line: %v, want neither session nor token", l)
	}
}

// TestAuditLineIsWrittenBeforeItsAnswer: Audit returns once its line is
// in the file. Lines were buffered for up to 100 ms after the answer went
// out, so a member that stopped (or a disk that failed) meanwhile lost the
// record of requests it had answered.
func TestAuditLineIsWrittenBeforeItsAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	defer a.Close()
	for i := range 3 {
		if err := a.Audit(context.Background(), grantRecord(fmt.Sprintf("jobs/%d", i))); err != nil {
			t.Fatal(err)
		}
		if lines := readAuditLines(t, path); len(lines) != i+1 || lines[i]["name"] != fmt.Sprintf("jobs/%d", i) {
			t.Fatalf("after Audit %d returned, the file holds %v", i, lines)
		}
	}
}

func grantRecord(name string) rpc.AuditRecord {
	return rpc.AuditRecord{Principal: rpc.Principal{ID: "ci", Auth: "api_key"}, Procedure: lockstepv1connect.LockServiceAcquireProcedure,
		Request:  &pb.AcquireLockRequest{Name: name},
		Response: &pb.AcquireLockResponse{Acquired: true, FencingToken: 42, Outcome: pb.Outcome_OUTCOME_GRANTED}}
}

// TestAuditOnAFullDisk: a file that opens but takes no write (/dev/full,
// as a full disk) keeps the log failing until a write goes through, and
// each line that cannot be written is answered as an error. The first line
// written afterwards records the outage: how many lines were lost and how
// many of them were the answers of served requests, withheld. A log that
// could open its file counted as writable, though no line reached it: a
// reviewer's member served 24 of 60 acquires with no line.
func TestAuditOnAFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full here")
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.Symlink("/dev/full", path); err != nil {
		t.Fatal(err)
	}
	a := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	defer a.Close()
	ctx := context.Background()
	if err := a.Audit(ctx, grantRecord("jobs/a")); err == nil || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("a line written to a full disk answered %v", err)
	}
	time.Sleep(5 * auditRetryEvery) // retries open the file again: it opens, and takes nothing
	if err := a.Healthy(); err == nil {
		t.Fatal("the log is healthy while every write fails")
	}
	refused := rpc.AuditRecord{Procedure: lockstepv1connect.LockServiceAcquireProcedure, Request: &pb.AcquireLockRequest{Name: "jobs/b"},
		Code: connect.CodeUnavailable, Err: errors.New("the audit log cannot be written")}
	if err := a.Audit(ctx, refused); err == nil {
		t.Fatal("a refusal's line written to a full disk answered nil")
	}
	if err := os.Remove(path); err != nil { // room again
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); a.Healthy() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log stayed failing with room again: %v", a.Healthy())
		}
	}
	if err := a.Audit(ctx, grantRecord("jobs/c")); err != nil {
		t.Fatal(err)
	}
	lines := readAuditLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("after the outage the file holds %v, want its record and jobs/c", lines)
	}
	o := lines[0]
	if o["kind"] != "audit" || o["outcome"] != "resumed" || o["lines_lost"] != 2.0 || o["answers_withheld"] != 1.0 ||
		!strings.Contains(o["error"].(string), "no space left on device") || !(o["duration_ms"].(float64) > 0) {
		t.Errorf("the outage's record: %v", o)
	}
	if lines[1]["name"] != "jobs/c" || lines[1]["outcome"] != "granted" {
		t.Errorf("the line after the outage: %v", lines[1])
	}
	if _, has := lines[1]["lines_lost"]; has {
		t.Errorf("a request's line carries lines_lost: %v", lines[1])
	}
}

// hangingWriter is a disk whose writes wait for release.
type hangingWriter struct{ release chan struct{} }

func (w hangingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

// TestAuditWriteThatHangsFailsTheLog: a write of lines that has not
// finished within the stall bound makes the log fail (so the member
// answers 503 and takes no more requests); once it finishes, the log
// serves again after the outage's record. A hung disk held every request
// waiting for its line while the member answered /health 200.
func TestAuditWriteThatHangsFailsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	a := OpenAudit(config.Audit{Path: path, MaxSizeMB: 1, MaxFiles: 2}, "node-1", nil, nil)
	defer a.Close()
	hang := hangingWriter{release: make(chan struct{})}
	a.fileMu.Lock()
	a.out, a.stallAfter = hang, 100*time.Millisecond // its writes go nowhere, once released
	a.fileMu.Unlock()
	done := make(chan error, 1)
	go func() { done <- a.Audit(context.Background(), grantRecord("jobs/a")) }()
	for deadline := time.Now().Add(5 * time.Second); a.Healthy() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the log stayed healthy with a write hung")
		}
	}
	if err := a.Healthy(); !strings.Contains(err.Error(), "has not finished in 100ms") {
		t.Fatalf("the log's failure: %v", err)
	}
	close(hang.release)
	if err := <-done; err != nil {
		t.Fatalf("the line whose write hung, then went through: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); a.Healthy() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the log stayed failing after the write went through: %v", a.Healthy())
		}
	}
}
