package istio

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/meshwaf/meshwaf/integration/kube"
)

// Parts are the Istio release's pieces the tier runs.
type Parts struct {
	PilotDiscovery string // istiod
	PilotAgent     string // the proxy agent of gateways and sidecars
	// BootstrapTemplate is Istio's envoy_bootstrap.json, which pilot-agent
	// renders for Envoy.
	BootstrapTemplate string
	// CRDs is the release's CustomResourceDefinitions, one YAML stream.
	CRDs string
	// Injector is the ConfigMap istio-sidecar-injector the release's
	// istio-discovery chart renders: the templates and values istiod
	// renders a Gateway API Gateway's Deployment from (kube-gateway).
	Injector string
}

var installParts = sync.OnceValues(func() (Parts, error) {
	paths, err := kube.InstallScript("install-istio.sh",
		"MESHWAF_PILOT_DISCOVERY", "MESHWAF_PILOT_AGENT", "MESHWAF_ISTIO_BOOTSTRAP", "MESHWAF_ISTIO_CRDS", "MESHWAF_ISTIO_INJECTOR")
	if err != nil {
		return Parts{}, err
	}
	p := Parts{
		PilotDiscovery:    paths["MESHWAF_PILOT_DISCOVERY"],
		PilotAgent:        paths["MESHWAF_PILOT_AGENT"],
		BootstrapTemplate: paths["MESHWAF_ISTIO_BOOTSTRAP"],
		CRDs:              paths["MESHWAF_ISTIO_CRDS"],
		Injector:          paths["MESHWAF_ISTIO_INJECTOR"],
	}
	for _, f := range []string{p.PilotDiscovery, p.PilotAgent, p.BootstrapTemplate, p.CRDs, p.Injector} {
		if _, err := os.Stat(f); err != nil {
			return Parts{}, fmt.Errorf("install-istio.sh: %w", err)
		}
	}
	return p, nil
})

// InstallParts returns the Istio parts, building them on first use in the
// test binary (instant once scripts/install-istio.sh's cache is warm, about
// ten minutes cold). The MESHWAF_* variables the script prints take
// precedence, as `make` exports them.
func InstallParts() (Parts, error) { return installParts() }

// mustInstallParts is InstallParts for a test, which fails without them.
func mustInstallParts(t testing.TB) Parts {
	t.Helper()
	parts, err := InstallParts()
	if err != nil {
		t.Fatalf("istio parts: %v", err)
	}
	return parts
}
