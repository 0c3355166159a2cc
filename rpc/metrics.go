package rpc

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"

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
}

// acquireKinds names the procedures that take a grant, by the kind label
// they count under.
var acquireKinds = map[string]string{
	lockstepv1connect.LockServiceAcquireProcedure:      "mutex",
	lockstepv1connect.SemaphoreServiceAcquireProcedure: "semaphore",
	lockstepv1connect.RWLockServiceAcquireProcedure:    "rwlock",
	lockstepv1connect.ElectionServiceCampaignProcedure: "election",
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rpc_requests_total",
			Help: "API requests finished, by procedure (REST requests count under the RPC they map to) and code (ok, or the error code).",
		}, []string{"procedure", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rpc_request_duration_seconds",
			Help:    "Time to answer an API request, by procedure; includes time spent queued for a lock.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"procedure"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rpc_requests_in_flight",
			Help: "Unary API requests being served now, waiting ones included.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rpc_streams_open",
			Help: "Watch and Observe streams open now.",
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
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.inFlight, m.streams, m.acquires, m.acquireTime} {
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
		start := time.Now()
		m.inFlight.Inc()
		resp, err := next(ctx, req)
		m.inFlight.Dec()
		elapsed := time.Since(start).Seconds()
		m.requests.WithLabelValues(proc, codeLabel(err)).Inc()
		m.latency.WithLabelValues(proc).Observe(elapsed)
		if kind, ok := acquireKinds[proc]; ok {
			outcome := codeLabel(err)
			if err == nil {
				if o, ok := resp.Any().(interface{ GetOutcome() pb.Outcome }); ok {
					outcome = strings.ToLower(strings.TrimPrefix(o.GetOutcome().String(), "OUTCOME_"))
				}
			} else {
				outcome = "error"
			}
			m.acquires.WithLabelValues(kind, outcome).Inc()
			m.acquireTime.WithLabelValues(kind, outcome).Observe(elapsed)
		}
		return resp, err
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
