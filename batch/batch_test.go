package batch

import (
	"errors"
	"sync"
	"testing"
)

// A lone item is sent at once, by the goroutine that adds it.
func TestALoneItemGoesAtOnce(t *testing.T) {
	g := &Gatherer[int]{Max: 4}
	var got [][]int
	if err := g.Add(7, func(b []int) error { got = append(got, b); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || len(got[0]) != 1 || got[0][0] != 7 {
		t.Fatalf("sent %v, want [[7]]", got)
	}
}

// Items added while a send is under way go in the next send, in order and
// in batches of at most Max, sent by the goroutine that was sending.
func TestItemsAddedDuringASendShareTheNext(t *testing.T) {
	g := &Gatherer[int]{Max: 3}
	inSend := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var got [][]int
	send := func(b []int) error {
		mu.Lock()
		got = append(got, append([]int(nil), b...))
		first := len(got) == 1
		mu.Unlock()
		if first {
			close(inSend)
			<-release
		}
		return nil
	}
	done := make(chan error)
	go func() { done <- g.Add(0, send) }()
	<-inSend
	for i := 1; i <= 5; i++ {
		if err := g.Add(i, func([]int) error { t.Error("a second goroutine sent"); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := [][]int{{0}, {1, 2, 3}, {4, 5}}
	if len(got) != len(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	for i := range want {
		for j := range want[i] {
			if len(got[i]) != len(want[i]) || got[i][j] != want[i][j] {
				t.Fatalf("sent %v, want %v", got, want)
			}
		}
	}
}

// A failed send drops what was gathered and tells the sending goroutine;
// the next item is sent afresh.
func TestAFailedSendDropsWhatWasGathered(t *testing.T) {
	g := &Gatherer[int]{Max: 8}
	inSend := make(chan struct{})
	release := make(chan struct{})
	boom := errors.New("boom")
	var sent [][]int
	send := func(b []int) error {
		sent = append(sent, append([]int(nil), b...))
		if len(sent) == 1 {
			close(inSend)
			<-release
			return boom
		}
		return nil
	}
	done := make(chan error)
	go func() { done <- g.Add(1, send) }()
	<-inSend
	_ = g.Add(2, send) // gathered behind the failing send
	close(release)
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("the sender's Add: %v, want boom", err)
	}
	if err := g.Add(3, send); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || len(sent[1]) != 1 || sent[1][0] != 3 {
		t.Fatalf("sent %v, want [[1] [3]]: 2 dropped with the failed send", sent)
	}
}
