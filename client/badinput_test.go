package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
)

// TestInputTheClientCannotSendIsInvalid: a name that is not UTF-8 (which
// Protocol Buffers cannot carry) and a semaphore acquire of fewer than one
// permit are ErrInvalid, said before anything is sent. The name's answer
// was "internal: marshal message", and the permits' matched no sentinel.
func TestInputTheClientCannotSendIsInvalid(t *testing.T) {
	c, err := client.New([]string{"http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := context.Background()
	bad := "jobs/\xff"
	_, errStatus := c.Status(ctx, client.KindMutex, bad)
	_, errFence := c.CheckFence(ctx, client.KindMutex, bad, 1)
	_, errLeader := c.Leader(ctx, bad)
	for what, err := range map[string]error{"Status": errStatus, "CheckFence": errFence, "Leader": errLeader} {
		if !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "not valid UTF-8") {
			t.Errorf("%s of a name that is not UTF-8: %v, want ErrInvalid saying so", what, err)
		}
	}
	sem := client.NewSemaphore(nil, "s", 2)
	for _, n := range []int64{0, -2} {
		if err := sem.Acquire(ctx, n); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "at least 1") {
			t.Errorf("Acquire(%d): %v, want ErrInvalid", n, err)
		}
	}
}
