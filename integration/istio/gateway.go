package istio

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/proc"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// Gateway is an ingress gateway run as Istio runs it: pilot-agent, with
// Istio's bootstrap template and meshwaf's bootstrap override, starting
// the PyPI Envoy.
type Gateway struct {
	process *proc.Process
	// AdminURL is Envoy's admin endpoint.
	AdminURL string
}

// GatewayPod describes the pod a gateway stands in for.
type GatewayPod struct {
	Namespace, ServiceAccount, Name string
	Labels                          map[string]string
	// Node is the node name the pod would run on (ISTIO_META_NODE_NAME).
	Node string
	// IP is the pod's address (PodIP).
	IP string
	// Ports are the proxy's own ports.
	Ports ProxyPorts
	// Sidecar runs the proxy as a workload's sidecar (pilot-agent proxy
	// sidecar) instead of a gateway, without traffic capture (interception
	// mode NONE: no iptables here), so its listeners are the ones its
	// Sidecar resource binds.
	Sidecar bool
	// BootstrapConfigMap names the ConfigMap of the pod's
	// sidecar.istio.io/bootstrapOverride annotation, in Namespace.
	BootstrapConfigMap string
}

// ProxyPorts are the loopback and wildcard ports a proxy takes besides its
// gateway listeners. Zero fields are Istio's defaults; a second gateway on
// the machine needs others.
type ProxyPorts struct {
	Admin      int // Envoy's admin (15000)
	Readiness  int // Envoy's readiness listener (15021)
	Prometheus int // Envoy's merged stats listener (15090)
	Status     int // pilot-agent's status server (15020)
}

func (p ProxyPorts) withDefaults() ProxyPorts {
	p.Admin = cmp.Or(p.Admin, 15000)
	p.Readiness = cmp.Or(p.Readiness, 15021)
	p.Prometheus = cmp.Or(p.Prometheus, 15090)
	p.Status = cmp.Or(p.Status, 15020)
	return p
}

// StartGateway starts a gateway for pod, getting its configuration from d
// and its meshwaf override from the ConfigMap in c, pointed at s's control
// plane. Everything a kubelet would mount is a file under a temporary
// directory, pilot-agent's working directory, where it looks for them.
func StartGateway(t testing.TB, c *kube.Cluster, d *Istiod, s *stack.Stack, pod GatewayPod) *Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parts := mustInstallParts(t)
	ports := pod.Ports.withDefaults()
	checkPortsFree(t, pod.Name, ports)
	envoy, err := stack.FindEnvoy(ctx, kube.RepoRoot(), "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mount := func(rel string, content []byte) string { return writeFile(t, dir, rel, content) }
	templatePath := mountBootstrapTemplate(t, dir, parts)

	// The projected token with audience istio-ca and the root certificate
	// istiod publishes, as the gateway injection template mounts them.
	token, err := c.PodToken(ctx, pod.Namespace, pod.ServiceAccount, pod.Node, "istio-ca")
	if err != nil {
		t.Fatal(err)
	}
	mount("var/run/secrets/tokens/istio-token", []byte(token))
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	root, err := waitConfigMap(ctx, c, pod.Namespace, "istio-ca-root-cert")
	if err != nil {
		t.Fatal(err)
	}
	mount("var/run/secrets/istio/root-cert.pem", []byte(root["root-cert.pem"]))

	// meshwaf's override, from the ConfigMap the chart rendered, as the
	// API server holds it, and the pod annotations it asks for, applied as
	// Istio's injector and the kubelet would (podAnnotations).
	cm, err := cs.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, pod.BootstrapConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("bootstrap override ConfigMap: %v", err)
	}
	annotations, err := podAnnotations(cm.Annotations[podAnnotationsKey], pod.BootstrapConfigMap)
	if err != nil {
		t.Fatalf("ConfigMap %s/%s: %v", pod.Namespace, pod.BootstrapConfigMap, err)
	}
	mount("etc/istio/pod/annotations", downwardFile(annotations))
	overrideDir := filepath.Join(dir, stack.IstioBootstrapMountDir)
	if err := os.MkdirAll(overrideDir, 0o755); err != nil {
		t.Fatal(err)
	}
	override, err := s.IstioGatewayOverride(cm.Data, overrideDir)
	if err != nil {
		t.Fatalf("bootstrap override: %v", err)
	}

	labels, err := json.Marshal(pod.Labels)
	if err != nil {
		t.Fatal(err)
	}
	proxyConfig, err := json.Marshal(map[string]any{
		"binaryPath":                 envoy,
		"discoveryAddress":           d.XDSAddr,
		"configPath":                 filepath.Join(dir, "etc/istio/proxy"),
		"proxyBootstrapTemplatePath": templatePath,
		"terminationDrainDuration":   "1s",
		"proxyAdminPort":             ports.Admin,
		"statusPort":                 ports.Status,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		// What the gateway Deployment's downward API and injection set.
		"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + pod.Namespace, "SERVICE_ACCOUNT=" + pod.ServiceAccount,
		"INSTANCE_IP=" + pod.IP, "HOST_IP=" + pod.IP,
		"ISTIO_META_NODE_NAME=" + pod.Node, "ISTIO_META_CLUSTER_ID=Kubernetes", "CLOUD_PLATFORM=none",
		"ISTIO_METAJSON_LABELS=" + string(labels), "ISTIO_META_WORKLOAD_NAME=" + pod.Name,
		"PROXY_CONFIG=" + string(proxyConfig),
		"ENVOY_STATUS_PORT=" + strconv.Itoa(ports.Readiness),
		"ENVOY_PROMETHEUS_PORT=" + strconv.Itoa(ports.Prometheus),
		// What the injector sets for sidecar.istio.io/bootstrapOverride,
		// where it mounts the ConfigMap.
		"ISTIO_BOOTSTRAP_OVERRIDE=" + override,
	}
	role := "router"
	if pod.Sidecar {
		// What the injector sets for sidecar.istio.io/interceptionMode.
		role, env = "sidecar", append(env, "ISTIO_META_INTERCEPTION_MODE=NONE")
	}
	return runPilotAgent(t, ctx, pod.Name, dir, ports, env, parts.PilotAgent,
		"proxy", role, "--domain", pod.Namespace+".svc.cluster.local", "--proxyLogLevel=warning")
}

// downwardFile is a map of labels or annotations as the downward API
// writes it into a file, which pilot-agent reads.
func downwardFile(m map[string]string) []byte {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return []byte(b.String())
}

// checkPortsFree fails the test if a proxy port is taken: a busy port
// would be answered by another process, such as another test's gateway,
// and look like this gateway being ready.
func checkPortsFree(t testing.TB, name string, ports ProxyPorts) {
	t.Helper()
	for _, port := range []int{ports.Admin, ports.Readiness, ports.Prometheus, ports.Status} {
		ln, err := net.Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("gateway %s: proxy port %d is in use: %v", name, port, err)
		}
		ln.Close()
	}
}

// writeFile writes content to rel under dir, a pod's files, creating its
// directories, and returns its path.
func writeFile(t testing.TB, dir, rel string, content []byte) string {
	t.Helper()
	path := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mountBootstrapTemplate puts Istio's bootstrap template where the proxy
// image has it (pilot-agent's default proxyBootstrapTemplatePath, relative
// to its working directory dir) and returns its path.
func mountBootstrapTemplate(t testing.TB, dir string, parts Parts) string {
	t.Helper()
	template, err := os.ReadFile(parts.BootstrapTemplate)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "var/lib/istio/envoy/envoy_bootstrap_tmpl.json", template)
}

// runPilotAgent starts pilot-agent with args and env in dir, where the
// pod's files are, and waits until its Envoy is ready. It is stopped when
// the test ends.
func runPilotAgent(t testing.TB, ctx context.Context, name, dir string, ports ProxyPorts, env []string, pilotAgent string, args ...string) *Gateway {
	t.Helper()
	g := &Gateway{AdminURL: "http://127.0.0.1:" + strconv.Itoa(ports.Admin)}
	var err error
	g.process, err = proc.Start("gateway "+name, filepath.Join(dir, "gateway.log"), pilotAgent,
		proc.Options{Dir: dir, Env: env}, args...)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, g.process)
	ready := fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", ports.Readiness)
	if err := g.process.WaitHTTP(ctx, http.DefaultClient, ready, time.Minute); err != nil {
		t.Fatalf("gateway %s not ready: %v", name, err)
	}
	return g
}

// waitConfigMap waits until a ConfigMap exists (one istiod writes) and
// returns its data.
func waitConfigMap(ctx context.Context, c *kube.Cluster, namespace, name string) (map[string]string, error) {
	cs, err := c.Clientset()
	if err != nil {
		return nil, err
	}
	for {
		cm, err := cs.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return cm.Data, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ConfigMap %s/%s: %w (last: %v)", namespace, name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PodIP is the address the harness gives pods: the machine's first IPv4
// address that is not loopback, because a Kubernetes endpoint may not be
// a loopback address. Processes standing in for pods listen on it.
func PodIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("no IPv4 address other than loopback among %v: pods need one", addrs)
}

// podAnnotationsKey is the bootstrap ConfigMap's annotation that lists the
// annotations a gateway pod needs, as one JSON object.
const podAnnotationsKey = "waf.meshwaf.io/gateway-pod-annotations"

// podAnnotations reads the gateway pod annotations the bootstrap ConfigMap
// asks for and checks that the harness does for each what Istio does:
// bootstrapOverride names configMap, which is passed to pilot-agent; the
// user volume is the Secret meshwaf-gateway-xds-tls at
// /etc/meshwaf/xds-client, for which the stack's gateway certificate
// folder stands in (stack.IstioGatewayOverride); the rest reach
// pilot-agent through the downward API file of pod annotations. An
// annotation the harness does not know fails the test, so that the chart
// and the tests cannot drift apart.
func podAnnotations(listed, configMap string) (map[string]string, error) {
	var annotations map[string]string
	if err := json.Unmarshal([]byte(listed), &annotations); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", podAnnotationsKey, err)
	}
	want := map[string]string{
		"sidecar.istio.io/bootstrapOverride": configMap,
		"sidecar.istio.io/userVolume":        `{"meshwaf-xds-client":{"secret":{"secretName":"meshwaf-gateway-xds-tls"}}}`,
		"sidecar.istio.io/userVolumeMount":   `{"meshwaf-xds-client":{"mountPath":"/etc/meshwaf/xds-client","readOnly":true}}`,
	}
	for k, v := range want {
		if annotations[k] != v {
			return nil, fmt.Errorf("pod annotation %s is %q; the harness does what %q asks", k, annotations[k], v)
		}
	}
	for k := range annotations {
		if _, ok := want[k]; !ok && k != "sidecar.istio.io/statsInclusionPrefixes" {
			return nil, fmt.Errorf("pod annotation %s: the harness does not know what Istio does with it", k)
		}
	}
	return annotations, nil
}

// EnvoyPID is the process id of the Envoy pilot-agent runs.
func (g *Gateway) EnvoyPID() (int, error) {
	pid := g.process.PID()
	// Any thread of pilot-agent may have started Envoy.
	lists, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return 0, err
	}
	var children []string
	for _, list := range lists {
		b, err := os.ReadFile(list)
		if err != nil {
			continue // the thread ended
		}
		children = append(children, strings.Fields(string(b))...)
	}
	for _, f := range children {
		child, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); err == nil && filepath.Base(exe) == "envoy" {
			return child, nil
		}
	}
	return 0, fmt.Errorf("pilot-agent (pid %d) has no envoy child among %q", pid, children)
}

// ExtraPodIP gives pods a further address, for a second node's pods:
// 198.51.100.<10+i> (a documentation range) added to the loopback
// interface, as PodIP's address is one per machine, and removed when the
// test ends. Adding an address needs root, as the gateways' port 80 does.
func ExtraPodIP(t testing.TB, i int) string {
	t.Helper()
	ip := fmt.Sprintf("198.51.100.%d", 10+i)
	if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") && !strings.Contains(string(out), "already assigned") {
		t.Fatalf("adding pod address %s to lo: %v: %s", ip, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Errorf("removing pod address %s from lo: %v: %s", ip, err, out)
		}
	})
	return ip
}
