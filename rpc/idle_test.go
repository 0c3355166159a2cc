package rpc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseWriter that records the read deadlines set
// on it.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	mu  sync.Mutex
	set []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.set = append(d.set, t)
	return nil
}

func (d *deadlineRecorder) deadlines() []time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.set...)
}

func TestIdleBodyPushesItsDeadlineBackAtMostOncePerRearm(t *testing.T) {
	w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	const timeout, rearm = time.Hour, 200 * time.Millisecond
	b := &idleBody{ReadCloser: io.NopCloser(strings.NewReader(strings.Repeat("x", 1000))),
		rc: http.NewResponseController(w), timeout: timeout, rearm: rearm}
	buf := make([]byte, 1)
	start := time.Now()
	for range 100 {
		if _, err := b.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) < rearm && len(w.set) != 1 {
		t.Fatalf("100 reads within %v set the deadline %d times, want once", rearm, len(w.set))
	}
	if len(w.set) == 0 || w.set[0].Before(start.Add(timeout)) {
		t.Fatalf("the first read set deadlines %v, want one at least %v after it started", w.set, timeout)
	}
	time.Sleep(rearm)
	before := len(w.set)
	readAt := time.Now()
	if _, err := b.Read(buf); err != nil {
		t.Fatal(err)
	}
	if len(w.set) != before+1 || w.set[len(w.set)-1].Before(readAt.Add(timeout)) {
		t.Fatalf("a read %v after the last push set deadlines %v, want one more at least %v after it", rearm, w.set[before:], timeout)
	}
}

// TestIdleBodyHoldsWithoutAPushPerRequest: a stream's requests being
// served keep its silence bound from passing, and cost no push of the
// deadline each (a push is a message to the HTTP/2 serve loop: counting
// is all hold and release do); the deadline is pushed back, before it
// passes, only while a request is served or after one was.
func TestIdleBodyHoldsWithoutAPushPerRequest(t *testing.T) {
	w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
	const timeout, rearm = 400 * time.Millisecond, 100 * time.Millisecond
	b := &idleBody{ReadCloser: io.NopCloser(strings.NewReader("x")), rc: http.NewResponseController(w), timeout: timeout, rearm: rearm}
	defer b.stop()
	if _, err := b.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		b.hold()
		b.release()
	}
	if n := len(w.deadlines()); n != 1 {
		t.Fatalf("a read and 100 requests served at once set the deadline %d times, want once (the read's)", n)
	}
	b.hold() // a wait that lasts
	time.Sleep(3 * timeout)
	set := w.deadlines()
	if last := set[len(set)-1]; !last.After(time.Now()) {
		t.Fatalf("after %v with a request served, the deadline %v has passed (deadlines %v)", 3*timeout, last, set)
	}
	b.release()
	ended := time.Now()
	time.Sleep(2 * timeout)
	set = w.deadlines()
	if last := set[len(set)-1]; last.Before(ended.Add(timeout-rearm)) || last.After(ended.Add(timeout+rearm)) {
		t.Fatalf("the deadline after the last request ended is %v, want about %v after it ended", last.Sub(ended), timeout)
	}
}

// TestIdleBodyInterruptAfterStopLeavesTheWriter: ending a session stream
// (a reload that withdrew its credentials) sets its read deadline to wake
// its read, but not once its handler returned: net/http's HTTP/2 writer of
// a finished stream crashed the member with a nil dereference.
func TestIdleBodyInterruptAfterStopLeavesTheWriter(t *testing.T) {
	body := func() (*idleBody, *deadlineRecorder) {
		w := &deadlineRecorder{ResponseRecorder: httptest.NewRecorder()}
		return &idleBody{ReadCloser: io.NopCloser(strings.NewReader("")), rc: http.NewResponseController(w),
			timeout: time.Hour, rearm: time.Minute}, w
	}
	open, w := body()
	open.interrupt()
	if len(w.deadlines()) != 1 {
		t.Fatalf("interrupting an open stream set deadlines %v, want one", w.deadlines())
	}
	ended, w := body()
	ended.stop()
	ended.interrupt()
	if len(w.deadlines()) != 0 {
		t.Fatalf("interrupting a stream whose handler returned set deadlines %v, want none", w.deadlines())
	}
}
