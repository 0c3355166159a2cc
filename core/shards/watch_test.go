package shards

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lockstepd/lockstep/core"
)

func TestWatchStart(t *testing.T) {
	pos := func(shardNext ...uint64) []Position {
		var out []Position
		for i := 0; i+1 < len(shardNext); i += 2 {
			out = append(out, Position{Shard: shardNext[i], Next: shardNext[i+1]})
		}
		return out
	}
	for _, c := range []struct {
		what  string
		count int
		name  bool
		index uint64
		given []Position
		want  Positions // nil with err
		err   string    // a phrase of the refusal
	}{
		{"prefix from now, one shard", 1, false, 0, nil, Positions{0}, ""},
		{"prefix from now, three shards", 3, false, 0, nil, Positions{0, 0, 0}, ""},
		{"prefix from an index, one shard", 1, false, 42, nil, Positions{42}, ""},
		{"prefix from positions, any order", 3, false, 0, pos(2, 9, 0, 5, 1, 7), Positions{5, 7, 9}, ""},
		{"prefix from positions, one shard", 1, false, 0, pos(0, 4), Positions{4}, ""},
		{"a count below 1 is 1", 0, false, 3, nil, Positions{3}, ""},
		{"a name from an index", 3, true, 5, nil, nil, ""},
		{"a name from now", 3, true, 0, nil, nil, ""},
		{"a name with positions", 3, true, 0, pos(0, 5, 1, 5, 2, 5), nil, "start_positions is for a prefix watch"},
		{"one index, several shards", 3, false, 7, nil, nil, "start_index 7 is ambiguous: this cluster has 3 shards"},
		{"index and positions", 3, false, 4, pos(0, 5, 1, 5, 2, 5), nil, "start_index 4 and start_positions are both given"},
		{"an unknown shard", 3, false, 0, pos(0, 5, 1, 5, 3, 5), nil,
			"start_positions[2]: shard_id 3 is not a shard of this cluster, which has 3 (shard_id 0..2)"},
		{"a shard twice", 3, false, 0, pos(0, 5, 1, 5, 1, 6), nil, "start_positions[2]: shard_id 1 appears twice: give each shard once"},
		{"a shard missing", 3, false, 0, pos(0, 5, 2, 5), nil, "no position for shard_id [1]: give every shard 0..2 once"},
		{"fewer shards in the cluster than given", 2, false, 0, pos(0, 5, 1, 5, 2, 5), nil, "shard_id 2 is not a shard of this cluster, which has 2"},
		{"next_index 0", 3, false, 0, pos(0, 5, 1, 0, 2, 5), nil, "start_positions[1]: next_index is 0 for shard_id 1"},
	} {
		t.Run(c.what, func(t *testing.T) {
			got, err := WatchStart(c.count, c.name, c.index, c.given)
			if c.err != "" {
				var ce *core.Error
				if !errors.As(err, &ce) || ce.Code != core.CodeInvalidArgument || !strings.Contains(ce.Msg, c.err) {
					t.Fatalf("%v, want invalid_argument containing %q", err, c.err)
				}
				if got != nil {
					t.Errorf("positions %v with a refusal", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
				t.Errorf("positions %v, want %v", got, c.want)
			}
		})
	}
}

func TestPositionsMove(t *testing.T) {
	p := Positions{0, 12, 0}
	if err := p.Fill([]uint64{9, 30, 4}); err != nil {
		t.Fatal(err)
	}
	// A shard given a position keeps it; one from now starts after what
	// the node applied.
	if want := (Positions{10, 12, 5}); !slices.Equal(p, want) {
		t.Fatalf("filled %v, want %v", p, want)
	}
	if err := p.Fill([]uint64{1, 2}); err == nil || !strings.Contains(err.Error(), "2 applied indexes for 3 positions") {
		t.Errorf("fill with too few indexes: %v", err)
	}
	p.EntryEnd(0, 10)
	p.Marker(1, 20)
	p.Marker(2, 2) // behind where it stands: a marker never moves back
	if want := (Positions{11, 21, 5}); !slices.Equal(p, want) {
		t.Errorf("moved %v, want %v", p, want)
	}
	for _, c := range []struct {
		p     Positions
		count int
		ok    bool
	}{{Positions{1, 2, 3}, 3, true}, {Positions{1, 2}, 3, false}, {Positions{1, 2, 3, 4}, 3, false}, {nil, 1, false}} {
		if err := c.p.Check(c.count); (err == nil) != c.ok {
			t.Errorf("%v among %d shards: %v, want ok %v", c.p, c.count, err, c.ok)
		}
	}
}

func TestOneIndex(t *testing.T) {
	for _, c := range []struct {
		from      uint64
		count     int
		ambiguous bool
	}{{0, 1, false}, {5, 1, false}, {0, 3, false}, {5, 3, true}} {
		err := OneIndex(c.from, c.count)
		if errors.Is(err, ErrAmbiguousIndex) != c.ambiguous || (err != nil) != c.ambiguous {
			t.Errorf("from %d among %d shards: %v, want ambiguous %v", c.from, c.count, err, c.ambiguous)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("from index %d is ambiguous with %d shards", c.from, c.count)) {
			t.Errorf("the refusal does not say what was given: %v", err)
		}
	}
}
