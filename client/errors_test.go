package client_test

import (
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/client"
)

// TestLongNameNotEchoedWhole: an error repeats at most 64 bytes of a name
// and says how long it was, as the server's own messages do; a 300-byte
// name came back whole in the client's prefix of the error.
func TestLongNameNotEchoedWhole(t *testing.T) {
	needServer(t)
	ctx := testCtx(t)
	c, err := client.New([]string{endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	name := strings.Repeat("n", 300)
	err = client.NewMutex(s, name).TryLock(ctx)
	if err == nil {
		t.Fatal("TryLock of a 300-byte name answered nil")
	}
	if strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "(300 bytes)") {
		t.Fatalf("TryLock of a 300-byte name: %v\nwant the name cut to 64 bytes and its length", err)
	}
	var f client.Fence
	if err := f.Check(name, 0); strings.Contains(err.Error(), name) {
		t.Fatalf("Fence.Check: %v: the name whole", err)
	}
}
