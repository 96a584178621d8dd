// Package metrics holds snowrain's Prometheus collectors and the /metrics
// endpoint.
package metrics

import (
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/snowrain/snowrain/measure"
	"github.com/snowrain/snowrain/measure/maillog"
)

// Metrics are the collectors the daemon updates.
type Metrics struct {
	Registry   *prometheus.Registry
	Messages   *prometheus.CounterVec // direction, action
	Verdicts   *prometheus.CounterVec // check, result
	Classes    *prometheus.CounterVec // check, class
	FailOpen   *prometheus.CounterVec // reason
	Panics     prometheus.Counter
	DNSLatency *prometheus.HistogramVec // qtype, result
	Latency    prometheus.Histogram     // end-of-message processing
	Downgrades *prometheus.CounterVec   // direction, kind
	Policy     *prometheus.CounterVec   // service, source or class
	// MilterConnErrors counts milter connections closed on an error, by
	// reason: panic, malformed, too_large, idle_timeout, timeout,
	// negotiation, io.
	MilterConnErrors *prometheus.CounterVec

	AcceptErrors *prometheus.CounterVec // listener, errno
	Restarts     *prometheus.CounterVec // listener
	HTTPConns    prometheus.Gauge       // open connections to the metrics listener
	HTTPRejected prometheus.Counter     // metrics connections closed at the cap
}

// New creates and registers the collectors.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_messages_total",
			Help: "Messages seen by the milter."}, []string{"direction", "action"}),
		Verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_verdicts_total",
			Help: "Authentication verdicts by check (spf, dkim, dmarc, auth) and result."}, []string{"check", "result"}),
		Classes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_error_classes_total",
			Help: "Failure classes: DKIM Table 8, SPF Table 21, DMARC policy Table 18."}, []string{"check", "class"}),
		FailOpen: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_fail_open_total",
			Help: "Messages accepted although one of our checks could not run."}, []string{"reason"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{Name: "snowrain_handler_panics_total",
			Help: "Panics recovered inside milter handlers."}),
		DNSLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "snowrain_dns_query_seconds",
			Help: "DNS queries sent on the wire.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)},
			[]string{"qtype", "result"}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "snowrain_eom_seconds",
			Help: "Time spent at end of message.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		Downgrades: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_downgrades_total",
			Help: "Peers that used TLS and then plaintext."}, []string{"direction", "kind"}),
		Policy: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_policy_total",
			Help: "TLS policy answers by service and source, and bad requests by class."}, []string{"service", "what"}),
		MilterConnErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_milter_connection_errors_total",
			Help: "Milter connections closed on an error (the daemon goes on serving), by reason."}, []string{"reason"}),
		AcceptErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_listener_accept_errors_total",
			Help: "Temporary accept errors (EMFILE, ENFILE, …) by listener; each was retried after a pause."},
			[]string{"listener", "errno"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "snowrain_listener_restarts_total",
			Help: "Listeners that stopped (or lost their socket file) and were restarted."}, []string{"listener"}),
		HTTPConns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "snowrain_metrics_connections",
			Help: "Open connections to the metrics listener."}),
		HTTPRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "snowrain_metrics_connections_evicted_total",
			Help: "Metrics connections closed because the connection cap was reached (idle ones first)."}),
	}
	m.Registry.MustRegister(m.MilterConnErrors, m.AcceptErrors, m.Restarts, m.HTTPConns, m.HTTPRejected, m.Downgrades, m.Policy, m.Messages, m.Verdicts, m.Classes, m.FailOpen, m.Panics, m.DNSLatency,
		m.Latency, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveDNS is a resolver.Config.Observe hook.
func (m *Metrics) ObserveDNS(qtype uint16, result string, d time.Duration) {
	m.DNSLatency.WithLabelValues(dns.TypeToString[qtype], result).Observe(d.Seconds())
}

// WatchWriter exports the store writer's queue depth and counters.
func (m *Metrics) WatchWriter(w *measure.Writer) {
	stat := func(f func(measure.WriterStats) int64) func() float64 {
		return func() float64 { return float64(f(w.Stats())) }
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "snowrain_store_queue_depth",
			Help: "Events waiting for the database writer."}, stat(func(s measure.WriterStats) int64 { return s.Queued })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "snowrain_store_events_written_total",
			Help: "Events written to the database."}, stat(func(s measure.WriterStats) int64 { return s.Written })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "snowrain_store_events_dropped_total",
			Help: "Events dropped: queue full or database failing."}, stat(func(s measure.WriterStats) int64 { return s.Dropped })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "snowrain_store_failed_batches_total",
			Help: "Batches abandoned after failed commits."}, stat(func(s measure.WriterStats) int64 { return s.FailedBatches })),
	)
}

// WatchMaillog exports the MTA log lines read, by class.
func (m *Metrics) WatchMaillog(p *maillog.Parser) {
	for _, class := range []string{maillog.ClassDelivery, maillog.ClassTLS, maillog.ClassOther,
		maillog.ClassMalformed, maillog.ClassBroken} {
		m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "snowrain_maillog_lines_total", Help: "MTA log lines read, by class.",
			ConstLabels: prometheus.Labels{"class": class}},
			func() float64 { return float64(p.Counts()[class]) }))
	}
}
