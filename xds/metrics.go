package xds

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwaf/meshwaf/xds/feed"
)

type metrics struct {
	snapshots prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwaf_xds_snapshots_applied_total",
			Help: "Snapshots handed to the xDS caches.",
		}),
	}
	// The host policy feed counts for itself; these read its totals.
	feedCounter := func(name, help string, read func(feed.Counters) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(read(s.policies.Counters())) })
	}
	collectors := []prometheus.Collector{
		m.snapshots, convergenceCollector{s},
		feedCounter("meshwaf_xds_agent_nacks_total", "Host policy updates rejected by agents.",
			func(c feed.Counters) uint64 { return c.NACKs }),
		feedCounter("meshwaf_xds_agent_responses_total", "Host policy responses sent to agents.",
			func(c feed.Counters) uint64 { return c.Responses }),
		feedCounter("meshwaf_xds_agent_response_bytes_total", "Encoded bytes of the host policy responses sent to agents.",
			func(c feed.Counters) uint64 { return c.Bytes }),
		feedCounter("meshwaf_xds_agent_resyncs_total", "Agent streams closed because the agent fell too far behind for a diff.",
			func(c feed.Counters) uint64 { return c.Resyncs }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

var (
	agentsConnectedDesc = prometheus.NewDesc("meshwaf_xds_agents_connected",
		"Agents with an open host policy stream to this replica.", nil, nil)
	policyAgentsDesc = prometheus.NewDesc("meshwaf_xds_policy_agents",
		"Connected agents per policy by state: applied (every host at the served version), pending, rejected.",
		[]string{"policy", "state"}, nil)
)

// convergenceCollector reports fleet convergence when scraped, so the
// numbers are as fresh as /debug/convergence and cost nothing in between.
type convergenceCollector struct{ s *Server }

func (convergenceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- agentsConnectedDesc
	ch <- policyAgentsDesc
}

func (c convergenceCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(agentsConnectedDesc, prometheus.GaugeValue, float64(c.s.policies.StreamCount()))
	for name, conv := range c.s.Convergence() {
		for state, n := range map[string]int{"applied": conv.Applied, "pending": conv.PendingCount, "rejected": conv.Rejecting} {
			ch <- prometheus.MustNewConstMetric(policyAgentsDesc, prometheus.GaugeValue, float64(n), name, state)
		}
	}
}
