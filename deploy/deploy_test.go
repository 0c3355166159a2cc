// Package deploy holds the Grafana dashboard and the Prometheus alert rules
// shipped with Lockstep (docs/operations.md, "Dashboard and alerts"). Its
// test keeps them from drifting from the metrics the code registers.
package deploy

import (
	"context"
	"encoding/json"
	"maps"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"

	"github.com/lockstepd/lockstep/config"
	"github.com/lockstepd/lockstep/rpc"
	"github.com/lockstepd/lockstep/runtime"
	"github.com/lockstepd/lockstep/security"
)

const (
	dashboardFile = "grafana/lockstep.json"
	alertsFile    = "prometheus/alerts.yml"
)

// recorder is a Registerer that records the name of every metric
// registered through it, children or not, with its help and label names.
type recorder struct {
	*prometheus.Registry
	descs map[string]metricDesc // by metric name
}

// metricDesc is what a metric's Desc says of it: its HELP and the names
// of its labels, constant and variable, sorted.
type metricDesc struct {
	help   string
	labels []string
}

var (
	fqName     = regexp.MustCompile(`fqName: "([^"]+)"`)
	descHelp   = regexp.MustCompile(`help: "((?:[^"\\]|\\.)*)"`)
	descConst  = regexp.MustCompile(`constLabels: \{([^}]*)\}`)
	descVar    = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	constLabel = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

func parseDesc(s string) metricDesc {
	var d metricDesc
	if m := descHelp.FindStringSubmatch(s); m != nil {
		d.help = m[1]
	}
	if m := descConst.FindStringSubmatch(s); m != nil {
		for _, l := range constLabel.FindAllStringSubmatch(m[1], -1) {
			d.labels = append(d.labels, l[1])
		}
	}
	if m := descVar.FindStringSubmatch(s); m != nil && m[1] != "" {
		for _, l := range strings.Split(m[1], ",") {
			d.labels = append(d.labels, strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"))
		}
	}
	sort.Strings(d.labels)
	return d
}

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.descs[m[1]] = parseDesc(d.String())
		}
	}
	return r.Registry.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// registered starts a real in-process node with its API and security
// metrics, registered as `lockstep serve` registers them, and returns every
// metric name registered.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for name := range registeredDescs(t).descs {
		names[name] = true
	}
	return names
}

// registeredDescs is registered with each metric's Desc.
func registeredDescs(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raft := ln.Addr().String()
	ln.Close()
	cfg := config.Dev(t.TempDir())
	cfg.Cluster.RaftAddress = raft
	cfg.Cluster.Peers = map[string]string{cfg.Cluster.NodeID: raft}

	reg := &recorder{Registry: prometheus.NewRegistry(), descs: map[string]metricDesc{}}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, err := runtime.Start(ctx, runtime.Options{Config: cfg, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if _, err := rpc.New(rpc.Options{Backend: node, NodeID: cfg.Cluster.NodeID, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := security.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	// The names a scrape of it shows agree with the recorded ones (the
	// recorder is not seeing something else).
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, ok := reg.descs[mf.GetName()]; !ok {
			t.Fatalf("%s is scraped but was not recorded", mf.GetName())
		}
	}
	for _, want := range []string{"lockstep_raft_is_leader", "lockstep_rpc_requests_total", "lockstep_audit_write_errors_total", "go_goroutines"} {
		if _, ok := reg.descs[want]; !ok {
			t.Fatalf("%s was not recorded: %v", want, slices.Sorted(maps.Keys(reg.descs)))
		}
	}
	return reg
}

// external are series Prometheus makes itself, not the code.
var external = map[string]bool{"up": true}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	braces     = regexp.MustCompile(`\{[^}]*\}`)
	brackets   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	keywords   = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping
// clauses are removed, that are not functions, aggregations or keywords.
func metricNames(expr string) []string {
	e := quoted.ReplaceAllString(expr, `""`)
	e = braces.ReplaceAllString(e, " ")
	e = brackets.ReplaceAllString(e, " ")
	e = grouping.ReplaceAllString(e, " ")
	e = strings.ReplaceAll(e, "$__rate_interval", "")
	var names []string
	for _, m := range identifier.FindAllString(e, -1) {
		if strings.HasSuffix(m, "(") || keywords[strings.ToLower(m)] {
			continue
		}
		names = append(names, m)
	}
	return names
}

func TestMetricNamesParser(t *testing.T) {
	got := metricNames(`histogram_quantile(0.99, sum by (shard, le) (rate(consensus_commit_latency_seconds_bucket{job="$job",code=~"a|b"}[5m]))) > 0.1 and on (job) up == 1 or vector(0)`)
	if want := []string{"consensus_commit_latency_seconds_bucket", "up"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// known reports whether a name the files use is registered: itself, or a
// histogram's or summary's _bucket, _sum or _count series.
func known(names map[string]bool, name string) bool {
	if names[name] || external[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && names[base] {
			return true
		}
	}
	return false
}

type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// alertExprs reads the rules, checks their structure, and returns each
// alert's expression by name.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f rulesFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no groups", alertsFile)
	}
	exprs := map[string]string{}
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			switch {
			case r.Alert == "" || strings.TrimSpace(r.Expr) == "":
				t.Errorf("group %q: a rule without alert or expr: %+v", g.Name, r)
			case r.For == "":
				t.Errorf("%s: no for", r.Alert)
			case r.Labels["severity"] != "critical" && r.Labels["severity"] != "warning":
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, r.Labels["severity"])
			case r.Annotations["summary"] == "" || r.Annotations["description"] == "":
				t.Errorf("%s: needs summary and description annotations", r.Alert)
			}
			if _, dup := exprs[r.Alert]; dup {
				t.Errorf("%s: twice", r.Alert)
			}
			if _, err := time.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
			}
			exprs[r.Alert] = r.Expr
		}
	}
	return exprs
}

type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// panelExprs reads the dashboard and returns each query by panel title.
func panelExprs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("%s: needs a title, a uid and panels", dashboardFile)
	}
	exprs := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has an empty query", p.Title)
				}
				exprs[p.Title] = append(exprs[p.Title], tg.Expr)
			}
		}
	}
	walk(d.Panels)
	return exprs
}

// TestDeployFilesUseRegisteredMetrics: every metric an alert or a panel
// selects is registered by a real node (or made by Prometheus), and the
// alerts the operator's first hour needs are there.
func TestDeployFilesUseRegisteredMetrics(t *testing.T) {
	names := registered(t)
	check := func(where, expr string) {
		ms := metricNames(expr)
		if len(ms) == 0 {
			t.Errorf("%s: selects no metric: %s", where, expr)
		}
		for _, m := range ms {
			if !known(names, m) {
				t.Errorf("%s: %s is not a registered metric", where, m)
			}
		}
	}
	alerts := alertExprs(t)
	for name, expr := range alerts {
		check("alert "+name, expr)
	}
	panels := panelExprs(t)
	for title, exprs := range panels {
		for _, e := range exprs {
			check("panel "+title, e)
		}
	}
	// The signals the alerts must cover, by the metric each selects.
	used := map[string]bool{}
	for _, e := range alerts {
		for _, m := range metricNames(e) {
			used[m] = true
		}
	}
	for _, want := range []string{"lockstep_raft_is_leader", "up", "lockstep_healthy",
		"lockstep_audit_write_errors_total", "consensus_commit_latency_seconds_bucket",
		"lockstep_sessions_expired_total", "leader_elections_total", "lockstep_rpc_requests_total", "lockstep_clock_offset_seconds"} {
		if !used[want] {
			keys := make([]string, 0, len(used))
			for k := range used {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			t.Errorf("no alert selects %s (they select %v)", want, keys)
		}
	}
	if !strings.Contains(alerts["LockstepUnavailableAnswers"], `code="unavailable"`) {
		t.Errorf("LockstepUnavailableAnswers does not select code=\"unavailable\": %s", alerts["LockstepUnavailableAnswers"])
	}
}

// TestAlertRulesPromtool runs promtool check rules when promtool is
// installed (Debian: apt-get install prometheus).
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
