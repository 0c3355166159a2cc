package main

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Histograms whose buckets scrape keeps, so that describe can say where an
// operation's tail comes from: the commit (propose to apply on the leader)
// or the rest of the server's work on an acquire (waiting for the proposal
// gate, the reads around it), as against what the clients saw.
const (
	commitHist  = "consensus_commit_latency_seconds"
	requestHist = "lockstep_rpc_request_duration_seconds"
	// acquireProcedure is the one procedure whose server-side duration
	// describe reports: a cycle's acquire, the operation the P95 target is on.
	acquireProcedure = `procedure="/lockstep.v1.LockService/Acquire"`
)

// bucketKey names a histogram bucket in scrape's map: name|le.
func bucketKey(name, le string) string { return name + "|" + le }

// scrape reads the sums of a few series from a node's /metrics (every
// label combination added together), and the buckets of commitHist and of
// requestHist for acquireProcedure.
func scrape(c *cluster, metricsAddr string) map[string]float64 {
	out := map[string]float64{}
	if metricsAddr == "" {
		return out
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if c.sec != nil && c.sec.tls {
		hc.Transport = &http.Transport{TLSClientConfig: c.sec.client.Clone()}
	}
	resp, err := hc.Get(c.sec.scheme() + "://" + metricsAddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		key := name
		switch name {
		case commitHist + "_sum", commitHist + "_count",
			"lockstep_raft_entries_applied_total", "lockstep_commands_applied_total", "process_cpu_seconds_total",
			"lockstep_apply_latency_seconds_sum", "lockstep_apply_latency_seconds_count":
		case commitHist + "_bucket", requestHist + "_bucket":
			_, rest, _ := strings.Cut(l, `le="`)
			le, _, ok := strings.Cut(rest, `"`)
			if !ok || (name == requestHist+"_bucket" && !strings.Contains(l, acquireProcedure)) {
				continue
			}
			key = bucketKey(strings.TrimSuffix(name, "_bucket"), le)
		default:
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			out[key] += v
		}
	}
	return out
}

// cpuSecs is a process's user+system CPU time from /proc (0 if unknown).
func cpuSecs(pid int) float64 {
	if pid == 0 {
		pid = os.Getpid()
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ
}

// snapshot of the leader's metrics and every process's CPU at one moment.
type snap struct {
	at      time.Time
	leader  map[string]float64
	cpu     map[string]float64 // node id → CPU seconds; "lockbench" for this process
	machine float64            // busy CPU seconds of the whole machine
}

func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	l := strings.SplitN(string(b), "\n", 2)[0]
	f := strings.Fields(l)
	var busy float64
	for i, x := range f[1:] {
		v, _ := strconv.ParseFloat(x, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		busy += v
	}
	return busy / 100
}

func (b *bench) snap() snap {
	s := snap{at: time.Now(), leader: scrape(b.c, b.leader.Metrics), cpu: map[string]float64{}, machine: machineBusy()}
	for _, nd := range b.c.nodes {
		if nd.Running() {
			s.cpu[nd.ID] = cpuSecs(nd.Pid())
		}
	}
	s.cpu["lockbench"] = cpuSecs(0)
	return s
}

// describe prints what happened between two snapshots: commands per entry
// and mean commit latency on the leader, and CPU per process; with ops > 0,
// also the CPU each process spent per operation (the figure of merit on a
// shared machine, where rates move with other people's load).
func (b *bench) describe(a, z snap, ops int64) string {
	d := func(k string) float64 { return z.leader[k] - a.leader[k] }
	secs := z.at.Sub(a.at).Seconds()
	var parts []string
	if e := d("lockstep_raft_entries_applied_total"); e > 0 {
		parts = append(parts, fmt.Sprintf("%.1f cmds/entry, %.0f entries/s", d("lockstep_commands_applied_total")/e, e/secs))
	}
	if n := d(commitHist + "_count"); n > 0 {
		parts = append(parts, fmt.Sprintf("commit %.2f ms (p95 %s)", 1000*d(commitHist+"_sum")/n,
			quantileMs(a.leader, z.leader, commitHist, 0.95)))
	}
	if n := d("lockstep_apply_latency_seconds_count"); n > 0 {
		parts = append(parts, fmt.Sprintf("apply %.3f ms/entry", 1000*d("lockstep_apply_latency_seconds_sum")/n))
	}
	if p50 := quantileMs(a.leader, z.leader, requestHist, 0.5); p50 != "-" {
		parts = append(parts, fmt.Sprintf("leader's acquire p50 %s, p95 %s", p50,
			quantileMs(a.leader, z.leader, requestHist, 0.95)))
	}
	var cpu []string
	for _, nd := range b.c.nodes {
		if v, ok := z.cpu[nd.ID]; ok {
			tag := ""
			if nd == b.leader {
				tag = "*"
			}
			cpu = append(cpu, fmt.Sprintf("%s%s %.2f", nd.ID, tag, (v-a.cpu[nd.ID])/secs))
		}
	}
	cpu = append(cpu, fmt.Sprintf("lockbench %.2f", (z.cpu["lockbench"]-a.cpu["lockbench"])/secs))
	cpu = append(cpu, fmt.Sprintf("machine %.2f of 2", (z.machine-a.machine)/secs))
	parts = append(parts, "cores: "+strings.Join(cpu, ", "))
	if ops > 0 {
		var per []string
		total := 0.0
		for _, nd := range b.c.nodes {
			if v, ok := z.cpu[nd.ID]; ok {
				us := 1e6 * (v - a.cpu[nd.ID]) / float64(ops)
				total += us
				tag := ""
				if nd == b.leader {
					tag = "*"
				}
				per = append(per, fmt.Sprintf("%s%s %.0f", nd.ID, tag, us))
			}
		}
		us := 1e6 * (z.cpu["lockbench"] - a.cpu["lockbench"]) / float64(ops)
		total += us
		per = append(per, fmt.Sprintf("lockbench %.0f", us), fmt.Sprintf("all %.0f", total))
		parts = append(parts, "CPU µs/op: "+strings.Join(per, ", "))
	}
	return strings.Join(parts, "; ")
}

// printSpread prints the median and worst of trials' times (failover,
// partition), sorting ds.
func printSpread(name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	fmt.Printf("%-34s median %v, worst %v (%d trials)\n", name, ds[len(ds)/2].Round(time.Millisecond),
		ds[len(ds)-1].Round(time.Millisecond), len(ds))
}

// quantileMs estimates quantile q of histogram name's observations between
// two scrapes, in milliseconds, interpolating inside the bucket it falls in
// as Prometheus's histogram_quantile does ("-" when nothing was observed).
// The buckets are coarse (1, 2.5, 5, 10 ms), so it says which bucket, and
// roughly where in it.
func quantileMs(a, z map[string]float64, name string, q float64) string {
	type bucket struct{ le, count float64 }
	var bs []bucket
	prefix := bucketKey(name, "")
	for k, v := range z {
		le, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		bound, err := strconv.ParseFloat(le, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		bs = append(bs, bucket{bound, v - a[k]})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].count <= 0 {
		return "-"
	}
	rank := q * bs[len(bs)-1].count
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return fmt.Sprintf("> %.0f ms", 1000*lo)
			}
			return fmt.Sprintf("≈%.1f ms", 1000*(lo+(b.le-lo)*(rank-below)/max(b.count-below, 1)))
		}
		lo, below = b.le, b.count
	}
	return "-"
}
