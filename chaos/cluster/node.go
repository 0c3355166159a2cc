package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lockstepd/lockstep/config"
)

// Node is one member: its addresses, files and, while it runs, its process.
type Node struct {
	ID string
	// Raft is cluster.raft_address, what peers dial (the proxy's port when
	// the cluster has proxies); RaftListen is where the node listens then.
	Raft, RaftListen string
	// API is what clients dial (the proxy's port when the cluster has
	// proxies); APIListen is where the node listens then.
	API, APIListen string
	Metrics        string
	DataDir        string
	LogPath        string
	ConfigPath     string

	bin   string
	flags []string
	// With Options.Secure: the node's certificate, and the harness's
	// client to it (trusting the CA, presenting the client certificate).
	certFile, keyFile string
	tls               *tls.Config
	tlsClient         *http.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error
	stopped bool // SIGSTOP sent, no SIGCONT since
}

// ErrNotRunning is returned for a signal to a node without a process.
var ErrNotRunning = errors.New("cluster: node is not running")

// WriteConfig replaces the node's configuration file; it takes effect at
// the next Start.
func (nd *Node) WriteConfig(cfg config.Config) error {
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(nd.ConfigPath, b, 0o600)
}

// Config reads the node's configuration file.
func (nd *Node) Config() (config.Config, error) { return config.Load(nd.ConfigPath) }

// URL is the node's API endpoint.
func (nd *Node) URL() string { return nd.scheme() + "://" + nd.API }

// Start starts the node's process, its output appended to LogPath.
func (nd *Node) Start(extra ...string) error { return nd.StartWithEnv(nil, extra...) }

// StartWithEnv is Start with env ("KEY=value") added to the process's
// environment.
func (nd *Node) StartWithEnv(env []string, extra ...string) error {
	if nd.Running() {
		return fmt.Errorf("cluster: %s is already running", nd.ID)
	}
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--config", nd.ConfigPath}, nd.flags...)
	cmd := exec.Command(nd.bin, append(args, extra...)...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cluster: starting %s: %w", nd.ID, err)
	}
	exited := make(chan struct{})
	nd.mu.Lock()
	nd.cmd, nd.exited, nd.err, nd.stopped = cmd, exited, nil, false
	nd.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		nd.mu.Lock()
		nd.err = err
		nd.mu.Unlock()
		close(exited)
	}()
	return nil
}

func (nd *Node) proc() (*exec.Cmd, chan struct{}) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.cmd, nd.exited
}

// Running is true while the node's process lives (stopped or not).
func (nd *Node) Running() bool {
	_, exited := nd.proc()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Paused is true between Pause and Resume.
func (nd *Node) Paused() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.stopped && nd.cmd != nil
}

// Pid is the process id, 0 when not running.
func (nd *Node) Pid() int {
	cmd, _ := nd.proc()
	if cmd == nil || !nd.Running() {
		return 0
	}
	return cmd.Process.Pid
}

// Kill sends SIGKILL (after SIGCONT, for a stopped node) and waits for the
// process to go. A node that is not running is left alone.
func (nd *Node) Kill() {
	cmd, exited := nd.proc()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	nd.mu.Lock()
	nd.stopped = false
	nd.mu.Unlock()
}

// Stop sends SIGTERM and waits up to limit (at most stopGrace when 0) for a
// clean exit; past it the node is killed and Stop says so.
func (nd *Node) Stop(limit time.Duration) error {
	cmd, exited := nd.proc()
	if cmd == nil || !nd.Running() {
		return ErrNotRunning
	}
	if limit <= 0 {
		limit = stopGrace
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(limit):
		nd.Kill()
		return fmt.Errorf("cluster: %s did not exit within %v of SIGTERM", nd.ID, limit)
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.err
}

// Signal sends sig to the node's process (SIGHUP, SIGTERM, ...).
func (nd *Node) Signal(sig os.Signal) error {
	cmd, _ := nd.proc()
	if cmd == nil || !nd.Running() {
		return ErrNotRunning
	}
	return cmd.Process.Signal(sig)
}

// Wait waits up to limit for the process to exit and returns how it ended
// (nil: exit status 0; an *exec.ExitError otherwise); exited is false when
// it still runs at the limit.
func (nd *Node) Wait(limit time.Duration) (exit error, exited bool) {
	_, done := nd.proc()
	if done == nil {
		return ErrNotRunning, false
	}
	select {
	case <-done:
	case <-time.After(limit):
		return nil, false
	}
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.err, true
}

// Pause sends SIGSTOP: the process keeps its sockets but answers nothing.
func (nd *Node) Pause() error { return nd.signal(syscall.SIGSTOP, true) }

// Resume sends SIGCONT.
func (nd *Node) Resume() error { return nd.signal(syscall.SIGCONT, false) }

func (nd *Node) signal(sig syscall.Signal, stopped bool) error {
	cmd, _ := nd.proc()
	if cmd == nil || !nd.Running() {
		return ErrNotRunning
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	nd.mu.Lock()
	nd.stopped = stopped
	nd.mu.Unlock()
	return nil
}

// Restart kills the node and starts it again on the same data directory.
func (nd *Node) Restart() error {
	nd.Kill()
	return nd.Start()
}

// Wipe removes the node's data directory: a lost disk. The node must not
// be running.
func (nd *Node) Wipe() error {
	if nd.Running() {
		return fmt.Errorf("cluster: wipe %s: the node is running", nd.ID)
	}
	return os.RemoveAll(nd.DataDir)
}

// Tail returns the last n lines of the node's log.
func (nd *Node) Tail(n int) string {
	b, err := os.ReadFile(nd.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ListenAPI is where the node's API listens (cluster.api_address): behind
// its proxy, or on API itself.
func (nd *Node) ListenAPI() string {
	if nd.APIListen != "" {
		return nd.APIListen
	}
	return nd.API
}
