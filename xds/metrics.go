package xds

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	snapshots prometheus.Counter
	nacks     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
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
	for _, c := range []prometheus.Collector{m.snapshots, m.nacks} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
