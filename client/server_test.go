package client_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// endpoint is the API address of the single dev node TestMain starts from a
// freshly built lockstep binary (LOCKSTEP_BIN names one to use instead).
var endpoint string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "lockstep-client-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := os.Getenv("LOCKSTEP_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "lockstep")
		build := exec.Command("go", "build", "-o", bin, "../cmd/lockstep")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building lockstep:", err)
			return 1
		}
	}
	api, raft, metrics := freePort(), freePort(), freePort()
	logf, _ := os.Create(filepath.Join(dir, "server.log"))
	srv := exec.Command(bin, "serve", "--dev", "--data-dir", filepath.Join(dir, "data"),
		"--api-address", api, "--raft-address", raft, "--metrics-address", metrics)
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting lockstep:", err)
		return 1
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGKILL)
		_ = srv.Wait()
	}()
	endpoint = "http://" + api
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := http.Get(endpoint + "/health")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			fmt.Fprintf(os.Stderr, "lockstep did not become healthy in 30s:\n%s\n", b)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
	code := m.Run()
	if code != 0 {
		b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		fmt.Fprintf(os.Stderr, "---- end of server log:\n%s\n", b)
	}
	return code
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func needServer(t *testing.T) {
	t.Helper()
	if endpoint == "" {
		t.Skip("needs a server (not with -short)")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
