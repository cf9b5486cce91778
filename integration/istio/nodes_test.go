package istio

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// The agent Service keeps internalTrafficPolicy: Local as the chart ships
// it: with two nodes, an agent on each and a gateway on each, every
// gateway's requests are inspected by its own node's agent only, which the
// agents' audit lines show. Each node's gateway has a Gateway of its own
// (its own port, as two gateways share this machine); one VirtualService
// and one WAFPolicy cover both. Each node's agent and gateway talk to a
// control plane replica of their own, as in a deployment with two.
func TestIstioGatewaysUseTheirOwnNodesAgent(t *testing.T) {
	c, d := startIstio(t, gatewayNamespace, "shop")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ip, err := PodIP()
	if err != nil {
		t.Fatal(err)
	}
	nodes := []struct {
		name     string
		ip       string     // of the node's pods
		port     int        // of the node's Gateway server
		proxy    ProxyPorts // of the node's gateway proxy
		stack    *stack.Stack
		gateway  string
		listener string
	}{
		{name: "node-a", ip: ip, port: 18081},
		// istiod keeps one endpoint per address and port name across a
		// Service's slices, so the second node's pods need an address of
		// their own.
		{name: "node-b", ip: ExtraPodIP(t, 1), port: 18082, proxy: ProxyPorts{Admin: 15100, Readiness: 15121, Prometheus: 15190, Status: 15120}},
	}
	var gatewayNames []string
	for i := range nodes {
		n := &nodes[i]
		n.gateway = "gateway-" + n.name
		n.listener = fmt.Sprintf("http://127.0.0.1:%d", n.port)
		gatewayNames = append(gatewayNames, gatewayNamespace+"/"+n.gateway)
		n.stack = startMeshwaf(t, c, n.name, n.ip)
		if _, err := c.Apply(ctx, []byte(fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: %s, namespace: istio-ingress}
spec:
  selector: {istio: ingressgateway, meshwaf-test-node: %s}
  servers:
  - port: {number: %d, name: http, protocol: HTTP}
    hosts: ["*/shop.example.com"]
`, n.gateway, n.name, n.port))); err != nil {
			t.Fatal(err)
		}
	}
	objects := backendEndpoint(ip, nodes[0].stack.Ports().Backend) + fmt.Sprintf(`---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [%s]
  http:
  - route:
    - destination: {host: storefront.shop.svc.cluster.local, port: {number: 8080}}
---
apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: shop, namespace: shop}
spec:
  targetRefs: [{group: networking.istio.io, kind: VirtualService, name: shop, namespace: shop}]
  mode: Prevent
`, strings.Join(gatewayNames, ", "))
	if _, err := c.Apply(ctx, []byte(objects)); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		StartGateway(t, c, d, n.stack, GatewayPod{
			Namespace: gatewayNamespace, ServiceAccount: "istio-ingressgateway", Name: "istio-ingressgateway-" + n.name,
			Labels: map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway", "meshwaf-test-node": n.name},
			Node:   n.name, IP: n.ip, BootstrapConfigMap: "meshwaf-bootstrap", Ports: n.proxy,
		})
	}

	const rounds = 5
	for _, n := range nodes {
		waitStatus(t, n.listener, host, benign, http.StatusOK, time.Minute)
		// The gateway may be ready before its node's agent has the policy.
		waitStatus(t, n.listener, host, sqli+"&warmup="+n.name, http.StatusForbidden, 10*time.Second)
		for i := range rounds {
			attack := fmt.Sprintf("%s&via=%s&round=%d", sqli, n.name, i)
			if got := status(t, n.listener, host, attack); got != http.StatusForbidden {
				t.Errorf("SQLi through %s's gateway: %d, want 403", n.name, got)
			}
		}
	}
	// Every attack sent through a node's gateway is in that node's agent's
	// audit log, and none in the other's.
	for _, agent := range nodes {
		audit, err := os.ReadFile(agent.stack.LogPaths().Audit)
		if err != nil {
			t.Fatal(err)
		}
		for _, via := range nodes {
			got := strings.Count(string(audit), "via="+via.name)
			want := 0
			if via.name == agent.name {
				want = rounds
			}
			if got != want {
				t.Errorf("%s's agent audited %d attacks sent through %s's gateway, want %d", agent.name, got, via.name, want)
			}
		}
	}
}
