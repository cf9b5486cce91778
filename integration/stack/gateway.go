package stack

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// gatewayBootstrap is the part of an Istio ingress gateway's configuration
// that istiod would provide, written as a static bootstrap: the node identity
// pilot-agent sets, an admin endpoint, one HTTP listener that already has
// the EnvoyFilter's patches (meshwaf's filter, the reply when no agent
// answers), a route to the echo backend, and the cluster that reaches the
// node-local agent.
func gatewayBootstrap(p bootstrapParams, patches envoyFilterPatches) map[string]any {
	gw := p.Gateway
	labels := map[string]any{}
	for k, v := range gw.Labels {
		labels[k] = v
	}
	pod := gw.Workload + "-meshwaf-stack"
	metadata := map[string]any{
		"NAMESPACE":     gw.Namespace,
		"LABELS":        labels,
		"WORKLOAD_NAME": gw.Workload,
		"NAME":          pod,
		"CLUSTER_ID":    "Kubernetes",
	}
	if p.AcceptHTTP10 {
		metadata["HTTP10"] = "1"
	}
	return map[string]any{
		"node": map[string]any{
			// Istio's node id format: type~ip~pod.namespace~domain.
			"id":       fmt.Sprintf("router~127.0.0.1~%s.%s~%s.svc.cluster.local", pod, gw.Namespace, gw.Namespace),
			"cluster":  gw.Workload + "." + gw.Namespace,
			"metadata": metadata,
		},
		"admin": map[string]any{"address": socketAddress(p.Ports.EnvoyAdmin)},
		"static_resources": map[string]any{
			"listeners": []any{gatewayListener(p.Ports.Gateway, patches, p.AcceptHTTP10)},
			"clusters": []any{
				staticCluster(AgentCluster, p.Ports.Agent, true),
				staticCluster(backendCluster, p.Ports.Backend, false),
			},
		},
	}
}

func gatewayListener(port int, patches envoyFilterPatches, acceptHTTP10 bool) map[string]any {
	hcm := map[string]any{
		"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix": fmt.Sprintf("outbound_0.0.0.0_%d", port),
		// Istio gateways normalise paths before filters see them; keep that
		// so the WAF is tested against what it will really receive.
		"normalize_path": true,
		"route_config": map[string]any{
			"name": fmt.Sprintf("http.%d", port),
			"virtual_hosts": []any{map[string]any{
				"name":    "all",
				"domains": []any{"*"},
				"routes": []any{map[string]any{
					"match": map[string]any{"prefix": "/"},
					"route": map[string]any{"cluster": backendCluster},
				}},
			}},
		},
		"http_filters": []any{patches.WAF, map[string]any{
			"name": routerFilter,
			"typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			},
		}},
		// The access log shows each verdict with its response flags, which
		// is the first thing to read when an e2e test fails.
		"access_log": []any{map[string]any{
			"name": "envoy.access_loggers.stdout",
			"typed_config": map[string]any{
				"@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
				"log_format": map[string]any{"text_format_source": map[string]any{
					"inline_string": "[access] %REQ(:METHOD)% %REQ(:AUTHORITY)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% " +
						"%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %DURATION%ms\n",
				}},
			},
		}},
	}
	maps.Copy(hcm, patches.HCM)
	if acceptHTTP10 {
		// What istiod generates for a proxy with node metadata HTTP10=1.
		hcm["http_protocol_options"] = map[string]any{"accept_http_10": true}
	}
	return map[string]any{
		"name":    fmt.Sprintf("0.0.0.0_%d", port),
		"address": socketAddress(port),
		"filter_chains": []any{map[string]any{
			"filters": []any{map[string]any{
				"name":         "envoy.filters.network.http_connection_manager",
				"typed_config": hcm,
			}},
		}},
	}
}

// staticCluster is a one-endpoint loopback cluster; http2 is for gRPC.
func staticCluster(name string, port int, http2 bool) map[string]any {
	c := map[string]any{
		"name":            name,
		"type":            "STATIC",
		"connect_timeout": "1s",
		"load_assignment": map[string]any{
			"cluster_name": name,
			"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": socketAddress(port)},
			}}}},
		},
	}
	if http2 {
		c["typed_extension_protocol_options"] = map[string]any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}},
			},
		}
	}
	return c
}

func socketAddress(port int) map[string]any {
	return map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": port}}
}

// labelString renders labels sorted, for log lines.
func labelString(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}
