package client_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
)

// endpoint is the API address of the single dev node TestMain starts from a
// freshly built lockstep binary (LOCKSTEP_BIN names one to use instead);
// metricsEndpoint is its metrics listener.
var endpoint, metricsEndpoint string

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
	// One member on 127.0.0.1, started by chaos/cluster (the one harness
	// that runs real processes): what `lockstep serve --dev` runs.
	c, err := cluster.Start(cluster.Options{Binary: bin, Nodes: 1, Dir: filepath.Join(dir, "cluster")}, 30*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting lockstep:", err)
		return 1
	}
	defer c.Close()
	endpoint, metricsEndpoint = c.Nodes[0].URL(), c.Nodes[0].MetricsURL()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- end of server log:\n%s\n", c.Nodes[0].Tail(60))
	}
	return code
}

// freePort returns a 127.0.0.1 address nothing listens on (a moment ago).
func freePort() string {
	a, err := cluster.FreePort()
	if err != nil {
		panic(err)
	}
	return a
}

func needServer(t testing.TB) {
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
