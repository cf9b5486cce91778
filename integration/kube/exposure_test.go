package kube_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

// The chart's default install lets only their callers reach meshwaf's ports
// (issue 14): the agents' ext_authz port the gateway's and the sidecar
// namespaces' Envoys; the control plane's xDS port those and the agents;
// the HTTP ports (/metrics, /debug/*) only the metrics namespaces, none by
// default; the webhook port anyone, since the API server is no pod. Every
// port a meshwaf container opens is accounted for, so a new port fails the
// test until it is given its callers.
func TestChartLetsOnlyTheirCallersReachMeshwaf(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tests := map[string]struct {
		sets []string
		// want is, per workload and container port, who may connect.
		want map[string]map[string]string
	}{
		"defaults": {
			want: map[string]map[string]string{
				"meshwaf-agent": {"grpc-authz": "namespaces istio-ingress", "http-monitoring": "nobody"},
				"meshwaf-xds": {"grpc-xds": "namespaces istio-ingress; pods app.kubernetes.io/name=meshwaf-agent",
					"http-monitoring": "nobody", "https-webhook": "anyone"},
			},
		},
		"sidecars, a Gateway API namespace and monitoring": {
			sets: []string{"--set", "sidecars.namespaces={shop}", "--set", "networkPolicy.proxyNamespaces={web}",
				"--set", "networkPolicy.metricsNamespaces={monitoring}"},
			want: map[string]map[string]string{
				"meshwaf-agent": {"grpc-authz": "namespaces istio-ingress,shop,web", "http-monitoring": "namespaces monitoring"},
				"meshwaf-xds": {"grpc-xds": "namespaces istio-ingress,shop,web; pods app.kubernetes.io/name=meshwaf-agent",
					"http-monitoring": "namespaces monitoring", "https-webhook": "anyone"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rendered := helmTemplate(ctx, t, append([]string{"--namespace", "meshwaf-system"}, tc.sets...)...)
			workloads, policies := workloadsAndPolicies(t, rendered)
			for workload, ports := range tc.want {
				pod, ok := workloads[workload]
				if !ok {
					t.Fatalf("no workload %s rendered", workload)
				}
				got := reachability(pod, policies)
				for port, who := range ports {
					if got[port] != who {
						t.Errorf("%s port %s: reachable by %q, want %q", workload, port, got[port], who)
					}
				}
				for port, who := range got {
					if _, ok := ports[port]; !ok {
						t.Errorf("%s port %s (reachable by %q) is not accounted for by the test", workload, port, who)
					}
				}
			}
		})
	}
}

// workloadsAndPolicies reads the rendered chart's DaemonSets and
// Deployments (their pod templates) and NetworkPolicies.
func workloadsAndPolicies(t *testing.T, rendered []byte) (map[string]corev1.PodTemplateSpec, []networkingv1.NetworkPolicy) {
	t.Helper()
	workloads := map[string]corev1.PodTemplateSpec{}
	var policies []networkingv1.NetworkPolicy
	for _, doc := range bytes.Split(rendered, []byte("\n---\n")) {
		var head struct{ Kind string }
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("rendered document: %v\n%s", err, doc)
		}
		switch head.Kind {
		case "DaemonSet":
			var ds appsv1.DaemonSet
			mustUnmarshal(t, doc, &ds)
			workloads[ds.Name] = ds.Spec.Template
		case "Deployment":
			var d appsv1.Deployment
			mustUnmarshal(t, doc, &d)
			workloads[d.Name] = d.Spec.Template
		case "NetworkPolicy":
			var np networkingv1.NetworkPolicy
			mustUnmarshal(t, doc, &np)
			policies = append(policies, np)
		}
	}
	return workloads, policies
}

func mustUnmarshal(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
}

// reachability says, for each named container port of pod, who the
// NetworkPolicies selecting the pod let connect: "anyone" without any
// policy or with a rule for the port without peers, "nobody" when no rule
// names the port, else the peers of the rules naming it.
func reachability(pod corev1.PodTemplateSpec, policies []networkingv1.NetworkPolicy) map[string]string {
	var selecting []networkingv1.NetworkPolicy
	for _, np := range policies {
		if selects(np.Spec.PodSelector.MatchLabels, pod.Labels) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			selecting = append(selecting, np)
		}
	}
	out := map[string]string{}
	for _, c := range pod.Spec.Containers {
		for _, port := range c.Ports {
			var peers []string
			open := len(selecting) == 0
			for _, np := range selecting {
				for _, rule := range np.Spec.Ingress {
					if !coversPort(rule.Ports, port) {
						continue
					}
					if len(rule.From) == 0 {
						open = true
					}
					for _, peer := range rule.From {
						peers = append(peers, describePeer(peer))
					}
				}
			}
			switch {
			case open:
				out[port.Name] = "anyone"
			case len(peers) == 0:
				out[port.Name] = "nobody"
			default:
				out[port.Name] = strings.Join(peers, "; ")
			}
		}
	}
	return out
}

// coversPort says whether a rule's ports include port (no ports: all).
func coversPort(ports []networkingv1.NetworkPolicyPort, port corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil || p.Port.StrVal == port.Name || (p.Port.StrVal == "" && p.Port.IntVal == port.ContainerPort) {
			return true
		}
	}
	return false
}

// describePeer writes a peer as the test's expectations do: "namespaces
// a,b" for namespaces named by kubernetes.io/metadata.name, "pods k=v" for
// a pod selector in the policy's namespace; anything else in full, so that
// it never equals an expectation.
func describePeer(peer networkingv1.NetworkPolicyPeer) string {
	switch {
	case peer.NamespaceSelector != nil && peer.PodSelector == nil && peer.IPBlock == nil &&
		len(peer.NamespaceSelector.MatchLabels) == 0 && len(peer.NamespaceSelector.MatchExpressions) == 1:
		e := peer.NamespaceSelector.MatchExpressions[0]
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == "In" {
			names := slices.Clone(e.Values)
			sort.Strings(names)
			return "namespaces " + strings.Join(names, ",")
		}
	case peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil && len(peer.PodSelector.MatchExpressions) == 0:
		var labels []string
		for k, v := range peer.PodSelector.MatchLabels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		return "pods " + strings.Join(labels, ",")
	}
	return fmt.Sprintf("%+v", peer)
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
