package stack

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/meshwaf/meshwaf/deploy"
	"github.com/meshwaf/meshwaf/integration/devpki"
)

// testPKI names certificate files; buildEnvoyConfig only writes the paths.
var testPKI = &PKI{CA: "/pki/ca.crt", ca: &devpki.PKI{Dir: "/pki"}}

// testGatewayDir is testPKI's gateway Secret folder.
const testGatewayDir = "/pki/" + gatewaySecretDir

func TestBuildEnvoyConfigFromDeployFiles(t *testing.T) {
	ports := Ports{Gateway: 1001, EnvoyAdmin: 1002, XDS: 1003, Agent: 1005, Backend: 1007}
	conf, err := buildEnvoyConfig(deploy.FS, bootstrapParams{Gateway: DefaultGateway, Ports: ports, PKI: testPKI,
		SDSDir: "/run"})
	if err != nil {
		t.Fatal(err)
	}
	var boot, override map[string]any
	for raw, into := range map[*[]byte]*map[string]any{&conf.Bootstrap: &boot, &conf.Override: &override} {
		if err := json.Unmarshal(*raw, into); err != nil {
			t.Fatal(err)
		}
	}

	xds, err := findNamed(dig(override, "static_resources", "clusters"), xdsClusterName)
	if err != nil {
		t.Fatal(err)
	}
	addr := dig(xds, "load_assignment", "endpoints", 0, "lb_endpoints", 0, "endpoint", "address", "socket_address")
	if got := addr.(map[string]any); got["address"] != "127.0.0.1" || got["port_value"] != float64(1003) {
		t.Errorf("meshwaf_xds address = %v, want 127.0.0.1:1003", got)
	}
	tlsCtx := dig(xds, "transport_socket", "typed_config", "common_tls_context")
	if got := dig(tlsCtx, "combined_validation_context", "default_validation_context", "match_typed_subject_alt_names", 0, "matcher", "exact"); got != ControlPlaneName {
		t.Errorf("meshwaf_xds expects the control plane's certificate for %v, want %s", got, ControlPlaneName)
	}
	if len(conf.SDSFiles) != 2 {
		t.Errorf("%d SDS files, want 2 (client certificate, CA bundle): %v", len(conf.SDSFiles), conf.SDSFiles)
	}
	for what, tc := range map[string]struct {
		config any
		path   string
		want   map[string]string // field of the Secret resource → value
	}{
		"client certificate": {dig(tlsCtx, "tls_certificate_sds_secret_configs", 0), "/run/meshwaf-xds-client-sds.json", map[string]string{
			"tls_certificate.certificate_chain.filename": testGatewayDir + "/tls.crt",
			"tls_certificate.private_key.filename":       testGatewayDir + "/tls.key",
			"tls_certificate.watched_directory.path":     testGatewayDir,
		}},
		"CA bundle": {dig(tlsCtx, "combined_validation_context", "validation_context_sds_secret_config"), "/run/meshwaf-xds-ca-sds.json", map[string]string{
			"validation_context.trusted_ca.filename":    testGatewayDir + "/ca.crt",
			"validation_context.watched_directory.path": testGatewayDir,
		}},
	} {
		if got := dig(tc.config, "sds_config", "path_config_source", "path"); got != tc.path {
			t.Errorf("meshwaf_xds %s SDS file = %v, want %s", what, got, tc.path)
		}
		var secret map[string]any
		if err := json.Unmarshal(conf.SDSFiles[tc.path], &secret); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		resource := dig(secret, "resources", 0)
		if dig(resource, "name") != dig(tc.config, "name") {
			t.Errorf("%s names %v, the cluster asks for %v", tc.path, dig(resource, "name"), dig(tc.config, "name"))
		}
		for path, want := range tc.want {
			var steps []any
			for _, step := range strings.Split(path, ".") {
				steps = append(steps, step)
			}
			if got := dig(resource, steps...); got != want {
				t.Errorf("%s %s = %v, want %s", what, path, got, want)
			}
		}
	}

	filters := dig(boot, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config", "http_filters").([]any)
	var names []string
	for _, f := range filters {
		names = append(names, f.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != wafFilterName+","+routerFilter {
		t.Errorf("http filters = %v, want [%s %s]", names, wafFilterName, routerFilter)
	}
	if dig(filters[0], "config_discovery", "config_source", "api_config_source", "grpc_services", 0, "envoy_grpc", "cluster_name") != xdsClusterName {
		t.Errorf("meshwaf.waf does not discover its config from %s: %v", xdsClusterName, filters[0])
	}
	// The EnvoyFilter's merge into the connection manager: the reply of a
	// fail-closed filter with no agent to answer.
	if dig(boot, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config",
		"local_reply_config", "mappers", 0, "body_format_override", "json_format", "error") != "web application firewall unavailable" {
		t.Errorf("the listener lacks the EnvoyFilter's local reply mapper")
	}
	if dig(boot, "node", "metadata", "NAMESPACE") != "istio-ingress" ||
		dig(boot, "node", "metadata", "LABELS", "istio") != "ingressgateway" {
		t.Errorf("node metadata = %v, want an istio-ingress gateway", dig(boot, "node", "metadata"))
	}
	if _, err := findNamed(dig(boot, "static_resources", "clusters"), AgentCluster); err != nil {
		t.Errorf("agent cluster: %v", err)
	}
}

func TestBuildEnvoyConfigRejectsDriftedDeployFiles(t *testing.T) {
	good := func(name string) []byte {
		b, err := deploy.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	replace := func(name, old, new string) []byte {
		b := string(good(name))
		if !strings.Contains(b, old) {
			t.Fatalf("%s does not contain %q", name, old)
		}
		return []byte(strings.Replace(b, old, new, 1))
	}
	tests := map[string]struct {
		bootstrap, envoyFilter []byte
		wantErr                string
	}{
		"xds cluster renamed": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "name: meshwaf_xds", "name: other"), wantErr: "meshwaf_xds",
		},
		"ConfigMap key renamed": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "custom_bootstrap.json:", "bootstrap.json:"), wantErr: bootstrapKey,
		},
		"control plane verified by another name": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "sni: meshwaf-xds.meshwaf-system.svc", "sni: other.svc"), wantErr: "sni",
		},
		"plain-text control plane": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "transport_sockets.tls.v3.UpstreamTlsContext", "transport_sockets.raw_buffer.v3.RawBuffer"),
			wantErr:   "UpstreamTlsContext",
		},
		"client certificate not watched": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "watched_directory: {path: /etc/meshwaf/xds-client}", "watched_directory: {path: /tmp}"),
			wantErr:   "watched_directory",
		},
		"CA read once at start": {
			bootstrap: replace(deploy.IstioBootstrapOverride, "validation_context_sds_secret_config:", "other_validation_context:"),
			wantErr:   "CA bundle",
		},
		"filter inserted after the router": {
			envoyFilter: replace(deploy.IstioEnvoyFilter, "INSERT_BEFORE", "INSERT_AFTER"), wantErr: "INSERT_BEFORE",
		},
		"connection manager field the harness also sets": {
			envoyFilter: replace(deploy.IstioEnvoyFilter, "local_reply_config:", "stat_prefix: x\n          local_reply_config:"),
			wantErr:     "stat_prefix",
		},
		"filter renamed": {
			envoyFilter: replace(deploy.IstioEnvoyFilter, "name: meshwaf.waf", "name: waf"), wantErr: wafFilterName,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			files := fstest.MapFS{
				deploy.IstioBootstrapOverride: {Data: good(deploy.IstioBootstrapOverride)},
				deploy.IstioEnvoyFilter:       {Data: good(deploy.IstioEnvoyFilter)},
			}
			if tc.bootstrap != nil {
				files[deploy.IstioBootstrapOverride].Data = tc.bootstrap
			}
			if tc.envoyFilter != nil {
				files[deploy.IstioEnvoyFilter].Data = tc.envoyFilter
			}
			_, err := buildEnvoyConfig(files, bootstrapParams{Gateway: DefaultGateway, PKI: testPKI})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

// AcceptHTTP10 must configure Envoy the way istiod does for a gateway pod
// with ISTIO_META_HTTP10=1, and nothing of it may leak into the default.
func TestBuildEnvoyConfigAcceptHTTP10(t *testing.T) {
	for name, accept := range map[string]bool{"default refuses HTTP/1.0": false, "opted in": true} {
		t.Run(name, func(t *testing.T) {
			conf, err := buildEnvoyConfig(deploy.FS, bootstrapParams{Gateway: DefaultGateway, AcceptHTTP10: accept, PKI: testPKI})
			if err != nil {
				t.Fatal(err)
			}
			var boot map[string]any
			if err := json.Unmarshal(conf.Bootstrap, &boot); err != nil {
				t.Fatal(err)
			}
			hcm := dig(boot, "static_resources", "listeners", 0, "filter_chains", 0, "filters", 0, "typed_config")
			got := dig(hcm, "http_protocol_options", "accept_http_10") == true
			meta := dig(boot, "node", "metadata", "HTTP10") == "1"
			if got != accept || meta != accept {
				t.Errorf("accept_http_10 %t, node metadata HTTP10=1 %t; want both %t", got, meta, accept)
			}
		})
	}
}
