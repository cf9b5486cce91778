package kube_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/kube"
)

// The chart installs into any namespace and for any gateway: rendered with
// values other than the defaults the plain manifests come from, nothing
// names meshwaf-system or the default gateway any more, the control plane
// and the agents find each other in the release namespace, helm install
// succeeds against a real API server and tells the user what to create, and
// that API server accepts every object (the namespaces and RBAC stored, the
// rest dry-run, as TestDeployManifestsAreValid does; the EnvoyFilter against
// Istio's own CRD).
func TestHelmChartRendersForAnotherNamespaceAndGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	helm := helmBinary(ctx, t)
	rendered := helmTemplate(ctx, t, "--namespace", "waf", "--set", "createNamespace=true", "--set", "gateway.namespace=edge",
		"--set", "gateway.selector.istio=null", "--set", "gateway.selector.app=edge-gateway")
	for _, stale := range []string{"meshwaf-system", "istio-ingress", "ingressgateway"} {
		if bytes.Contains(rendered, []byte(stale)) {
			t.Errorf("the rendered chart still names %q", stale)
		}
	}
	for _, want := range []string{
		"--xds-address=meshwaf-xds.waf.svc:18000",                            // agents find the control plane
		"--agent-cluster=outbound|9191||meshwaf-agent.waf.svc.cluster.local", // Envoy finds the agents
		"--agent-service-accounts=waf/meshwaf-agent",                         // whose tokens make agents
		"sni: meshwaf-xds.waf.svc",                                           // gateways verify the control plane
		"cert-manager.io/inject-ca-from: waf/meshwaf-xds",                    // the webhook's CA
		"app: edge-gateway",                                                  // the EnvoyFilter's gateway
	} {
		if !bytes.Contains(rendered, []byte(want)) {
			t.Errorf("the rendered chart lacks %q", want)
		}
	}

	c := kube.Start(t, kube.Options{IstioCRDs: []string{"envoyfilters.networking.istio.io"}, GatewayAPICRDs: []string{}})
	if _, err := c.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: edge}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: waf}\n")); err != nil {
		t.Fatal(err)
	}

	// helm install itself, a server-side dry run into the existing
	// namespace, and the notes it prints for the user.
	install, err := exec.CommandContext(ctx, helm, "install", "meshwaf", filepath.Join(kube.RepoRoot(), "deploy", "helm", "meshwaf"),
		"--kubeconfig", c.Kubeconfig(), "--namespace", "waf", "--dry-run=server", "--set", "gateway.namespace=edge").CombinedOutput()
	if err != nil {
		t.Fatalf("helm install --dry-run=server: %v\n%s", err, install)
	}
	notes := install
	if i := bytes.Index(install, []byte("NOTES:")); i >= 0 {
		notes = install[i:]
	}
	for _, want := range []string{"Secret waf/meshwaf-xds-tls", "ConfigMap waf/meshwaf-client-ca", "Secret edge/meshwaf-gateway-xds-tls",
		"sidecar.istio.io/bootstrapOverride: meshwaf-bootstrap"} {
		if !bytes.Contains(notes, []byte(want)) {
			t.Errorf("helm install's notes lack %q:\n%s", want, notes)
		}
	}
	// Helm starts each template's output with "# Source: meshwaf/templates/<path>".
	source := regexp.MustCompile(`(?m)^# Source: meshwaf/templates/(\S+)$`)
	parts := source.Split(string(rendered), -1)
	names := source.FindAllStringSubmatch(string(rendered), -1)
	if len(names) < 7 {
		t.Fatalf("%d templates rendered, want the 5 Kubernetes and 2 Istio files", len(names))
	}
	for i, name := range names {
		doc := []byte(parts[i+1])
		if file := filepath.Base(name[1]); strings.HasPrefix(file, "00-") || strings.HasPrefix(file, "10-") {
			if _, err := c.Apply(ctx, doc); err != nil {
				t.Fatalf("%s: %v", name[1], err)
			}
		} else if err := c.DryRun(ctx, doc); err != nil {
			t.Errorf("%s: %v", name[1], err)
		}
	}
}

// helmBinary is the cached helm (scripts/install-helm.sh installs it).
func helmBinary(ctx context.Context, t *testing.T) string {
	t.Helper()
	script := filepath.Join(kube.RepoRoot(), "scripts", "install-helm.sh")
	out, err := exec.CommandContext(ctx, script).Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	return strings.TrimSpace(string(out))
}

// helmTemplate renders the chart with args (namespace, --set ...).
func helmTemplate(ctx context.Context, t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.CommandContext(ctx, helmBinary(ctx, t), append([]string{"template", "meshwaf",
		filepath.Join(kube.RepoRoot(), "deploy", "helm", "meshwaf")}, args...)...)
	rendered, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return rendered
}
