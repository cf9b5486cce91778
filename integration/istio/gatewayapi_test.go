package istio

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshwaf/meshwaf/integration/kube"
)

// The README's Gateway API steps: a Gateway of class istio, which istiod
// deploys itself from its kube-gateway template, names meshwaf's
// parameters ConfigMap in spec.infrastructure.parametersRef, and an
// HTTPRoute and a WAFPolicy on that route, all applied as the files are.
// The Deployment istiod writes carries meshwaf's overlay; its pod, started
// as the Deployment describes, enforces the policy (SQLi 403, benign 200),
// shows the ECDS updates in its /stats, follows a policy edit to Detect and
// back within 2 s without restarting Envoy, and istiod reports the Gateway
// Programmed.
func TestGatewayAPIGatewayDeployedByIstiod(t *testing.T) {
	c, _ := startIstio(t, gatewayNamespace, "shop")
	applyFiles(t, c, "examples/gateway-api/gateway.yaml", "examples/gateway-api/httproute.yaml",
		"examples/gateway-api/wafpolicy.yaml")
	ip, err := PodIP()
	if err != nil {
		t.Fatal(err)
	}
	s := startMeshwaf(t, c, node, ip)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Apply(ctx, []byte(backendEndpoint(ip, s.Ports().Backend))); err != nil {
		t.Fatal(err)
	}
	g := StartDeployedGateway(t, c, s, gatewayNamespace, "public", node, ip)

	// istiod, not the harness, attached meshwaf: what the parameters add is
	// in the Deployment it wrote.
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	dep, err := cs.AppsV1().Deployments(gatewayNamespace).Get(ctx, "public-istio", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := hasMeshwafOverlay(dep); err != nil {
		t.Fatalf("Deployment %s/%s that istiod generated: %v", dep.Namespace, dep.Name, err)
	}

	checkEnforced(t, c, g)
	switchModeAndBack(t, c, g, "examples/gateway-api/wafpolicy.yaml", demoGateway, host)
	waitGatewayCondition(t, c, gatewayNamespace, "public", "Programmed", 30*time.Second)
}

// hasMeshwafOverlay checks that the Deployment's proxy container has what
// deploy/istio/gateway-parameters.yaml adds.
func hasMeshwafOverlay(dep *appsv1.Deployment) error {
	tmpl := dep.Spec.Template
	if tmpl.Labels["istio"] != "ingressgateway" {
		return fmt.Errorf("pod labels %v lack istio: ingressgateway, which the EnvoyFilter selects", tmpl.Labels)
	}
	if tmpl.Annotations["sidecar.istio.io/statsInclusionPrefixes"] != "extension_config_discovery" {
		return fmt.Errorf("pod annotations %v lack the stats inclusion", tmpl.Annotations)
	}
	ctr, err := container(tmpl.Spec, proxyContainer)
	if err != nil {
		return err
	}
	override := false
	for _, e := range ctr.Env {
		override = override || e.Name == "ISTIO_BOOTSTRAP_OVERRIDE"
	}
	if !override {
		return fmt.Errorf("container %s has no ISTIO_BOOTSTRAP_OVERRIDE", ctr.Name)
	}
	for _, want := range []string{"meshwaf-bootstrap", "meshwaf-xds-client"} {
		found := false
		for _, m := range ctr.VolumeMounts {
			found = found || m.Name == want
		}
		if !found {
			return fmt.Errorf("container %s does not mount %s", ctr.Name, want)
		}
	}
	return nil
}

// waitGatewayCondition waits until the Gateway API Gateway's condition
// kind is True, as istiod reports it.
func waitGatewayCondition(t *testing.T, c *kube.Cluster, namespace, name, kind string, timeout time.Duration) {
	t.Helper()
	dyn, err := c.Dynamic()
	if err != nil {
		t.Fatal(err)
	}
	var last any
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		gw, err := dyn.Resource(gatewayResource).Namespace(namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			last = err
			continue
		}
		conditions, _, _ := unstructured.NestedSlice(gw.Object, "status", "conditions")
		last = conditions
		for _, cond := range conditions {
			if m, ok := cond.(map[string]any); ok && m["type"] == kind && m["status"] == "True" {
				return
			}
		}
	}
	t.Fatalf("Gateway %s/%s not %s within %s; conditions: %v", namespace, name, kind, timeout, last)
}
