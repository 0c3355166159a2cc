//go:build integration

package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	bin "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The hostile-input suite: requests an attacker or a careless user would
// send, over REST, Connect and gRPC, against a real `lockstep serve`. Each
// must get its status, its code and a message that says what is wrong, and
// none may change the state.

// hostileCase is one request and the answer it must get.
type hostileCase struct {
	what    string
	method  string
	path    string
	header  http.Header
	body    []byte
	status  int
	code    string // the JSON body's code ("" for gRPC, which answers in trailers)
	phrase  string // a fragment of the message
	grpc    string // for gRPC: the grpc-status it must carry
	useH2C  bool
	noCheck bool // the answer's body is not a JSON error (HEAD, gRPC)
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// grpcFrame is one gRPC message frame with a declared length that may lie.
func grpcFrame(declared uint32, payload []byte) []byte {
	b := make([]byte, 5, 5+len(payload))
	bin.BigEndian.PutUint32(b[1:], declared)
	return append(b, payload...)
}

func TestHostileInput(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)

	held := c.ok("POST", n, "/locks/held/acquire", `{"owner":"keeper","ttl_seconds":300}`)
	sid, _ := held["session_id"].(string)
	other := c.ok("POST", n, "/locks/held-too/acquire", `{"owner":"keeper2","ttl_seconds":300}`)
	otherSID, _ := other["session_id"].(string)
	tok, _ := other["fencing_token"].(string)
	before := stateOf(t, c, n)

	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	grpcHeader := http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}}
	cases := []hostileCase{
		// Query parameters never override the path or the body.
		{what: "a query that names another session", method: "DELETE", path: "/sessions/" + sid + "?session_id=" + otherSID,
			status: 400, code: "invalid_argument", phrase: `query parameter "session_id" is not accepted on DELETE`},
		{what: "a query that names another lock", method: "POST", path: "/locks/other/release?name=held-too", header: jsonHeader(),
			body: []byte(`{"owner":"keeper2","fencing_token":"` + tok + `"}`), status: 400, code: "invalid_argument", phrase: `query parameter "name"`},
		{what: "a query that sets a body field", method: "POST", path: "/locks/q/acquire?owner=zz", header: jsonHeader(), body: []byte(`{}`),
			status: 400, code: "invalid_argument", phrase: `query parameter "owner"`},
		{what: "a status for another name", method: "GET", path: "/locks/q/status?name=held", status: 400, code: "invalid_argument",
			phrase: "the query takes only stale"},
		{what: "an unknown query parameter on a read", method: "GET", path: "/locks/q/status?bogus=1", status: 400, code: "invalid_argument", phrase: `"bogus"`},
		{what: "stale twice", method: "GET", path: "/locks/q/status?stale=true&stale=true", status: 400, code: "invalid_argument", phrase: "given 2 times"},
		// Names, labels, ids.
		{what: "invalid UTF-8 in the path", method: "GET", path: "/locks/%C3%28/status", status: 400, code: "invalid_argument", phrase: "not valid UTF-8"},
		{what: "a control character in an owner", method: "POST", path: "/locks/l/acquire", header: jsonHeader(),
			body: []byte(`{"owner":"x\u0000\u001b[31mred"}`), status: 400, code: "invalid_argument", phrase: "unprintable character U+0000"},
		{what: "a session id that is not a number", method: "DELETE", path: "/sessions/abc", status: 400, code: "invalid_argument",
			phrase: `session_id "abc" in the path is not a whole number`},
		{what: "a TTL of 1 ms", method: "POST", path: "/sessions", header: jsonHeader(), body: []byte(`{"ttl_ms":1}`), status: 400,
			code: "invalid_argument", phrase: "ttl_ms 1 is out of range"},
		{what: "a negative wait", method: "POST", path: "/locks/w/acquire", header: jsonHeader(), body: []byte(`{"wait_timeout_ms":-9}`),
			status: 400, code: "invalid_argument", phrase: "wait_timeout_ms -9 is negative"},
		{what: "a token that is not a number", method: "POST", path: "/locks/held/release", header: jsonHeader(),
			body: []byte(`{"owner":"keeper","fencing_token":"ten"}`), status: 400, code: "invalid_argument", phrase: "does not decode"},
		{what: "a lowest_pending_seq above request_seq", method: "POST", path: "/sessions", header: jsonHeader(),
			body: []byte(`{"client_id":"h","request_seq":2,"lowest_pending_seq":3}`), status: 400, code: "invalid_argument", phrase: "lowest_pending_seq 3 is above request_seq 2"},
		// Bodies.
		{what: "a corrupt gzip body", method: "POST", path: "/locks/g/acquire",
			header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, body: []byte("\x1f\x8b\x08\x00rubbish"),
			status: 400, code: "invalid_argument", phrase: "the gzip body is corrupt"},
		{what: "an unknown content encoding", method: "POST", path: "/locks/g/acquire",
			header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"zstd"}}, body: []byte(`{}`),
			status: 415, code: "invalid_argument", phrase: `Content-Encoding "zstd" is not supported`},
		{what: "a gzip body over the limit once inflated", method: "POST", path: "/locks/g/acquire",
			header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}},
			body:   gz(append([]byte(`{"owner":"`), bytes.Repeat([]byte{'x'}, 8<<20)...)), status: 413, code: "resource_exhausted", phrase: "inflates to more than"},
		{what: "a plain-text body", method: "POST", path: "/locks/g/acquire", header: http.Header{"Content-Type": {"text/plain"}}, body: []byte(`{}`),
			status: 415, code: "invalid_argument", phrase: "the REST API takes a JSON body"},
		// Connect.
		{what: "Connect JSON with an unknown enum name", method: "POST", path: "/lockstep.v1.LockService/CheckFence", header: jsonHeader(),
			body: []byte(`{"name":"held","kind":"KIND_BOGUS","fencing_token":"1"}`), status: 400, code: "invalid_argument", phrase: "enum"},
		{what: "an unknown procedure", method: "POST", path: "/lockstep.v1.Nope/Do", header: jsonHeader(), body: []byte(`{}`),
			status: 404, code: "unimplemented", phrase: "no such procedure"},
		// gRPC: frames that lie about their length.
		{what: "a gRPC frame shorter than it says", method: "POST", path: "/lockstep.v1.LockService/Status", header: grpcHeader,
			body: grpcFrame(50, []byte{0x0a, 0x01, 'a'}), status: 200, grpc: "3", useH2C: true, noCheck: true},
		// HEAD health checks.
		{what: "HEAD /health", method: "HEAD", path: "/health", status: 200, noCheck: true},
	}
	for _, tc := range cases {
		t.Run(tc.what, func(t *testing.T) {
			status, hdr, raw := rawRequest(t, n, tc)
			if tc.grpc != "" {
				got := hdr.Get("Grpc-Status")
				if status != tc.status || got != tc.grpc {
					t.Fatalf("%d grpc-status %q (%s), want %d grpc-status %s", status, got, hdr.Get("Grpc-Message"), tc.status, tc.grpc)
				}
				return
			}
			if status != tc.status {
				t.Fatalf("%d %s, want %d", status, raw, tc.status)
			}
			if tc.noCheck {
				return
			}
			var e struct{ Code, Message string }
			if err := json.Unmarshal([]byte(raw), &e); err != nil || e.Code != tc.code || !strings.Contains(e.Message, tc.phrase) {
				t.Fatalf("%s, want code %s and %q", raw, tc.code, tc.phrase)
			}
		})
	}
	if after := stateOf(t, c, n); after != before {
		t.Fatalf("the refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}

	t.Run("a slow body is 408 and names no address", func(t *testing.T) {
		conn, err := net.Dial("tcp", n.API)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /locks/slow/acquire HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"own")
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		raw, _ := io.ReadAll(conn)
		if !bytes.HasPrefix(raw, []byte("HTTP/1.1 408")) || !bytes.Contains(raw, []byte(`"code":"deadline_exceeded"`)) ||
			bytes.Contains(raw, []byte("127.0.0.1")) {
			t.Fatalf("a body that never arrives: %q", raw)
		}
	})
}

// stateOf is what refused requests must leave alone: every object of every
// kind with its holders and queue.
func stateOf(t *testing.T, c *cluster, n *node) string {
	t.Helper()
	st, body := c.rest("POST", n, "/lockstep.v1.LockService/List", `{}`)
	if st != 200 {
		t.Fatalf("list: %d %v", st, body)
	}
	delete(body, "applied_index")
	return fmt.Sprint(body)
}

func rawRequest(t *testing.T, n *node, tc hostileCase) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var body io.Reader
	if tc.body != nil {
		body = bytes.NewReader(tc.body)
	}
	req, err := http.NewRequestWithContext(ctx, tc.method, n.url()+tc.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range tc.header {
		req.Header[k] = v
	}
	cl := h2cClient()
	if tc.useH2C {
		cl = grpcHTTP()
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	hdr := resp.Header.Clone()
	for k, v := range resp.Trailer {
		hdr[k] = v
	}
	return resp.StatusCode, hdr, string(raw)
}

// TestGzipBomb sends three gzip bodies that inflate to 256 MiB each at once:
// each is refused, and the node's resident memory stays within a bound.
func TestGzipBomb(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write([]byte(`{"owner":"`))
	zeros := make([]byte, 1<<20)
	for range 256 {
		_, _ = zw.Write(zeros)
	}
	_ = zw.Close()
	bomb := buf.Bytes()
	base := rssBytes(t, n)
	var wg sync.WaitGroup
	errs := make(chan string, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, raw := rawRequest(t, n, hostileCase{method: "POST", path: "/locks/bomb/acquire",
				header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, body: bomb})
			if status != 413 || !strings.Contains(raw, "inflates to more than") {
				errs <- fmt.Sprintf("%d %s", status, raw)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a gzip bomb of %d bytes: %s, want 413", len(bomb), e)
	}
	const bound = 64 << 20
	if grew := rssBytes(t, n) - base; grew > bound {
		t.Fatalf("three gzip bombs grew the node by %d MiB, more than %d MiB", grew>>20, bound>>20)
	}
}

// A node runs again with the Go runtime's monitor thread quieted and a
// timer slack of 1 ns (cmd/lockstep's sysmon restart), and is still called
// lockstep: the restart execs /proc/self/exe, which the kernel would name
// "exe", and `pgrep lockstep` would find no server.
func TestServerRunsQuietUnderItsOwnName(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)
	read := func(what string) string {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", n.Pid(), what))
		if err != nil {
			t.Skipf("no /proc here: %v", err)
		}
		return string(raw)
	}
	if comm := strings.TrimSpace(read("comm")); comm != "lockstep" {
		t.Errorf("the server's process name is %q, want lockstep", comm)
	}
	if env := read("environ"); !strings.Contains(env, "schedtrace=") {
		t.Errorf("the server did not restart with the monitor thread quieted: no schedtrace in its GODEBUG")
	}
	if slack := read("timerslack_ns"); strings.TrimSpace(slack) != "1" {
		t.Errorf("the server's timer slack is %s ns, want 1", strings.TrimSpace(slack))
	}
}

// rssBytes reads a node's resident set size from /proc.
func rssBytes(t *testing.T, n *node) int64 {
	t.Helper()
	pid := n.Pid()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}
