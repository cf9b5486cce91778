package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/deploy"
)

// Names the deploy files must contain; the harness fails loudly if they
// change, because then the files and this package disagree.
const (
	xdsClusterName = "meshwaf_xds"
	wafFilterName  = "meshwaf.waf"
	routerFilter   = "envoy.filters.http.router"
	bootstrapKey   = "custom_bootstrap.json"
)

// envoyConfig is what Envoy is started with: the bootstrap Istio would
// generate for an ingress gateway (with meshwaf's filter already patched
// into the listener, as istiod would after applying the EnvoyFilter), and
// meshwaf's bootstrap override, which Istio passes as --config-yaml.
type envoyConfig struct {
	Bootstrap []byte // JSON, for -c
	Override  []byte // JSON, for --config-yaml
}

type bootstrapParams struct {
	Gateway      GatewayIdentity
	Ports        Ports
	AcceptHTTP10 bool
	PKI          *PKI
}

// buildEnvoyConfig assembles Envoy's configuration from the embedded deploy
// files.
func buildEnvoyConfig(files fs.FS, p bootstrapParams) (envoyConfig, error) {
	if p.PKI == nil {
		return envoyConfig{}, errors.New("bootstrap: the gateway's certificates are required")
	}
	override, err := loadBootstrapOverride(files, p.Ports.XDS, p.PKI)
	if err != nil {
		return envoyConfig{}, fmt.Errorf("%s: %w", deploy.IstioBootstrapOverride, err)
	}
	waf, err := loadWAFFilter(files)
	if err != nil {
		return envoyConfig{}, fmt.Errorf("%s: %w", deploy.IstioEnvoyFilter, err)
	}
	boot, err := json.MarshalIndent(gatewayBootstrap(p, waf), "", "  ")
	if err != nil {
		return envoyConfig{}, err
	}
	ov, err := json.MarshalIndent(override, "", "  ")
	if err != nil {
		return envoyConfig{}, err
	}
	return envoyConfig{Bootstrap: boot, Override: ov}, nil
}

// loadBootstrapOverride reads the ConfigMap, takes the bootstrap fragment
// Istio would pass to Envoy, and points the meshwaf_xds cluster at the local
// control plane instead of the in-cluster Service, with the stack's
// certificates instead of the mounted Secret.
func loadBootstrapOverride(files fs.FS, xdsPort int, pki *PKI) (map[string]any, error) {
	raw, err := fs.ReadFile(files, deploy.IstioBootstrapOverride)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, err
	}
	if cm.Kind != "ConfigMap" {
		return nil, fmt.Errorf("kind %q, want ConfigMap", cm.Kind)
	}
	fragment, ok := cm.Data[bootstrapKey]
	if !ok {
		return nil, fmt.Errorf("no data key %q (the key Istio mounts)", bootstrapKey)
	}
	var boot map[string]any
	if err := yaml.Unmarshal([]byte(fragment), &boot); err != nil {
		return nil, fmt.Errorf("data.%s: %w", bootstrapKey, err)
	}
	cluster, err := findNamed(dig(boot, "static_resources", "clusters"), xdsClusterName)
	if err != nil {
		return nil, fmt.Errorf("static_resources.clusters: %w", err)
	}
	addr, ok := dig(cluster, "load_assignment", "endpoints", 0, "lb_endpoints", 0,
		"endpoint", "address", "socket_address").(map[string]any)
	if !ok {
		return nil, errors.New("cluster meshwaf_xds has no load_assignment socket_address to patch")
	}
	addr["address"] = "127.0.0.1"
	addr["port_value"] = xdsPort
	if err := useStackCertificates(cluster, pki); err != nil {
		return nil, fmt.Errorf("cluster meshwaf_xds: %w", err)
	}
	return boot, nil
}

// useStackCertificates points the cluster's TLS files at the stack's and
// checks that it verifies the control plane by the name its certificate
// carries.
func useStackCertificates(cluster map[string]any, pki *PKI) error {
	tlsCtx, ok := dig(cluster, "transport_socket", "typed_config").(map[string]any)
	if !ok || dig(tlsCtx, "@type") != "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" {
		return errors.New("no UpstreamTlsContext transport socket: the control plane speaks mutual TLS")
	}
	if sni := dig(tlsCtx, "sni"); sni != ControlPlaneName {
		return fmt.Errorf("sni %v, want %s (the control plane's certificate)", sni, ControlPlaneName)
	}
	files := []struct {
		path []any
		to   string
	}{
		{[]any{"common_tls_context", "tls_certificates", 0, "certificate_chain"}, pki.Gateway.Cert},
		{[]any{"common_tls_context", "tls_certificates", 0, "private_key"}, pki.Gateway.Key},
		{[]any{"common_tls_context", "validation_context", "trusted_ca"}, pki.CA},
	}
	for _, f := range files {
		source, ok := dig(tlsCtx, f.path...).(map[string]any)
		if !ok || source["filename"] == nil {
			return fmt.Errorf("no file at %v", f.path)
		}
		source["filename"] = f.to
	}
	return nil
}

// loadWAFFilter returns the HTTP filter the EnvoyFilter inserts before the
// router.
func loadWAFFilter(files fs.FS) (map[string]any, error) {
	raw, err := fs.ReadFile(files, deploy.IstioEnvoyFilter)
	if err != nil {
		return nil, err
	}
	var ef map[string]any
	if err := yaml.Unmarshal(raw, &ef); err != nil {
		return nil, err
	}
	if ef["kind"] != "EnvoyFilter" {
		return nil, fmt.Errorf("kind %v, want EnvoyFilter", ef["kind"])
	}
	patches, _ := dig(ef, "spec", "configPatches").([]any)
	for _, p := range patches {
		value, ok := dig(p, "patch", "value").(map[string]any)
		if !ok || value["name"] != wafFilterName {
			continue
		}
		if dig(p, "applyTo") != "HTTP_FILTER" || dig(p, "patch", "operation") != "INSERT_BEFORE" ||
			dig(p, "match", "listener", "filterChain", "filter", "subFilter", "name") != routerFilter {
			return nil, fmt.Errorf("the %s patch must be an HTTP_FILTER INSERT_BEFORE %s", wafFilterName, routerFilter)
		}
		if dig(value, "config_discovery") == nil {
			return nil, fmt.Errorf("the %s filter has no config_discovery", wafFilterName)
		}
		return value, nil
	}
	return nil, fmt.Errorf("no configPatch inserts a filter named %s", wafFilterName)
}

// dig walks nested YAML/JSON values by map key (string) or list index (int)
// and returns nil where the path does not exist.
func dig(v any, path ...any) any {
	for _, step := range path {
		switch k := step.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// findNamed returns the one element of list whose "name" is name.
func findNamed(list any, name string) (map[string]any, error) {
	items, _ := list.([]any)
	var found map[string]any
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok || m["name"] != name {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("more than one %q", name)
		}
		found = m
	}
	if found == nil {
		return nil, fmt.Errorf("no %q", name)
	}
	return found, nil
}
