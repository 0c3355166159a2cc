package chaos

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstepd/lockstep/chaos/cluster"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// TestCheckSessions: each rule of the sessions check, on a session at a
// time; times in ms from the run's start.
func TestCheckSessions(t *testing.T) {
	const ttl = time.Second
	type expiryAt struct{ delivered, log int }
	cases := []struct {
		name   string
		rec    sessionRec
		exp    *expiryAt
		sent   int // last renewal sent (stopped sessions); answered 20 ms later
		broken string
		shut   int // when its SESSION_CLOSED was delivered (0: never)
	}{
		{"kept alive, never expired", sessionRec{lost: -1, closed: -1, stopped: -1}, nil, 0, "", 0},
		{"kept alive and expired", sessionRec{lost: -1, closed: -1, stopped: -1}, &expiryAt{5000, 4900}, 0, "was kept alive", 0},
		{"lost by its client, then expired", sessionRec{lost: ms(4800), closed: -1, stopped: -1}, &expiryAt{5000, 4900}, 0, "", 0},
		{"lost after the expiry was delivered", sessionRec{lost: ms(5100), closed: -1, stopped: -1}, &expiryAt{5000, 4900}, 0, "was kept alive", 0},
		{"closed, then expired", sessionRec{lost: -1, closed: ms(4000), stopped: -1}, &expiryAt{5000, 4900}, 0, "", 0},
		{"stopped and expired in time", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, &expiryAt{4300, 4100}, 3000, "", 0},
		{"stopped, never expired", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, nil, 3000, "was not expired within", 0},
		{"stopped, expired late", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, &expiryAt{12000, 3020 + 1000 + 7001}, 3000, "past its TTL", 0},
		{"stopped, expired early", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, &expiryAt{3730, 3700}, 3000, "early", 0},
		{"stopped, delivered just after the early bound", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, &expiryAt{3770, 3700}, 3000, "", 0},
		{"stopped, the run ended before its expiry was due", sessionRec{lost: -1, closed: -1, stopped: ms(3000)}, nil, 3000, "", 0},
		{"closed by its client, the close delivered", sessionRec{lost: -1, closed: ms(4000), stopped: -1}, nil, 0, "", 4100},
		{"closed on the servers, not by its client", sessionRec{lost: -1, closed: -1, stopped: -1}, nil, 0, "never closed it", 4100},
		{"closed on the servers before its client closed it", sessionRec{lost: -1, closed: ms(4200), stopped: -1}, nil, 0, "never closed it", 4100},
		{"expired in one shard, closed in the others", sessionRec{lost: ms(4800), closed: -1, stopped: -1}, &expiryAt{5000, 4900}, 0, "", 4950},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(time.Now())
			rec := tc.rec
			rec.id, rec.owner, rec.ttl = 7, "lapser", ttl
			h.watchEnd = ms(3020) + judgeable(ttl)
			if strings.Contains(tc.name, "before its expiry was due") {
				h.watchEnd--
			}
			if rec.stopped >= 0 {
				f := &freezer{}
				f.sent, f.answered = h.start.Add(ms(tc.sent)), h.start.Add(ms(tc.sent+20))
				rec.freezer = f
			}
			h.sessions[7] = &rec
			if tc.exp != nil {
				h.expired[7] = expiry{delivered: ms(tc.exp.delivered), log: ms(tc.exp.log)}
			}
			if tc.shut != 0 {
				h.shut[7] = ms(tc.shut)
			}
			bad, _ := h.checkSessions()
			switch {
			case tc.broken == "" && len(bad) > 0:
				t.Fatalf("violations %v, want none", bad)
			case tc.broken != "" && (len(bad) != 1 || !strings.Contains(bad[0], tc.broken)):
				t.Fatalf("violations %v, want one saying %q", bad, tc.broken)
			}
		})
	}
}

// TestWatcherCheck: the watcher's events must be the log's over the range
// it read: none missed, none extra, none changed.
func TestWatcherCheck(t *testing.T) {
	ev := func(index uint64, name string) eventID {
		return eventID{index: index, typ: pb.EventType_EVENT_TYPE_GRANTED, kind: pb.Kind_KIND_MUTEX, name: name}
	}
	log := []eventID{ev(3, "chaos/a"), ev(5, "chaos/b"), ev(5, "chaos/c"), ev(8, "chaos/a"), ev(12, "chaos/d")}
	cases := []struct {
		name   string
		got    []eventID
		broken string
	}{
		{"the same", log[1:4], ""},
		{"one missed", []eventID{log[1], log[3]}, `"chaos/a" at index 8; the log's is EVENT_TYPE_GRANTED "chaos/c"`},
		{"the last missed", log[1:3], "missed 1 events"},
		{"one extra", []eventID{log[1], log[2], log[2], log[3]}, `event 2 is EVENT_TYPE_GRANTED "chaos/c" at index 5`},
		{"one changed", []eventID{log[1], ev(5, "chaos/x"), log[3]}, `"chaos/x"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{o: &Options{}, h: newHistory(time.Now())}
			r.h.stream[0], r.h.end[0] = log, 20
			w := newWatcher(r, nil)
			w.first, w.last = map[uint64]uint64{0: 5}, map[uint64]uint64{0: 9}
			w.events[0] = tc.got
			bad, _ := w.check()
			switch {
			case tc.broken == "" && len(bad) > 0:
				t.Fatalf("violations %v, want none", bad)
			case tc.broken != "" && (len(bad) != 1 || !strings.Contains(bad[0], tc.broken)):
				t.Fatalf("violations %v, want one saying %q", bad, tc.broken)
			}
		})
	}
}

// TestCheckBarrier: generations only grow per party, never release more
// parties than the barrier has, and are all in the log.
func TestCheckBarrier(t *testing.T) {
	cases := []struct {
		name   string
		waits  []barrierWait
		broken string
	}{
		{"rounds in order", []barrierWait{{0, 10, 0, 1}, {1, 10, 0, 1}, {2, 10, 0, 1}, {0, 20, 2, 3}}, ""},
		{"a generation again", []barrierWait{{0, 20, 0, 1}, {0, 10, 2, 3}}, "after generation 20"},
		{"not in the log", []barrierWait{{0, 30, 0, 1}}, "never released"},
		{"too many parties", []barrierWait{{0, 10, 0, 1}, {1, 10, 0, 1}, {2, 10, 0, 1}, {3, 10, 0, 1}}, "released 4 parties"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &run{o: &Options{}, h: newHistory(time.Now())}
			r.h.barriers[barrierName] = map[uint64]time.Duration{10: 0, 20: 0}
			bad, _ := r.checkBarrier(&barrierLog{waits: tc.waits})
			switch {
			case tc.broken == "" && len(bad) > 0:
				t.Fatalf("violations %v, want none", bad)
			case tc.broken != "" && (len(bad) != 1 || !strings.Contains(bad[0], tc.broken)):
				t.Fatalf("violations %v, want one saying %q", bad, tc.broken)
			}
		})
	}
}

// TestPlanClockBounds: every clock fault the schedule draws stays within
// its bounds, and every mode is drawn.
func TestPlanClockBounds(t *testing.T) {
	modes := map[string]int{}
	for seed := uint64(1); seed <= 50; seed++ {
		o := &Options{Seed: seed, Duration: 5 * time.Minute, Nemesis: []string{"clock"}, Shards: 1}
		for _, f := range plan(o) {
			modes[f.Mode]++
			switch f.Mode {
			case clockJump, clockStep:
				if f.Offset <= 0 || f.Offset > maxJumpAhead {
					t.Fatalf("seed %d: a jump of %v", seed, f.Offset)
				}
			case clockBack:
				if f.Offset >= 0 || -f.Offset > maxClockOffset {
					t.Fatalf("seed %d: a step back of %v", seed, f.Offset)
				}
			case clockSkew:
				if f.Offset == 0 || f.Offset.Abs() > time.Duration(clockSlew*float64(maxClockHold)) || f.Hold > maxClockHold {
					t.Fatalf("seed %d: skewed by %v over %v", seed, f.Offset, f.Hold)
				}
			default:
				t.Fatalf("seed %d: mode %q", seed, f.Mode)
			}
		}
	}
	if len(modes) != 4 {
		t.Fatalf("modes drawn: %v", modes)
	}
}

// TestPlanKillAndPartitionModes: the schedule draws every kill and
// partition mode, a majority stays down at most maxMajorityDown, and a
// slow link's delay stays within its bounds.
func TestPlanKillAndPartitionModes(t *testing.T) {
	modes := map[string]int{}
	for seed := uint64(1); seed <= 50; seed++ {
		o := &Options{Seed: seed, Duration: 5 * time.Minute, Nemesis: []string{"kill", "partition"}, Shards: 1}
		for _, f := range plan(o) {
			modes[f.Kind+"/"+f.Mode]++
			if f.Kind == "kill" && f.Mode == killMajority && f.Hold > maxMajorityDown {
				t.Fatalf("seed %d: a majority down for %v", seed, f.Hold)
			}
			slow := f.Mode == modeSlow || f.Mode == modeClientsSlow
			if slow && (f.Delay < minSlowLink || f.Delay > maxSlowLink) {
				t.Fatalf("seed %d: a slow link of %v", seed, f.Delay)
			}
			if !slow && f.Delay != 0 {
				t.Fatalf("seed %d: %v has a delay", seed, f)
			}
		}
	}
	for _, m := range []string{"kill/", "kill/" + killMinority, "kill/" + killMajority, "partition/" + modeIsolate,
		"partition/" + modeOneWay, "partition/" + modeLink, "partition/" + modeBridge, "partition/" + modeSlow, "partition/" + modeClientsCut, "partition/" + modeClientsSlow} {
		if modes[m] == 0 {
			t.Errorf("mode %s never drawn in 50 seeds: %v", m, modes)
		}
	}
}

// TestKillSetSizes: one node, a minority (two of five, one of three) and
// a majority (two of three, three of five), the victim always among them
// and nobody twice.
func TestKillSetSizes(t *testing.T) {
	for _, size := range []int{3, 5} {
		c := &cluster.Cluster{}
		for i := range size {
			c.Nodes = append(c.Nodes, &cluster.Node{ID: fmt.Sprintf("node-%d", i+1)})
		}
		n := &nemesis{c: c}
		victim, peer := c.Nodes[2], c.Nodes[0]
		for mode, want := range map[string]int{"": 1, killMinority: size / 2, killMajority: size/2 + 1} {
			down := n.killSet(Fault{Kind: "kill", Mode: mode}, victim, peer)
			if len(down) != want || down[0] != victim {
				t.Errorf("%d nodes, mode %q: %d down (%v), want %d with the victim first", size, mode, len(down), down, want)
			}
			seen := map[*cluster.Node]bool{}
			for _, nd := range down {
				if seen[nd] {
					t.Errorf("%d nodes, mode %q: %s twice", size, mode, nd.ID)
				}
				seen[nd] = true
			}
		}
	}
}

// TestFaultRecordJSONInMilliseconds: -json's fault log says milliseconds
// where its names say so (it wrote time.Duration's nanoseconds), and -1
// for a recovery not seen.
func TestFaultRecordJSONInMilliseconds(t *testing.T) {
	rec := FaultRecord{Fault: Fault{At: 1500 * time.Millisecond, Kind: "clock", Hold: 2 * time.Second, Offset: -800 * time.Millisecond},
		Node: "node-2", Started: 1501 * time.Millisecond, Healed: 3502 * time.Millisecond, ToGrant: 1909 * time.Millisecond, ToService: -1}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]float64{"at_ms": 1500, "hold_ms": 2000, "offset_ms": -800, "started_ms": 1501,
		"healed_ms": 3502, "to_grant_ms": 1909, "to_service_ms": -1} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (in %s)", key, got[key], want, b)
		}
	}
	if got["kind"] != "clock" || got["node"] != "node-2" {
		t.Errorf("the other fields are lost: %s", b)
	}
	if _, ok := got["delay_ms"]; ok {
		t.Errorf("an empty delay is written: %s", b)
	}
}
