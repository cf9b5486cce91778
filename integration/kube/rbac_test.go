package kube_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/kube"
)

func deployFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(kube.RepoRoot(), "deploy", "kubernetes", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The control plane's ServiceAccount can do exactly what issue 3 needs:
// every allowed case is something the control plane does, every denied one
// something it must not be able to do.
func TestControlPlaneRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := kube.Start(t, kube.Options{})
	for _, f := range []string{"00-namespace.yaml", "10-rbac.yaml"} {
		if _, err := c.Apply(ctx, deployFile(t, f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	admin, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}

	type access struct{ verb, group, resource, subresource, namespace, name string }
	allowed := []access{
		{"list", "networking.istio.io", "gateways", "", "", ""},
		{"watch", "networking.istio.io", "gateways", "", "", ""},
		{"get", "networking.istio.io", "virtualservices", "", "shop", ""},
		{"list", "networking.istio.io", "virtualservices", "", "", ""},
		{"watch", "gateway.networking.k8s.io", "gateways", "", "", ""},
		{"list", "gateway.networking.k8s.io", "httproutes", "", "", ""},
		{"watch", "gateway.networking.k8s.io", "httproutes", "", "", ""},
		{"list", "", "services", "", "", ""},
		{"watch", "", "services", "", "", ""},
		{"get", "", "services", "", "shop", "api"},
		{"list", "waf.meshwaf.io", "wafpolicies", "", "", ""},
		{"watch", "waf.meshwaf.io", "wafpolicies", "", "", ""},
		{"get", "waf.meshwaf.io", "wafpolicies", "", "shop", "shop"},
		{"update", "waf.meshwaf.io", "wafpolicies", "status", "shop", "shop"},
		{"patch", "waf.meshwaf.io", "wafpolicies", "status", "shop", "shop"},
		{"create", "authentication.k8s.io", "tokenreviews", "", "", ""},
		{"create", "coordination.k8s.io", "leases", "", "meshwaf-system", ""},
		{"get", "coordination.k8s.io", "leases", "", "meshwaf-system", "meshwaf-xds-status"},
		{"update", "coordination.k8s.io", "leases", "", "meshwaf-system", "meshwaf-xds-status"},
		{"create", "", "configmaps", "", "meshwaf-system", ""},
		{"get", "", "configmaps", "", "meshwaf-system", "meshwaf-xds-convergence"},
		{"patch", "", "configmaps", "", "meshwaf-system", "meshwaf-xds-convergence"},
		{"create", "", "events", "", "meshwaf-system", ""},
		{"patch", "", "events", "", "meshwaf-system", ""},
		{"create", "events.k8s.io", "events", "", "meshwaf-system", ""},
	}
	denied := []access{
		{"update", "waf.meshwaf.io", "wafpolicies", "", "shop", "shop"},
		{"patch", "waf.meshwaf.io", "wafpolicies", "", "shop", "shop"},
		{"create", "waf.meshwaf.io", "wafpolicies", "", "shop", ""},
		{"delete", "waf.meshwaf.io", "wafpolicies", "", "shop", "shop"},
		{"update", "networking.istio.io", "virtualservices", "", "shop", "shop"},
		{"update", "networking.istio.io", "gateways", "status", "shop", "public"},
		{"patch", "gateway.networking.k8s.io", "httproutes", "status", "shop", "api"},
		{"list", "networking.istio.io", "destinationrules", "", "", ""},
		{"get", "", "secrets", "", "meshwaf-system", ""},
		{"list", "", "secrets", "", "", ""},
		{"list", "", "configmaps", "", "meshwaf-system", ""},
		{"get", "", "configmaps", "", "meshwaf-system", "kube-root-ca.crt"},
		{"patch", "", "configmaps", "", "meshwaf-system", "meshwaf-bootstrap"},
		{"delete", "", "configmaps", "", "meshwaf-system", "meshwaf-xds-convergence"},
		{"create", "", "configmaps", "", "shop", ""},
		{"list", "", "pods", "", "", ""},
		{"update", "", "services", "", "shop", "api"},
		{"patch", "", "services", "status", "shop", "api"},
		{"list", "", "endpoints", "", "", ""},
		{"list", "", "namespaces", "", "", ""},
		{"create", "coordination.k8s.io", "leases", "", "default", ""},
		{"update", "coordination.k8s.io", "leases", "", "meshwaf-system", "kube-scheduler"},
		{"delete", "coordination.k8s.io", "leases", "", "meshwaf-system", "meshwaf-xds-status"},
		{"list", "coordination.k8s.io", "leases", "", "meshwaf-system", ""},
		{"create", "", "events", "", "shop", ""},
		{"create", "authorization.k8s.io", "subjectaccessreviews", "", "", ""},
		{"impersonate", "", "users", "", "", "admin"},
		{"create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", ""},
		{"update", "apiextensions.k8s.io", "customresourcedefinitions", "", "", "wafpolicies.waf.meshwaf.io"},
		{"escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", ""},
	}
	check := func(a access, want bool) {
		t.Helper()
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:meshwaf-system:meshwaf-xds",
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:meshwaf-system", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource,
				Namespace: a.namespace, Name: a.name,
			},
		}}
		got, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Allowed != want {
			t.Errorf("%+v: allowed=%v, want %v (%s)", a, got.Status.Allowed, want, got.Status.Reason)
		}
	}
	for _, a := range allowed {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}

	// The same, acting as the ServiceAccount with a real token, for the
	// calls whose denial matters most.
	if _, err := c.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"+policy)); err != nil {
		t.Fatal(err)
	}
	saCfg, err := c.ServiceAccountConfig(ctx, "meshwaf-system", "meshwaf-xds")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(saCfg)
	saDyn := dynamic.NewForConfigOrDie(saCfg)
	policies := saDyn.Resource(v1alpha1.GroupVersionResource).Namespace("shop")

	p, err := policies.Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get policy as control plane: %v", err)
	}
	statusPatch := []byte(`{"status":{"hosts":["shop/public/shop.example.com"]}}`)
	if _, err := policies.Patch(ctx, "shop", types.MergePatchType, statusPatch, metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("patch status as control plane: %v", err)
	}
	if _, err := policies.Patch(ctx, "shop", types.MergePatchType, []byte(`{"spec":{"mode":"Off"}}`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("patch spec as control plane: %v, want Forbidden", err)
	}
	p.Object["spec"].(map[string]any)["mode"] = "Off"
	if _, err := policies.Update(ctx, p, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("update spec as control plane: %v, want Forbidden", err)
	}
	if _, err := sa.CoreV1().Secrets("meshwaf-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as control plane: %v, want Forbidden", err)
	}
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "meshwaf-xds-status", Namespace: "meshwaf-system"}}
	if _, err := sa.CoordinationV1().Leases("meshwaf-system").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Errorf("create lease as control plane: %v", err)
	}
	if _, err := sa.CoordinationV1().Leases("meshwaf-system").Get(ctx, "meshwaf-xds-status", metav1.GetOptions{}); err != nil {
		t.Errorf("get lease as control plane: %v", err)
	}
	// TokenReview is how the control plane will authenticate agents: an
	// agent's token must come back authenticated as the agent.
	agentCfg, err := c.ServiceAccountConfig(ctx, "meshwaf-system", "meshwaf-agent")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := sa.AuthenticationV1().TokenReviews().Create(ctx,
		&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: agentCfg.BearerToken}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token review as control plane: %v", err)
	}
	if !tr.Status.Authenticated || tr.Status.User.Username != "system:serviceaccount:meshwaf-system:meshwaf-agent" {
		t.Errorf("agent token review: %+v", tr.Status)
	}
	// The agent's ServiceAccount has no API access at all.
	agent := kubernetes.NewForConfigOrDie(agentCfg)
	if _, err := agent.CoreV1().Secrets("meshwaf-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as agent: %v, want Forbidden", err)
	}
}

// The workload manifests pass the real API server's validation and
// admission. Dry-run only: a stored webhook configuration would make the API
// server call the meshwaf-xds Service's ClusterIP, which nothing serves here.
func TestDeployManifestsAreValid(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := kube.Start(t, kube.Options{IstioCRDs: []string{}, GatewayAPICRDs: []string{}})
	files, err := filepath.Glob(filepath.Join(kube.RepoRoot(), "deploy", "kubernetes", "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("deploy/kubernetes: %v %v", files, err)
	}
	// The namespace and RBAC are stored, because the workloads' dry run
	// needs them (NamespaceLifecycle, ServiceAccount references); every
	// other file is only dry-run.
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, "00-") || strings.HasPrefix(name, "10-") {
			if _, err := c.Apply(ctx, deployFile(t, name)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		} else if err := c.DryRun(ctx, deployFile(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
