package client

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// lowest_pending_seq is the lowest seq still pending in the request's lane,
// and a long-pending request moves new ones to a fresh lane before the
// servers would hold more results for one id than they keep (16,384).
func TestInflightLanes(t *testing.T) {
	f := newInflight("go-x", 3*laneSpan)
	ctx := context.Background()
	first, _ := f.begin(ctx)
	if first.ClientID() != "go-x" || first.seq != 1 || first.Low() != 1 {
		t.Fatalf("first request: %s/%d low %d", first.ClientID(), first.seq, first.Low())
	}
	// first stays pending (a Campaign waiting for hours) while others come
	// and go: the low stays at first, until the span is used up.
	var last reqID
	for range laneSpan - 1 {
		id, _ := f.begin(ctx)
		if id.Low() != 1 {
			t.Fatalf("seq %d: low %d, want 1 while seq 1 is pending", id.seq, id.Low())
		}
		id.finish()
		last = id
	}
	if last.ClientID() != "go-x" {
		t.Fatalf("a lane was opened before its span was used: %s", last.ClientID())
	}
	next, _ := f.begin(ctx)
	if next.ClientID() != "go-x.1" || next.seq != 1 || next.Low() != 1 {
		t.Fatalf("past the span: %s/%d low %d, want go-x.1/1 low 1", next.ClientID(), next.seq, next.Low())
	}
	// The abandon of first goes in first's lane, and keeps the low at or
	// below first until it finishes.
	ab := f.follow(first)
	if ab.ClientID() != "go-x" || ab.Low() != 1 {
		t.Fatalf("abandon of seq 1: %s low %d", ab.ClientID(), ab.Low())
	}
	first.finish()
	if ab.Low() != ab.seq {
		t.Fatalf("with only the abandon pending, low %d, want its own seq %d", ab.Low(), ab.seq)
	}
	ab.finish()
	next.finish()
	if n := f.pendingCount(); n != 0 {
		t.Fatalf("%d pending after everything finished", n)
	}
	if len(f.active) != 1 {
		t.Fatalf("%d lanes kept, want only the current one", len(f.active))
	}
}

// Past the in-flight bound, begin waits for a slot (and gives up with its
// ctx), and requests that end holds never wait.
func TestInflightBound(t *testing.T) {
	f := newInflight("go-y", 2)
	a, _ := f.begin(context.Background())
	b, _ := f.begin(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Said: a bare "context canceled" read as the servers' doing.
	if _, err := f.begin(ctx); !errors.Is(err, context.Canceled) ||
		!strings.Contains(err.Error(), "waiting for a request slot: all 2 (WithMaxInFlight) are taken by this client's other requests") {
		t.Fatalf("a third request with two slots: %v", err)
	}
	end := f.beginEnding()
	end.finish()
	a.finish()
	c, err := f.begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b.finish()
	c.finish()
}
