package rpc_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/rpc"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// TestReleaseIsAuditedWithItsGrant: a release's audit record carries the
// session and fencing token of the grant it ended, as an acquire's does
// (from its answer): a release by owner label named neither session nor,
// on the record, token, so its line could not be matched to the grant.
// Over REST and on a session stream alike; a release refused carries
// neither.
func TestReleaseIsAuditedWithItsGrant(t *testing.T) {
	audit := &auditLog{}
	s := startServer(t, func(o *rpc.Options) { o.Auditor = audit })
	releases := func() []rpc.AuditRecord {
		audit.mu.Lock()
		defer audit.mu.Unlock()
		var out []rpc.AuditRecord
		for _, r := range audit.recs {
			if r.Procedure == lockstepv1connect.LockServiceReleaseProcedure {
				out = append(out, r)
			}
		}
		return out
	}

	st, a := s.call(t, "POST", "/locks/jobs%2Fa/acquire", `{"owner":"w"}`)
	expect(t, "acquire", st, 200)
	sid, _ := strconv.ParseUint(a["session_id"].(string), 10, 64)
	tok, _ := strconv.ParseUint(a["fencing_token"].(string), 10, 64)
	st, e := s.call(t, "POST", "/locks/jobs%2Fa/release", `{"owner":"w","fencing_token":"12345"}`)
	expectError(t, st, e, 409, "conflict")
	st, _ = s.call(t, "POST", "/locks/jobs%2Fa/release", `{"owner":"w","fencing_token":"`+a["fencing_token"].(string)+`"}`)
	expect(t, "release", st, 200)
	recs := releases()
	if len(recs) != 2 {
		t.Fatalf("release records: %+v", recs)
	}
	if r := recs[0]; r.Session != 0 || r.FencingToken != 0 {
		t.Errorf("the refused release's record: session %d, token %d, want neither", r.Session, r.FencingToken)
	}
	if r := recs[1]; r.Err != nil || r.Session != sid || r.FencingToken != tok || sid == 0 || tok == 0 {
		t.Errorf("the release by owner's record: session %d, token %d, err %v; want session %d, token %d", r.Session, r.FencingToken, r.Err, sid, tok)
	}

	// On a session stream, by session id and token.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, sessions := s.sessionStream(t, ctx, "")
	id := newSession(t, sessions, 30_000)
	send(t, stream, &pb.StreamRequest{RequestId: 1, Request: &pb.StreamRequest_AcquireLock{AcquireLock: &pb.AcquireLockRequest{Name: "jobs/b", SessionId: id}}})
	got := receive(t, stream).GetAcquireLock()
	if !got.GetAcquired() {
		t.Fatalf("the acquire on the stream: %v", got)
	}
	send(t, stream, &pb.StreamRequest{RequestId: 2, Request: &pb.StreamRequest_ReleaseLock{ReleaseLock: &pb.ReleaseLockRequest{Name: "jobs/b", SessionId: id, FencingToken: got.FencingToken}}})
	if r := receive(t, stream); !r.GetReleaseLock().GetReleased() {
		t.Fatalf("the release on the stream: %v", r)
	}
	recs = releases()
	if len(recs) != 3 {
		t.Fatalf("release records: %+v", recs)
	}
	if r := recs[2]; r.Session != id || r.FencingToken != got.FencingToken || r.FencingToken == 0 {
		t.Errorf("the release on the stream's record: session %d, token %d; want session %d, token %d", r.Session, r.FencingToken, id, got.FencingToken)
	}
}
