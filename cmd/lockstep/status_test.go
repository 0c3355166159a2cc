package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// statusServer answers a free mutex and an election with a leader and a
// queued candidate, as the servers do (a candidate's permits are 0).
type statusServer struct {
	lockstepv1connect.UnimplementedLockServiceHandler
	lockstepv1connect.UnimplementedElectionServiceHandler
}

func (statusServer) Status(context.Context, *connect.Request[pb.LockStatusRequest]) (*connect.Response[pb.LockStatusResponse], error) {
	return connect.NewResponse(&pb.LockStatusResponse{AppliedIndex: 7}), nil
}

func (statusServer) List(context.Context, *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	return connect.NewResponse(&pb.ListResponse{}), nil
}

func (statusServer) Leader(_ context.Context, r *connect.Request[pb.LeaderRequest]) (*connect.Response[pb.LeaderResponse], error) {
	return connect.NewResponse(&pb.LeaderResponse{Name: r.Msg.Name, HasLeader: true, AppliedIndex: 9,
		Leader:     &pb.ElectionLeader{Candidate: "host-a", Value: []byte("10.0.0.7:8080"), SessionId: 11, FencingToken: 4},
		Candidates: []*pb.Waiter{{WaiterId: 20, SessionId: 12, Owner: "host-b", Value: []byte("10.0.0.8:8080")}}}), nil
}

func newStatusServer(t *testing.T) string {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewLockServiceHandler(statusServer{}))
	mux.Handle(lockstepv1connect.NewElectionServiceHandler(statusServer{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestStatusJSONEmptyQueues: -o json writes an empty queue as [], as the
// REST API does, not null.
func TestStatusJSONEmptyQueues(t *testing.T) {
	url := newStatusServer(t)
	var out, errb bytes.Buffer
	if code := run([]string{"status", "jobs/a", "--kind", "mutex", "-o", "json", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, &errb)
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 1 {
		t.Fatalf("%v: %s", err, &out)
	}
	for _, k := range []string{"holders", "waiters"} {
		if l, ok := got[0][k].([]any); !ok || len(l) != 0 {
			t.Errorf("%q is %#v, want []:\n%s", k, got[0][k], &out)
		}
	}
}

// TestStatusOfAnElection: an election's table shows the leader and the
// candidates with their values, not permits (a candidate showed
// PERMITS 0, and no value).
func TestStatusOfAnElection(t *testing.T) {
	url := newStatusServer(t)
	var out, errb bytes.Buffer
	if code := run([]string{"status", "scheduler", "--kind", "election", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, &errb)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 4 {
		t.Fatalf("too short:\n%s", &out)
	}
	if h := strings.Fields(lines[1]); strings.Contains(lines[1], "PERMITS") || strings.Contains(lines[1], "MODE") || h[len(h)-1] != "VALUE" {
		t.Errorf("header %q: want no PERMITS or MODE, and VALUE", lines[1])
	}
	for i, want := range []string{"leader host-a 11 4", "candidate 1 host-b 12 -"} {
		row := strings.Join(strings.Fields(lines[2+i]), " ")
		val := []string{"10.0.0.7:8080", "10.0.0.8:8080"}[i]
		if !strings.HasPrefix(row, want) || !strings.HasSuffix(row, val) {
			t.Errorf("row %q: want %q ... %q", row, want, val)
		}
	}
}

// hiddenServer is a member whose ACL hides every name from the caller:
// List leaves the name out and Status refuses it.
type hiddenServer struct {
	lockstepv1connect.UnimplementedLockServiceHandler
}

func (hiddenServer) List(context.Context, *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	return connect.NewResponse(&pb.ListResponse{}), nil
}

func (hiddenServer) Status(context.Context, *connect.Request[pb.LockStatusRequest]) (*connect.Response[pb.LockStatusResponse], error) {
	return nil, connect.NewError(connect.CodePermissionDenied, errors.New(`principal "ci" may not read "secret/db": no rule allows it (security.acl)`))
}

// TestStatusOfAHiddenName: a name the ACL hides is not shown as free. The
// list that finds a name's kinds leaves hidden names out, and status
// printed "free" with exit 0 where REST answers 403.
func TestStatusOfAHiddenName(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewLockServiceHandler(hiddenServer{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for _, args := range [][]string{{}, {"-o", "json"}} {
		var out, errb bytes.Buffer
		code := run(append([]string{"status", "secret/db", "--endpoints", srv.URL}, args...), &out, &errb)
		if code == exitOK || strings.Contains(out.String(), "free") || !strings.Contains(errb.String(), "may not read") {
			t.Errorf("status %v of a hidden name: exit %d\nstdout: %s\nstderr: %s", args, code, &out, &errb)
		}
	}
	// A free name the caller may read is still free.
	url := newStatusServer(t)
	var out, errb bytes.Buffer
	if code := run([]string{"status", "jobs/a", "--endpoints", url}, &out, &errb); code != exitOK || !strings.Contains(out.String(), "jobs/a: free") {
		t.Errorf("status of a free name: exit %d\nstdout: %s\nstderr: %s", code, &out, &errb)
	}
}

// rwStatusServer answers an RW lock held for reading with a writer queued
// behind it, and a reader behind the writer.
type rwStatusServer struct {
	lockstepv1connect.UnimplementedRWLockServiceHandler
}

func (rwStatusServer) Status(context.Context, *connect.Request[pb.RWLockStatusRequest]) (*connect.Response[pb.RWLockStatusResponse], error) {
	return connect.NewResponse(&pb.RWLockStatusResponse{Name: "cfg", Mode: "read",
		Holders: []*pb.Holder{{SessionId: 11, Owner: "reader-1", FencingToken: 5}, {SessionId: 12, Owner: "reader-2", FencingToken: 6}},
		Waiters: []*pb.Waiter{{SessionId: 13, Owner: "writer", Mode: "write"}, {SessionId: 14, Owner: "reader-3", Mode: "read"}}}), nil
}

// TestRWLockRefusalNamesTheWaitingWriter: a reader refused while readers
// hold the lock was kept out by the writer waiting, not by the readers
// (a reader shares with readers): the message says so, where it said
// "held by someone else (reader-1 ... and 1 more)".
func TestRWLockRefusalNamesTheWaitingWriter(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewRWLockServiceHandler(rwStatusServer{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := newHoldCommand("lockstep rwlock", "", &bytes.Buffer{}, &bytes.Buffer{})
	h.endpoints = srv.URL
	cl, err := h.client()
	if err != nil {
		t.Fatal(err)
	}
	got := h.holders(cl, client.KindRWLock, "cfg")
	for _, want := range []string{"held for reading", "reader-1", "and 1 more", "a writer waits for it (writer, session 13)", "behind a waiting writer"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

// TestStatusOfATooLongNameSpeaksOfTheName: without --kind, status lists
// NAME as a prefix to find its kinds; a name over the servers' bound was
// refused as "prefix is 300 bytes", a prefix the user never gave, and the
// whole name was quoted. The refusal now speaks of the name, quoted to
// its first 64 bytes as every command quotes one.
func TestStatusOfATooLongNameSpeaksOfTheName(t *testing.T) {
	url := devServer(t)
	name := strings.Repeat("x", 300)
	var out, errb bytes.Buffer
	code := run([]string{"status", name, "--endpoints", url}, &out, &errb)
	msg := errb.String()
	if code != exitUsage || strings.Contains(msg, "prefix") || strings.Contains(msg, name) ||
		!strings.Contains(msg, "name is 300 bytes") || !strings.Contains(msg, "(300 bytes)") {
		t.Fatalf("exit %d, want %d speaking of the name, quoted short:\n%s%s", code, exitUsage, &out, msg)
	}
}
