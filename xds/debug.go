package xds

import (
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshwaf/meshwaf/snapshot"
)

// Handler serves /healthz, /readyz, /debug/snapshot, /debug/agents and
// /debug/convergence.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "waiting for the first snapshot", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /debug/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		snap := s.Current()
		if snap == nil {
			http.Error(w, "no snapshot yet", http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, snapshotView(snap))
	})
	mux.HandleFunc("GET /debug/agents", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"agents": s.Agents()})
	})
	mux.HandleFunc("GET /debug/convergence", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"policies": s.Convergence()})
	})
	return mux
}

type policyView struct {
	Policy     string   `json:"policy"`
	Version    string   `json:"version"`
	Hosts      []string `json:"hosts"`
	Conflicts  []string `json:"conflicts,omitempty"`
	Unresolved []string `json:"unresolved,omitempty"`
}

func snapshotView(snap *snapshot.Snapshot) any {
	hostPolicies := map[string]json.RawMessage{}
	for name, hp := range snap.HostPolicies {
		b, err := protojson.Marshal(hp)
		if err != nil {
			continue // a proto that cannot be encoded is a bug shown by absence
		}
		hostPolicies[name] = b
	}
	policies := make([]policyView, 0, len(snap.Policies))
	for _, p := range snap.Policies {
		policies = append(policies, policyView{
			Policy: p.Ref.NamespacedName(), Version: p.Version, Hosts: p.Hosts,
			Conflicts: p.Conflicts, Unresolved: p.Unresolved,
		})
	}
	return map[string]any{
		"version":      snap.Version,
		"gateways":     snap.Gateways,
		"policies":     policies,
		"hostPolicies": hostPolicies,
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
