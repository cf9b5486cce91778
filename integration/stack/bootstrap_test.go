package stack

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/meshwaf/meshwaf/deploy"
	"github.com/meshwaf/meshwaf/devpki"
)

// testPKI names certificate files; buildEnvoyConfig only writes the paths.
var testPKI = &PKI{CA: "/pki/ca.crt", Gateway: devpki.Pair{Cert: "/pki/gw.crt", Key: "/pki/gw.key"}}

func TestBuildEnvoyConfigFromDeployFiles(t *testing.T) {
	ports := Ports{Gateway: 1001, EnvoyAdmin: 1002, XDS: 1003, Agent: 1005, Backend: 1007}
	conf, err := buildEnvoyConfig(deploy.FS, bootstrapParams{Gateway: DefaultGateway, Ports: ports, PKI: testPKI,
		ClientSecretPath: "/run/sds.json"})
	if err != nil {
		t.Fatal(err)
	}
	var boot, override, secret map[string]any
	for raw, into := range map[*[]byte]*map[string]any{&conf.Bootstrap: &boot, &conf.Override: &override, &conf.ClientSecret: &secret} {
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
	if got := dig(tlsCtx, "validation_context", "trusted_ca", "filename"); got != testPKI.CA {
		t.Errorf("meshwaf_xds trusted CA = %v, want %s", got, testPKI.CA)
	}
	sds := dig(tlsCtx, "tls_certificate_sds_secret_configs", 0)
	if got := dig(sds, "sds_config", "path_config_source", "path"); got != "/run/sds.json" {
		t.Errorf("meshwaf_xds client certificate SDS file = %v, want /run/sds.json", got)
	}
	resource := dig(secret, "resources", 0)
	if dig(resource, "name") != dig(sds, "name") {
		t.Errorf("SDS file names %v, the cluster asks for %v", dig(resource, "name"), dig(sds, "name"))
	}
	for path, want := range map[string]string{
		"certificate_chain.filename": testPKI.Gateway.Cert,
		"private_key.filename":       testPKI.Gateway.Key,
		"watched_directory.path":     "/pki",
	} {
		step := strings.Split(path, ".")
		if got := dig(resource, "tls_certificate", step[0], step[1]); got != want {
			t.Errorf("client certificate %s = %v, want %s", path, got, want)
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
		"filter inserted after the router": {
			envoyFilter: replace(deploy.IstioEnvoyFilter, "INSERT_BEFORE", "INSERT_AFTER"), wantErr: "INSERT_BEFORE",
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
