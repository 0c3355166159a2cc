package rpc_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc"
)

// TestWaitLeftQueuedKeepsTheSessionMadeForIt: a REST acquire whose
// member closes while it waits, and leaves its wait queued for the
// client's resend elsewhere (runtime.ErrWaitKept), answers 503 and keeps
// the session the server made for it: closing that session would withdraw
// the wait, and the resend would queue at the back. The resend, with the
// same client_id and request_seq, finds the same session and is granted
// from the same wait. An acquire without client_id cannot be resent so;
// its wait is withdrawn, and its session closed, as before.
func TestWaitLeftQueuedKeepsTheSessionMadeForIt(t *testing.T) {
	s := startServer(t, func(o *rpc.Options) { o.MaxWait = 30 * time.Second })
	const name = "drained"
	st, held := s.call(t, "POST", "/locks/"+name+"/acquire", `{"owner":"holder"}`)
	expect(t, "holder's acquire", st, 200)
	waiters := func() []core.Waiter {
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		st, err := s.b.m.Status(core.KindMutex, name)
		if err != nil {
			t.Fatal(err)
		}
		return st.Waiters
	}
	sessionLive := func(id core.SessionID) bool {
		s.b.mu.Lock()
		defer s.b.mu.Unlock()
		_, live := s.b.m.SessionOwner(id)
		return live
	}
	closing := make(chan struct{})
	s.b.mu.Lock()
	s.b.closing = closing
	s.b.mu.Unlock()

	type answer struct {
		status int
		body   map[string]any
	}
	acquire := func(body string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			st, b := s.call(t, "POST", "/locks/"+name+"/acquire", body)
			ch <- answer{st, b}
		}()
		return ch
	}
	const kept = `{"owner":"kept","client_id":"drain-c1","request_seq":"1","wait_timeout_ms":"30000"}`
	keptCall := acquire(kept)
	waitUntil(t, "the kept wait queues", func() bool { return len(waiters()) == 1 })
	anonymousCall := acquire(`{"owner":"anonymous","wait_timeout_ms":"30000"}`)
	waitUntil(t, "the anonymous wait queues", func() bool { return len(waiters()) == 2 })
	ws := waiters()
	keptSession, anonymousSession := ws[0].Session, ws[1].Session

	close(closing)
	for _, a := range []answer{<-keptCall, <-anonymousCall} {
		expectError(t, a.status, a.body, 503, "unavailable")
	}
	if ws := waiters(); len(ws) != 1 || ws[0].Session != keptSession {
		t.Fatalf("the queue after the member stopped serving it: %+v, want the kept wait (session %d) alone", ws, keptSession)
	}
	if !sessionLive(keptSession) {
		t.Fatalf("the session made for the kept wait was closed")
	}
	if sessionLive(anonymousSession) {
		t.Errorf("the session made for the anonymous wait is still open")
	}

	// The resend, on a member that serves it.
	s.b.mu.Lock()
	s.b.closing = nil
	s.b.mu.Unlock()
	resent := acquire(kept)
	time.Sleep(50 * time.Millisecond)
	if ws := waiters(); len(ws) != 1 || ws[0].Session != keptSession {
		t.Fatalf("the queue after the resend: %+v, want the kept wait (session %d) alone", ws, keptSession)
	}
	st, _ = s.call(t, "POST", "/locks/"+name+"/release", `{"owner":"holder","fencing_token":"`+held["fencing_token"].(string)+`"}`)
	expect(t, "holder's release", st, 200)
	select {
	case a := <-resent:
		expect(t, "the resend", a.status, 200)
		expect(t, "acquired", a.body["acquired"], true)
		if sid, _ := a.body["session_id"].(string); sid != strconv.FormatUint(uint64(keptSession), 10) {
			t.Errorf("the resend was granted in session %v, want the kept wait's %d", a.body["session_id"], keptSession)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the resend was not granted within 10 s")
	}
}
