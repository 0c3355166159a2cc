package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// The chaos build's hooks (cmd/lockstep/chaoshook.go, go build -tags
// chaos) on a node's metrics listener: its clock and its state hashes. A
// release binary answers 404 to both: ErrNoHook.

// ErrNoHook: the node runs a binary built without -tags chaos.
var ErrNoHook = errors.New("cluster: the node's binary has no chaos hook (build it with -tags chaos: make bin/lockstep-chaos-node)")

// MetricsURL is the node's metrics listener.
func (nd *Node) MetricsURL() string { return nd.scheme() + "://" + nd.Metrics }

// SetClock moves the node's clock to offset from the wall clock: at once
// when slew is 0, else running slew faster (or slower) than the wall clock
// until it is there. It answers the offset the node reports now.
func (nd *Node) SetClock(ctx context.Context, offset time.Duration, slew float64) (time.Duration, error) {
	form := url.Values{"offset_ms": {strconv.FormatInt(offset.Milliseconds(), 10)}, "slew": {strconv.FormatFloat(slew, 'f', -1, 64)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.MetricsURL()+"/debug/chaos/clock", nil)
	if err != nil {
		return 0, err
	}
	req.URL.RawQuery = form.Encode()
	var got struct {
		OffsetMs int64 `json:"offset_ms"`
	}
	if err := nd.hook(req, &got); err != nil {
		return 0, err
	}
	return time.Duration(got.OffsetMs) * time.Millisecond, nil
}

// ClockOffset is how far the node's clock is from the wall clock now.
func (nd *Node) ClockOffset(ctx context.Context) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nd.MetricsURL()+"/debug/chaos/clock", nil)
	if err != nil {
		return 0, err
	}
	var got struct {
		OffsetMs int64 `json:"offset_ms"`
	}
	if err := nd.hook(req, &got); err != nil {
		return 0, err
	}
	return time.Duration(got.OffsetMs) * time.Millisecond, nil
}

// ShardHash is one shard's applied index and the hash of its state there.
type ShardHash struct {
	ShardID      uint64 `json:"shard_id"`
	AppliedIndex uint64 `json:"applied_index"`
	StateHash    string `json:"state_hash"`
}

// StateHashes asks the node for every shard's state hash.
func (nd *Node) StateHashes(ctx context.Context) ([]ShardHash, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nd.MetricsURL()+"/debug/chaos/state", nil)
	if err != nil {
		return nil, err
	}
	var got struct {
		Shards []ShardHash `json:"shards"`
	}
	if err := nd.hook(req, &got); err != nil {
		return nil, err
	}
	return got.Shards, nil
}

func (nd *Node) hook(req *http.Request, into any) error {
	resp, err := nd.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return ErrNoHook
	default:
		return fmt.Errorf("%s %s: %s", nd.ID, req.URL.Path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// DivergedError says two members applied the same index of a shard and
// hold different states: the replicas disagree.
type DivergedError struct {
	Shard  uint64
	Index  uint64
	A, B   string // node ids
	HA, HB string // their hashes
}

func (e *DivergedError) Error() string {
	return fmt.Sprintf("shard %d: %s and %s both applied index %d and hold different states (hash %.12s… and %.12s…)",
		e.Shard, e.A, e.B, e.Index, e.HA, e.HB)
}

// SameState polls the nodes until, for every shard, all of them report one
// applied index at the same moment, and compares their hashes there. The
// leader keeps proposing ticks, so they meet at one index only between
// two entries: each round asks every node at once. It returns a
// *DivergedError as soon as two nodes at one index differ, another error
// when they never met within limit, and the hashes compared, per shard.
func (c *Cluster) SameState(limit time.Duration, nodes ...*Node) ([]ShardHash, error) {
	deadline := time.Now().Add(limit)
	var agreed map[uint64]ShardHash
	var last error
	for time.Now().Before(deadline) {
		rounds := make([][]ShardHash, len(nodes))
		errs := make([]error, len(nodes))
		done := make(chan struct{}, len(nodes))
		for i, nd := range nodes {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
				rounds[i], errs[i] = nd.StateHashes(ctx)
				cancel()
				done <- struct{}{}
			}()
		}
		for range nodes {
			<-done
		}
		if err := errors.Join(errs...); err != nil {
			if errors.Is(err, ErrNoHook) {
				return nil, err
			}
			last = err
			time.Sleep(pollPeriod)
			continue
		}
		if agreed == nil {
			agreed = map[uint64]ShardHash{}
		}
		for s := range rounds[0] {
			first := rounds[0][s]
			same := true
			for i := 1; i < len(nodes); i++ {
				if s >= len(rounds[i]) {
					return nil, fmt.Errorf("%s reports %d shards, %s %d", nodes[i].ID, len(rounds[i]), nodes[0].ID, len(rounds[0]))
				}
				h := rounds[i][s]
				if h.AppliedIndex != first.AppliedIndex {
					same = false
					continue
				}
				if h.StateHash != first.StateHash {
					return nil, &DivergedError{Shard: first.ShardID, Index: first.AppliedIndex, A: nodes[0].ID, B: nodes[i].ID,
						HA: first.StateHash, HB: h.StateHash}
				}
			}
			if same {
				agreed[first.ShardID] = first
			}
		}
		if len(agreed) == len(rounds[0]) {
			out := make([]ShardHash, 0, len(agreed))
			for s := range len(agreed) {
				out = append(out, agreed[uint64(s)])
			}
			return out, nil
		}
		last = fmt.Errorf("%d of %d shards seen at one applied index on every member", len(agreed), len(rounds[0]))
		time.Sleep(5 * time.Millisecond)
	}
	return nil, fmt.Errorf("every member at one applied index with one state hash: not within %v: %v", limit, last)
}

// TransferLeadership asks, through via, that shard's leadership move to
// the node to, and waits up to limit for to to report itself its leader.
func (c *Cluster) TransferLeadership(via *Node, shard int, to *Node, limit time.Duration) error {
	cl := lockstepv1connect.NewClusterServiceClient(via.http(), via.URL())
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	_, err := cl.TransferLeadership(ctx, connect.NewRequest(&pb.TransferLeadershipRequest{ClientId: "chaos-harness",
		RequestSeq: 1, ShardId: uint64(shard), TargetNodeId: to.ID}))
	cancel()
	if err != nil {
		return fmt.Errorf("transfer shard %d's leadership to %s: %w", shard, to.ID, err)
	}
	return poll(limit, fmt.Sprintf("%s leading shard %d", to.ID, shard), func(ctx context.Context) error {
		st, err := to.Status(ctx)
		if err != nil {
			return err
		}
		if shard >= len(st.Shards) || st.Shards[shard].Role != "leader" {
			return fmt.Errorf("%s does not lead shard %d", to.ID, shard)
		}
		return nil
	})
}
