package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// listServer answers SessionService.List from a fixed list of sessions,
// two a page, and records what it was asked; endless makes every page name
// a next one.
type listServer struct {
	lockstepv1connect.UnimplementedSessionServiceHandler
	sessions []*pb.SessionSummary
	endless  bool
	mu       sync.Mutex
	asked    []*pb.ListSessionsRequest
}

func (s *listServer) List(_ context.Context, r *connect.Request[pb.ListSessionsRequest]) (*connect.Response[pb.ListSessionsResponse], error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, r.Msg)
	from := 0
	if r.Msg.PageToken != "" {
		from, _ = strconv.Atoi(r.Msg.PageToken)
	}
	out := &pb.ListSessionsResponse{}
	for i := from; i < len(s.sessions) && i < from+2; i++ {
		if strings.HasPrefix(s.sessions[i].Owner, r.Msg.OwnerPrefix) {
			out.Sessions = append(out.Sessions, s.sessions[i])
		}
	}
	if s.endless || from+2 < len(s.sessions) {
		out.NextPageToken = strconv.Itoa(from + 2)
	}
	return connect.NewResponse(out), nil
}

func startListServer(t *testing.T, ls *listServer) string {
	mux := http.NewServeMux()
	mux.Handle(lockstepv1connect.NewSessionServiceHandler(ls))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSessionList: 'lockstep session list' reads every page and prints one
// table (SESSION, OWNER, TTL, LEASE UNTIL, HOLDS, WAITS) or, with -o json,
// one array of the sessions as the REST API writes them; --owner and
// --stale are sent as the filter and the read.
func TestSessionList(t *testing.T) {
	lease := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC).UnixMilli()
	ls := &listServer{sessions: []*pb.SessionSummary{
		{SessionId: 3145728, Owner: "web-1", TtlMs: 15000, CreatedAtMs: lease - 15000, ExpiresAtMs: lease, HoldCount: 2},
		{SessionId: 4194304, Owner: "auto:cron", TtlMs: 30000, CreatedAtMs: lease - 30000, ExpiresAtMs: lease, WaitCount: 1},
		{SessionId: 5242880, Owner: "web-2", TtlMs: 10000, CreatedAtMs: lease - 10000, ExpiresAtMs: lease, HoldCount: 1, WaitCount: 3},
	}}
	url := startListServer(t, ls)
	var out, errb bytes.Buffer
	if code := run([]string{"session", "list", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "SESSION OWNER TTL LEASE UNTIL HOLDS WAITS" {
		t.Fatalf("table:\n%s", out.String())
	}
	until := ms(lease)
	for i, want := range []string{
		"3145728 web-1 15s " + until + " 2 0",
		"4194304 auto:cron 30s " + until + " 0 1",
		"5242880 web-2 10s " + until + " 1 3",
	} {
		if got := strings.Join(strings.Fields(lines[i+1]), " "); got != want {
			t.Errorf("row %d: %q, want %q", i+1, got, want)
		}
	}
	if len(ls.asked) != 2 || ls.asked[1].PageToken != "2" || ls.asked[0].Stale {
		t.Fatalf("asked %v, want two pages, the second from the first's token, linearizable", ls.asked)
	}

	out.Reset()
	if code := run([]string{"session", "list", "--owner", "web-", "--stale", "-o", "json", "--endpoints", url}, &out, &errb); code != exitOK {
		t.Fatalf("json: exit %d: %s", code, errb.String())
	}
	last := ls.asked[len(ls.asked)-1]
	if last.OwnerPrefix != "web-" || !last.Stale {
		t.Fatalf("--owner web- --stale sent %v", last)
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-o json is not a JSON array: %v\n%s", err, out.String())
	}
	if len(got) != 2 || got[0]["session_id"] != "3145728" || got[0]["owner"] != "web-1" || got[0]["hold_count"] != "2" ||
		got[0]["wait_count"] != "0" || got[0]["expires_at_ms"] != strconv.FormatInt(lease, 10) || got[1]["session_id"] != "5242880" {
		t.Fatalf("-o json: %s", out.String())
	}

	// Nothing to list: an empty table, and [] rather than null.
	empty := startListServer(t, &listServer{})
	out.Reset()
	if code := run([]string{"session", "list", "-o", "json", "--endpoints", empty}, &out, &errb); code != exitOK || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("no sessions, json: exit %d, %q", code, out.String())
	}
}

// TestSessionListStopsAfterMaxPages: a list whose pages never end (the
// server always names a next page) stops after maxSessionPages, prints
// what it read, and says so on stderr with a failing exit.
func TestSessionListStopsAfterMaxPages(t *testing.T) {
	ls := &listServer{endless: true, sessions: []*pb.SessionSummary{{SessionId: 1, Owner: "a"}, {SessionId: 2, Owner: "b"}}}
	url := startListServer(t, ls)
	var out, errb bytes.Buffer
	code := run([]string{"session", "list", "--endpoints", url}, &out, &errb)
	if code != exitError || !strings.Contains(errb.String(), "stopped after 100 pages (2 sessions); there are more: narrow the list with --owner PREFIX") {
		t.Fatalf("endless pages: exit %d, stderr %q", code, errb.String())
	}
	if len(ls.asked) != maxSessionPages || !strings.Contains(out.String(), "SESSION") {
		t.Fatalf("asked %d pages (want %d), printed %q", len(ls.asked), maxSessionPages, out.String())
	}
}

// TestSessionListUsage: list takes no ID, and the flags of one subcommand
// are refused on another rather than ignored.
func TestSessionListUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"session", "list", "42"}, "list takes no arguments, got 1: filter with --owner PREFIX"},
		{[]string{"session", "list", "--no-lock-delay"}, "--no-lock-delay is for session close"},
		{[]string{"session", "show", "--owner", "x", "42"}, "--owner is for session list"},
		{[]string{"session", "close", "--stale", "42"}, "--stale is for session list"},
		{[]string{"session", "lst"}, `unknown subcommand "lst": use list, show or close`},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, %q; want usage error %q", c.args, code, errb.String(), c.want)
		}
	}
}
