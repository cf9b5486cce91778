package kube_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/kube"
)

// routing is one Istio Gateway + VirtualService and one Gateway API Gateway +
// HTTPRoute, proving the third-party CRDs are installed and served.
const routing = `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["shop.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: ["shop.example.com"]
  gateways: ["public"]
  http:
  - route:
    - destination: {host: shop.shop.svc.cluster.local}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: shop}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: "api.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{name: edge}]
  hostnames: ["api.example.com"]
  rules:
  - backendRefs: [{name: api, port: 8080}]
`

const policy = `
apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: shop, namespace: shop}
spec:
  targetRefs:
  - {group: networking.istio.io, kind: Gateway, name: public}
  hosts: ["shop.example.com"]
  exclusions:
  - {ruleIds: ["942100"], paths: ["/search"], targets: ["ARGS:q"]}
`

func TestClusterServesWAFPolicy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := kube.Start(t, kube.Options{})

	if _, err := c.Apply(ctx, []byte(routing+"\n---\n"+policy)); err != nil {
		t.Fatal(err)
	}
	dyn, err := c.Dynamic()
	if err != nil {
		t.Fatal(err)
	}
	got := getPolicy(ctx, t, dyn, "shop", "shop")

	// The CRD's defaults must be exactly defaults.go's: a policy read from
	// the API is then the same whether or not a consumer calls WithDefaults.
	if want := got.Spec.WithDefaults(); !reflect.DeepEqual(got.Spec, want) {
		t.Errorf("API server defaults differ from WithDefaults:\n got  %+v\n want %+v", got.Spec, want)
	}
	if err := got.Spec.Validate(); err != nil {
		t.Errorf("stored policy fails Validate: %v", err)
	}
	if got.Spec.Exclusions[0].Targets[0] != "ARGS:q" || got.Spec.Hosts[0] != "shop.example.com" {
		t.Errorf("spec not stored as applied: %+v", got.Spec)
	}

	// Status goes through the status subresource, as the leader writes it.
	got.Status = v1alpha1.WAFPolicyStatus{
		ObservedGeneration: got.Generation,
		Hosts:              []string{"shop/public/shop.example.com"},
		Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue, Reason: "Accepted", LastTransitionTime: metav1.Now()},
			{Type: v1alpha1.ConditionProgrammed, Status: metav1.ConditionFalse, Reason: "Pending", LastTransitionTime: metav1.Now()},
		},
		Agents: v1alpha1.AgentsStatus{Desired: 2, Applied: 1, PolicyVersion: "abc"},
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(v1alpha1.GroupVersionResource).Namespace("shop").
		UpdateStatus(ctx, &unstructured.Unstructured{Object: u}, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status: %v", err)
	}

	out, err := c.Kubectl(ctx, "get", "wafpolicies", "-n", "shop")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl get wafpolicies:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", out)
	}
	if header := strings.Fields(lines[0]); !reflect.DeepEqual(header, []string{"NAME", "MODE", "HOSTS", "ACCEPTED", "PROGRAMMED", "AGE"}) {
		t.Errorf("columns %v", header)
	}
	for _, want := range []string{"shop", "Prevent", "shop/public/shop.example.com", "True", "False"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
}

func getPolicy(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns, name string) v1alpha1.WAFPolicy {
	t.Helper()
	u, err := dyn.Resource(v1alpha1.GroupVersionResource).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var p v1alpha1.WAFPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &p, true); err != nil {
		t.Fatalf("stored policy does not decode strictly into v1alpha1.WAFPolicy: %v", err)
	}
	return p
}

// The CRD's schema and CEL rules reject what they can before any meshwaf
// code sees it; each case names the message users get.
func TestCRDRejectsInvalidPolicies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := kube.Start(t, kube.Options{IstioCRDs: []string{}, GatewayAPICRDs: []string{}})
	if err := c.EnsureNamespace(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	target := "\n  targetRefs: [{group: networking.istio.io, kind: Gateway, name: public}]"
	tests := map[string]struct {
		spec    string
		wantErr string
	}{
		"no targets":                 {"\n  targetRefs: []", "spec.targetRefs: Invalid value"},
		"missing targetRefs":         {"\n  mode: Detect", "spec.targetRefs: Required value"},
		"unsupported target kind":    {"\n  targetRefs: [{group: networking.istio.io, kind: DestinationRule, name: x}]", "target must be a networking.istio.io Gateway or VirtualService"},
		"Gateway API VirtualService": {"\n  targetRefs: [{group: gateway.networking.k8s.io, kind: VirtualService, name: x}]", "target must be"},
		"Service of another group":   {"\n  targetRefs: [{group: serving.knative.dev, kind: Service, name: x}]", "target must be"},
		"Service without group":      {"\n  targetRefs: [{kind: Service, name: x}]", "spec.targetRefs[0].group: Required value"},
		"repeated target":            {"\n  targetRefs: [{group: networking.istio.io, kind: Gateway, name: a}, {group: networking.istio.io, kind: Gateway, name: a}]", "targetRefs must not repeat a target"},
		"empty target name":          {"\n  targetRefs: [{group: networking.istio.io, kind: Gateway, name: \"\"}]", "spec.targetRefs[0].name"},
		"upper-case host":            {target + "\n  hosts: [Shop.example.com]", "spec.hosts[0]: Invalid value"},
		"host with path":             {target + "\n  hosts: [shop.example.com/x]", "spec.hosts[0]"},
		"unknown mode":               {target + "\n  mode: Block", `spec.mode: Unsupported value: "Block"`},
		"unknown failure mode":       {target + "\n  failureMode: Maybe", "spec.failureMode: Unsupported value"},
		"paranoia level 5":           {target + "\n  crs: {paranoiaLevel: 5}", "spec.crs.paranoiaLevel: Invalid value: 5"},
		"paranoia level 0":           {target + "\n  crs: {paranoiaLevel: 0}", "spec.crs.paranoiaLevel"},
		"exclusion without ids":      {target + "\n  exclusions: [{paths: [/x]}]", "an exclusion needs at least one rule id or tag"},
		"rule id with text":          {target + "\n  exclusions: [{ruleIds: [\"942100,deny\"]}]", "spec.exclusions[0].ruleIds[0]"},
		"relative exclusion path":    {target + "\n  exclusions: [{ruleIds: [\"1\"], paths: [search]}]", "spec.exclusions[0].paths[0]"},
		"target injection":           {target + "\n  exclusions: [{ruleIds: [\"1\"], targets: [\"ARGS:q\\\",deny\"]}]", "spec.exclusions[0].targets[0]"},
		"tag with quote":             {target + "\n  exclusions: [{tags: [\"a\\\",deny\"]}]", "spec.exclusions[0].tags[0]"},
		"unknown over-limit":         {target + "\n  requestBody: {overLimit: Truncate}", "spec.requestBody.overLimit"},
		"zero body limit":            {target + "\n  requestBody: {limitBytes: 0}", "spec.requestBody.limitBytes"},
		"block status 99":            {target + "\n  blockResponse: {status: 99}", "spec.blockResponse.status"},
		"unknown audit level":        {target + "\n  audit: {log: Everything}", "spec.audit.log"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			doc := "apiVersion: waf.meshwaf.io/v1alpha1\nkind: WAFPolicy\nmetadata: {name: bad, namespace: shop}\nspec:" + tc.spec
			_, err := c.Apply(ctx, []byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}

	// The valid counterparts of some of the cases above are accepted.
	ok := "apiVersion: waf.meshwaf.io/v1alpha1\nkind: WAFPolicy\nmetadata: {name: good, namespace: shop}\nspec:" + target + `
  hosts: ["*.api.example.com", shop.example.com]
  mode: Detect
  crs: {paranoiaLevel: 4}
  exclusions:
  - {ruleIds: ["942000-942999"], paths: [/search], targets: ["REQUEST_HEADERS:x-token"]}
  - {tags: [attack-sqli, paranoia-level/2]}
  customRules: |
    SecRule REQUEST_HEADERS:User-Agent "@contains badbot" "id:10001,phase:1,deny,status:403"
  blockResponse: {status: 429, contentType: text/plain, body: slow down}
`
	if _, err := c.Apply(ctx, []byte(ok)); err != nil {
		t.Fatalf("valid policy rejected: %v", err)
	}
	// A core Service (group "") is a target too; hosts are allowed next to
	// it, and narrow only the other targets.
	service := `apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: workload, namespace: shop}
spec:
  targetRefs:
  - {group: "", kind: Service, name: api}
  - {group: networking.istio.io, kind: Gateway, name: public, namespace: istio-ingress}
  hosts: [api.example.com]
`
	if _, err := c.Apply(ctx, []byte(service)); err != nil {
		t.Fatalf("policy targeting a Service rejected: %v", err)
	}
}
