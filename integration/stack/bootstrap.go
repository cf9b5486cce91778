package stack

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/deploy"
)

// Names the deploy files must contain; the harness fails loudly if they
// change, because then the files and this package disagree.
const (
	xdsClusterName = "meshwaf_xds"
	wafFilterName  = "meshwaf.waf"
	routerFilter   = "envoy.filters.http.router"
	hcmFilter      = "envoy.filters.network.http_connection_manager"
	bootstrapKey   = "custom_bootstrap.json"
)

// Where a gateway pod mounts what meshwaf gives it; the bootstrap
// ConfigMap's SDS files name these paths.
const (
	// IstioBootstrapMountDir is where Istio mounts the bootstrap
	// ConfigMap's keys in a gateway pod: the SDS files the fragment reads
	// are keys there.
	IstioBootstrapMountDir = "/etc/istio/custom-bootstrap"
	// GatewaySecretMountDir is where a gateway pod mounts the Secret
	// meshwaf-gateway-xds-tls; the stack's gateway folder stands in for it.
	GatewaySecretMountDir = "/etc/meshwaf/xds-client"
)

// envoyConfig is what Envoy is started with: the bootstrap Istio would
// generate for an ingress gateway (with meshwaf's filter already patched
// into the listener, as istiod would after applying the EnvoyFilter), and
// meshwaf's bootstrap override, which Istio passes as --config-yaml.
type envoyConfig struct {
	Bootstrap []byte // JSON, for -c
	Override  []byte // JSON, for --config-yaml
	// SDSFiles are the ConfigMap's SDS files (the gateway's client
	// certificate, the CA bundle), by the path in bootstrapParams.SDSDir
	// the override reads each from, to be written there.
	SDSFiles map[string][]byte
}

type bootstrapParams struct {
	Gateway      GatewayIdentity
	Ports        Ports
	AcceptHTTP10 bool
	PKI          *PKI
	// SDSDir is the folder the SDS files will be in, in place of the one
	// Istio mounts them in.
	SDSDir string
}

// buildEnvoyConfig assembles Envoy's configuration from the embedded deploy
// files.
func buildEnvoyConfig(files fs.FS, p bootstrapParams) (envoyConfig, error) {
	if p.PKI == nil {
		return envoyConfig{}, errors.New("bootstrap: the gateway's certificates are required")
	}
	override, sds, err := loadBootstrapOverride(files, p.Ports.XDS, p.PKI, p.SDSDir)
	if err != nil {
		return envoyConfig{}, fmt.Errorf("%s: %w", deploy.IstioBootstrapOverride, err)
	}
	patches, err := loadEnvoyFilter(files)
	if err != nil {
		return envoyConfig{}, fmt.Errorf("%s: %w", deploy.IstioEnvoyFilter, err)
	}
	boot, err := json.MarshalIndent(gatewayBootstrap(p, patches), "", "  ")
	if err != nil {
		return envoyConfig{}, err
	}
	ov, err := json.MarshalIndent(override, "", "  ")
	if err != nil {
		return envoyConfig{}, err
	}
	return envoyConfig{Bootstrap: boot, Override: ov, SDSFiles: sds}, nil
}

// loadBootstrapOverride reads the embedded ConfigMap and makes the
// override of it (bootstrapOverride).
func loadBootstrapOverride(files fs.FS, xdsPort int, pki *PKI, sdsDir string) (boot map[string]any, sds map[string][]byte, err error) {
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
	return bootstrapOverride(cm.Data, xdsPort, pki, sdsDir)
}

// bootstrapOverride takes the bootstrap fragment Istio would pass to Envoy
// from the data of the bootstrap ConfigMap, and points the meshwaf_xds
// cluster at the local control plane instead of the in-cluster Service. It
// also returns the ConfigMap's SDS files the cluster reads its
// certificates from, by the path in sdsDir the fragment now reads each
// from, with the stack's gateway folder in place of the mounted Secret.
func bootstrapOverride(data map[string]string, xdsPort int, pki *PKI, sdsDir string) (boot map[string]any, sds map[string][]byte, err error) {
	fragment, ok := data[bootstrapKey]
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
	if sds, err = useStackCertificates(cluster, data, pki.gatewayDir(), sdsDir); err != nil {
		return nil, nil, fmt.Errorf("cluster meshwaf_xds: %w", err)
	}
	return boot, sds, nil
}

// useStackCertificates checks that the cluster verifies the control plane
// by the name its certificate carries and takes both its client
// certificate and its CA bundle from SDS files of the ConfigMap, each
// watching the mounted Secret's folder (so that Envoy reloads renewed
// files). It returns those files with gatewayDir in place of the Secret's
// mount, by their path in sdsDir, where it points the cluster.
func useStackCertificates(cluster map[string]any, data map[string]string, gatewayDir, sdsDir string) (map[string][]byte, error) {
	tlsCtx, ok := dig(cluster, "transport_socket", "typed_config").(map[string]any)
	if !ok || dig(tlsCtx, "@type") != "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext" {
		return nil, errors.New("no UpstreamTlsContext transport socket: the control plane speaks mutual TLS")
	}
	if sni := dig(tlsCtx, "sni"); sni != ControlPlaneName {
		return nil, fmt.Errorf("sni %v, want %s (the control plane's certificate)", sni, ControlPlaneName)
	}
	sources := []struct {
		what, field string // what the file holds; the Secret resource's field that holds it
		config      any    // the cluster's SdsSecretConfig for it
	}{
		{"client certificate", "tls_certificate", dig(tlsCtx, "common_tls_context", "tls_certificate_sds_secret_configs", 0)},
		{"CA bundle", "validation_context", dig(tlsCtx, "common_tls_context", "combined_validation_context", "validation_context_sds_secret_config")},
	}
	files := map[string][]byte{}
	for _, src := range sources {
		source, ok := dig(src.config, "sds_config", "path_config_source").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("the %s does not come from an SDS file", src.what)
		}
		path, _ := source["path"].(string)
		key, ok := strings.CutPrefix(path, IstioBootstrapMountDir+"/")
		if !ok || data[key] == "" {
			return nil, fmt.Errorf("the %s's SDS file %q is not a key of this ConfigMap mounted at %s", src.what, path, IstioBootstrapMountDir)
		}
		secret, err := stackSecret(data[key], dig(src.config, "name"), src.field, gatewayDir)
		if err != nil {
			return nil, fmt.Errorf("data.%s: %w", key, err)
		}
		local := filepath.Join(sdsDir, strings.TrimSuffix(key, filepath.Ext(key))+".json")
		source["path"] = local
		files[local] = secret
	}
	return files, nil
}

// stackSecret is an SDS file of the ConfigMap, in JSON, with the stack's
// gateway folder in place of the mounted Secret's. It must hold one Secret
// resource, the one the cluster asks for by name, whose field watches the
// Secret's folder.
func stackSecret(doc string, name any, field, gatewayDir string) ([]byte, error) {
	var secret map[string]any
	if err := yaml.Unmarshal([]byte(doc), &secret); err != nil {
		return nil, err
	}
	resources, _ := secret["resources"].([]any)
	if len(resources) != 1 || dig(resources, 0, "name") != name {
		return nil, fmt.Errorf("want exactly one resource, named %v as the cluster asks (Envoy takes one per file)", name)
	}
	content, ok := dig(resources, 0, field).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("resource %v has no %s", name, field)
	}
	if dig(content, "watched_directory", "path") != GatewaySecretMountDir {
		return nil, fmt.Errorf("%s.watched_directory is not %s: Envoy would not see a renewed Secret", field, GatewaySecretMountDir)
	}
	resources[0].(map[string]any)[field] = remount(content, gatewayDir)
	return json.MarshalIndent(secret, "", "  ")
}

// remount replaces the Secret's mount folder with dir in every path of v.
func remount(v any, dir string) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = remount(e, dir)
		}
	case []any:
		for i, e := range v {
			v[i] = remount(e, dir)
		}
	case string:
		if v == GatewaySecretMountDir {
			return dir
		}
		if rest, ok := strings.CutPrefix(v, GatewaySecretMountDir+"/"); ok {
			return filepath.Join(dir, rest)
		}
	}
	return v
}

// envoyFilterPatches is what the EnvoyFilter makes istiod patch into a
// gateway's listener: the HTTP filter inserted before the router, and the
// fields merged into the HTTP connection manager.
type envoyFilterPatches struct {
	WAF map[string]any
	HCM map[string]any // HttpConnectionManager fields, without @type
}

// loadEnvoyFilter reads the EnvoyFilter's two patches and fails on any
// other: the harness must apply everything istiod would.
func loadEnvoyFilter(files fs.FS) (envoyFilterPatches, error) {
	var out envoyFilterPatches
	raw, err := fs.ReadFile(files, deploy.IstioEnvoyFilter)
	if err != nil {
		return out, err
	}
	var ef map[string]any
	if err := yaml.Unmarshal(raw, &ef); err != nil {
		return out, err
	}
	if ef["kind"] != "EnvoyFilter" {
		return out, fmt.Errorf("kind %v, want EnvoyFilter", ef["kind"])
	}
	patches, _ := dig(ef, "spec", "configPatches").([]any)
	for i, p := range patches {
		value, _ := dig(p, "patch", "value").(map[string]any)
		switch applyTo, op := dig(p, "applyTo"), dig(p, "patch", "operation"); {
		case applyTo == "HTTP_FILTER" && op == "INSERT_BEFORE" && value["name"] == wafFilterName:
			if dig(p, "match", "listener", "filterChain", "filter", "subFilter", "name") != routerFilter {
				return out, fmt.Errorf("the %s patch must insert it before %s", wafFilterName, routerFilter)
			}
			if dig(value, "config_discovery") == nil {
				return out, fmt.Errorf("the %s filter has no config_discovery", wafFilterName)
			}
			out.WAF = value
		case applyTo == "NETWORK_FILTER" && op == "MERGE" &&
			dig(p, "match", "listener", "filterChain", "filter", "name") == hcmFilter:
			hcm, _ := dig(value, "typed_config").(map[string]any)
			if hcm == nil {
				return out, fmt.Errorf("patch %d merges no typed_config into %s", i, hcmFilter)
			}
			out.HCM = maps.Clone(hcm)
			delete(out.HCM, "@type")
			// The harness writes the rest of the connection manager itself;
			// a field it also sets would be silently overwritten.
			for k := range out.HCM {
				if k != "local_reply_config" {
					return out, fmt.Errorf("patch %d merges %s into %s, which the harness does not know", i, k, hcmFilter)
				}
			}
		default:
			return out, fmt.Errorf("patch %d (%v %v) is neither %s %s %s nor a MERGE into %s: the harness cannot apply it",
				i, applyTo, op, wafFilterName, "INSERT_BEFORE", routerFilter, hcmFilter)
		}
	}
	if out.WAF == nil {
		return out, fmt.Errorf("no configPatch inserts a filter named %s", wafFilterName)
	}
	return out, nil
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

// IstioGatewayOverride writes into dir meshwaf's bootstrap override for a
// gateway that Istio runs (pilot-agent passes the file to Envoy), made from
// data, the bootstrap ConfigMap as the API server holds it, and pointed at
// this stack's control plane and gateway certificate folder, with the SDS
// files it reads. It returns the override's path.
func (s *Stack) IstioGatewayOverride(data map[string]string, dir string) (string, error) {
	boot, sds, err := bootstrapOverride(data, s.ports.XDS, s.pki, dir)
	if err != nil {
		return "", err
	}
	for path, content := range sds {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return "", err
		}
	}
	override, err := json.MarshalIndent(boot, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, bootstrapKey)
	return path, os.WriteFile(path, override, 0o644)
}
