package agent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Verdict labels of meshwaf_agent_requests_total.
const (
	verdictAllowed  = "allowed"   // inspected, nothing matched
	verdictDetected = "detected"  // rules matched, request allowed
	verdictBlocked  = "blocked"   // denied (rules or body over limit)
	verdictNoPolicy = "no_policy" // no policy for this gateway and host
	verdictOff      = "off"       // policy in mode Off
	verdictError    = "error"     // inspection panicked; fell back per mode
	// not inspected in time (no CPU free, or the inspection outlasted
	// Envoy's timeout); answered by the failure mode
	verdictOverloaded = "overloaded"
	// refused before the first policy set was compiled (readygate.go);
	// answered by Envoy by the failure mode
	verdictNotReady = "not_ready"
)

// noPolicyLabel is the gateway and host label of requests no policy
// covers. Labels only ever hold values taken from policies, never from a
// request, so that clients cannot grow the number of series.
const noPolicyLabel = "(none)"

type metrics struct {
	requests        *prometheus.CounterVec
	shadow          *prometheus.CounterVec
	ruleHits        *prometheus.CounterVec
	latency         *prometheus.HistogramVec
	compileFailures prometheus.Counter
	policies        prometheus.Gauge
	policyInfo      *prometheus.GaugeVec
	wafs            prometheus.Gauge
	connected       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwaf_agent_requests_total",
			Help: "Requests answered, by the gateway and host pattern of the policy that applied, and verdict.",
		}, []string{"gateway", "host", "verdict"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwaf_agent_shadow_requests_total",
			Help: "Requests evaluated by a policy's shadow configuration, by the gateway and host pattern of the policy and what the shadow would have done (blocked, detected, allowed), or skipped when every shadow slot was busy.",
		}, []string{"gateway", "host", "verdict"}),
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshwaf_agent_rule_hits_total",
			Help: "Matched rules that carry a message (the findings an audit line lists), by rule id.",
		}, []string{"rule_id"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshwaf_agent_inspection_duration_seconds",
			Help: "Time spent in Coraza for one request (and its response, with ext_proc), by protocol.",
			// PL1 costs about 2.5 ms for a GET and 27 ms for a 1 KB JSON
			// POST; the buckets span that with room on both sides.
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"protocol"}),
		compileFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwaf_agent_policy_compile_failures_total",
			Help: "Host policies that could not be rendered or compiled (and were NACKed).",
		}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshwaf_agent_policies",
			Help: "Host policies currently applied.",
		}),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshwaf_agent_policy_info",
			Help: "1 for each host policy currently applied, with the policy version the control plane assigned.",
		}, []string{"gateway", "host", "policy", "policy_version", "mode"}),
		wafs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshwaf_agent_wafs",
			Help: "Distinct compiled WAFs currently held.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshwaf_agent_xds_connected",
			Help: "1 while a policy stream to the control plane is established.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.shadow, m.ruleHits, m.latency, m.compileFailures,
		m.policies, m.policyInfo, m.wafs, m.connected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) request(gateway, host, verdict string) {
	m.requests.WithLabelValues(gateway, host, verdict).Inc()
}

func (m *metrics) ruleHit(id int) {
	m.ruleHits.WithLabelValues(strconv.Itoa(id)).Inc()
}

// setPolicies replaces the policy info series with the applied entries, so
// a removed or changed policy leaves no stale series behind.
func (m *metrics) setPolicies(entries map[string]*Entry) {
	m.policyInfo.Reset()
	for _, e := range entries {
		p := e.Policy
		m.policyInfo.WithLabelValues(p.GetGateway(), p.GetHost(), p.GetPolicy(), p.GetPolicyVersion(), modeName(p.GetMode())).Set(1)
	}
	m.policies.Set(float64(len(entries)))
}
