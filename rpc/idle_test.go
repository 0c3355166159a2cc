package rpc

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// deadlineRecorder is a ResponseWriter that records the read deadlines set
// on it.
type deadlineRecorder struct {
	*httptest.ResponseRecorder
	set []time.Time
}

func (d *deadlineRecorder) SetReadDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
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
