package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// A reply lost after the server applied the request: the client retries
// with the same (client_id, request_seq), and the server answers the first
// result instead of applying it again.
func TestRetryReusesRequestID(t *testing.T) {
	needServer(t)
	target, _ := url.Parse(endpoint)
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var seen []*pb.AcquireSemaphoreRequest
	dropped := false
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".SemaphoreService/Acquire") {
			rp.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		req := &pb.AcquireSemaphoreRequest{}
		if err := proto.Unmarshal(body, req); err != nil {
			t.Errorf("decoding the acquire: %v", err)
		}
		mu.Lock()
		seen = append(seen, req)
		drop := !dropped
		dropped = true
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !drop {
			rp.ServeHTTP(w, r)
			return
		}
		// Apply it on the server, then lose the reply.
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code != 200 {
			t.Errorf("the first attempt failed on the server: %d %s", rec.Code, rec.Body)
		}
		http.Error(w, "dropped by the test", http.StatusServiceUnavailable)
	}))
	t.Cleanup(proxy.Close) // after the session's Close, which goes through it

	c := newClient(t, proxy.URL)
	ctx := testCtx(t)
	s := newSession(t, c)
	sem := client.NewSemaphore(s, "t/retry", 5)
	if err := sem.Acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("%d attempts, want 2 (one dropped, one retry)", len(seen))
	}
	if seen[0].ClientId != seen[1].ClientId || seen[0].RequestSeq != seen[1].RequestSeq {
		t.Fatalf("the retry has another request id: %s/%d then %s/%d",
			seen[0].ClientId, seen[0].RequestSeq, seen[1].ClientId, seen[1].RequestSeq)
	}
	sessions := lockstepv1connect.NewSessionServiceClient(http.DefaultClient, endpoint)
	res, err := sessions.Get(context.Background(), connect.NewRequest(&pb.GetSessionRequest{SessionId: s.ID()}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res.Msg.Session.Holds); n != 1 {
		t.Fatalf("the session holds %d grants after a retried acquire, want 1: %v", n, res.Msg.Session.Holds)
	}
	if h := res.Msg.Session.Holds[0]; h.FencingToken != sem.Token() {
		t.Fatalf("held token %d, client believes %d", h.FencingToken, sem.Token())
	}
}
