package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

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
	// clientSecretKey is the ConfigMap key holding the gateway's client
	// certificate as an SDS resource, which Envoy reloads when the files
	// it names are renewed.
	clientSecretKey = "meshwaf-xds-client-sds.yaml"
)

// envoyConfig is what Envoy is started with: the bootstrap Istio would
// generate for an ingress gateway (with meshwaf's filter already patched
// into the listener, as istiod would after applying the EnvoyFilter), and
// meshwaf's bootstrap override, which Istio passes as --config-yaml.
type envoyConfig struct {
	Bootstrap []byte // JSON, for -c
	Override  []byte // JSON, for --config-yaml
	// ClientSecret is the SDS file with the gateway's client certificate,
	// to be written to bootstrapParams.ClientSecretPath.
	ClientSecret []byte
}

type bootstrapParams struct {
	Gateway      GatewayIdentity
	Ports        Ports
	AcceptHTTP10 bool
	PKI          *PKI
	// ClientSecretPath is where the SDS file will be, in place of the
	// path Istio mounts it at.
	ClientSecretPath string
}

// buildEnvoyConfig assembles Envoy's configuration from the embedded deploy
// files.
func buildEnvoyConfig(files fs.FS, p bootstrapParams) (envoyConfig, error) {
	if p.PKI == nil {
		return envoyConfig{}, errors.New("bootstrap: the gateway's certificates are required")
	}
	override, secret, err := loadBootstrapOverride(files, p.Ports.XDS, p.PKI, p.ClientSecretPath)
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
	return envoyConfig{Bootstrap: boot, Override: ov, ClientSecret: secret}, nil
}

// loadBootstrapOverride reads the ConfigMap, takes the bootstrap fragment
// Istio would pass to Envoy, and points the meshwaf_xds cluster at the local
// control plane instead of the in-cluster Service, with the stack's
// certificates instead of the mounted Secret. It also returns the
// ConfigMap's SDS file for the client certificate, patched the same way,
// which the fragment now reads from secretPath.
func loadBootstrapOverride(files fs.FS, xdsPort int, pki *PKI, secretPath string) (boot map[string]any, secret []byte, err error) {
	raw, err := fs.ReadFile(files, deploy.IstioBootstrapOverride)
	if err != nil {
		return nil, nil, err
	}
	var cm struct {
		Kind string            `json:"kind"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, nil, err
	}
	if cm.Kind != "ConfigMap" {
		return nil, nil, fmt.Errorf("kind %q, want ConfigMap", cm.Kind)
	}
	fragment, ok := cm.Data[bootstrapKey]
	if !ok {
		return nil, nil, fmt.Errorf("no data key %q (the key Istio mounts)", bootstrapKey)
	}
	if err := yaml.Unmarshal([]byte(fragment), &boot); err != nil {
		return nil, nil, fmt.Errorf("data.%s: %w", bootstrapKey, err)
	}
	cluster, err := findNamed(dig(boot, "static_resources", "clusters"), xdsClusterName)
	if err != nil {
		return nil, nil, fmt.Errorf("static_resources.clusters: %w", err)
	}
	addr, ok := dig(cluster, "load_assignment", "endpoints", 0, "lb_endpoints", 0,
		"endpoint", "address", "socket_address").(map[string]any)
	if !ok {
		return nil, nil, errors.New("cluster meshwaf_xds has no load_assignment socket_address to patch")
	}
	addr["address"] = "127.0.0.1"
	addr["port_value"] = xdsPort
	if err := useStackCertificates(cluster, pki, secretPath); err != nil {
		return nil, nil, fmt.Errorf("cluster meshwaf_xds: %w", err)
	}
	if secret, err = stackClientSecret(cm.Data[clientSecretKey], pki); err != nil {
		return nil, nil, fmt.Errorf("data.%s: %w", clientSecretKey, err)
	}
	return boot, secret, nil
}

// useStackCertificates points the cluster at the stack's CA and at the
// stack's SDS file for its client certificate, and checks that it verifies
// the control plane by the name its certificate carries.
func useStackCertificates(cluster map[string]any, pki *PKI, secretPath string) error {
	tlsCtx, ok := dig(cluster, "transport_socket", "typed_config").(map[string]any)
	if !ok || dig(tlsCtx, "@type") != "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" {
		return errors.New("no UpstreamTlsContext transport socket: the control plane speaks mutual TLS")
	}
	if sni := dig(tlsCtx, "sni"); sni != ControlPlaneName {
		return fmt.Errorf("sni %v, want %s (the control plane's certificate)", sni, ControlPlaneName)
	}
	ca, ok := dig(tlsCtx, "common_tls_context", "validation_context", "trusted_ca").(map[string]any)
	if !ok || ca["filename"] == nil {
		return errors.New("no trusted_ca file")
	}
	ca["filename"] = pki.CA
	source, ok := dig(tlsCtx, "common_tls_context", "tls_certificate_sds_secret_configs", 0,
		"sds_config", "path_config_source").(map[string]any)
	if !ok || source["path"] == nil {
		return errors.New("the client certificate does not come from an SDS file (tls_certificate_sds_secret_configs)")
	}
	source["path"] = secretPath
	return nil
}

// stackClientSecret is the ConfigMap's SDS file with the stack's gateway
// certificate, in JSON, watched in the directory that holds it.
func stackClientSecret(doc string, pki *PKI) ([]byte, error) {
	var secret map[string]any
	if err := yaml.Unmarshal([]byte(doc), &secret); err != nil {
		return nil, err
	}
	cert, ok := dig(secret, "resources", 0, "tls_certificate").(map[string]any)
	if !ok {
		return nil, errors.New("no resources[0].tls_certificate")
	}
	for key, to := range map[string]string{"certificate_chain": pki.Gateway.Cert, "private_key": pki.Gateway.Key} {
		source, ok := cert[key].(map[string]any)
		if !ok || source["filename"] == nil {
			return nil, fmt.Errorf("no %s file", key)
		}
		source["filename"] = to
	}
	watched, ok := cert["watched_directory"].(map[string]any)
	if !ok {
		return nil, errors.New("no watched_directory: Envoy would not see a renewed Secret")
	}
	watched["path"] = filepath.Dir(pki.Gateway.Cert)
	return json.MarshalIndent(secret, "", "  ")
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
