package chaos

import (
	"context"
	"errors"
	"testing"

	"github.com/lockstepd/lockstep/client"
)

// TestRunClosesItsClients: every Client a run makes, the workload's and
// its tools', is closed when the run ends, so a process that runs seed
// after seed keeps none of their streams or connections.
func TestRunClosesItsClients(t *testing.T) {
	r := &run{o: &Options{}, endpoints: []string{"http://127.0.0.1:1"}}
	worker, _, err := r.newClient("worker", false)
	if err != nil {
		t.Fatal(err)
	}
	tool, err := r.toolClient("tool")
	if err != nil {
		t.Fatal(err)
	}
	r.closeClients()
	for name, c := range map[string]*client.Client{"worker": worker, "tool": tool} {
		if _, err := c.NewSession(context.Background()); !errors.Is(err, client.ErrClientClosed) {
			t.Errorf("the %s client after the run: NewSession answered %v, want ErrClientClosed", name, err)
		}
	}
	if len(r.closers) != 0 {
		t.Errorf("%d closers kept after closing", len(r.closers))
	}
}
