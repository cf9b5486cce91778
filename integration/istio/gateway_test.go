package istio

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/stack"
)

const (
	meshwafNamespace = "meshwaf-system"
	gatewayNamespace = "istio-ingress"
	// node is the node every pod of the test "runs" on.
	node = "node-a"
)

// demo is the README's Istio installation on a real API server and istiod:
// the chart's manifests and Istio fragments and the demo's Gateway,
// VirtualService and WAFPolicy applied as they are, meshwaf's control
// plane reading them and an agent on node.
type demo struct {
	c    *kube.Cluster
	d    *Istiod
	s    *stack.Stack
	root string // the repository
	ip   string // the pods' address
}

func startDemo(t *testing.T) *demo {
	t.Helper()
	c, d := startIstio(t, gatewayNamespace, "shop", "api")
	applyFiles(t, c, "examples/demo/gateway.yaml", "examples/demo/virtualservice.yaml", "examples/demo/wafpolicy.yaml")
	dm := &demo{c: c, d: d, root: kube.RepoRoot()}
	var err error
	if dm.ip, err = PodIP(); err != nil {
		t.Fatal(err)
	}
	dm.s = startMeshwaf(t, c, node, dm.ip)
	// What the endpoint controller would make for the demo's backend.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Apply(ctx, []byte(backendEndpoint(dm.ip, dm.s.Ports().Backend))); err != nil {
		t.Fatal(err)
	}
	return dm
}

// startIstio starts a cluster with namespaces, istiod, the chart's objects
// and the gateways' ServiceAccount.
func startIstio(t *testing.T, namespaces ...string) (*kube.Cluster, *Istiod) {
	t.Helper()
	c := kube.Start(t, kube.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range namespaces {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	d := StartIstiod(t, c)
	applyFiles(t, c, chartFiles...)
	if _, err := c.Apply(ctx, []byte(`apiVersion: v1
kind: ServiceAccount
metadata: {name: istio-ingressgateway, namespace: istio-ingress}
`)); err != nil {
		t.Fatal(err)
	}
	return c, d
}

// startMeshwaf starts meshwaf's control plane reading c and an agent on
// node whose pod has address ip, with the objects the kubelet and the
// endpoint controller would make for that pod (no kubelet runs here).
func startMeshwaf(t *testing.T, c *kube.Cluster, node, ip string) *stack.Stack {
	t.Helper()
	return startMeshwafPod(t, c, agentPod{name: "meshwaf-agent-" + node, node: node, ip: ip}, 0)
}

// startMeshwafPod is startMeshwaf for the agent pod p, whose agent drains
// for drainDelay when told to stop.
func startMeshwafPod(t *testing.T, c *kube.Cluster, p agentPod, drainDelay time.Duration) *stack.Stack {
	t.Helper()
	s := stack.StartForTest(t, stack.Config{
		PodIP:            p.ip,
		NodeID:           p.node,
		Kubeconfig:       c.Kubeconfig(),
		ControlPlaneArgs: []string{"--namespace", meshwafNamespace},
		AgentCluster:     "outbound|9191||meshwaf-agent." + meshwafNamespace + ".svc.cluster.local",
		AgentDrainDelay:  drainDelay,
		NoEnvoy:          true,
	})
	startAgentPod(t, c, p, s.Ports().Agent)
	return s
}

// chartFiles are the chart's objects as rendered into deploy/, in the
// order to apply them. The webhook is left out: the API server here cannot
// reach a Service.
var chartFiles = []string{
	"deploy/kubernetes/00-namespace.yaml", "deploy/kubernetes/10-rbac.yaml",
	"deploy/kubernetes/20-xds.yaml", "deploy/kubernetes/30-agent.yaml",
	"deploy/istio/bootstrap-override.yaml", "deploy/istio/envoyfilter.yaml", "deploy/istio/gateway-parameters.yaml",
}

// applyFiles applies files of the repository, in order.
func applyFiles(t *testing.T, c *kube.Cluster, files ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, f := range files {
		if _, err := c.ApplyFile(ctx, filepath.Join(kube.RepoRoot(), f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// startGateway starts the ingress gateway of the demo's Gateway on node.
func (dm *demo) startGateway(t *testing.T) *Gateway {
	t.Helper()
	return StartGateway(t, dm.c, dm.d, dm.s, GatewayPod{
		Namespace: gatewayNamespace, ServiceAccount: "istio-ingressgateway", Name: "istio-ingressgateway-test",
		Labels: map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"},
		Node:   node, IP: dm.ip, BootstrapConfigMap: "meshwaf-bootstrap",
	})
}

const host, benign, sqli = "shop.example.com", "/products?category=shoes", "/?id=1%27%20OR%201=1--"

// The README's Istio steps on a real istiod and a gateway pilot-agent
// runs: the gateway gets meshwaf's filter from istiod's EnvoyFilter and its
// configuration over ECDS from meshwaf-xds, and calls the node's agent
// through the cluster istiod generates for the agent Service. SQLi is
// blocked, a benign request passes; a policy edit to Detect and back
// takes effect within 2 s each way without restarting the gateway's Envoy,
// and shows in the gateway's own /stats; the policy is Programmed.
func TestIstioGatewayEnforcesTheDemoPolicy(t *testing.T) {
	dm := startDemo(t)
	g := dm.startGateway(t)
	checkEnforced(t, dm.c, g)
	switchModeAndBack(t, dm.c, g, "examples/demo/wafpolicy.yaml", demoGateway, host)
	waitProgrammed(t, dm.c, "shop", 10*time.Second)
}

// checkEnforced checks that gateway g enforces the policy shop on host: a
// benign request passes (within a minute of the gateway's start), SQLi is
// blocked, the policy is Programmed and g's own /stats shows the ECDS
// updates it applied.
func checkEnforced(t *testing.T, c *kube.Cluster, g *Gateway) {
	t.Helper()
	waitStatus(t, demoGateway, host, benign, http.StatusOK, time.Minute)
	waitStatus(t, demoGateway, host, sqli, http.StatusForbidden, 10*time.Second)
	waitProgrammed(t, c, "shop", 10*time.Second)
	if ecdsReloads(t, g) == 0 {
		t.Fatalf("the gateway's /stats shows no ECDS update of %s with the chart's stats inclusion", stack.ECDSStatPrefix)
	}
}

// switchModeAndBack edits the policy of file (mode: Prevent) to Detect
// and back and checks that each edit takes effect on proxy g within 2 s
// (SQLi to host through base answered 200, then 403), shows in g's own
// /stats (more ECDS updates each time), and leaves the benign request
// passing and g's Envoy running as it was.
func switchModeAndBack(t *testing.T, c *kube.Cluster, g *Gateway, file, base, host string) {
	t.Helper()
	reloads := ecdsReloads(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	envoyPID, err := g.EnvoyPID()
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile(filepath.Join(kube.RepoRoot(), file))
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		mode string
		want int
	}{{"Detect", http.StatusOK}, {"Prevent", http.StatusForbidden}} {
		edited := strings.Replace(string(policy), "mode: Prevent", "mode: "+step.mode, 1)
		start := time.Now()
		if _, err := c.Apply(ctx, []byte(edited)); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, base, host, sqli, step.want, 2*time.Second)
		t.Logf("mode %s: SQLi to %s answered %d after %s", step.mode, host, step.want, time.Since(start).Round(time.Millisecond))
		if got := ecdsReloads(t, g); got <= reloads {
			t.Errorf("mode %s: ECDS updates in the gateway's /stats stayed at %d", step.mode, got)
		} else {
			reloads = got
		}
	}
	if got := status(t, base, host, benign); got != http.StatusOK {
		t.Errorf("benign request at the end: %d, want 200", got)
	}
	if pid, err := g.EnvoyPID(); err != nil || pid != envoyPID {
		t.Errorf("the gateway's Envoy is pid %d (%v), was %d: it must not restart", pid, err, envoyPID)
	}
}

// ecdsReloads reads how often the gateway applied a meshwaf.waf
// configuration received over ECDS, from its own /stats.
func ecdsReloads(t *testing.T, g *Gateway) uint64 {
	t.Helper()
	n, err := stack.ECDSReloads(context.Background(), g.AdminURL)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitProgrammed waits until the WAFPolicy's current generation is
// Programmed (every agent applied it), as kubectl get wafpolicies shows.
func waitProgrammed(t *testing.T, c *kube.Cluster, name string, timeout time.Duration) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		p, err := c.WAFPolicy(context.Background(), "shop", name)
		if last = err; err == nil {
			if last = kube.Programmed(p); last == nil {
				return
			}
		}
	}
	t.Fatalf("WAFPolicy %s not Programmed within %s: %v", name, timeout, last)
}

// agentPod is one pod of the agent DaemonSet.
type agentPod struct {
	name, node string
	ip         string // the pod's address, which its agent listens on
}

// agentEndpoint is what a kubelet and the endpoint controller would make
// for the agent pod p listening on port, its endpoint in state conditions:
// the Node, a Pod object with its node (istiod finds an endpoint's node
// through its Pod, which internalTrafficPolicy: Local needs) and an
// EndpointSlice of the agent Service naming it.
func agentEndpoint(p agentPod, port int, conditions string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Pod
metadata:
  name: %[2]s
  namespace: meshwaf-system
  labels: {app.kubernetes.io/name: meshwaf-agent}
spec:
  nodeName: %[1]s
  serviceAccountName: meshwaf-agent
  automountServiceAccountToken: false
  containers: [{name: agent, image: meshwaf/agent, ports: [{name: grpc-authz, containerPort: 9191}]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[2]s
  namespace: meshwaf-system
  labels: {kubernetes.io/service-name: meshwaf-agent}
addressType: IPv4
ports: [{name: grpc-authz, port: %[4]d, protocol: TCP, appProtocol: grpc}]
endpoints:
- addresses: ["%[3]s"]
  conditions: %[5]s
  nodeName: %[1]s
  targetRef: {kind: Pod, name: %[2]s, namespace: meshwaf-system}
`, p.node, p.name, p.ip, port, conditions)
}

// backendEndpoint is the demo's storefront Service with an EndpointSlice
// naming the stack's backend at ip:port.
func backendEndpoint(ip string, port int) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: storefront, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: storefront-local
  namespace: shop
  labels: {kubernetes.io/service-name: storefront}
addressType: IPv4
ports: [{name: http, port: %[2]d, protocol: TCP}]
endpoints: [{addresses: ["%[1]s"], conditions: {ready: true}}]
`, ip, port)
}

// The conditions of an agent's endpoint: ready, and what the endpoint
// controller writes once its pod is being deleted (still serving while it
// drains).
const (
	readyEndpoint       = "{ready: true}"
	terminatingEndpoint = "{ready: false, serving: true, terminating: true}"
)

// startAgentPod makes the objects of agent pod p, its agent listening on
// port, and marks it running.
func startAgentPod(t *testing.T, c *kube.Cluster, p agentPod, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Apply(ctx, []byte(agentEndpoint(p, port, readyEndpoint))); err != nil {
		t.Fatal(err)
	}
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if err := markRunning(ctx, cs, meshwafNamespace, p.name, p.ip); err != nil {
		t.Fatal(err)
	}
}

// demoGateway is where the demo Gateway's server (port 80) listens.
const demoGateway = "http://127.0.0.1:80"

// status sends GET target to the gateway listening at base, with Host
// host.
func status(t *testing.T, base, host, target string) int {
	t.Helper()
	code, err := tryStatus(base, host, target)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func tryStatus(base, host, target string) (int, error) {
	code, _, err := getWithBody(base, host, target)
	return code, err
}

// getWithBody sends GET target to the gateway listening at base, with Host
// host, and returns the answer's status and body.
func getWithBody(base, host, target string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, base+target, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitStatus waits until GET target at base answers want.
func waitStatus(t *testing.T, base, host, target string, want int, timeout time.Duration) {
	t.Helper()
	var last []string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		code, err := tryStatus(base, host, target)
		if err == nil && code == want {
			return
		}
		last = append(last[max(0, len(last)-2):], fmt.Sprint(code, " ", err))
		if time.Now().After(deadline) {
			t.Fatalf("GET %s%s: no %d within %s; last answers: %s", host, target, want, timeout, strings.Join(last, "; "))
		}
	}
}
