package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
	"github.com/lockstepd/lockstep/runtime"
)

// devServer starts a one-member dev node and its API in this process, on
// 127.0.0.1, and answers the API's URL.
func devServer(t *testing.T) string {
	t.Helper()
	return devServerWith(t, func(b rpc.Backend) rpc.Backend { return b })
}

// devServerWith is devServer with the API serving wrap(node).
func devServerWith(t *testing.T, wrap func(rpc.Backend) rpc.Backend) string {
	t.Helper()
	cfg := config.Dev(filepath.Join(t.TempDir(), "data"))
	cfg.Cluster.RaftAddress = loopbackAddr(t)
	cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: cfg.Cluster.RaftAddress}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	node, err := runtime.Start(ctx, runtime.Options{Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close() })
	for deadline := time.Now().Add(20 * time.Second); !node.Healthy(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no leader within 20s: %v", node.Health())
		}
	}
	api, err := rpc.New(rpc.Options{Backend: wrap(node), NodeID: cfg.Cluster.NodeID, Registerer: prometheus.NewRegistry(),
		StampLag: 2 * time.Duration(cfg.Consensus.TickIntervalMs) * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewHTTPServer(ln.Addr().String(), api, nil)
	go func() { _ = srv.Serve(rpc.BufferedListener(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// lockedBuffer is a bytes.Buffer that takes writes from several
// goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFile waits up to d for path to exist and answers its contents.
func waitFile(t *testing.T, path string, d time.Duration) string {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, d)
		}
	}
}

// TestLockStopsItsCommandWhenAnotherReleasesTheGrant is the user trial:
// 'lockstep lock' holds a mutex while its command runs, and another
// caller releases the grant over REST by owner label and fencing token
// (allowed: a release names the grant by its token). lockstep stops its
// command as after the session's loss (SIGTERM), says the grant was
// released by another caller with its token, exits 3 and sends no release
// of its own; it printed at the very end that its release was refused as
// stale and exited 0, while another holder had run beside its command. A
// command that ends normally, whose own release the servers push too, is
// not reported lost.
func TestLockStopsItsCommandWhenAnotherReleasesTheGrant(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	api := devServer(t)
	dir := t.TempDir()
	tokenFile, termFile := filepath.Join(dir, "token"), filepath.Join(dir, "term")
	// The command takes a second to stop: the guard, told the hold ended,
	// must not say lockstep went silent meanwhile.
	script := fmt.Sprintf(`trap 'echo term > %s; sleep 1; exit 143' TERM; echo "$LOCKSTEP_FENCING_TOKEN" > %s; echo A-start; `+
		`i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo A-end`, termFile, tokenFile)
	type result struct {
		code        int
		out, stderr string
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		var out, errb lockedBuffer // the command's output and lockstep's own come from two goroutines
		code := run([]string{"lock", "jobs/rel", "--ttl", "10s", "--grace", "5s", "--owner", "vm/pid-16744",
			"--endpoints", api, "--", "sh", "-c", script}, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(tokenFile); err == nil {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("lockstep lock ended before its command started: exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.stderr)
		default:
		}
	}
	token := waitFile(t, tokenFile, time.Second)
	if _, err := strconv.ParseUint(token, 10, 64); err != nil || token == "0" {
		t.Fatalf("the command's token %q", token)
	}
	body := fmt.Sprintf(`{"owner":"vm/pid-16744","fencing_token":"%s"}`, token)
	resp, err := http.Post(api+"/locks/"+url.PathEscape("jobs/rel")+"/release", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var answer bytes.Buffer
	_, _ = answer.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(answer.String(), `"released":true`) {
		t.Fatalf("the other caller's release: %d %s", resp.StatusCode, answer.String())
	}
	released := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("lockstep lock did not end within 15 s of another caller's release of its grant")
	}
	t.Logf("exit %d, stderr:\n%s", r.code, r.stderr)
	if d := time.Since(released); d > 5*time.Second {
		t.Errorf("lockstep lock ended %v after the release; want at once (the push, then SIGTERM)", d)
	}
	if r.code != exitSessionLost {
		t.Errorf("exit %d, want %d (a loss)\nstderr: %s", r.code, exitSessionLost, r.stderr)
	}
	if got := waitFile(t, termFile, time.Second); got != "term" {
		t.Errorf("the command was not sent SIGTERM: %q", got)
	}
	if strings.Contains(r.out, "A-end") {
		t.Errorf("the command ran to its end (%v): %s", time.Since(start), r.out)
	}
	for _, want := range []string{"released by another caller", "token " + token, "SIGTERM"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "as lockstep last reported it") {
		t.Errorf("the guard said lockstep went silent, while lockstep was stopping the command itself:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "releasing mutex") {
		t.Errorf("lockstep tried to release a grant another caller had released:\n%s", r.stderr)
	}

	// A normal run: its own release is pushed too, and is no loss.
	for i := range 3 {
		var out, errb lockedBuffer
		if code := run([]string{"lock", "jobs/rel", "--endpoints", api, "--", "sh", "-c", "exit 0"}, &out, &errb); code != 0 || errb.String() != "" {
			t.Fatalf("run %d of a command that exits 0: exit %d, stderr %q", i, code, errb.String())
		}
	}
}

// noGrantEnds is a backend whose servers push no grant's end: a server
// from before the push, or a push dropped by a full subscriber.
type noGrantEnds struct{ rpc.Backend }

func (noGrantEnds) GrantsEnded(core.SessionID) (<-chan runtime.GrantEnd, func()) {
	return nil, func() {}
}

// When no word of another caller's release reaches 'lockstep lock', its
// command runs on, and the release at its end is refused as not held: the
// command may have run beside the next holder, so lockstep says it lost
// the hold and exits 3. Before, it printed the refusal and exited with the
// command's own code, 0.
func TestLockWithoutThePushExitsLostWhenItsReleaseIsRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	api := devServerWith(t, func(b rpc.Backend) rpc.Backend { return noGrantEnds{b} })
	dir := t.TempDir()
	tokenFile, goFile := filepath.Join(dir, "token"), filepath.Join(dir, "go")
	script := fmt.Sprintf(`echo "$LOCKSTEP_FENCING_TOKEN" > %s; i=0; while [ ! -e %s ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; exit 0`,
		tokenFile, goFile)
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		var out, errb lockedBuffer
		code := run([]string{"lock", "jobs/nopush", "--owner", "vm/pid-7", "--endpoints", api, "--", "sh", "-c", script}, &out, &errb)
		done <- result{code, errb.String()}
	}()
	token := waitFile(t, tokenFile, 20*time.Second)
	body := fmt.Sprintf(`{"owner":"vm/pid-7","fencing_token":"%s"}`, token)
	resp, err := http.Post(api+"/locks/"+url.PathEscape("jobs/nopush")+"/release", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the other caller's release: %s", resp.Status)
	}
	if err := os.WriteFile(goFile, []byte("go"), 0o600); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("lockstep lock did not end")
	}
	t.Logf("exit %d, stderr:\n%s", r.code, r.stderr)
	if r.code != exitSessionLost {
		t.Errorf("exit %d, want %d: the hold had ended before the command exited", r.code, exitSessionLost)
	}
	for _, want := range []string{"lost the hold", "refused", "another holder may have run beside the command"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// goneAtRelease is a backend whose servers answer every release as from a
// session they do not have, in the servers' words, while the session's
// keepalives still pass: a session that went (a restore put the cluster
// back before it) with no word of it before the command exited.
type goneAtRelease struct{ rpc.Backend }

func (b goneAtRelease) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if cmd.Op == core.OpRelease {
		return core.Result{Err: &core.Error{Code: core.CodeNotFound,
			Msg: fmt.Sprintf("session %d does not exist (it expired, was closed, or never was): create a new session", cmd.Session)}}, nil
	}
	return b.Backend.DoBy(ctx, cmd, deadline)
}

// The user trial: after a restore, 'lockstep lock' ran its command, and
// the release at its end was refused because the servers no longer had
// the session. It printed the refusal with advice that did not apply
// ("create a new session (closing the session releases it anyway)") and
// exited 0, the command's code, while the hold had ended with the session
// before the command did. Now lock, sem and rwlock exit 3, say the hold
// ended with the session and the command may have run beside another
// holder, in the servers' words less their advice.
func TestHoldExitsLostWhenItsReleaseFindsTheSessionGone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	api := devServerWith(t, func(b rpc.Backend) rpc.Backend { return goneAtRelease{b} })
	for _, args := range [][]string{
		{"lock", "jobs/cli"},
		{"sem", "jobs/sem", "--limit", "2"},
		{"rwlock", "jobs/rw", "--write"},
		{"rwlock", "jobs/rw", "--read"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb lockedBuffer
			code := run(append(args, "--endpoints", api, "--", "sh", "-c", "exit 0"), &out, &errb)
			stderr := errb.String()
			t.Logf("exit %d, stderr:\n%s", code, stderr)
			if code != exitSessionLost {
				t.Errorf("exit %d, want %d: the hold had ended with the session before lockstep released it", code, exitSessionLost)
			}
			for _, want := range []string{"lost the hold", "release was refused", "does not exist (it expired, was closed, or never was)",
				"the hold ended with the session", "may have run beside another holder"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			for _, not := range []string{"create a new session", "closing the session releases it anyway"} {
				if strings.Contains(stderr, not) {
					t.Errorf("stderr gives advice that does not apply to a command that ran, %q:\n%s", not, stderr)
				}
			}
		})
	}
}

// refusedAtResign is a backend whose servers refuse every resign as
// refusal says, while the session's keepalives still pass: a leadership
// that ended with no word of it before lockstep elect resigned it.
type refusedAtResign struct {
	rpc.Backend
	refusal func(session core.SessionID) *core.Error
}

func (b refusedAtResign) DoBy(ctx context.Context, cmd core.Command, deadline time.Time) (core.Result, error) {
	if cmd.Op == core.OpResign {
		return core.Result{Err: b.refusal(cmd.Session)}, nil
	}
	return b.Backend.DoBy(ctx, cmd, deadline)
}

// 'lockstep elect', interrupted, resigns its leadership; when the servers
// refuse the resign because the leadership had already ended (its session
// gone, as after a restore; or resigned by another caller with no word of
// it), it exited 1 with the refusal, and its advice to create a new
// session, where lock, sem and rwlock exit 3 for their release: another
// candidate may have led beside it. Now it exits 3 too, in the servers'
// words less their advice.
func TestElectExitsLostWhenItsResignFindsTheLeadershipGone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	for _, tc := range []struct {
		what    string
		refusal func(session core.SessionID) *core.Error
		want    []string
	}{
		{"session gone", func(session core.SessionID) *core.Error {
			return &core.Error{Code: core.CodeNotFound,
				Msg: fmt.Sprintf("session %d does not exist (it expired, was closed, or never was): create a new session", session)}
		}, []string{"lost the leadership", "resign was refused", "does not exist (it expired, was closed, or never was)",
			"ended with the session", "another candidate may have led beside this one"}},
		{"resigned by another", func(core.SessionID) *core.Error {
			return &core.Error{Code: core.CodeConflict, Msg: "this session does not lead election \"sched\""}
		}, []string{"lost the leadership", "resign was refused", "does not lead", "another candidate may have led beside this one"}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			api := devServerWith(t, func(b rpc.Backend) rpc.Backend { return refusedAtResign{b, tc.refusal} })
			var out, errb lockedBuffer
			done := make(chan int, 1)
			go func() { done <- run([]string{"elect", "sched", "10.0.0.7", "--endpoints", api}, &out, &errb) }()
			deadline := time.Now().Add(20 * time.Second)
			for !strings.Contains(out.String(), "elected leader") {
				if time.Now().After(deadline) {
					t.Fatalf("not elected within 20s; stderr:\n%s", errb.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// elect listens for SIGINT from before its campaign, and no
			// test of this package runs in parallel: the signal reaches it
			// only.
			if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			var code int
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("lockstep elect did not end")
			}
			stderr := errb.String()
			t.Logf("exit %d, stderr:\n%s", code, stderr)
			if code != exitSessionLost {
				t.Errorf("exit %d, want %d: the leadership had ended before lockstep resigned it", code, exitSessionLost)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "create a new session") {
				t.Errorf("stderr gives advice that does not apply to a leadership that ended:\n%s", stderr)
			}
		})
	}
}
