//go:build integration

package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// heldRequest is a REST acquire whose client stops halfway through its
// body: the server is inside the handler, reading, so the request is in
// flight and a drain has to wait for it.
type heldRequest struct {
	conn net.Conn
	rd   *bufio.Reader
	rest string
}

// holdRequest sends the headers with "Expect: 100-continue" and waits for
// the server's 100 Continue, which Go's server sends only when the handler
// starts reading the body; then it sends the first half of the body.
func holdRequest(t *testing.T, nd *node) *heldRequest {
	t.Helper()
	conn, err := net.Dial("tcp", nd.API)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(2 * time.Minute)) // bounds every read below
	body := `{"owner": "signal-test"}`
	half := len(body) / 2
	fmt.Fprintf(conn, "POST /locks/signal/acquire HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n", nd.API, len(body))
	rd := bufio.NewReader(conn)
	resp, err := http.ReadResponse(rd, nil)
	if err != nil {
		t.Fatalf("waiting for 100 Continue: %v", err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("wanted 100 Continue before the body, got %s", resp.Status)
	}
	if _, err := io.WriteString(conn, body[:half]); err != nil {
		t.Fatal(err)
	}
	return &heldRequest{conn: conn, rd: rd, rest: body[half:]}
}

// finish sends the rest of the body and returns the answer's status.
func (h *heldRequest) finish(t *testing.T) int {
	t.Helper()
	if _, err := io.WriteString(h.conn, h.rest); err != nil {
		t.Fatalf("sending the rest of the body: %v", err)
	}
	resp, err := http.ReadResponse(h.rd, nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (nd *node) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := nd.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, nd.ID, err)
	}
}

// waitExit waits up to limit for the process to exit and returns its exit code.
func (nd *node) waitExit(t *testing.T, limit time.Duration) int {
	t.Helper()
	exit, exited := nd.Wait(limit)
	if !exited {
		t.Fatalf("%s still running %v after the signal", nd.ID, limit)
	}
	var ee *exec.ExitError
	if errors.As(exit, &ee) {
		return ee.ExitCode()
	}
	if exit != nil {
		t.Fatalf("%s: %v", nd.ID, exit)
	}
	return 0
}

// waitLog waits until the node's log holds line.
func (nd *node) waitLog(t *testing.T, line string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s logs %q", nd.ID, line), func() error {
		b, err := os.ReadFile(nd.LogPath)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), line) {
			return fmt.Errorf("not yet; last lines:\n%s", nd.Tail(5))
		}
		return nil
	})
}

// TestSignals checks operations.md's "Stopping": SIGTERM drains in-flight
// requests and exits 0; a second signal exits at once with code 1.
func TestSignals(t *testing.T) {
	// The drain timeout is far longer than any wait below: only the second
	// signal or the held request's end can let the process go.
	const drain = "--drain-timeout=10m"

	t.Run("IdleSIGTERMExits0", func(t *testing.T) {
		c := newCluster(t, 1)
		nd := c.nodes[0]
		// A deprecated key set: the node warns and serves all the same.
		c.start(nd, "--cleanup-interval-seconds=30")
		c.waitHealthy(30*time.Second, nd)
		nd.waitLog(t, "locks.cleanup_interval_seconds is 30, but the key is deprecated and has no effect")
		c.ok("POST", nd, "/locks/idle/acquire", `{"owner": "me"}`)
		nd.signal(t, syscall.SIGTERM)
		if code := nd.waitExit(t, 60*time.Second); code != 0 {
			t.Fatalf("exit code %d after one SIGTERM with nothing in flight, want 0:\n%s", code, nd.Tail(10))
		}
		nd.waitLog(t, `msg=stopped`)
	})

	t.Run("SIGTERMWaitsForInFlightRequest", func(t *testing.T) {
		c := newCluster(t, 1)
		nd := c.nodes[0]
		c.start(nd, drain)
		c.waitHealthy(30*time.Second, nd)
		held := holdRequest(t, nd)
		nd.signal(t, syscall.SIGTERM)
		nd.waitLog(t, "draining")
		nd.waitLog(t, "node closed") // the runtime is done: only the held request keeps the process
		if !nd.Running() {
			t.Fatalf("%s exited while a request was in flight:\n%s", nd.ID, nd.Tail(10))
		}
		st := held.finish(t)
		if st == 0 || st >= 500 && st != http.StatusServiceUnavailable {
			t.Fatalf("the in-flight request got %d, want an answer (200, or 503 from the closed node)", st)
		}
		if code := nd.waitExit(t, 60*time.Second); code != 0 {
			t.Fatalf("exit code %d after the drain, want 0:\n%s", code, nd.Tail(10))
		}
	})

	t.Run("SecondSignalExitsAtOnce", func(t *testing.T) {
		c := newCluster(t, 1)
		nd := c.nodes[0]
		c.start(nd, drain)
		c.waitHealthy(30*time.Second, nd)
		holdRequest(t, nd) // never finished: the drain cannot end before 10 minutes
		nd.signal(t, syscall.SIGTERM)
		nd.waitLog(t, "draining")
		if !nd.Running() {
			t.Fatalf("%s exited while a request was in flight:\n%s", nd.ID, nd.Tail(10))
		}
		nd.signal(t, syscall.SIGINT)
		if code := nd.waitExit(t, 60*time.Second); code != 1 {
			t.Fatalf("exit code %d after a second signal, want 1:\n%s", code, nd.Tail(10))
		}
		nd.waitLog(t, "second signal: exiting now")
	})
}
