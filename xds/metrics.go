package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	snapshots prometheus.Counter
	nacks     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwaf_xds_snapshots_applied_total",
			Help: "Snapshots handed to the xDS caches.",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshwaf_xds_agent_nacks_total",
			Help: "Host policy updates rejected by agents.",
		}),
	}
	for _, c := range []prometheus.Collector{m.snapshots, m.nacks, convergenceCollector{s}} {
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
	connected := 0
	for _, a := range c.s.Agents() {
		if a.Connected {
			connected++
		}
	}
	ch <- prometheus.MustNewConstMetric(agentsConnectedDesc, prometheus.GaugeValue, float64(connected))
	for name, conv := range c.s.Convergence() {
		rejected := len(conv.Rejected)
		pending := conv.Desired - conv.Applied - rejected
		for state, n := range map[string]int{"applied": conv.Applied, "pending": pending, "rejected": rejected} {
			ch <- prometheus.MustNewConstMetric(policyAgentsDesc, prometheus.GaugeValue, float64(n), name, state)
		}
	}
}
