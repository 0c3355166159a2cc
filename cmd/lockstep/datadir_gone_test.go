package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeStopsWhenItsDataDirectoryIsGone: `rm -rf` of a serving
// member's data directory, under traffic, stops it within its check
// interval (10 s), with one ERROR line that says what happened and what
// to do, and exit code 1; no panic, no goroutine dump. An operator's
// trial saw the ERROR line say the member runs on "until its next
// snapshot fails and stops it", then, 0.2 s later, Pebble's raw
// "panic: 000004.log: ... no such file or directory" and 180 lines of
// goroutines.
func TestServeStopsWhenItsDataDirectoryIsGone(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the data directory's check, every 10 s")
	}
	dir := filepath.Join(t.TempDir(), "node-1")
	api := loopbackAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := lockstepCommand(t, ctx, os.Args[0], "serve", "--dev", "--data-dir", dir, "--api-address", api,
		"--metrics-address", loopbackAddr(t), "--raft-address", loopbackAddr(t))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()
	hc := &http.Client{Timeout: 2 * time.Second}
	healthy := false
	for deadline := time.Now().Add(20 * time.Second); !healthy && time.Now().Before(deadline); {
		if r, err := hc.Get("http://" + api + "/health"); err == nil {
			healthy = r.StatusCode == http.StatusOK
			r.Body.Close()
		}
		if !healthy {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !healthy {
		t.Fatalf("the member did not become healthy within 20 s\nstderr:\n%s", errb.String())
	}
	if err := os.RemoveAll(dir); err != nil {
		// The member's own writes may race it ("directory not empty").
		_ = os.RemoveAll(dir)
	}
	// Traffic, at most 2,000 acquires or until it exits.
	var waitErr error
	done := false
	for i := 0; i < 2000 && !done; i++ {
		select {
		case waitErr = <-exited:
			done = true
			continue
		default:
		}
		if r, err := hc.Post(fmt.Sprintf("http://%s/locks/gone-%d/acquire", api, i), "application/json",
			strings.NewReader(`{"owner": "test", "wait_timeout_ms": 0}`)); err == nil {
			r.Body.Close()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !done {
		select {
		case waitErr = <-exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("the member still runs 30 s after its data directory went\nstderr:\n%s", errb.String())
		}
	}
	exited <- waitErr // for the deferred wait
	var exit *exec.ExitError
	if !errors.As(waitErr, &exit) || exit.ExitCode() != exitError {
		t.Fatalf("the member ended with %v, want exit code %d\nstderr:\n%s", waitErr, exitError, errb.String())
	}
	logs := errb.String()
	if strings.Contains(logs, "panic") || strings.Contains(logs, "goroutine ") {
		t.Errorf("the member panicked:\n%s", logs)
	}
	if c := strings.Count(logs, "level=ERROR"); c != 1 || !strings.Contains(logs, `level=ERROR msg="the data directory is gone"`) ||
		!strings.Contains(logs, "this member stops now") || !strings.Contains(logs, "replace it") {
		t.Errorf("want one ERROR line, that the data directory is gone and what to do; %d:\n%s", c, logs)
	}
}
