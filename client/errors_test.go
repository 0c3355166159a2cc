package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
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

// TestRefusalSentinels: a refusal for the state the request met, a
// malformed request, an ACL's refusal and a limit each wrap a sentinel of
// their own, keep the server's message, and keep the connect error
// reachable (connect.CodeOf), which the CLI's hints and callers that
// switch on codes read, and print the code once.
func TestRefusalSentinels(t *testing.T) {
	sentinels := []error{client.ErrPrecondition, client.ErrInvalid, client.ErrPermissionDenied, client.ErrLimit,
		client.ErrLocked, client.ErrNotHeld, client.ErrSessionLost}
	for _, tc := range []struct {
		code connect.Code
		want error
	}{
		{connect.CodeFailedPrecondition, client.ErrPrecondition},
		{connect.CodeInvalidArgument, client.ErrInvalid},
		{connect.CodePermissionDenied, client.ErrPermissionDenied},
		{connect.CodeResourceExhausted, client.ErrLimit},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			c := fakeClient(t, refusing(func(int32) string { return tc.code.String() }, new(atomic.Int32), new(atomic.Int32)))
			ctx := testCtx(t)
			defer closeFake(ctx, c)
			s, err := c.NewSession(ctx)
			if err != nil {
				t.Fatal(err)
			}
			err = client.NewMutex(s, "t/refused").TryLock(ctx)
			if !errors.Is(err, tc.want) {
				t.Fatalf("TryLock refused with %s: %v, want errors.Is %v", tc.code, err, tc.want)
			}
			for _, other := range sentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("TryLock refused with %s: %v is also %v", tc.code, err, other)
				}
			}
			if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), "acquire of t/refused: "+tc.code.String()) {
				t.Errorf("TryLock refused with %s: %v (code %s): want the code and the server's message kept", tc.code, err, connect.CodeOf(err))
			}
			// The sentinel names the code already: "permission denied:
			// permission_denied: ..." said it twice.
			if strings.Contains(err.Error(), tc.code.String()+": acquire of") {
				t.Errorf("TryLock refused with %s: %v: the code repeated after the sentinel", tc.code, err)
			}
		})
	}
}

// TestRefusalSentinelsFromTheServer: the same against a real node: a
// semaphore acquired with another limit (failed_precondition), and a name
// over the servers' limit (invalid_argument).
func TestRefusalSentinelsFromTheServer(t *testing.T) {
	c := newClient(t)
	ctx := testCtx(t)
	other, s := newSession(t, c), newSession(t, c)
	if err := client.NewSemaphore(other, "t/sentinels", 2).Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	err := client.NewSemaphore(s, "t/sentinels", 3).TryAcquire(ctx, 1)
	if !errors.Is(err, client.ErrPrecondition) || !strings.Contains(err.Error(), "has limit 2") {
		t.Fatalf("an acquire with another limit: %v, want ErrPrecondition and the server's message", err)
	}
	err = client.NewMutex(s, strings.Repeat("n", 300)).TryLock(ctx)
	if !errors.Is(err, client.ErrInvalid) || connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a 300-byte name: %v, want ErrInvalid", err)
	}
}

// TestErrLockedSaysWhoHolds: a TryLock refused because another session
// holds the mutex says who holds it (its owner label, session and token,
// which the servers' answer carries), on the shared stream and unary
// alike, and is still ErrLocked. It said only "held by someone else".
func TestErrLockedSaysWhoHolds(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []client.Option
	}{{"stream", nil}, {"unary", []client.Option{client.WithUnary()}}} {
		t.Run(mode.name, func(t *testing.T) {
			needServer(t)
			ctx := testCtx(t)
			c, err := client.New([]string{endpoint}, mode.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			holder := newSession(t, c, client.WithOwner("holder-1"))
			m := client.NewMutex(holder, "t/who-holds-"+mode.name)
			if err := m.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			err = client.NewMutex(newSession(t, c), m.Name()).TryLock(ctx)
			want := fmt.Sprintf(`"holder-1", session %d, token %d`, holder.ID(), m.Token())
			if !errors.Is(err, client.ErrLocked) || !strings.Contains(err.Error(), want) {
				t.Fatalf("TryLock of a held mutex: %v\nwant ErrLocked saying %s", err, want)
			}
		})
	}
}

// TestEndpointWithPathRefused: the API is served at the root, so an
// endpoint with a path, a query or a fragment is refused at New, saying
// to give scheme://host:port; one with a path was accepted and every call
// failed with `Content-Type "application/proto" is not accepted`.
func TestEndpointWithPathRefused(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:34001/api", "http://127.0.0.1:34001/api/", "127.0.0.1:34001/lockstep",
		"https://lockstep-1:8080/v1", "http://127.0.0.1:34001?x=1", "http://127.0.0.1:34001/?x=1", "http://127.0.0.1:34001?",
		"http://127.0.0.1:34001#top", "http://127.0.0.1:34001/#"} {
		c, err := client.New([]string{"http://127.0.0.1:34002", ep})
		if err == nil {
			_ = c.Close(context.Background())
			t.Errorf("New(%q) accepted it", ep)
			continue
		}
		if !strings.Contains(err.Error(), "scheme://host:port") || !strings.Contains(err.Error(), ep) {
			t.Errorf("New(%q): %v, want it named and scheme://host:port asked for", ep, err)
		}
	}
	for _, ep := range []string{"http://127.0.0.1:34001/", "http://127.0.0.1:34001//", "[::1]:34001"} {
		c, err := client.New([]string{ep})
		if err != nil {
			t.Errorf("New(%q): %v", ep, err)
			continue
		}
		_ = c.Close(context.Background())
	}
}

// TestNotTheAPIPortSaysSo: an endpoint that answers a bare HTTP 404 (no
// Connect error: the API answers an unknown procedure with one) does not
// serve the Lockstep API, as the node's metrics port does not: the error
// says so and names the API's port, where it said "unimplemented: 404 Not
// Found". The connect code stays reachable.
func TestNotTheAPIPortSaysSo(t *testing.T) {
	needServer(t)
	ctx := testCtx(t)
	c, err := client.New([]string{metricsEndpoint}, client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	_, err = c.NewSession(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not serve the Lockstep API") || !strings.Contains(err.Error(), "api_address") ||
		connect.CodeOf(err) != connect.CodeUnimplemented {
		t.Fatalf("NewSession at the metrics port: %v (code %s), want it said that it does not serve the API", err, connect.CodeOf(err))
	}
	if _, err := c.ClusterStatus(ctx); err == nil || !strings.Contains(err.Error(), "does not serve the Lockstep API") {
		t.Fatalf("ClusterStatus at the metrics port: %v, want it said that it does not serve the API", err)
	}
	var last client.WatchResponse
	for r := range c.Watch(ctx, "t/") {
		last = r
	}
	if last.Err == nil || !strings.Contains(last.Err.Error(), "does not serve the Lockstep API") {
		t.Fatalf("Watch at the metrics port ended with %v, want it said that it does not serve the API", last.Err)
	}
}

// TestCappedWaitSaysSo: a LockWithin that the servers end at their cap
// (locks.max_wait_time_seconds), well before the wait asked, says so and
// what to do instead; a bare "wait timed out" after 60 s of a 90 s wait
// left a port of a longer retry loop guessing.
func TestCappedWaitSaysSo(t *testing.T) {
	timedOut := streamServer{answer: func(req *pb.StreamRequest) *pb.StreamResponse {
		if req.GetAcquireLock() != nil {
			return &pb.StreamResponse{Response: &pb.StreamResponse_AcquireLock{AcquireLock: &pb.AcquireLockResponse{
				Outcome: pb.Outcome_OUTCOME_REFUSED, Reason: pb.Reason_REASON_TIMEOUT}}}
		}
		return nil
	}}
	c := fakeClient(t, timedOut)
	ctx := testCtx(t)
	defer closeFake(ctx, c)
	s, err := c.NewSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = client.NewMutex(s, "t/capped").LockWithin(ctx, 90*time.Second)
	if !errors.Is(err, client.ErrTimeout) || !strings.Contains(err.Error(), "max_wait_time_seconds") ||
		!strings.Contains(err.Error(), "of the 1m30s asked") {
		t.Fatalf("LockWithin(90s) ended at once with a timeout: %v; want ErrTimeout, the 90 s asked and the servers' cap named", err)
	}
}
