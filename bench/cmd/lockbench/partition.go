package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	procs "github.com/lockstepd/lockstep/chaos/cluster"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The partition point's bounds: how long the leader stays cut off (longer
// than the election timeout, 300 ms by default, so that the majority
// elects), and how long the majority and then the healed cluster get to
// serve before a trial counts as failed.
const (
	partitionFor      = 3 * time.Second
	partitionRecovery = 15 * time.Second
)

// startProxiedCluster starts three nodes whose Raft traffic goes through
// proxies (chaos/cluster's Net): each node's cluster.raft_address (what
// its peers dial) is its proxy's port, and it listens on
// cluster.raft_listen_address, where the proxy forwards.
func startProxiedCluster(bin string, extra []string, conns int) (*cluster, *procs.Net, error) {
	c, err := startCluster(bin, 3, extra, conns, true, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("partition: %w", err)
	}
	return c, c.procs.Net, nil
}

// partition runs its trials on a cluster of its own (the proxies would
// otherwise sit in every other point's path): each trial cuts the leader's
// Raft connections both ways for partitionFor while a client on each other
// node keeps acquiring fresh names, then heals, and times heal → full
// service: /health 200 on every node and an acquire through the formerly
// isolated node granted. It returns the failed trials.
func partition(o options, extra []string, trials int) (int64, error) {
	c, rn, err := startProxiedCluster(o.bin, extra, o.conns)
	if err != nil {
		return 0, err
	}
	defer c.stop() // closes the proxies too
	fmt.Printf("# partition: a fresh 3-node cluster whose Raft traffic goes through proxies; the leader is cut off both ways for %v\n", partitionFor)
	var failures int64
	var elect, heal []time.Duration
	for t := range trials {
		e, h, err := partitionTrial(c, rn, t)
		if err != nil {
			fmt.Printf("# partition trial %d: %v\n", t+1, err)
			failures++
		} else {
			elect, heal = append(elect, e), append(heal, h)
		}
		if err := c.waitHealthy(c.nodes, 30*time.Second); err != nil {
			return failures, err
		}
		time.Sleep(500 * time.Millisecond) // let the healed node catch up
	}
	printSpread("partition, leader cut -> acquire", elect)
	printSpread("partition healed -> full service", heal)
	return failures, nil
}

// partitionTrial returns the time from the cut to the first acquire granted
// on the majority side, and from the heal to full service.
func partitionTrial(c *cluster, rn *procs.Net, t int) (elect, heal time.Duration, err error) {
	leader, err := c.leader(10 * time.Second)
	if err != nil {
		return 0, 0, err
	}
	apis := map[*node]api{}
	sess := map[*node]uint64{}
	for i, nd := range c.nodes {
		apis[nd] = newAPI(c.http[i%len(c.http)], c.url(nd))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := newSession(ctx, apis[nd], 60*time.Second)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("session on %s: %w", nd.ID, err)
		}
		sess[nd] = s
		defer closeSession(apis[nd], s)
	}
	var seq atomic.Int64
	acquire := func(nd *node) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r, err := apis[nd].locks.Acquire(ctx, connect.NewRequest(&pb.AcquireLockRequest{
			Name: fmt.Sprintf("bench/partition/%d/%d", t, seq.Add(1)), SessionId: sess[nd]}))
		if err != nil {
			return err
		}
		if !r.Msg.Acquired {
			return fmt.Errorf("not granted (outcome %v)", r.Msg.Outcome)
		}
		return nil
	}
	for _, nd := range c.nodes { // warm: every node serves before the cut
		if err := acquire(nd); err != nil {
			return 0, 0, fmt.Errorf("warm acquire on %s: %w", nd.ID, err)
		}
	}

	cut := time.Now()
	rn.Isolate(leader.Node)
	var first atomic.Int64 // ns from the cut to the first grant on the majority side
	var granted atomic.Int64
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		if nd == leader {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(cut) < partitionFor {
				if acquire(nd) == nil {
					granted.Add(1)
					first.CompareAndSwap(0, int64(time.Since(cut)))
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	isolatedHealth := "still healthy"
	if c.health(leader) != nil {
		isolatedHealth = "answered /health 503"
	}
	healed := time.Now()
	rn.Heal()
	allHealthy, served, lastErr := c.recovery(leader, acquire, healed)
	if first.Load() == 0 {
		return 0, 0, fmt.Errorf("%s (leader) cut off for %v: no acquire granted on the majority side", leader.ID, partitionFor)
	}
	elect = time.Duration(first.Load())
	if allHealthy == 0 || served == 0 {
		return 0, 0, fmt.Errorf("%s (leader) cut off for %v, majority acquire after %v, then not fully serving within %v of the heal: %v",
			leader.ID, partitionFor, elect.Round(time.Millisecond), partitionRecovery, lastErr)
	}
	heal = max(allHealthy, served)
	fmt.Printf("# partition trial %d: %s (leader) cut off for %v: majority acquire after %v (%d granted; the cut-off node %s at the end); "+
		"healed -> every /health 200 after %v, acquire through %s after %v\n",
		t+1, leader.ID, partitionFor, elect.Round(time.Millisecond), granted.Load(), isolatedHealth,
		allHealthy.Round(time.Millisecond), leader.ID, served.Round(time.Millisecond))
	return elect, heal, nil
}

// recovery watches the cluster after the heal, up to partitionRecovery:
// it returns how long until every node's /health answered 200, and until
// the first acquire through the formerly cut-off node nd was granted. The
// acquires start every 50 ms, each bounded by 2 s, and the earliest grant
// counts: a request sent on a connection that died in the partition waits
// for its own retry, which says when that request ended, not when service
// came back.
func (c *cluster) recovery(nd *node, acquire func(*node) error, healed time.Time) (allHealthy, served time.Duration, lastErr error) {
	deadline := healed.Add(partitionRecovery)
	var granted atomic.Int64 // ns after the heal
	var errMu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // at most partitionRecovery / 50 ms attempts
		defer wg.Done()
		for granted.Load() == 0 && time.Now().Before(deadline) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := acquire(nd); err != nil {
					errMu.Lock()
					lastErr = fmt.Errorf("acquire through %s: %w", nd.ID, err)
					errMu.Unlock()
					return
				}
				granted.CompareAndSwap(0, int64(time.Since(healed)))
			}()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	for allHealthy == 0 && time.Now().Before(deadline) {
		ok := true
		for _, x := range c.nodes {
			if err := c.health(x); err != nil {
				ok = false
				errMu.Lock()
				lastErr = fmt.Errorf("%s not healthy: %w", x.ID, err)
				errMu.Unlock()
				break
			}
		}
		if ok {
			allHealthy = time.Since(healed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	return allHealthy, time.Duration(granted.Load()), lastErr
}
