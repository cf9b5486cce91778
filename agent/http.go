package agent

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshwaf/meshwaf/agentapi"
)

func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if a.draining.Load() {
			http.Error(w, "draining: shutting down", http.StatusServiceUnavailable)
			return
		}
		select {
		case <-a.client.ready:
			w.Write([]byte("ok\n"))
		default:
			http.Error(w, "waiting for the first policy set", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/policies", a.debugPolicies)
	if a.cfg.Profiling {
		// Index serves every named profile (heap, allocs, goroutine, …)
		// under its path; the CPU profile and trace need their own handlers.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	}
	return mux
}

func (a *Agent) debugPolicies(w http.ResponseWriter, _ *http.Request) {
	rows := []agentapi.PolicyView{}
	for _, e := range a.reg.Entries() {
		rows = append(rows, agentapi.PolicyView{
			Name:          e.Name,
			Gateway:       e.Policy.GetGateway(),
			Host:          e.Policy.GetHost(),
			Policy:        e.Policy.GetPolicy(),
			PolicyVersion: e.Policy.GetPolicyVersion(),
			Mode:          modeName(e.Policy.GetMode()),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"policies": rows})
}
