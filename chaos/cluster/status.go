package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// requestTimeout bounds each request the harness makes of a node, so a
// stopped node costs at most that.
const requestTimeout = 2 * time.Second

// ShardStatus is one shard as a node reports it in /cluster/status.
type ShardStatus struct {
	ShardID      uint64
	LeaderID     string
	Role         string
	Term         uint64
	AppliedIndex uint64
}

// Status is a node's /cluster/status.
type Status struct {
	NodeID string
	Shards []ShardStatus
}

// number decodes a JSON number or a string holding one (protojson writes
// 64-bit integers as strings).
type number uint64

func (n *number) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	*n = number(v)
	return err
}

// Health is nil when the node answers /health with 200.
func (nd *Node) Health(ctx context.Context) error {
	if !nd.Running() {
		return fmt.Errorf("%s is not running", nd.ID)
	}
	b, code, err := nd.get(ctx, nd.URL()+"/health")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s /health: %d %s", nd.ID, code, b)
	}
	return nil
}

// Status asks the node for /cluster/status.
func (nd *Node) Status(ctx context.Context) (Status, error) {
	b, code, err := nd.get(ctx, nd.URL()+"/cluster/status")
	if err != nil {
		return Status{}, err
	}
	if code != http.StatusOK {
		return Status{}, fmt.Errorf("%s /cluster/status: %d %s", nd.ID, code, b)
	}
	var raw struct {
		NodeID string `json:"node_id"`
		Shards []struct {
			ShardID      number `json:"shard_id"`
			LeaderID     string `json:"leader_id"`
			Role         string `json:"role"`
			Term         number `json:"term"`
			AppliedIndex number `json:"applied_index"`
		} `json:"shards"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Status{}, fmt.Errorf("%s /cluster/status: %v", nd.ID, err)
	}
	st := Status{NodeID: raw.NodeID}
	for _, s := range raw.Shards {
		st.Shards = append(st.Shards, ShardStatus{ShardID: uint64(s.ShardID), LeaderID: s.LeaderID, Role: s.Role,
			Term: uint64(s.Term), AppliedIndex: uint64(s.AppliedIndex)})
	}
	return st, nil
}

func (nd *Node) get(ctx context.Context, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := nd.http().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return b, resp.StatusCode, err
}

// poll calls f every pollPeriod until it returns nil or limit passes.
func poll(limit time.Duration, what string, f func(ctx context.Context) error) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		err := f(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v: %w", what, limit, err)
		}
		time.Sleep(pollPeriod)
	}
}

// WaitHealthy waits up to limit, in all, for each node to answer /health.
func (c *Cluster) WaitHealthy(limit time.Duration, nodes ...*Node) error {
	deadline := time.Now().Add(limit)
	for _, nd := range nodes {
		err := poll(time.Until(deadline), nd.ID+" healthy", func(ctx context.Context) error {
			if !nd.Running() {
				return fmt.Errorf("%s exited: %s", nd.ID, nd.Tail(5))
			}
			return nd.Health(ctx)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Leader waits up to limit for a running, unpaused node that reports
// itself leader of shard (its index in /cluster/status) and returns it.
func (c *Cluster) Leader(shard int, limit time.Duration) (*Node, error) {
	var found *Node
	err := poll(limit, fmt.Sprintf("a leader of shard %d", shard), func(ctx context.Context) error {
		for _, nd := range c.Nodes {
			if !nd.Running() || nd.Paused() {
				continue
			}
			st, err := nd.Status(ctx)
			if err != nil || shard >= len(st.Shards) {
				continue
			}
			if st.Shards[shard].Role == "leader" {
				found = nd
				return nil
			}
		}
		return fmt.Errorf("no running node says it leads shard %d", shard)
	})
	return found, err
}

// Converged waits up to limit until every given node reports the same
// leader for every shard and has applied, in every shard, at least the
// highest index any of them reported when Converged was called: every
// member caught up with the most advanced one. (Ticks keep indexes
// moving, so equality at one instant is not asked for.)
func (c *Cluster) Converged(limit time.Duration, nodes ...*Node) error {
	var target []uint64
	err := poll(limit, "a common applied index", func(ctx context.Context) error {
		target = target[:0]
		for _, nd := range nodes {
			st, err := nd.Status(ctx)
			if err != nil {
				return err
			}
			for i, s := range st.Shards {
				if i >= len(target) {
					target = append(target, 0)
				}
				target[i] = max(target[i], s.AppliedIndex)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return poll(limit, fmt.Sprintf("every member at one leader and applied index %v", target), func(ctx context.Context) error {
		leaders := make([]string, len(target))
		for _, nd := range nodes {
			st, err := nd.Status(ctx)
			if err != nil {
				return err
			}
			if len(st.Shards) != len(target) {
				return fmt.Errorf("%s reports %d shards, not %d", nd.ID, len(st.Shards), len(target))
			}
			for i, s := range st.Shards {
				if s.LeaderID == "" || (leaders[i] != "" && s.LeaderID != leaders[i]) {
					return fmt.Errorf("shard %d: %s sees leader %q, another node %q", i, nd.ID, s.LeaderID, leaders[i])
				}
				leaders[i] = s.LeaderID
				if s.AppliedIndex < target[i] {
					return fmt.Errorf("shard %d: %s applied %d < %d", i, nd.ID, s.AppliedIndex, target[i])
				}
			}
		}
		return nil
	})
}
