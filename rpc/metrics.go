package rpc

import (
	"context"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// metrics is the outermost interceptor: it counts and times every request
// by procedure and code, and every acquire (mutex, semaphore, RW lock,
// campaign) by kind and outcome. REST requests count under the procedure
// they are transcoded to.
type metrics struct {
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	inFlight    prometheus.Gauge
	streams     prometheus.Gauge
	acquires    *prometheus.CounterVec
	acquireTime *prometheus.HistogramVec

	// procs caches, per procedure, the label children a successful unary
	// request counts in (procMetrics), so that the hot path does not hash
	// and look up label values on every call. Children are made on first
	// use, as WithLabelValues would: /metrics shows the same series.
	// Bounded: one entry per procedure this server mounts.
	procs sync.Map // procedure → *procMetrics
}

// acquireKinds names the procedures that take a grant, by the kind label
// they count under.
var acquireKinds = map[string]string{
	lockstepv1connect.LockServiceAcquireProcedure:      "mutex",
	lockstepv1connect.SemaphoreServiceAcquireProcedure: "semaphore",
	lockstepv1connect.RWLockServiceAcquireProcedure:    "rwlock",
	lockstepv1connect.ElectionServiceCampaignProcedure: "election",
}

// procMetrics are one procedure's label children, each made on first use.
type procMetrics struct {
	latency  prometheus.Observer
	kind     string                             // acquireKinds' label; "" when not an acquire
	ok       atomic.Pointer[prometheus.Counter] // code "ok"
	outcomes [maxOutcome + 1]atomic.Pointer[outcomeMetrics]
}

// outcomeMetrics are an acquire kind's children for one outcome.
type outcomeMetrics struct {
	count prometheus.Counter
	time  prometheus.Observer
}

// maxOutcome is the largest pb.Outcome whose children procMetrics caches;
// a larger one (a newer enum value) is looked up on each call.
const maxOutcome = 15

// outcomeLabel is an outcome's label: OUTCOME_GRANTED → granted.
func outcomeLabel(o pb.Outcome) string {
	return strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_"))
}

func (m *metrics) forProc(proc string) *procMetrics {
	if pm, ok := m.procs.Load(proc); ok {
		return pm.(*procMetrics)
	}
	pm, _ := m.procs.LoadOrStore(proc, &procMetrics{latency: m.latency.WithLabelValues(proc), kind: acquireKinds[proc]})
	return pm.(*procMetrics)
}

// okCounter is lockstep_rpc_requests_total{procedure, code="ok"}.
func (m *metrics) okCounter(pm *procMetrics, proc string) prometheus.Counter {
	if c := pm.ok.Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(proc, "ok")
	pm.ok.Store(&c)
	return c
}

// acquired counts an acquire that answered with outcome o.
func (m *metrics) acquired(pm *procMetrics, o pb.Outcome, elapsed float64) {
	if o < 0 || o > maxOutcome {
		label := outcomeLabel(o)
		m.acquires.WithLabelValues(pm.kind, label).Inc()
		m.acquireTime.WithLabelValues(pm.kind, label).Observe(elapsed)
		return
	}
	om := pm.outcomes[o].Load()
	if om == nil {
		label := outcomeLabel(o)
		om = &outcomeMetrics{count: m.acquires.WithLabelValues(pm.kind, label), time: m.acquireTime.WithLabelValues(pm.kind, label)}
		pm.outcomes[o].Store(om)
	}
	om.count.Inc()
	om.time.Observe(elapsed)
}

// buildInfo is lockstep_build_info: 1, labelled with what this member
// runs, so that a dashboard tells which build each member runs (during a
// rolling upgrade, the members left on the old one) and joins other series
// by node_id. rules_version is the highest rules this build applies
// (core.RulesVersion): the log's rules in force stay the older build's
// until a leader of this one marks them (docs/design.md).
func buildInfo(nodeID string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lockstep_build_info",
		Help: "1, labelled with this member's version (as lockstep version prints it), the Go version it was built with, the highest rules version it applies (core.RulesVersion), and its node id.",
		ConstLabels: prometheus.Labels{"version": Version(), "go_version": goruntime.Version(),
			"rules_version": strconv.Itoa(core.RulesVersion), "node_id": nodeID},
	})
	g.Set(1)
	return g
}

func newMetrics(reg prometheus.Registerer, nodeID string) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lockstep_rpc_requests_total",
			Help: "API requests finished, by procedure (REST requests count under the RPC they map to) and code (ok, or the error code).",
		}, []string{"procedure", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lockstep_rpc_request_duration_seconds",
			Help:    "Time to answer an API request, by procedure; includes time spent queued for a lock.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"procedure"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockstep_rpc_requests_in_flight",
			Help: "Unary API requests, and requests on session streams, being served now, waiting ones included.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lockstep_rpc_streams_open",
			Help: "Watch, Observe and session streams open now.",
		}),
		acquires: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lock_acquisitions_total",
			Help: "Acquires and campaigns answered, by kind (mutex, semaphore, rwlock, election) and outcome (granted, refused, queued, or error).",
		}, []string{"kind", "outcome"}),
		acquireTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lock_acquisition_duration_seconds",
			Help:    "Time from an acquire or campaign request to its answer, by kind and outcome; includes time queued.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"kind", "outcome"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.streams, m.acquires, m.acquireTime, buildInfo(nodeID)} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

func (m *metrics) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		proc := req.Spec().Procedure
		pm := m.forProc(proc)
		start := time.Now()
		m.inFlight.Inc()
		resp, err := next(ctx, req)
		m.inFlight.Dec()
		var reply any
		if err == nil && resp != nil {
			reply = resp.Any()
		}
		m.finish(pm, proc, time.Since(start).Seconds(), reply, err)
		return resp, err
	}
}

// finish counts one answered request of proc: a unary call, or a request
// on a session stream (counted under its unary twin's procedure). reply is
// the response message when err is nil.
func (m *metrics) finish(pm *procMetrics, proc string, elapsed float64, reply any, err error) {
	if err == nil {
		m.okCounter(pm, proc).Inc()
	} else {
		m.requests.WithLabelValues(proc, codeLabel(err)).Inc()
	}
	pm.latency.Observe(elapsed)
	if pm.kind != "" {
		if err != nil {
			m.acquires.WithLabelValues(pm.kind, "error").Inc()
			m.acquireTime.WithLabelValues(pm.kind, "error").Observe(elapsed)
		} else if o, ok := reply.(interface{ GetOutcome() pb.Outcome }); ok {
			m.acquired(pm, o.GetOutcome(), elapsed)
		} else {
			m.acquires.WithLabelValues(pm.kind, "ok").Inc()
			m.acquireTime.WithLabelValues(pm.kind, "ok").Observe(elapsed)
		}
	}
}

func (m *metrics) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (m *metrics) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		proc := conn.Spec().Procedure
		start := time.Now()
		m.streams.Inc()
		err := next(ctx, conn)
		m.streams.Dec()
		m.requests.WithLabelValues(proc, codeLabel(err)).Inc()
		m.latency.WithLabelValues(proc).Observe(time.Since(start).Seconds())
		return err
	}
}
