package istio

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// workload is an in-mesh workload of the east-west tests: a Service, its
// pod with a sidecar and an app, all in namespace shop.
type workload struct {
	name string
	ip   string // the pod's address
	// egress is the loopback address where the sidecar's outbound listener
	// for port 8080 binds (the app's way into the mesh, without capture).
	egress string
	app    *httptest.Server
	ports  ProxyPorts
	proxy  *Gateway
}

// workloadObjects are what the API server holds for w: its Service (port
// 8080 to the sidecar's inbound port 9080), ServiceAccount, Pod and
// EndpointSlice, and the Sidecar resource that binds its listeners.
func workloadObjects(w *workload, node string) string {
	appPort := w.app.Listener.Addr().(*net.TCPAddr).Port
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: shop}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: 9080}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: %[1]s, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata:
  name: %[1]s-pod
  namespace: shop
  labels: {app: %[1]s, security.istio.io/tlsMode: istio, service.istio.io/canonical-name: %[1]s, waf.meshwaf.io/inbound: enabled}
  annotations: {sidecar.istio.io/interceptionMode: NONE}
spec:
  nodeName: %[3]s
  serviceAccountName: %[1]s
  automountServiceAccountToken: false
  containers:
  - {name: app, image: app, ports: [{containerPort: %[4]d}]}
  - {name: istio-proxy, image: proxyv2}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-pod
  namespace: shop
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [{name: http, port: 9080, protocol: TCP}]
endpoints:
- addresses: [%[2]q]
  conditions: {ready: true}
  nodeName: %[3]s
  targetRef: {kind: Pod, name: %[1]s-pod, namespace: shop}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: %[1]s, namespace: shop}
spec:
  workloadSelector: {labels: {app: %[1]s}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: %[2]s
    defaultEndpoint: 127.0.0.1:%[4]d
    captureMode: NONE
  egress:
  - port: {number: 8080, protocol: HTTP, name: egress-http}
    bind: %[5]s
    captureMode: NONE
    hosts: ["./*"]
  # The filter calls the agent through the cluster istiod makes for the
  # agent's Service, which must be in the sidecar's egress scope; without
  # capture each egress port is a listener of its own.
  - port: {number: 9191, protocol: GRPC, name: egress-agent}
    bind: %[5]s
    captureMode: NONE
    hosts: ["meshwaf-system/meshwaf-agent.meshwaf-system.svc.cluster.local"]
`, w.name, w.ip, node, appPort, w.egress)
}

// startWorkloads starts the workloads a, b and c in namespace shop, each
// with its app (a test server answering 200) and its sidecar, run as
// Istio runs it with meshwaf's bootstrap override and pod annotations from
// the chart's ConfigMap in shop, and returns them in that order.
func startWorkloads(t *testing.T, c *kube.Cluster, d *Istiod, s *stack.Stack) []*workload {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	var ws []*workload
	for i, name := range []string{"a", "b", "c"} {
		w := &workload{name: name, ip: ExtraPodIP(t, i), egress: "127.0.0." + strconv.Itoa(11+i),
			ports: ProxyPorts{Admin: 15100 + 10*i, Readiness: 15101 + 10*i, Prometheus: 15102 + 10*i, Status: 15103 + 10*i}}
		w.app = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(rw, "%s got %s %s\n", name, r.Host, r.URL)
		}))
		t.Cleanup(w.app.Close)
		if _, err := c.Apply(ctx, []byte(workloadObjects(w, node))); err != nil {
			t.Fatal(err)
		}
		if err := markRunning(ctx, cs, "shop", name+"-pod", w.ip); err != nil {
			t.Fatal(err)
		}
		w.proxy = StartGateway(t, c, d, s, GatewayPod{
			Namespace: "shop", ServiceAccount: w.name, Name: w.name + "-pod",
			Labels: map[string]string{"app": w.name, "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": w.name,
				"waf.meshwaf.io/inbound": "enabled"},
			Node: node, IP: w.ip, Ports: w.ports, Sidecar: true, BootstrapConfigMap: "meshwaf-bootstrap",
		})
		ws = append(ws, w)
	}
	return ws
}

// helmTemplate renders the chart's templates showOnly with the test's
// values sets (--set).
func helmTemplate(t *testing.T, sets []string, showOnly ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root := kube.RepoRoot()
	out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "install-helm.sh")).Output()
	if err != nil {
		t.Fatalf("install-helm.sh: %v", err)
	}
	args := []string{"template", "meshwaf", filepath.Join(root, "deploy", "helm", "meshwaf"), "--namespace", meshwafNamespace}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	for _, f := range showOnly {
		args = append(args, "--show-only", f)
	}
	rendered, err := exec.CommandContext(ctx, strings.TrimSpace(string(out)), args...).Output()
	if err != nil {
		t.Fatalf("helm %v: %v", args, err)
	}
	return rendered
}

// latency is the median of n sequential GETs of target through base,
// after as many unmeasured ones (connections, caches).
func latency(t *testing.T, base, host, target string, n int) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	took := make([]time.Duration, 0, 2*n)
	for range 2 * n {
		req, err := http.NewRequest(http.MethodGet, base+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s%s: %d", host, target, resp.StatusCode)
		}
		took = append(took, time.Since(start))
	}
	took = took[n:]
	slices.Sort(took)
	return took[n/2]
}

// The east-west tier: sidecars of in-mesh workloads, run as Istio runs
// them, carry meshwaf's filter on their inbound path once the chart's
// sidecar objects are applied to their namespace. A WAFPolicy on the
// Service b makes b's sidecar block SQLi from a (403, benign 200), with an
// audit line naming b's policy and a as the caller; an edit to Detect and
// back takes effect within 2 s without restarting b's Envoy; the policy
// is Programmed. c, without a policy, gets the filter that does nothing:
// the attack reaches it, and the latency that filter adds is measured.
func TestSidecarsEnforceAServicePolicy(t *testing.T) {
	c, d := startIstio(t, gatewayNamespace, "shop")
	ip, err := PodIP()
	if err != nil {
		t.Fatal(err)
	}
	s := startMeshwaf(t, c, node, ip)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	values := []string{"sidecars.namespaces={shop}"}
	if _, err := c.Apply(ctx, helmTemplate(t, values, "templates/istio/bootstrap-override.yaml")); err != nil {
		t.Fatal(err)
	}
	ws := startWorkloads(t, c, d, s)
	a, b := ws[0], ws[1]
	through := "http://" + a.egress + ":8080"
	for _, target := range []string{"b.shop.svc.cluster.local:8080", "c.shop.svc.cluster.local:8080", "b:8080", "b.shop:8080"} {
		waitStatus(t, through, target, benign, http.StatusOK, 30*time.Second)
	}
	before := latency(t, through, "c:8080", benign, 400)

	if _, err := c.Apply(ctx, helmTemplate(t, values, "templates/istio/sidecar-envoyfilter.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		waitFilter(t, w.proxy, "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC", 30*time.Second)
	}
	after := latency(t, through, "c:8080", benign, 400)
	t.Logf("a → c median latency: %s without meshwaf's filter, %s with the filter of a workload without policy (%+.0f µs)",
		before, after, float64(after-before)/float64(time.Microsecond))

	applyFiles(t, c, "examples/east-west/wafpolicy.yaml")
	start := time.Now()
	// Every in-mesh name of the Service, with and without its port.
	for _, name := range []string{"b", "b.shop", "b.shop.svc", "b.shop.svc.cluster.local"} {
		for _, host := range []string{name, name + ":8080"} {
			waitStatus(t, through, host, sqli, http.StatusForbidden, 10*time.Second)
		}
	}
	t.Logf("policy on Service b: SQLi from a answered 403 after %s", time.Since(start).Round(time.Millisecond))
	if got := status(t, through, "b:8080", benign); got != http.StatusOK {
		t.Errorf("benign request to b: %d, want 200", got)
	}
	if got := status(t, through, "c:8080", sqli); got != http.StatusOK {
		t.Errorf("SQLi to c, which no policy protects: %d, want 200", got)
	}
	waitProgrammed(t, c, "b", 10*time.Second)
	audit, err := os.ReadFile(s.LogPaths().Audit)
	if err != nil {
		t.Fatal(err)
	}
	if !auditHas(string(audit), `"policy":"shop/b"`, `"action":"blocked"`, `"source_principal":"spiffe://cluster.local/ns/shop/sa/a"`) {
		t.Errorf("no audit line of a block by policy shop/b naming a as the caller:\n%s", audit)
	}

	switchModeAndBack(t, c, b.proxy, "examples/east-west/wafpolicy.yaml", through, "b:8080")
}

// auditHas says whether one line of audit holds every one of parts.
func auditHas(audit string, parts ...string) bool {
	for _, line := range strings.Split(audit, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// waitFilter waits until the proxy's meshwaf.waf filter has a configuration
// from the control plane (an ECDS update), of type typeURL.
func waitFilter(t *testing.T, g *Gateway, typeURL string, timeout time.Duration) {
	t.Helper()
	var typ string
	var err error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var n uint64
		if n, err = stack.ECDSReloads(context.Background(), g.AdminURL); err != nil || n == 0 {
			continue
		}
		if typ, err = stack.ECDSFilterType(context.Background(), g.AdminURL); err == nil && typ == typeURL {
			return
		}
	}
	t.Fatalf("proxy %s: meshwaf.waf is %q (%v), want %s within %s", g.AdminURL, typ, err, typeURL, timeout)
}
