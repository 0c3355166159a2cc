package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/client"
)

// -o json writes 64-bit integers as strings, as the REST API does, so that
// a token above 2^53 survives JavaScript and jq.
func TestJSONWritesLargeIntegersAsStrings(t *testing.T) {
	type holder struct {
		Token   uint64        `json:"fencing_token"`
		Session uint64        `json:"session_id,omitempty"`
		At      int64         `json:"acquired_at_ms"`
		Count   int           `json:"count"`
		Wait    time.Duration `json:"wait"`
		Value   []byte        `json:"value"`
		hidden  int
	}
	var out bytes.Buffer
	c := &common{stdout: &out}
	c.json(map[string]any{"holders": []holder{{Token: 1<<62 + 3, At: -5, Count: 2, Wait: time.Second, Value: []byte("v"), hidden: 1}}, "n": uint64(9)})
	got := strings.Join(strings.Fields(out.String()), " ")
	for _, want := range []string{`"fencing_token": "4611686018427387907"`, `"acquired_at_ms": "-5"`, `"count": 2`, `"wait": 1000000000`,
		`"value": "dg=="`, `"n": "9"`} {
		if !strings.Contains(got, want) {
			t.Errorf("%s does not hold %s", got, want)
		}
	}
	if strings.Contains(got, "session_id") || strings.Contains(got, "hidden") {
		t.Errorf("%s shows an omitted or unexported field", got)
	}
}

// TestSemaphoreStatusOfAFreeName: a semaphore nobody uses has no limit yet
// (the first acquire sets it): status says so, where "(limit 0, 0
// available)" read as a semaphore nobody may take.
func TestSemaphoreStatusOfAFreeName(t *testing.T) {
	var out bytes.Buffer
	printStatus(&out, &client.Status{Kind: client.KindSemaphore, Name: "pool"})
	if got := out.String(); !strings.Contains(got, "semaphore pool (not in use: the first acquire sets its limit)") || strings.Contains(got, "limit 0") {
		t.Fatalf("status of a free semaphore:\n%s", got)
	}
	out.Reset()
	printStatus(&out, &client.Status{Kind: client.KindSemaphore, Name: "pool", Limit: 3, Available: 1})
	if !strings.Contains(out.String(), "semaphore pool (limit 3, 1 available)") {
		t.Fatalf("status of a semaphore in use:\n%s", &out)
	}
}
